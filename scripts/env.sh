# Sourced by the README's two commands: set up .venv (idempotent) and keep temp files and caches inside
# the project's ignored folders. Expects $root (the repository root) and runs from there.
cd "$root"
bash scripts/setup.sh
mkdir -p .tmp .cache
export TMPDIR="$root/.tmp" TORCH_EXTENSIONS_DIR="$root/.cache/torch_extensions" RAY_USAGE_STATS_ENABLED=0
# Ray Serve's HAProxy ingress: requests go from haproxy straight to the replica's own HTTP server instead of
# through Serve's Python proxy actor (0.57x -> 0.94x vLLM's server in benchmarks/bench_serve.py). Read by Serve's
# controller when Ray starts, so it must be in the environment of `ray start` (or of the process that starts Ray).
export RAY_SERVE_ENABLE_HA_PROXY="${RAY_SERVE_ENABLE_HA_PROXY:-1}"
