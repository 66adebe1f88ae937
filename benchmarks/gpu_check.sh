#!/usr/bin/env bash
# One command for a GPU machine (see benchmarks/gpu_check.py): gpu-marked tests, the CUDA benchmark in TF32 and
# bfloat16 at 128 tokens (MiniLM, bert-base shape), trainer=gpu and trainer=ddp runs checked against a CPU run.
#   bash benchmarks/gpu_check.sh [--out DIR]     |     bash benchmarks/gpu_check.sh --cpu-dry-run [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py "$@"
