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
``DIR/results.bbox.json``, the same
detections as one COCO results list (``image_id``: the file name when all
are distinct numbers, else the position in the sorted list; ``category_id``,
``bbox`` [x, y, w, h], ``score``, plus ``file_name`` and ``category_name``).
``--score-thr 0`` keeps every detection (``test_cfg.max_per_img`` per
image), e.g. for COCO evaluation. An image that cannot be read is skipped
with a warning naming it (``--on-error stop``: the run stops there); the
others are written, and the exit status is then 1. Drawings are at most
``--draw-max-side`` pixels on their longer side (the boxes scaled): mmdet's
visualizer needs 4.3 GB and 14 s for a 6000 x 6000 image at full size.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from detr_plugin.apis import (DETRInferencer, coco_results,  # noqa: E402
                              image_ids, list_images)
from detr_plugin.engine import cli  # noqa: E402


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
    images = list_images(args.input)
    inferencer = DETRInferencer(args.config, args.checkpoint,
                                device=args.device)
    vis_dir = osp.join(args.out_dir, 'vis')
    panoptic_dir = osp.join(args.out_dir, 'panoptic')
    os.makedirs(vis_dir, exist_ok=True)
    results, done, skipped = [], [], []
    ids = dict(zip(images, image_ids(images)))  # a skipped one shifts none
    for path, name in track_iter_progress(
            list(zip(images, drawing_names(images)))):
        try:
            result = inferencer(path)
            if 'pred_panoptic_seg' in result:
                os.makedirs(panoptic_dir, exist_ok=True)
            inferencer.draw(path, result, osp.join(vis_dir, name),
                            args.score_thr, args.draw_max_side,
                            osp.join(panoptic_dir, name))
        except Exception as e:  # a corrupt file, among others
            if args.on_error == 'stop':
                raise
            skipped.append(path)
            print(f'\nskipped {path}: {type(e).__name__}: {e}',
                  file=sys.stderr)
            continue
        results.append(result)
        done.append(path)
    entries = coco_results(results, done, inferencer.category_ids(),
                           inferencer.classes, args.score_thr,
                           [ids[path] for path in done])
    out_json = osp.join(args.out_dir, 'results.bbox.json')
    with open(out_json, 'w') as f:
        json.dump(entries, f)
    print(f'{len(done)} images, {len(entries)} detections scoring >= '
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
