"""The typed Ray Serve app builder: `serve.app:build_app` is the one import path for every way of running it.

    serve run serve.app:build_app model_path=runs/quickstart/rounds/r2/dpo/output/model   # local, foreground
    serve deploy serve/serve_config.yaml                                                    # a running Ray cluster
    KubeRay RayService serveConfigV2: import_path: serve.app:build_app, args: {model_path: ...}

The args are ServeConfig's fields (reasoner_ray/core/config.py, section `serve`), validated strictly: an
unknown key or a wrong type fails the deploy with the key named. Changing `model_path` (or any arg) and
re-deploying rolls the replicas: new ones start while the old keep serving (max_surge_percent=100), then the
old drain their in-flight requests, so no request is dropped. API keys are read inside the replicas from the
env var / secret file named here, never passed as args.
"""

from typing import Any

from ray.serve import Application

from reasoner_ray.core.config import ServeConfig
from reasoner_ray.engines.vllm_env import vllm_process_env

ServeArgs = ServeConfig  # the builder's typed args are exactly the config section

DEPLOYMENT_NAME = "ReasonerChat"
# Old replicas keep serving until their replacements are ready, then get this long to finish in-flight work.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 60.0
# Per-request CPU in the replica matters on small nodes: run the handlers on the replica's own event loop
# (no hop to a second loop thread per request) and batch access-log writes.
REPLICA_SERVE_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0", "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "64"}


def deployment_options(args: ServeArgs) -> dict[str, Any]:
    if args.max_replicas < args.min_replicas:
        raise ValueError(f"max_replicas ({args.max_replicas}) < min_replicas ({args.min_replicas})")
    scaling: dict[str, Any]
    if args.max_replicas == args.min_replicas:
        scaling = {"num_replicas": args.min_replicas}
    else:
        scaling = {"autoscaling_config": {
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "target_ongoing_requests": args.target_ongoing_requests,
        }}
    return {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": args.max_ongoing_requests,
        "max_surge_percent": 100,
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_TIMEOUT_S,
        "health_check_period_s": 10.0,
        "ray_actor_options": {
            "num_cpus": args.replica_cpus,
            "num_gpus": args.replica_gpus,
            # set before the replica process starts, so vLLM (imported later) and its spawned engine see them
            "runtime_env": {"env_vars": {**vllm_process_env(args.kv_cache_gib), **REPLICA_SERVE_ENV}},
        },
        **scaling,
    }


def build_app(args: ServeArgs) -> Application:
    """ServeArgs -> a Ray Serve Application of one FastAPI ingress deployment over vLLM.

    Serve validates the args dict into ServeArgs itself (from the annotation); a dict is accepted too.
    """
    from ray import serve as ray_serve

    from serve.deployment import ChatDeployment, fastapi_app

    if not isinstance(args, ServeConfig):
        args = ServeConfig.model_validate(args)
    if not args.model_path:
        raise ValueError("model_path is required: an exported round folder or any HF model folder")
    ingress = ray_serve.ingress(fastapi_app)(ChatDeployment)
    deployment = ray_serve.deployment(**deployment_options(args))(ingress)
    return deployment.bind(args)
