# Sourced by the README's two commands: set up .venv (idempotent) and keep temp files and caches inside
# the project's ignored folders. Expects $root (the repository root) and runs from there.
cd "$root"
bash scripts/setup.sh
mkdir -p .tmp .cache
export TMPDIR="$root/.tmp" TORCH_EXTENSIONS_DIR="$root/.cache/torch_extensions" RAY_USAGE_STATS_ENABLED=0
