"""Plot scalars that mmengine logged, for one or several runs.

    python tools/plot_logs.py WORK_DIR_OR_JSON [...] --keys loss loss_cls \
        coco/bbox_mAP [--out curves.png] [--legend NAME ...] [--x time]

Each argument is a ``scalars.json`` (mmengine's ``LocalVisBackend`` log: one
JSON dict per line, ``step`` = iteration for training lines, epoch (or
iteration, for iteration-based loops) for validation lines), a run folder
``<work_dir>/<timestamp>`` or a work dir. A work dir's runs
(``<timestamp>/vis_data/scalars.json``) are joined in time order with
resume semantics: a later run replaces the earlier records from its first
step on. Writes one subplot per key, one line per run, against the logged
step or, with ``--x time``, against training time (:func:`training_seconds`).
"""
import argparse
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

SCALARS = osp.join('vis_data', 'scalars.json')


def scalar_files(path: str) -> List[str]:
    """The ``scalars.json`` files of a file, run folder or work dir, oldest
    run first."""
    if osp.isfile(path):
        return [path]
    if osp.isfile(osp.join(path, SCALARS)):
        return [osp.join(path, SCALARS)]
    files = sorted(glob.glob(osp.join(path, '*', SCALARS)))
    if not files:
        raise FileNotFoundError(f'no {SCALARS} under {path!r} (expected '
                                f'<work_dir>/<timestamp>/{SCALARS})')
    return files


def _is_train(record: dict) -> bool:
    # LoggerHook's training records carry the iteration counter
    return 'iter' in record


def load_records(path: str) -> List[dict]:
    """Every record of a run, its runs joined with resume semantics."""
    merged: List[dict] = []
    for file in scalar_files(path):
        with open(file) as f:
            try:
                records = [json.loads(line) for line in f if line.strip()]
            except json.JSONDecodeError as e:
                raise ValueError(f'{file}: not mmengine\'s scalars.json (a '
                                 f'JSON dict per line): {e}') from None
        if not all(isinstance(r, dict) and 'step' in r for r in records):
            raise ValueError(f'{file}: not mmengine\'s scalars.json (a JSON '
                             'dict per line): a line without "step"')
        for kind in (True, False):
            steps = [r['step'] for r in records if _is_train(r) == kind]
            if steps:
                first = min(steps)
                merged = [r for r in merged if _is_train(r) != kind
                          or r['step'] < first]
        merged.extend(records)
    return merged


def series(records: Sequence[dict], key: str) -> Tuple[List[float],
                                                       List[float]]:
    """``(steps, values)`` of ``key``, by step."""
    points = sorted((r['step'], r[key]) for r in records if key in r)
    return [p[0] for p in points], [p[1] for p in points]


def training_seconds(records: Sequence[dict]) -> Dict[int, float]:
    """Seconds of training up to each logged iteration: the logged
    per-iteration ``time`` (``IterTimerHook``: data loading and the step;
    validation excluded) times the iterations since the previous record,
    summed. For an iteration-based loop, whose validation records are logged
    at the iteration, this maps every step to training time."""
    elapsed, last, total = {}, 0, 0.
    for record in sorted((r for r in records if _is_train(r)),
                         key=lambda r: r['step']):
        total += record.get('time', 0.) * (record['step'] - last)
        last = record['step']
        elapsed[last] = total
    return elapsed


def at_training_seconds(records: Sequence[dict],
                        steps: Sequence[float]) -> List[float]:
    """:func:`training_seconds` at ``steps``, linear between records."""
    elapsed = training_seconds(records)
    known = sorted(elapsed.items())
    times = []
    for step in steps:
        before = max(((s, t) for s, t in known if s <= step),
                     default=(0, 0.))
        after = min(((s, t) for s, t in known if s >= step), default=before)
        span = after[0] - before[0]
        times.append(before[1] if span == 0 else before[1] + (
            after[1] - before[1]) * (step - before[0]) / span)
    return times


