"""Teacher CoT distillation's parts: the endpoint client, its limits and durable cache, the request key the
stand-in teacher shares, verification of a rationale against the gold, the output writer and the preflight call.

The run that streams rows through them (Ray Data, the local teacher) is `reasoner_ray.pipeline.distillation`
(`run_distillation`, `check_outcome`); script: jobs/distill.py.
"""
