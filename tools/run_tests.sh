#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the test suite.
#   bash tools/run_tests.sh [pytest args]          the CPU suite (what CI runs)
#   bash tools/run_tests.sh --cuda [pytest args]   the tests marked cuda, on a GPU
# The CPU suite hides any GPU (CUDA_VISIBLE_DEVICES=), so that a GPU host runs
# what a CPU machine runs; its tests marked cuda are skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# pytest exits 5 when it collected no test: that is a failure here too.
if [ "${1:-}" = "--cuda" ]; then
  shift
  exec "$ROOT/.venv/bin/python" -m pytest tests -q -rs -m cuda "$@"
fi
CUDA_VISIBLE_DEVICES= exec "$ROOT/.venv/bin/python" -m pytest tests -q -rs "$@"
