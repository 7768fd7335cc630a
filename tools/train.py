"""Train a detector: mmdet 3.x's ``tools/train.py`` for the detr_plugin scope.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--amp [--amp-dtype float16|bfloat16]]
        [--auto-scale-lr] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

``--resume`` without a value resumes from the latest checkpoint in the work
dir. ``--amp`` is fp16 ``AmpOptimWrapper`` (loss-scaled) on CUDA and bf16
CPU autocast without it; ``--amp-dtype float16|bfloat16`` chooses. Without
CUDA the process group uses gloo (``dist_train.sh`` then runs on CPU
processes).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli

import detr_plugin  # noqa: E402,F401  (registers the detr_plugin scope)
import cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='enable automatic-mixed-precision training: '
                        'fp16 with a loss scaler on CUDA, bf16 on a CPU '
                        'that has it natively')
    parser.add_argument('--amp-dtype', choices=cli.AMP_DTYPES,
                        help="with --amp: the autocast dtype (the config's "
                        'optim_wrapper.dtype when not given)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='enable automatically scaling LR.')
    parser.add_argument('--resume', nargs='?', const='auto',
                        help='resume from this checkpoint, or without a '
                        'value from the latest checkpoint in the work '
                        'directory')
    cli.add_common_args(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = cli.load_config(args)
    if args.amp_dtype and not args.amp:
        raise SystemExit('error: --amp-dtype takes effect with --amp: '
                         f'--amp --amp-dtype {args.amp_dtype}')
    if args.amp:
        cli.enable_amp(cfg, args.amp_dtype)
    if args.auto_scale_lr:
        cli.enable_auto_scale_lr(cfg)
    cli.set_resume(cfg, args.resume)
    cli.check_checkpoint_file(cfg.get('load_from'),
                              '--resume' if args.resume else 'load_from')
    cli.check_frozen_detector(cfg)
    cli.check_pretrained_sources(cfg)
    # the data: as the runner's datasets load (the annotations) and before
    # the first iteration (DataCheckHook: image files, num_classes, ...)
    cli.build_runner(cfg).train()


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
