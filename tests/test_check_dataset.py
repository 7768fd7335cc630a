"""``tools/check_dataset.py``: the report, its exit status, ``--show-dir``.

Exit status 0: training can run (warnings allowed); 1: it would fail or
learn nothing. Most cases call the tool's ``main`` in this process; one runs
the command line.
"""
import os
import os.path as osp

import cv2
import pytest
from helpers.configs import (DETR_R50, TINY_CONFIG, tiny_train_config,
                             write_config)
from helpers.data import broken_copy, truncate_file
from helpers.tools import load_tool, run_tool

check_dataset = load_tool('check_dataset')


def check(capsys, *argv):
    """``(exit status, printed text)`` of the tool."""
    status = check_dataset.main([str(a) for a in argv])
    return status, capsys.readouterr().out


def config_file(root, tmp_path, name='cfg.py'):
    return write_config(tiny_train_config(root), str(tmp_path / name))


def test_balloon_train_split(balloon_root, capsys):
    """configs/detr_r50_8xb2.py pointed at the balloon set: 61 images, 255
    boxes, 1 class, every image decodes; exit 0."""
    status, out = check(
        capsys, DETR_R50, '--cfg-options',
        f'train_dataloader.dataset.data_root={balloon_root}/',
        'train_dataloader.dataset.ann_file=annotations/instances_train.json',
        'train_dataloader.dataset.data_prefix.img=train/',
        'train_dataloader.dataset.metainfo.classes=[balloon]',
        'model.bbox_head.num_classes=1')
    assert status == 0, out
    for line in ('classes: 1 (balloon)', 'images: 61', 'boxes: 255',
                 'balloon 255', 'images without boxes: 0',
                 'dropped boxes: 0',
                 'image files checked: exist and decode; missing 0, '
                 'unreadable 0', 'OK: 0 warning(s)'):
        assert line in out, out
    assert 'box size sqrt(w*h) px: min' in out


def test_clean_set_and_show_dir(shapes, tmp_path, capsys):
    show = tmp_path / 'show'
    status, out = check(capsys, config_file(shapes, tmp_path),
                        '--show-dir', show, '--show-number', 2)
    assert status == 0, out
    assert 'images: 6' in out and 'classes: 3 (circle, square, triangle)' \
        in out
    assert f'drew the ground truth of 2 images to {show}' in out
    drawn = sorted(os.listdir(show))
    assert drawn == ['000001.jpg', '000002.jpg']
    assert cv2.imread(str(show / drawn[0])).shape == (64, 64, 3)


def _break(root):
    os.remove(osp.join(root, 'train', '000002.jpg'))
    truncate_file(osp.join(root, 'train', '000005.jpg'))


def _zero_width(data):
    data['annotations'][0]['bbox'][2] = 0
    data['annotations'][1]['bbox'] = [1e4, 1e4, 5, 5]


def test_broken_set_is_reported_and_fails(shapes, tmp_path, capsys):
    root = broken_copy(shapes, str(tmp_path / 'broken'), _zero_width)
    _break(root)
    status, out = check(capsys, config_file(root, tmp_path))
    assert status == 1, out
    assert 'missing 1, unreadable 1' in out
    assert 'are missing (image ids 2;' in out
    assert '1 image files are unreadable (image ids 5; corrupt image ' \
        f'file {osp.join(root, "train", "000005.jpg")}' in out
    assert 'dropped boxes: 2; 1 width or height <= 0; 1 wholly outside' in out
    assert 'warning: dropped 2 of' in out
    assert 'FAILED: 2 error(s), 1 warning(s)' in out


def test_skipping_corrupt_images_makes_them_a_warning(shapes, tmp_path,
                                                     capsys):
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    truncate_file(osp.join(root, 'train', '000005.jpg'))
    status, out = check(
        capsys, config_file(root, tmp_path), '--cfg-options',
        'train_dataloader.dataset.corrupt_images=skip')
    assert status == 0, out
    assert "Training skips them (corrupt_images='skip')" in out
    # --no-decode reads headers and ends: the cut end gives it away
    status, out = check(capsys, config_file(root, tmp_path), '--no-decode')
    assert status == 1, out
    assert 'image files checked: exist, header and end read; missing 0, ' \
        'unreadable 1' in out


def test_strict_boxes_fail(shapes, tmp_path, capsys):
    root = broken_copy(shapes, str(tmp_path / 'broken'), _zero_width)
    status, out = check(
        capsys, config_file(root, tmp_path), '--cfg-options',
        'train_dataloader.dataset.invalid_boxes=error')
    assert status == 1
    assert 'ERROR: 2 of' in out and 'are unusable' in out


def test_command_line_exit_status(shapes, tmp_path):
    """The command itself: wrong class names and num_classes -> status 1,
    with the config keys and the fix in its output."""
    cfg = tiny_train_config(shapes, classes=('Circle', 'square', 'triangle'))
    cfg.model.bbox_head.num_classes = 80
    proc = run_tool(['check_dataset.py', write_config(
        cfg, str(tmp_path / 'wrong.py'))], cwd=str(tmp_path), check=False)
    assert proc.returncode == 1, proc.out
    assert 'ERROR: train_dataloader.dataset.metainfo.classes: 1 of 3 ' \
        "classes are not a category name" in proc.out
    assert "'Circle' -> 'circle'?" in proc.out
    assert 'FAILED: 2 error(s)' in proc.out


def test_drawing_options_are_checked_first(tmp_path, capsys):
    """``--show-number -1`` drew "-1 images"; a ``--show-dir`` that is a
    file failed with FileExistsError after the whole check; a mistyped
    config was a FileNotFoundError traceback."""
    afile = tmp_path / 'notes.txt'
    afile.write_text('')
    for wrong, rule in ((['--show-number', '-1'], '--show-number takes 1'),
                        (['--show-dir', str(afile)], 'is a file: give a')):
        with pytest.raises(SystemExit) as exit_info:
            check_dataset.parse_args([TINY_CONFIG, *wrong])
        assert exit_info.value.code == 2
        assert rule in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r'^error: CONFIG nope\.py: no such '
                       r'file\.$'):
        check_dataset.main(['nope.py'])
