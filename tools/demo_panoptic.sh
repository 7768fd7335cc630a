#!/usr/bin/env bash
# The panoptic demo: DETR's panoptic segmentation, trained in two stages as
# the paper does, on synthetic shapes over stuff bands, on a CPU in minutes.
#   bash tools/demo_panoptic.sh [WORK_DIR]    (default work_dirs/demo_panoptic)
# 1. sets up .venv (tools/setup_env.sh; a no-op once done),
# 2. writes the panoptic shapes set to data/shapes_panoptic
#    (tools/generate_demo_data.py --panoptic),
# 3. trains the box model, things and stuff
#    (configs/demo/detr_r18_shapes-panoptic-boxes.py) to WORK_DIR/boxes,
# 4. trains the mask head on it, frozen (configs/demo/detr_r18_shapes-panoptic.py,
#    load_from the box model) to WORK_DIR/masks,
# 5. evaluates on the val split: the PQ / SQ / RQ table (all, things, stuff)
#    and the things' box and mask AP (tools/test.py),
# 6. draws the panoptic predictions of six val images (tools/infer.py, on
#    copies enlarged 4x so that the labels are legible) and tiles them under
#    the images into WORK_DIR/panoptic.jpg.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
WORK_DIR="${1:-work_dirs/demo_panoptic}"
BOXES=configs/demo/detr_r18_shapes-panoptic-boxes.py
MASKS=configs/demo/detr_r18_shapes-panoptic.py
# One thread computes, the other core loads data: the models are tiny, and on
# a shared 2-core machine two threads per step ran 5-10x slower than one.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
SECONDS=0

bash tools/setup_env.sh
echo "[demo] writing the panoptic shapes set to data/shapes_panoptic"
"$PY" tools/generate_demo_data.py --panoptic --out data/shapes_panoptic \
  --num-train 1000 --num-val 100 --image-size 64 64 --max-objects 3 \
  --size-range 0.3 0.6 > /dev/null
echo "[demo] stage 1: training the box model $BOXES"
"$PY" tools/train.py "$BOXES" --work-dir "$WORK_DIR/boxes"
boxes_s=$SECONDS
echo "[demo] stage 2: training the mask head on the frozen box model ($MASKS)"
"$PY" tools/train.py "$MASKS" --work-dir "$WORK_DIR/masks" \
  --cfg-options load_from="$(cat "$WORK_DIR/boxes/last_checkpoint")"
masks_s=$((SECONDS - boxes_s))
CKPT="$(cat "$WORK_DIR/masks/last_checkpoint")"
echo "[demo] evaluating on data/shapes_panoptic/val"
"$PY" tools/test.py "$MASKS" "$CKPT" --work-dir "$WORK_DIR/masks"
echo "[demo] drawing six val images"
"$PY" - "$WORK_DIR/pictures" <<'EOF'
import os, sys, cv2
os.makedirs(sys.argv[1], exist_ok=True)
for i in range(1, 7):
    img = cv2.imread(f'data/shapes_panoptic/val/{i:06d}.jpg')
    cv2.imwrite(f'{sys.argv[1]}/{i:06d}.png',
                cv2.resize(img, None, fx=4, fy=4,
                           interpolation=cv2.INTER_NEAREST))
EOF
"$PY" tools/infer.py "$MASKS" "$CKPT" "$WORK_DIR/pictures" \
  --out-dir "$WORK_DIR/infer" > /dev/null
"$PY" - "$WORK_DIR" <<'EOF'
import glob, sys, cv2, numpy as np
work = sys.argv[1]
names = sorted(glob.glob(f'{work}/pictures/*.png'))
rows = [[cv2.imread(p) for p in names],
        [cv2.imread(p.replace('/pictures/', '/infer/panoptic/'))
         for p in names]]
cv2.imwrite(f"{work}/panoptic.jpg", np.vstack([np.hstack(r) for r in rows]))
EOF
echo "[demo] done in ${SECONDS} s (box model ${boxes_s} s, mask head ${masks_s} s)."
echo "[demo] val images over their panoptic predictions: $WORK_DIR/panoptic.jpg"
