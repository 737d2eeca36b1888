#!/usr/bin/env bash
# Build gpu_bundle/ (ignored by git): the wheels the accelerator machine lacks, the training corpus
# as Ogg/Opus with rewritten manifests, QUALITY.json (what the compression costs) and SIZE.txt.
# Run here, on the CPU machine: bash scripts/gpu_bundle.sh [--hours H] [--bitrate K|auto] [--manifest M ...]
# Then on the accelerator: bash scripts/gpu_run.sh (carry: gpu_bundle). docs/training.md, "On an accelerator".
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" scripts/gpu_bundle.py "$@"
