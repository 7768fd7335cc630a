"""tools/compare_training.py: mAP_50 against iterations and training time,
and when a run reaches another's final accuracy -- computed from the runs'
scalars.json (the training itself is tools/train.py's, tested elsewhere)."""
import json

import pytest
from helpers.tools import load_tool

compare_training = load_tool('compare_training')
plot_logs = load_tool('plot_logs')


def write_iter_run(work_dir, seconds_per_iter, map50_by_iter, log_every=50):
    """scalars.json of an iteration-based run: a training line every
    ``log_every`` iterations (``time``: seconds per iteration) and a
    validation line at each iteration of ``map50_by_iter``."""
    path = work_dir / '20261201_000000' / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    last = max(map50_by_iter)
    lines = []
    for step in range(log_every, last + 1, log_every):
        lines.append(dict(loss=1.0, time=seconds_per_iter, iter=step,
                          step=step))
        if step in map50_by_iter:
            lines.append({compare_training.METRIC: map50_by_iter[step],
                          'time': 0.05, 'step': step})
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return str(work_dir)


def test_training_seconds_sum_the_logged_iteration_times(tmp_path):
    run = write_iter_run(tmp_path / 'a', 0.1, {100: 0.2, 200: 0.4})
    records = plot_logs.load_records(run)
    assert plot_logs.training_seconds(records) == pytest.approx(
        {50: 5., 100: 10., 150: 15., 200: 20.})
    assert plot_logs.at_training_seconds(records, [100, 125, 200]) == \
        pytest.approx([10., 12.5, 20.])


def test_report_gives_time_to_the_first_runs_final_accuracy(tmp_path):
    slow = write_iter_run(tmp_path / 'detr', 0.1,
                          {500: 0.2, 1000: 0.5, 1500: 0.6})  # 150 s
    fast = write_iter_run(tmp_path / 'fast', 0.2,
                          {500: 0.65, 1000: 0.7, 1500: 0.8})  # 100 s/500
    never = write_iter_run(tmp_path / 'never', 0.1, {500: 0.1, 1500: 0.3})
    curves = {name: compare_training.curve(compare_training.latest_run(p))
              for name, p in (('detr', slow), ('fast', fast),
                              ('never', never))}
    assert curves['detr'] == [(500, pytest.approx(50.), 0.2),
                              (1000, pytest.approx(100.), 0.5),
                              (1500, pytest.approx(150.), 0.6)]
    lines = compare_training.report(curves)
    assert '| 500 | 0.200 (50 s) | 0.650 (100 s) | 0.100 (50 s) |' in lines
    assert '| 1000 | 0.500 (100 s) | 0.700 (200 s) |  |' in lines
    assert 'detr: final mAP_50 0.600 after 1500 iterations, 150 s of ' \
        'training' in lines
    # fast reaches 0.6 at its first validation: 100 s = 0.67 of 150 s
    assert "fast: reached 0.600 at iteration 500, after 100 s = 0.67 of " \
        "detr's training time" in lines
    assert 'never: did not reach 0.600 (best 0.300)' in lines


def test_config_mistakes_stop_it_before_any_training(tmp_path, monkeypatch):
    """A mistyped second config failed after the first had trained; two
    configs of one name shared one work dir, and the report showed one."""
    from helpers.configs import CONFIG_DIR
    demo = f'{CONFIG_DIR}/demo/detr_r18_shapes.py'
    monkeypatch.chdir(tmp_path)  # the default work dir: work_dirs/compare
    with pytest.raises(SystemExit, match='^error: no such config: nope.py.$'):
        compare_training.main([demo, 'nope.py'])
    boxes = f'{CONFIG_DIR}/demo/detr_r18_shapes-panoptic-boxes.py'
    with pytest.raises(SystemExit, match=(
            f'^error: {boxes} does not validate .*: no coco/bbox_mAP_50')):
        compare_training.main([demo, boxes])
    copy = tmp_path / 'detr_r18_shapes.py'
    copy.write_text(open(demo).read())
    with pytest.raises(SystemExit, match=(
            '^error: two configs are named detr_r18_shapes.py: their runs '
            'would share work_dirs/compare/detr_r18_shapes')):
        compare_training.main([demo, str(copy)])
    assert not (tmp_path / 'work_dirs').exists()
