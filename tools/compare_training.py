"""Train configs one after the other and compare how fast they learn.

    python tools/compare_training.py CONFIG_A CONFIG_B [...] \
        [--work-dir work_dirs/compare] [--val-interval 500] \
        [--plot curves.png] [--cfg-options k=v ...]

Each config is trained by ``tools/train.py`` in its own process (the same
``--cfg-options`` for all, validation every ``--val-interval`` iterations;
the configs fix their seeds), then the runs' bbox mAP_50 is printed against
iterations and training seconds (the logged per-iteration times summed,
validation excluded; :func:`plot_logs.training_seconds`), and for every
config after the first: when it reached the first config's final mAP_50,
and that time as a fraction of the first config's whole training time.
``--plot`` draws the curves against iterations and against time.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import plot_logs  # noqa: E402

METRIC = 'coco/bbox_mAP_50'
TOOLS = osp.dirname(osp.abspath(__file__))

# (iteration, training seconds, mAP_50) of each validation
Curve = List[Tuple[int, float, float]]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+', help='configs to train')
    parser.add_argument('--work-dir', default='work_dirs/compare',
                        help='each run goes to WORK_DIR/<config name>')
    parser.add_argument('--val-interval', type=int, default=500,
                        help='validate every this many iterations')
    parser.add_argument('--plot', help='PNG of the mAP_50 curves')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='passed to every tools/train.py run')
    return parser.parse_args(argv)


def train(config: str, work_dir: str, val_interval: int,
          cfg_options: List[str]) -> None:
    """``tools/train.py CONFIG`` with validation every ``val_interval``."""
    options = [f'train_cfg.val_interval={val_interval}', *cfg_options]
    cmd = [sys.executable, osp.join(TOOLS, 'train.py'), config,
           '--work-dir', work_dir, '--cfg-options', *options]
    print('[compare]', ' '.join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
        raise SystemExit(f'error: training {config} failed (its output is '
                         'above); the runs before it are in their work dirs.')


def latest_run(work_dir: str) -> str:
    """The newest ``<work_dir>/<timestamp>`` run folder."""
    return plot_logs.scalar_files(work_dir)[-1]


def curve(scalars: str) -> Curve:
    """The validations of one run: ``(iteration, seconds, mAP_50)``."""
    records = plot_logs.load_records(scalars)
    steps, values = plot_logs.series(records, METRIC)
    if not steps:
        raise SystemExit(f'error: {scalars} has no {METRIC}: the config does'
                         ' not validate (no val_dataloader / val_evaluator), '
                         'or validated only by segmentation metrics.')
    seconds = plot_logs.at_training_seconds(records, steps)
    return list(zip(steps, seconds, values))


def reached(points: Curve, target: float) -> Optional[Tuple[int, float]]:
    """``(iteration, seconds)`` of the first validation at ``target`` or
    above, or None."""
    return next(((it, s) for it, s, value in points if value >= target),
                None)


def report(curves: Dict[str, Curve]) -> List[str]:
    """The table and the time-to-accuracy lines."""
    names = list(curves)
    iterations = sorted({it for points in curves.values()
                         for it, _, _ in points})
    lines = ['| iteration | ' + ' | '.join(
        f'{n} mAP_50 (s)' for n in names) + ' |',
        '|---' * (len(names) + 1) + '|']
    for it in iterations:
        cells = []
        for name in names:
            point = next((p for p in curves[name] if p[0] == it), None)
            cells.append('' if point is None else
                         f'{point[2]:.3f} ({point[1]:.0f} s)')
        lines.append(f'| {it} | ' + ' | '.join(cells) + ' |')
    first, (last_it, total_s, target) = names[0], curves[names[0]][-1]
    lines.append(f'{first}: final mAP_50 {target:.3f} after {last_it} '
                 f'iterations, {total_s:.0f} s of training')
    for name in names[1:]:
        hit = reached(curves[name], target)
        if hit is None:
            best = max(v for _, _, v in curves[name])
            lines.append(f'{name}: did not reach {target:.3f} (best '
                         f'{best:.3f})')
        else:
            lines.append(
                f'{name}: reached {target:.3f} at iteration {hit[0]}, after '
                f'{hit[1]:.0f} s = {hit[1] / total_s:.2f} of {first}\'s '
                f'training time')
    return lines


def main(argv=None) -> Dict[str, Curve]:
    args = parse_args(argv)
    names = [osp.splitext(osp.basename(c))[0] for c in args.configs]
    # before anything trains: each run's folder is WORK_DIR/<config name>
    missing = [c for c in args.configs if not osp.isfile(c)]
    if missing:
        raise SystemExit(f'error: no such config: {", ".join(missing)}.')
    shared = sorted({n for n in names if names.count(n) > 1})
    if shared:
        raise SystemExit(f'error: two configs are named {shared[0]}.py: their'
                         f' runs would share {args.work_dir}/{shared[0]}; '
                         'copy one under another name.')
    from mmengine.config import Config
    silent = [c for c in args.configs if not all(
        Config.fromfile(c).get(k) for k in ('val_cfg', 'val_dataloader',
                                            'val_evaluator'))]
    if silent:
        raise SystemExit(f'error: {", ".join(silent)} does not validate (no '
                         'val_cfg / val_dataloader / val_evaluator): no '
                         f'{METRIC} to compare.')
    runs = {}
    for config, name in zip(args.configs, names):
        work_dir = osp.join(args.work_dir, name)
        train(config, work_dir, args.val_interval, args.cfg_options)
        runs[name] = latest_run(work_dir)
    curves = {name: curve(path) for name, path in runs.items()}
    print('\n'.join(report(curves)))
    if args.plot:
        os.makedirs(osp.dirname(osp.abspath(args.plot)), exist_ok=True)
        for x, suffix in (('step', ''), ('time', '_time')):
            root, ext = osp.splitext(args.plot)
            plot_logs.plot_logs(list(runs.values()), [METRIC],
                                f'{root}{suffix}{ext}', list(runs), x)
        print(f'wrote {args.plot} (and its _time version)')
    return curves


if __name__ == '__main__':
    main()
