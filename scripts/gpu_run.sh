#!/usr/bin/env bash
# The GAN phase on an accelerator in one command (<= 9 minutes): install the carried wheels, CUDA
# checks into $OUT/checks.json, then the GAN phase from the shipped default for --minutes, exported
# as float16 into $OUT/model/. Run on the accelerator machine from the repository root with
# gpu_bundle/ carried (bash scripts/gpu_bundle.sh builds it here):
#   bash scripts/gpu_run.sh [--minutes M] [--out DIR] [--config FILE] [--precision fp32|bf16] [--no-checks]
#   OUT=/tmp/gpu_dry bash scripts/gpu_run.sh --cpu-dry-run --minutes 1     # the same path on a CPU machine
# Options also come from the environment (OUT, GPU_RUN_MINUTES, GPU_RUN_CONFIG, ...): --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_run.py "$@"
