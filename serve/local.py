"""Start the endpoint on a Ray this process already joined: used by jobs/serve_model.py, the tests and the
benchmark, so all three run exactly what `serve run serve.app:build_app` runs.

    from serve.local import start_local
    url = start_local(ServeConfig(model_path=...), port=8000)   # -> "http://127.0.0.1:8000/v1"
"""

from __future__ import annotations

from reasoner_ray.core.config import ServeConfig

APP_NAME = "reasoner"


def start_local(config: ServeConfig, port: int | None = None, host: str | None = None) -> str:
    """Deploy (or re-deploy, rolling) the app and wait until it is ready; returns the OpenAI base URL."""
    from ray import serve as ray_serve

    from serve.app import build_app

    host = host or config.host
    port = port or config.port
    ray_serve.start(http_options={"host": host, "port": port}, proxy_location=config.proxy_location)
    ray_serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}/v1"


def redeploy(config: ServeConfig) -> None:
    """Roll the running app to a new config (e.g. another model_path); returns once the new replicas serve."""
    from ray import serve as ray_serve

    from serve.app import build_app

    ray_serve.run(build_app(config), name=APP_NAME, route_prefix="/")
