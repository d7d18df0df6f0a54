"""reasoner-ray: LLaVA-Reasoner (CoT distillation, SFT, iterative DPO) on Ray.

Importing this package is cheap: engines (ray, vllm, deepspeed, torch) are imported only by the adapter
modules that use them. The pure core lives in `reasoner_ray.core`.
"""

__version__ = "0.1.0"
