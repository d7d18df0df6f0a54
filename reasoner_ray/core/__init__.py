"""The pure core: row types, prompts, config, answers, rewards, pairs, run-directory layout.

Nothing under this package imports ray, vllm, deepspeed or torch (tests/core/test_import_light.py checks it),
so it runs and is tested anywhere.
"""
