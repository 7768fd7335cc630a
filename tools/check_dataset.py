"""Check a config's dataset before training on it, and draw what DETR sees.

    python tools/check_dataset.py CONFIG [--split {train,val,test}]
        [--show-dir DIR] [--show-number N] [--no-decode]
        [--cfg-options k=v ...]

Prints, per dataset of ``{split}_dataloader``: images, boxes, boxes per class,
images without boxes, dropped (degenerate, NaN/inf, out-of-image) and clamped
boxes, the box size distribution, and missing, unreadable (corrupt) or
wrongly sized image files; then every error (training would fail or learn
nothing: the exit status is 1) and warning. ``--show-dir`` draws the ground
truth of the first ``--show-number`` images after the split's pipeline
(augmentations included) with mmdet's visualizer, like mmdet's
``browse_dataset.py``.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli
from detr_plugin.datasets.coco_annotations import ids_text  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Check the dataset of a config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--split', choices=['train', 'val', 'test'],
                        default='train', help='which dataloader to check')
    parser.add_argument(
        '--show-dir', help='draw the ground truth after the pipeline of the '
        'split into this folder')
    parser.add_argument('--show-number', type=int, default=None,
                        help='draw at most this many images (default: all)')
    parser.add_argument(
        '--no-decode', action='store_true',
        help='read only the header and end of each image file (its size, '
        'EXIF orientation, a cut end), as tools/train.py does, instead of '
        'decoding it: faster on large sets, but a file damaged inside is '
        'not found')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, as in tools/train.py')
    args = parser.parse_args(argv)
    if args.show_number is not None and args.show_number < 1:
        parser.error('--show-number takes 1 or more (all: leave it out)')
    if args.show_dir and osp.isfile(args.show_dir):
        parser.error(f'--show-dir {args.show_dir} is a file: give a folder')
    return args


def format_report(report) -> str:
    """A dataset's ``DatasetReport`` as this tool prints it; box sizes in
    pixels (COCO's area ranges as for AP_s / AP_m / AP_l)."""
    r, lines = report, [f'== {report.key}']
    if r.skipped:
        lines.append(f'  not checked: {r.skipped}')
    else:
        lines += [f'  annotation file: {r.ann_file}',
                  f'  image folder:    {r.img_dir}']
    if r.parsed:
        without, width = r.images_without_boxes, max([5, *map(len, r.classes)])
        lines += [
            f'  classes: {len(r.classes)} ({ids_text(r.classes, 10)})'
            + (f', of which things: {len(r.thing_classes)} (the boxes are '
               'the segments\')' if r.thing_classes else ''),
            f'  images: {r.num_images}',
            f'  images without boxes: {len(without)}'
            + (f' (ids {ids_text(without)})' if without else ''),
            *([] if r.num_train_images is None else [
                f'  images used for training after filter_cfg: '
                f'{r.num_train_images}']),
            f'  boxes: {r.num_boxes}'
            + (f' ({r.num_crowd} crowd)' if r.num_crowd else ''),
            '  boxes per class:',
            *(f'    {c:<{width}} {r.boxes_per_class[c]}' for c in r.classes),
            *([f'  boxes of other categories (not used): '
               f'{r.num_other_category}'] if r.num_other_category else []),
            f'  dropped boxes: {r.num_dropped}'
            + ''.join(f'; {len(v)} {k}' for k, v in r.dropped.items()),
            f'  boxes clamped to their image: {r.num_clamped}']
        if r.box_sizes:
            w, h = np.asarray(r.box_sizes, dtype=float).T
            area = w * h
            lines += [
                '  box size sqrt(w*h) px: min {:.1f}, 5% {:.1f}, median '
                '{:.1f}, 95% {:.1f}, max {:.1f}'.format(
                    *np.percentile(np.sqrt(area), [0, 5, 50, 95, 100])),
                '  box area (COCO ranges): ' + ', '.join(
                    f'{name} {((area >= lo) & (area < hi)).sum()}' for name,
                    lo, hi in (('small', 0, 32**2), ('medium', 32**2, 96**2),
                               ('large', 96**2, np.inf))),
                '  box aspect w/h: 5% {:.2f}, median {:.2f}, 95% {:.2f}'
                .format(*np.percentile(w / h, [5, 50, 95]))]
        lines.append(
            f'  image files checked: {r.files_checked}; missing '
            f'{len(r.missing_files)}, unreadable {len(r.corrupt_files)}, '
            f'size differs from the file {len(r.size_mismatch)}')
    return '\n'.join(lines + [f'  ERROR: {e}' for e in r.errors]
                     + [f'  warning: {w}' for w in r.warnings])


def draw_ground_truth(cfg, split: str, out_dir: str,
                      number=None) -> int:
    """Write the first ``number`` images of the split after its pipeline,
    with their ground-truth boxes, to ``out_dir``; return how many."""
    from mmdet.structures.bbox import BaseBoxes
    from mmengine.registry import init_default_scope

    from detr_plugin.registry import DATASETS, VISUALIZERS
    init_default_scope(cfg.get('default_scope', 'detr_plugin'))
    dataset = DATASETS.build(cfg[f'{split}_dataloader'].dataset)
    visualizer = VISUALIZERS.build(cfg.visualizer)
    visualizer.dataset_meta = dataset.metainfo
    os.makedirs(out_dir, exist_ok=True)
    count = len(dataset) if number is None else min(number, len(dataset))
    for i in range(count):
        item = dataset[i]
        img = item['inputs'].permute(1, 2, 0).numpy()[..., [2, 1, 0]]
        sample = item['data_samples'].numpy()
        gt = sample.gt_instances
        if isinstance(gt.get('bboxes', None), BaseBoxes):
            gt.bboxes = gt.bboxes.tensor
        name = osp.basename(sample.img_path)
        visualizer.add_datasample(
            name, img, sample, draw_pred=False, show=False,
            out_file=osp.join(out_dir, name))
    return count


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    from detr_plugin.datasets import audit_split
    import cli
    cli.check_config_file(args.config)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    reports = audit_split(cfg, args.split, check_files=True,
                          decode_images=not args.no_decode)
    if not reports:
        print(f'{args.config}: no {args.split}_dataloader dataset to check')
        return 1
    for report in reports:
        print(format_report(report))
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.warnings) for r in reports)
    if errors:
        print(f'FAILED: {errors} error(s), {warnings} warning(s): ' + (
            'training on the train split would fail or learn nothing'
            if args.split == 'train' else f'evaluating on the {args.split} '
            'split would fail or be wrong'))
        if args.show_dir:
            print('(nothing drawn: fix the errors first)')
        return 1
    if args.show_dir:
        count = draw_ground_truth(cfg, args.split, args.show_dir,
                                  args.show_number)
        print(f'drew the ground truth of {count} images to {args.show_dir}')
    print(f'OK: {warnings} warning(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
