"""Serve a model folder locally behind the OpenAI-compatible endpoint and block until Ctrl-C.

    REASONER_API_KEYS=sk-local python jobs/serve_model.py serve.model_path=runs/quickstart/rounds/r2/dpo/output/model
    python jobs/serve_model.py --config configs/quickstart.yaml serve.port=8011

With no `serve.model_path`, the model the config resolves to (the tiny model on the quickstart) is served.
On a cluster, use `serve deploy serve/serve_config.yaml` (or a KubeRay RayService) instead.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import parse_config, run_guarded, setup_logging  # noqa: E402

log = logging.getLogger("reasoner_ray.jobs.serve_model")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config = parse_config(argv, __doc__)
    return run_guarded(lambda: _serve(config))


def _serve(config) -> int:
    from reasoner_ray.core.errors import PreflightError
    from reasoner_ray.models.loading import resolve_model_path
    from reasoner_ray.pipeline.preflight import check_gpu_fit, check_model
    from reasoner_ray.ray_utils import init_ray
    from serve.auth import NoApiKeysError, load_key_digests
    from serve.local import start_local

    serve_config = config.serve
    if not serve_config.model_path:
        serve_config = serve_config.model_copy(update={"model_path": resolve_model_path(config)})
    # What every replica would fail on, said before Ray and Serve start (a replica's error reaches this
    # console only as "Deploying application ... failed", after Serve has retried it).
    try:
        load_key_digests(serve_config.api_keys_env, serve_config.api_keys_file)
    except NoApiKeysError as err:
        raise PreflightError(f"serve: {err}") from None
    check_model(config, serve_config.model_path, f"serve.model_path={serve_config.model_path}")
    init_ray()
    if serve_config.replica_gpus > 0:
        check_gpu_fit(config.model_copy(update={"serve": serve_config}), serve=True)
    url = start_local(serve_config)
    log.info("serving %s at %s (Ctrl-C to stop)", serve_config.model_path, url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve as ray_serve

        ray_serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
