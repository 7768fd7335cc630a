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

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


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
        help='only check that image files exist (no decoding: faster on '
        'large sets, but corrupt files are not found)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, as in tools/train.py')
    return parser.parse_args(argv)


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
        sample.gt_instances = gt
        name = osp.basename(sample.img_path)
        visualizer.add_datasample(
            name, img, sample, draw_pred=False, show=False,
            out_file=osp.join(out_dir, name))
    return count


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config

    import detr_plugin  # noqa: F401  (registers the detr_plugin scope)
    from detr_plugin.safety import audit_split
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    reports = audit_split(cfg, args.split, check_files=True,
                          decode_images=not args.no_decode)
    if not reports:
        print(f'{args.config}: no {args.split}_dataloader dataset to check')
        return 1
    for report in reports:
        print(report.format())
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.all_warnings) for r in reports)
    if errors:
        print(f'FAILED: {errors} error(s), {warnings} warning(s): training '
              f'on the {args.split} split would fail or learn nothing')
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
