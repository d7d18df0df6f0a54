"""Evaluate a model folder or an OpenAI-compatible endpoint on benchmarks: CoT and direct replies, each scored
with its benchmark's metric; prints the paper-style table (benchmarks x styles, accuracy ± standard error).

    python jobs/evaluate.py --config configs/benchmarks.yaml --model runs/quickstart/rounds/r2/dpo/output/model
    OPENAI_API_KEY=... python jobs/evaluate.py --config configs/benchmarks.yaml \\
        --endpoint https://api.openai.com/v1 --endpoint-model gpt-4o-2024-05-13

Benchmarks: the config's `evaluate.benchmarks` (name -> data source), else `data.eval`. Styles, max_tokens:
the `eval` section. With `eval.samples=N --reference <the DPO reference folder>`, N sampled CoT chains per
question are also ranked by the model's implicit reward (the verifier) against majority voting.
Output (--out, default <run.dir>/evaluate/<the model folder's path, or the endpoint's model[@revision]>): one
folder per benchmark (replies, scores, summary.json), table.md, results.json (per benchmark and group, tokens,
cost for a priced endpoint), replies.jsonl (every scored reply). Rerunning resumes: a finished benchmark is read
back when the same model produced it (a folder's content hash; an endpoint's model and
`evaluate.endpoint.revision`), else evaluated again; an endpoint's replies come from the cache (<out>/cache, or
evaluate.cache_dir, keyed by model and revision), so nothing is sent twice.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a job's working dir without install

from reasoner_ray.cli import parse_job_args, run_job, setup_logging  # noqa: E402


def _arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: model.path or the tiny model)")
    parser.add_argument("--endpoint", default=None, help="OpenAI-compatible base URL (sets evaluate.endpoint.base_url)")
    parser.add_argument("--endpoint-model", default=None, help="the model name the endpoint serves")
    parser.add_argument("--reference", default=None,
                        help="the DPO reference model folder: with eval.samples > 0, rank the sampled chains by the "
                             "implicit reward (the verifier) against majority voting")
    parser.add_argument("--out", default=None, help="output folder")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-80:] or "model"


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config, args = parse_job_args(argv, __doc__, _arguments)
    return run_job(lambda: _evaluate(config, args))


def _evaluate(config, args) -> int:
    from reasoner_ray.cli import driver_log_path, log_to_file
    from reasoner_ray.core.errors import PreflightError
    from reasoner_ray.models.loading import resolve_model_path
    from reasoner_ray.pipeline.generate import EndpointBackend, ModelBackend
    from reasoner_ray.pipeline.lock import hold_run_dir
    from reasoner_ray.pipeline.preflight import check_model

    endpoint = config.evaluate.endpoint
    if args.model and (args.endpoint or endpoint.base_url):
        raise PreflightError("--model and an endpoint (--endpoint or evaluate.endpoint.base_url) were both given: "
                             "evaluate one of them per run")
    if args.endpoint_model and not (args.endpoint or endpoint.base_url):
        raise PreflightError("--endpoint-model needs --endpoint (or evaluate.endpoint.base_url): the URL it is served at")
    if args.endpoint or args.endpoint_model:
        endpoint = endpoint.model_copy(update={k: v for k, v in (("base_url", args.endpoint),
                                                                 ("model", args.endpoint_model)) if v})
    if endpoint.base_url:
        if not endpoint.model:
            raise PreflightError("an endpoint needs the model name it serves: --endpoint-model or evaluate.endpoint.model")
        name = endpoint.model
        out = Path(args.out or Path(config.run.dir) / "evaluate" / _slug(f"{name}@{endpoint.revision}"
                                                                          if endpoint.revision else name))
        backend = EndpointBackend(endpoint, config.evaluate.cache_dir or str(out / "cache"))
    else:
        path = args.model or resolve_model_path(config)
        check_model(config, path, f"--model {path}" if args.model else None)
        # the whole path, not its last part: every exported round's folder is named `model`
        out = Path(args.out or Path(config.run.dir) / "evaluate" / _slug(str(Path(path).absolute())))
        backend = ModelBackend(path)
    with hold_run_dir(str(out)):  # one job per output folder; its log goes there once the folder is ours
        log_to_file(driver_log_path(str(out)))
        return _evaluate_into(config, args, backend, out)


def _evaluate_into(config, args, backend, out: Path) -> int:
    from reasoner_ray.pipeline.benchmark_eval import (
        benchmark_sources,
        evaluate_benchmarks,
    )
    from reasoner_ray.pipeline.generate import ModelBackend
    from reasoner_ray.pipeline.preflight import check_gpu_fit, check_model, check_sources
    from reasoner_ray.ray_utils import init_ray

    named = "evaluate.benchmarks." if config.evaluate.benchmarks else "data."
    check_sources({f"{named}{name}": source for name, source in benchmark_sources(config).items()})
    if config.eval.samples > 0 and not (args.reference and isinstance(backend, ModelBackend)):
        logging.getLogger("reasoner_ray.jobs.evaluate").warning(
            "eval.samples > 0 is left out: the verifier needs a model folder (--model) and its DPO reference (--reference)")
    if args.reference:
        check_model(config, args.reference, f"--reference {args.reference}")
    init_ray()
    check_gpu_fit(config)
    evaluate_benchmarks(config, backend, out, args.reference)
    print("\n" + (out / "table.md").read_text().split("\n", 2)[2])
    print(f"\nresults: {out / 'results.json'}\ntable: {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
