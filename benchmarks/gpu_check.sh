#!/usr/bin/env bash
# The team's GPU check in one call (see benchmarks/gpu_check.py): install what is missing, keep the machine's
# own CUDA build of torch, run every GPU figure within ~8 minutes, write gpu_check.json (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check.json}
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'" \
  || { echo "error: this check needs a CUDA build of torch that sees a GPU" >&2; exit 2; }
if ! python3 -c "import obt_eval, transformers, soxr, faiss, sklearn" 2>/dev/null; then
  # pin the torch already there, so pip never swaps the machine's CUDA build for another one
  torch_pin=$(python3 -c "import torch; print(torch.__version__.split('+')[0])")
  python3 -m pip install --quiet -e . "torch==${torch_pin}" \
    || { echo "error: could not install obt-eval's dependencies (no network? carry wheels: README)" >&2; exit 2; }
fi
export PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py --out "$out" --budget-seconds "${GPU_CHECK_SECONDS:-480}"
