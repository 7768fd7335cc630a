"""Detect objects in images and draw them.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir DIR]
        [--score-thr 0.7] [--device cpu|cuda] [--on-error skip|stop]
        [--draw-max-side 1333]

INPUT is an image, a folder of images or a glob pattern (quote it). Writes
``DIR/vis/<image name>`` (the image with its labelled boxes -- and masks, for
a panoptic model -- scoring at least ``--score-thr``, drawn by mmdet's
``DetLocalVisualizer``; ``<folder>_<name>`` where two images share a name),
for a panoptic model ``DIR/panoptic/<image name>`` (its panoptic
segmentation, each segment coloured by class and labelled), and
``DIR/results.bbox.json``, the same detections as one COCO results list
(``image_id``: the file name when all are distinct numbers, else the
position in the sorted list; ``category_id``, ``bbox`` [x, y, w, h],
``score``, plus ``file_name`` and ``category_name``). Each image's results
are written and dropped before the next (memory stays flat, also with a
panoptic model's full-size masks). ``--score-thr 0`` keeps every detection
(``test_cfg.max_per_img`` per image), e.g. for COCO evaluation. An image
that cannot be read is skipped with a warning naming it (``--on-error
stop``: the run stops there); the others are written, and the exit status is
then 1. Drawings are at most ``--draw-max-side`` pixels on their longer side
(the boxes scaled): mmdet's visualizer needs 4.3 GB and 14 s for a 6000 x
6000 image at full size.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmdet.apis.det_inferencer import IMG_EXTENSIONS
from mmdet.structures import DetDataSample

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli
from detr_plugin.apis import DETRInferencer  # noqa: E402
import cli  # noqa: E402


def list_images(source: str) -> List[str]:
    """An image file, the images of a folder (not recursive) or a glob
    pattern (``**`` recursive), sorted; ``FileNotFoundError`` if none."""
    if osp.isfile(source):
        return [source]
    if osp.isdir(source):
        paths = [osp.join(source, name) for name in sorted(
            os.listdir(source))]
    else:
        paths = sorted(glob.glob(source, recursive=True))
    images = [p for p in paths
              if osp.isfile(p) and p.lower().endswith(IMG_EXTENSIONS)]
    if not images:
        raise FileNotFoundError(f'no image ({", ".join(IMG_EXTENSIONS)}) '
                                f'found at {source!r}')
    return images


def rescaled(result: DetDataSample, scale: float,
             shape: Tuple[int, int]) -> DetDataSample:
    """The predictions of ``result`` for the image resized by ``scale`` to
    ``shape`` ``(h, w)``: boxes scaled, masks and the panoptic map resized
    (nearest)."""
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    pred = result.pred_instances.clone()
    pred.bboxes = pred.bboxes * scale
    if 'masks' in pred:
        pred.masks = F.interpolate(pred.masks[None].float(), shape)[0] > 0.5
    out = DetDataSample(pred_instances=pred)
    if 'pred_panoptic_seg' in result:
        seg = result.pred_panoptic_seg.sem_seg
        out.pred_panoptic_seg = PixelData(sem_seg=F.interpolate(
            seg[None].float(), shape)[0].to(seg.dtype))
    return out


def draw(inferencer, image_path: str, result: DetDataSample, out_file: str,
         score_thr: float, max_side: Optional[int] = None,
         panoptic_file: Optional[str] = None) -> None:
    """Write ``image_path`` with the labelled boxes (and masks, if the
    model predicts them) scoring at least ``score_thr`` to ``out_file``,
    shrunk (predictions scaled) to at most ``max_side`` pixels on its
    longer side; a panoptic prediction, to ``panoptic_file`` when
    given."""
    import mmcv
    image = mmcv.imread(image_path, channel_order='rgb')
    name = osp.basename(image_path)
    scale = min(1., (max_side or np.inf) / max(image.shape[:2]))
    if scale < 1:
        image = mmcv.imrescale(image, scale)
        result = rescaled(result, scale, image.shape[:2])
    detections = DetDataSample(pred_instances=result.pred_instances)
    inferencer.visualizer.add_datasample(
        name, image, detections, draw_gt=False, show=False,
        pred_score_thr=score_thr, out_file=out_file)
    if not panoptic_file or 'pred_panoptic_seg' not in result:
        return
    if (result.pred_panoptic_seg.sem_seg != len(inferencer.classes)).any():
        panoptic = DetDataSample(
            pred_panoptic_seg=result.pred_panoptic_seg)
        inferencer.visualizer.add_datasample(
            name, image, panoptic, draw_gt=False, show=False,
            out_file=panoptic_file)
    else:  # all VOID: nothing to draw (mmdet's drawing needs a segment)
        mmcv.imwrite(image[..., ::-1], panoptic_file)


def category_ids(classes: Sequence[str]) -> List[int]:
    """COCO ``category_id`` of each label: the COCO ids for COCO's 80
    (and COCO panoptic's 133) classes in mmdet's order and for the 91
    official rows (label = id);
    otherwise ``label + 1``, the ids of a COCO file numbering its
    categories from 1 in the order of the classes."""
    from detr_plugin.checkpoint import (COCO_CATEGORY_IDS,
                                        COCO_PANOPTIC_IDS, coco_class_names)
    for ids in (COCO_CATEGORY_IDS, COCO_PANOPTIC_IDS, range(91)):
        if list(classes) == coco_class_names(len(ids)):
            return list(ids)
    return list(range(1, len(classes) + 1))


def image_ids(image_paths: Sequence[str]) -> List[int]:
    """A COCO ``image_id`` per image: its file name when every name is a
    number and no two are the same (``000000397133.jpg`` -> 397133), else
    its position in ``image_paths``."""
    stems = [osp.splitext(osp.basename(p))[0] for p in image_paths]
    if all(s.isdigit() for s in stems) and \
            len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(image_paths)))


def coco_results(result: DetDataSample, image_path: str, image_id: int,
                 category_ids: Sequence[int], classes: Sequence[str],
                 score_thr: float = 0.) -> List[dict]:
    """One image's detections as COCO results (what ``COCO.loadRes`` reads),
    one dict per box with ``bbox`` ``[x, y, w, h]`` in original-image
    pixels, ``file_name`` and ``category_name``."""
    pred, entries = result.pred_instances, []
    for box, score, label in zip(pred.bboxes.tolist(), pred.scores.tolist(),
                                 pred.labels.tolist()):
        if score < score_thr:
            continue
        x1, y1, x2, y2 = box
        entries.append(dict(
            image_id=image_id, file_name=osp.basename(image_path),
            category_id=int(category_ids[label]),
            category_name=classes[label],
            bbox=[round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            score=round(float(score), 5)))
    return entries


def why_not(error: Exception, path: str) -> str:
    """What an image's failure means: OpenCV's ``inv_scale_x > 0`` of a
    resize to a side of 0 px said, or the error itself."""
    if 'inv_scale' in str(error):
        from PIL import Image
        with Image.open(path) as image:
            width, height = image.size
        return (f'the test pipeline resizes this {height} x {width} (h x w) '
                'image to a side of 0 px: crop or pad such images first')
    return f'{type(error).__name__}: {error}'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Detect objects in images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='an image, a folder or a glob pattern')
    parser.add_argument('--out-dir', default='outputs',
                        help='where vis/ and results.bbox.json go')
    parser.add_argument('--score-thr', type=float, default=0.7,
                        help='draw and write detections scoring at least '
                        'this')
    parser.add_argument('--device', default='cpu',
                        help='cpu, cuda or cuda:N')
    parser.add_argument('--on-error', choices=['skip', 'stop'],
                        default='skip', help='an image that cannot be read '
                        'or detected: skip it with a warning (the others are '
                        'written; exit status 1), or stop there')
    parser.add_argument('--draw-max-side', type=int, default=1333,
                        help='draw on a copy of the image shrunk to at most '
                        'this many pixels on its longer side, boxes scaled '
                        "(default: mmdet's test scale; the drawing of a "
                        'full-size 6000 x 6000 image takes 4.3 GB)')
    return parser.parse_args(argv)


def drawing_names(images):
    """File names for the drawings: the image names, or where two images
    share a name (a recursive glob), their paths below the common folder
    with ``/`` replaced by ``_``."""
    names = [osp.basename(p) for p in images]
    if len(set(names)) == len(names):
        return names
    root = osp.commonpath([osp.abspath(p) for p in images])
    return [osp.relpath(osp.abspath(p), root).replace(os.sep, '_')
            for p in images]


def main(argv=None) -> str:
    """Run; returns the path of the results JSON."""
    from mmengine.utils import track_iter_progress
    args = parse_args(argv)
    cli.check_config_file(args.config)
    cli.check_checkpoint_file(args.checkpoint, 'CHECKPOINT')
    if osp.isfile(args.out_dir):
        raise SystemExit(f'error: --out-dir {args.out_dir} is a file: give a '
                         'folder.')
    try:
        images = list_images(args.input)
    except FileNotFoundError as e:
        raise SystemExit(f'error: INPUT: {e}') from None
    try:
        inferencer = DETRInferencer(args.config, args.checkpoint,
                                    device=args.device)
    except ValueError as e:  # a config without a test pipeline
        raise SystemExit(f'error: {e}') from None
    ids = category_ids(inferencer.classes)
    vis_dir = osp.join(args.out_dir, 'vis')
    panoptic_dir = osp.join(args.out_dir, 'panoptic')
    os.makedirs(vis_dir, exist_ok=True)
    entries, done, skipped = [], 0, []
    for path, name, image_id in track_iter_progress(list(zip(
            images, drawing_names(images), image_ids(images)))):
        try:
            result = inferencer.predict(path)
            if 'pred_panoptic_seg' in result:
                os.makedirs(panoptic_dir, exist_ok=True)
            draw(inferencer, path, result, osp.join(vis_dir, name),
                 args.score_thr, args.draw_max_side,
                 osp.join(panoptic_dir, name))
        except Exception as e:  # a corrupt file, among others
            if args.on_error == 'stop':
                raise
            skipped.append(path)
            print(f'\nskipped {path}: {why_not(e, path)}', file=sys.stderr)
            continue
        # this image's results are kept as COCO entries only: its masks
        # and panoptic map are dropped here (flat memory over the images)
        entries += coco_results(result, path, image_id, ids,
                                inferencer.classes, args.score_thr)
        done += 1
        del result
    out_json = osp.join(args.out_dir, 'results.bbox.json')
    with open(out_json, 'w') as f:
        json.dump(entries, f)
    print(f'{done} images, {len(entries)} detections scoring >= '
          f'{args.score_thr}: drawn in {vis_dir}, listed in {out_json}')
    if osp.isdir(panoptic_dir):
        print(f'panoptic segmentations drawn in {panoptic_dir}')
    if skipped:
        sys.exit(f'{len(skipped)} of {len(images)} images skipped (see '
                 f'above): {", ".join(skipped[:5])}')
    return out_json


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