def x_label(records: Sequence[dict], key: str) -> str:
    """What ``step`` counts for ``key``: iterations for training scalars;
    for validation scalars epochs when the loop runs by epoch."""
    if any(_is_train(r) for r in records if key in r):
        return 'iteration'
    by_epoch = any('epoch' in r for r in records if _is_train(r))
    return 'epoch' if by_epoch else 'iteration'


def run_names(paths: Sequence[str]) -> List[str]:
    """Short legend names: a work dir's name, ``<work dir>/<timestamp>``
    for a run folder or its ``scalars.json``; longer where they clash."""
    parts, min_depth = [], []
    for path in paths:
        path = osp.normpath(osp.abspath(path))
        if path.endswith(os.sep + SCALARS):
            path = osp.dirname(osp.dirname(path))  # the run folder
        is_run = osp.isfile(osp.join(path, SCALARS))
        parts.append(path.split(os.sep))
        min_depth.append(2 if is_run else 1)
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ['/'.join(p[-max(depth, d):])
                 for p, d in zip(parts, min_depth)]
        if len(set(names)) == len(names):
            return names
    return list(paths)


def plot_logs(paths: Sequence[str], keys: Sequence[str], out_file: str,
              legend: Optional[Sequence[str]] = None,
              x: str = 'step') -> Dict[str, Dict[
                  str, Tuple[List[float], List[float]]]]:
    """Plot ``keys`` of the runs at ``paths`` into ``out_file``.

    Args:
        x: ``'step'`` (the logged iteration or epoch) or ``'time'``
            (training seconds, :func:`at_training_seconds`; iteration-based
            runs).

    Returns:
        ``{key: {run name: (x values, values)}}`` of what was drawn.

    Raises:
        KeyError: a key that no run logged (the message lists those logged).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(legend) if legend else run_names(paths)
    if len(names) != len(paths):
        raise ValueError(f'{len(names)} legend names for {len(paths)} runs')
    runs = {name: load_records(path) for name, path in zip(names, paths)}
    logged = sorted({k for records in runs.values() for r in records
                     for k in r} - {'step'})
    missing = [k for k in keys
               if not any(k in r for rs in runs.values() for r in rs)]
    if missing:
        raise KeyError(f'no run logged {missing}; logged keys: {logged}')
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 3 * len(keys)),
                             squeeze=False)
    drawn: Dict[str, Dict[str, Tuple[List[float], List[float]]]] = {}
    for ax, key in zip(axes[:, 0], keys):
        drawn[key] = {}
        for name, records in runs.items():
            steps, values = series(records, key)
            if not steps:
                continue
            if x == 'time':
                steps = at_training_seconds(records, steps)
            drawn[key][name] = (steps, values)
            ax.plot(steps, values, marker='o' if len(steps) < 30 else None,
                    markersize=3, label=name)
            ax.set_xlabel('training seconds' if x == 'time' else
                          x_label(records, key))
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return drawn


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot mmengine scalar logs')
    parser.add_argument('paths', nargs='+', metavar='WORK_DIR_OR_JSON',
                        help='work dirs, run folders or scalars.json files')
    parser.add_argument('--keys', nargs='+', default=['loss'],
                        help='scalars to plot, e.g. loss loss_cls '
                        'coco/bbox_mAP')
    parser.add_argument('--out', default='curves.png', help='PNG to write')
    parser.add_argument('--legend', nargs='+',
                        help='run names (default: from the paths)')
    parser.add_argument('--x', choices=['step', 'time'], default='step',
                        help='x axis: the logged step, or training seconds '
                        '(iteration-based runs)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    drawn = plot_logs(args.paths, args.keys, args.out, args.legend, args.x)
    for key, runs in drawn.items():
        for name, (steps, values) in runs.items():
            print(f'{key} [{name}]: {len(steps)} points, last '
                  f'{values[-1]:.4g} at step {steps[-1]}')
    print(f'wrote {args.out}')
    return drawn


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as e:  # ours, named
        raise SystemExit(f'error: {e.args[0]}') from None
