"""How far a checkpoint's losses move under mixed precision, per loss term.

    python tools/amp_gap.py CONFIG CHECKPOINT [--dtype bfloat16|float16]
        [--num-images 100] [--split val]

The losses of the first ``--num-images`` images of the config's split (one
batch, the split's pipeline, eval mode), computed in float32 and under
autocast in ``--dtype`` at the same discrete choices (the float32 pass's
proposal ranking and Hungarian matches, replayed: ``tools/benchmark.py``'s
``replayed_choices``), and their relative difference. A trained model's
smallest terms (a focal loss of 5e-4) move most: compare with how much the
same precision moves its detections (``tools/test.py ... --cfg-options
test_cfg.fp16=True`` evaluates under autocast).
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark import autocast_loss_gaps  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--dtype', default='bfloat16',
                        choices=['bfloat16', 'float16'])
    parser.add_argument('--num-images', type=int, default=100)
    parser.add_argument('--split', default='val', choices=['train', 'val'])
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error('--num-images takes 1 or more')
    return args


def main(argv=None) -> dict:
    """Returns ``{term: (fp32, mixed, relative gap)}``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner, load_checkpoint

    import detr_plugin  # noqa: F401
    from detr_plugin.checkpoint import use_safe_loading
    import cli
    from mmdet_reference import build_plugin_model
    args = parse_args(argv)
    cli.check_config_file(args.config)
    cli.check_checkpoint_file(args.checkpoint, 'CHECKPOINT')
    cfg = Config.fromfile(args.config)
    model = build_plugin_model(cfg).eval()
    use_safe_loading()  # mmengine's loader, without running code
    load_checkpoint(model, args.checkpoint, map_location='cpu',
                    logger='silent')
    loader = dict(cfg[f'{args.split}_dataloader'], batch_size=args.num_images,
                  num_workers=0, persistent_workers=False)
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        batch = next(iter(Runner.build_dataloader(loader)))
    data = model.data_preprocessor(batch, False)
    gaps = autocast_loss_gaps(model, data['inputs'], data['data_samples'],
                              'cpu', getattr(torch, args.dtype))
    print(f'{"term":>16} {"float32":>10} {args.dtype:>10}  gap')
    for name, (full, mixed, gap) in sorted(gaps.items(),
                                           key=lambda kv: kv[1][2]):
        print(f'{name:>16} {full:10.6f} {mixed:10.6f} {gap:6.2%}')
    worst = max(gaps, key=lambda k: gaps[k][2])
    print(f'largest gap: {gaps[worst][2]:.2%} ({worst}) over '
          f'{len(data["data_samples"])} images')
    return gaps


if __name__ == '__main__':
    main()
