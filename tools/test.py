"""Test (and evaluate) a detector: mmdet 3.x's ``tools/test.py``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out R.pkl]
        [--show] [--show-dir DIR] [--wait-time S] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]

Prints the config's ``test_evaluator`` (mmdet's ``CocoMetric``: the COCO
table), ``--out`` dumps the predictions with mmdet's ``DumpDetResults``, and
``--show-dir`` makes mmdet's ``DetVisualizationHook`` write every image with
its ground truth and predictions drawn to
``WORK_DIR/<timestamp>/SHOW_DIR``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli

import detr_plugin  # noqa: E402,F401  (registers the detr_plugin scope)
import cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to a pickle file for '
                        'offline evaluation')
    parser.add_argument('--show', action='store_true',
                        help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images '
                        'will be saved, relative to work_dir/timestamp')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='the interval of show (s)')
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must be a .pkl or .pickle file')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmdet.engine.hooks.utils import trigger_visualization_hook
    from mmdet.evaluation import DumpDetResults
    cfg = cli.load_config(args)
    if cfg.get('test_dataloader') is None or \
            cfg.get('test_evaluator') is None:
        sys.exit(f'error: {args.config} has no test_dataloader / '
                 'test_evaluator (a config that only trains, e.g. a panoptic '
                 'box stage): test with the config of a stage that evaluates.')
    cfg.load_from = args.checkpoint
    cli.refuse_misfit_checkpoints(cfg)  # e.g. another class count
    cli.check_checkpoint_file(args.checkpoint, 'CHECKPOINT')
    # the test data: as its dataset loads, and before the first image
    # (DataCheckHook)
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    runner = cli.build_runner(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    return runner.test()


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
