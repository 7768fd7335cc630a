#!/usr/bin/env bash
# The prepared GPU check: from a bare GPU machine without internet (torch with
# CUDA installed, nothing else) to one table of what works and how fast.
#
#   bash tools/gpu_check.sh --prepare .gpu_wheels   # first, on a CPU machine with
#       the package index: the wheelhouse (mmengine, mmdet, their small deps for
#       the GPU machine's Python, mmcv's sdist; at most 60 MiB)
#   bash tools/gpu_check.sh [--wheels .gpu_wheels] [--out work_dirs/gpu_check]
#       on the GPU machine: installs offline into .venv-gpu (reusing its torch),
#       builds mmcv's CUDA ops, runs the tests marked cuda, tools/benchmark.py
#       --device cuda for DETR and DINO (fp32 and --amp's fp16) against mmdet's
#       same models and 200 iterations of the DINO demo with --amp; prints the
#       table (also OUT/gpu_check.md, OUT/gpu_check.json)
#   bash tools/gpu_check.sh --dry-run               # on a CPU: the same steps
#       with their CPU stand-ins (CI runs this)
#
# With the device tool: carry .gpu_wheels, and give the command a timeout that
# leaves time to rerun it (docs/speed.md, "GPUs").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ " $* " == *" --dry-run "* || " $* " == *" --prepare "* ]]; then
  bash "$ROOT/tools/setup_env.sh"  # .venv: the CPU stand-ins; torch for mmcv's setup.py
  PY="$ROOT/.venv/bin/python"
else
  PY="${PYTHON:-python3}"  # the GPU machine's: it holds torch with CUDA
fi
exec "$PY" "$ROOT/tools/gpu_check.py" "$@"
