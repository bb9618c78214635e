#!/usr/bin/env bash
# GPU check (see bench/gpu_check.py): teacher and student photos/s on one GPU, no network,
# at most 8 minutes. Writes bench/results/gpu_check.json (or --out=...).
#   bench/gpu_check.sh            on a machine with a GPU
#   bench/gpu_check.sh --smoke    CPU, tiny (make test runs this through pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# torch runs first and releases its cache; TF must then take only what it needs.
export TF_FORCE_GPU_ALLOW_GROWTH=true
exec timeout --signal=TERM --kill-after=10 470 "$PYTHON" bench/gpu_check.py "$@"
