#!/usr/bin/env bash
# The demo: DETR learns to detect synthetic shapes on a CPU in minutes.
#   bash tools/demo.sh [WORK_DIR]        (default work_dirs/demo)
# 1. sets up .venv (tools/setup_env.sh; a no-op once done),
# 2. writes the shapes set to data/shapes (tools/generate_demo_data.py),
# 3. trains configs/demo/detr_r18_shapes.py (tools/train.py),
# 4. evaluates it on the val split, printing the COCO table, and draws its
#    predictions on the val images (tools/test.py --show-dir).
#
#   bash tools/demo.sh --compare CONFIG [CONFIG ...] [WORK_DIR]
# instead trains the DETR demo and each CONFIG (e.g.
# configs/demo/dino_r18_shapes.py) one after the other on the same data with
# validation every 100 iterations, and prints their bbox mAP_50 against
# iterations and training time (tools/compare_training.py), plotted to
# WORK_DIR/map50.png and WORK_DIR/map50_time.png (default work_dirs/compare).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi
# paths given relative to where it was called from (else to the repo)
from_caller() { if [[ "$1" != /* && -e "$PWD/$1" ]]; then echo "$PWD/$1"; else echo "$1"; fi; }
CONFIG=configs/demo/detr_r18_shapes.py
PY="$ROOT/.venv/bin/python"
SECONDS=0
COMPARE=()
if [ "${1:-}" = "--compare" ]; then
  shift
  while [ $# -gt 0 ] && [[ "$1" == *.py ]]; do
    COMPARE+=("$(from_caller "$1")"); shift
  done
  if [ ${#COMPARE[@]} -eq 0 ] || [ $# -gt 1 ]; then
    echo "usage: bash tools/demo.sh --compare CONFIG.py [CONFIG.py ...] [WORK_DIR]" >&2
    exit 2
  fi
fi
if [[ "${1:-}" == -* ]] || [ $# -gt 1 ]; then
  echo "usage: bash tools/demo.sh [WORK_DIR]  (or --compare CONFIG.py ... [WORK_DIR]; --help)" >&2
  exit 2
fi
if [ $# -eq 1 ] && [[ "$1" != /* ]]; then set -- "$PWD/$1"; fi
cd "$ROOT"

bash tools/setup_env.sh
echo "[demo] writing the shapes set to data/shapes"
"$PY" tools/generate_demo_data.py --out data/shapes --num-train 1000 \
  --num-val 100 --image-size 64 64 --max-objects 3 --size-range 0.3 0.6 \
  > /dev/null
if [ ${#COMPARE[@]} -gt 0 ]; then
  WORK_DIR="${1:-work_dirs/compare}"
  "$PY" tools/compare_training.py "$CONFIG" "${COMPARE[@]}" --work-dir "$WORK_DIR" \
    --val-interval 100 --plot "$WORK_DIR/map50.png"
  echo "[demo] done in ${SECONDS} s."
  exit 0
fi
WORK_DIR="${1:-work_dirs/demo}"
echo "[demo] training $CONFIG (logs in $WORK_DIR)"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
train_s=$SECONDS
echo "[demo] evaluating on data/shapes/val"
"$PY" tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" \
  --work-dir "$WORK_DIR" --show-dir predictions
show_dir="$(ls -td "$WORK_DIR"/*/predictions | head -n 1)"
echo "[demo] done in ${SECONDS} s (training ${train_s} s)."
echo "[demo] val images with predicted boxes (score > 0.3): $show_dir"
