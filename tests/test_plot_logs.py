"""tools/plot_logs.py: mmengine's scalars.json of one or several runs as
curves, one subplot per key."""
import json

import pytest
from helpers.tools import load_tool, run_tool

plot_logs = load_tool('plot_logs')


def write_run(run_dir, train_steps, val_epochs, iters_per_epoch=4,
              offset=0.):
    """``run_dir/vis_data/scalars.json`` as LoggerHook writes it for an
    epoch-based loop: training lines (step = iteration) and validation
    lines (step = epoch)."""
    path = run_dir / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    lines = []
    for step in train_steps:
        lines.append(dict(lr=1e-4, loss=10. / step + offset,
                          loss_cls=1. / step + offset,
                          epoch=(step - 1) // iters_per_epoch + 1,
                          iter=step, step=step))
        epoch = step // iters_per_epoch
        if step % iters_per_epoch == 0 and epoch in val_epochs:
            lines.append({'coco/bbox_mAP': 0.1 * epoch + offset,
                          'data_time': 0.01, 'time': 0.1, 'step': epoch})
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return str(path)


@pytest.fixture
def work_dirs(tmp_path):
    # run A: trained 6 iterations, then resumed from the checkpoint of
    # iteration 4 (epoch 1) and trained to 8: iterations 5, 6 are relogged
    run_a = tmp_path / 'run_a'
    write_run(run_a / '20240101_000000', range(1, 7), {1}, offset=100.)
    write_run(run_a / '20240102_000000', range(5, 9), {2})
    # run B: one run, its scalars.json given directly
    run_b = write_run(tmp_path / 'run_b' / '20240103_000000', range(1, 9),
                      {1, 2}, offset=1.)
    return str(run_a), run_b


def test_work_dir_runs_join_with_resume_semantics(work_dirs):
    run_a, _ = work_dirs
    records = plot_logs.load_records(run_a)
    steps, losses = plot_logs.series(records, 'loss')
    assert steps == list(range(1, 9))
    # 1-4 from the first run, 5-8 (relogged) from the resumed one
    assert losses[3] == pytest.approx(10. / 4 + 100.)
    assert losses[4] == pytest.approx(10. / 5)
    epochs, maps = plot_logs.series(records, 'coco/bbox_mAP')
    assert epochs == [1, 2] and maps == pytest.approx([100.1, 0.2])
    assert plot_logs.x_label(records, 'loss') == 'iteration'
    assert plot_logs.x_label(records, 'coco/bbox_mAP') == 'epoch'


def test_tool_plots_keys_of_several_runs(work_dirs, tmp_path):
    run_a, run_b = work_dirs
    out = tmp_path / 'plots' / 'curves.png'
    drawn = plot_logs.main([run_a, run_b, '--keys', 'loss', 'loss_cls',
                            'coco/bbox_mAP', '--out', str(out)])
    assert list(drawn) == ['loss', 'loss_cls', 'coco/bbox_mAP']
    names = list(drawn['loss'])
    assert len(names) == 2 and names[0].endswith('run_a')
    assert names[1] == 'run_b/20240103_000000'
    assert drawn['coco/bbox_mAP'][names[1]][0] == [1, 2]
    data = out.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
    import matplotlib.image
    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[0] > pixels.shape[1]  # three stacked subplots
    assert pixels[..., :3].std() > 0.05


def test_unknown_key_and_missing_logs_are_explained(work_dirs, tmp_path):
    run_a, _ = work_dirs
    with pytest.raises(KeyError, match=r"no run logged \['loss_giou'\]; "
                       r"logged keys: .*'coco/bbox_mAP'"):
        plot_logs.main([run_a, '--keys', 'loss_giou', '--out',
                        str(tmp_path / 'x.png')])
    with pytest.raises(FileNotFoundError, match='vis_data'):
        plot_logs.main([str(tmp_path), '--keys', 'loss'])


def test_the_tool_ends_with_the_message_not_a_traceback(work_dirs, tmp_path):
    """Run as a script, each mistake is one ``error:`` line (exit 1): an
    unknown key, a legend of another length, a folder without logs, a file
    that is not mmengine's scalars.json (named, where json's error names
    only a line and column)."""
    run_a, run_b = work_dirs
    not_json = tmp_path / 'notes.json'
    not_json.write_text('{"step": 1}\nloss=3\n')
    coco = tmp_path / 'instances.json'
    coco.write_text('{"images": [], "annotations": []}\n')
    (tmp_path / 'empty').mkdir()
    cases = [
        ([run_a, '--keys', 'loss_giou'], "error: no run logged ['loss_giou']"),
        ([run_a, run_b, '--legend', 'a'], 'error: 1 legend names for 2 runs'),
        ([str(tmp_path / 'empty')], 'error: no vis_data/scalars.json under '
         f"'{tmp_path / 'empty'}'"),
        ([str(not_json)], f"error: {not_json}: not mmengine's scalars.json "
         '(a JSON dict per line): Expecting value: line 1 column 1'),
        ([str(coco)], f"error: {coco}: not mmengine's scalars.json (a JSON "
         'dict per line): a line without "step"'),
    ]
    for args, message in cases:
        proc = run_tool(['plot_logs.py', *args, '--out',
                         str(tmp_path / 'x.png')], str(tmp_path), check=False)
        assert proc.returncode == 1, proc.out
        assert proc.out.strip().splitlines()[-1].startswith(message), proc.out
        assert 'Traceback' not in proc.out
