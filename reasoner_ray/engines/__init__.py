"""Adapters for inference engines (vLLM). Each module imports its engine itself, lazily."""
