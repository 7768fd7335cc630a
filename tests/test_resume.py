"""Checkpoints, resume and the runner's log through ``tools/train.py``.

torch >= 2.6 loads checkpoints with ``weights_only=True``; the types mmengine
writes are allow-listed by :mod:`detr_plugin.engine.safe_checkpoint` and
nothing else. Training 4 iterations in one run must give bit-identical
weights, optimizer state, LR schedule and logged history to a run that stopped
after saving iteration 2 and was continued with ``--resume``.
"""
import os
import os.path as osp
import pickle
import shutil

import mmcv
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from helpers.configs import TINY_CONFIG
from helpers.data import make_shapes
from helpers.tools import load_checkpoint, read_log, run_tool

# one of the 5 training images has no box: filter_empty_gt drops it
FILTER_EMPTY = 'train_dataloader.dataset.filter_cfg.filter_empty_gt=True'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Work dirs of a 4-iteration run and of a run resumed after 2."""
    root = str(tmp_path_factory.mktemp('resume'))
    make_shapes(osp.join(root, 'data', 'shapes'), num_train=5,
                empty_fraction=0.2)
    # default work dir: ./work_dirs/<config name>
    run_tool(['train.py', TINY_CONFIG, '--cfg-options', FILTER_EMPTY], root)
    straight = osp.join(root, 'work_dirs', 'detr_tiny_shapes')
    # a run interrupted after saving iteration 2, then `--resume` (auto)
    resumed = osp.join(root, 'resumed')
    os.makedirs(resumed)
    shutil.copy(osp.join(straight, 'iter_2.pth'), resumed)
    with open(osp.join(resumed, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(resumed, 'iter_2.pth'))
    second = run_tool(['train.py', TINY_CONFIG, '--work-dir', resumed,
                       '--resume', '--cfg-options', FILTER_EMPTY], root)
    return dict(root=root, straight=straight, resumed=resumed,
                second_log=second.out)


def assert_same_tensors(a, b, what):
    """Nested dicts / lists of tensors and numbers, bit for bit."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for key in a:
            assert_same_tensors(a[key], b[key], f'{what}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f'{what}[{i}]')
    else:
        assert a == b, what


def test_resume_continues_exactly(runs):
    assert 'Auto resumed from the latest checkpoint' in runs['second_log']
    assert 'Advance dataloader 2 steps' in runs['second_log']
    straight = load_checkpoint(osp.join(runs['straight'], 'iter_4.pth'))
    resumed = load_checkpoint(osp.join(runs['resumed'], 'iter_4.pth'))
    assert straight['meta']['iter'] == resumed['meta']['iter'] == 4
    assert_same_tensors(straight['state_dict'], resumed['state_dict'],
                        'state_dict')
    assert_same_tensors(straight['optimizer'], resumed['optimizer'],
                        'optimizer')
    assert straight['optimizer']['state'][0]['step'] == 4
    assert_same_tensors(straight['param_schedulers'],
                        resumed['param_schedulers'], 'param_schedulers')
    # logged history: the LR (of the first group, the backbone's 0.1 x 1e-3)
    # dropped once, before iteration 4, and every step's loss is the same
    history = [ckpt['message_hub']['log_scalars'] for ckpt in (straight,
                                                               resumed)]
    for scalars in history:
        assert scalars['train/lr'].data[0].tolist() == pytest.approx(
            [1e-4, 1e-4, 1e-4, 1e-5])
    assert history[0]['train/loss'].data[0].tolist() == \
        history[1]['train/loss'].data[0].tolist()


def test_log_shows_eta_losses_and_filtered_images(runs):
    log = read_log(runs['straight'])
    for key in ('eta: ', 'loss: ', 'loss_cls: ', 'loss_bbox: ', 'loss_iou: ',
                'd0.loss_cls: ', 'class_error: ', 'cardinality_error: '):
        assert key in log, key
    assert 'kept 4 of 5 images; filtered out 1 without boxes' in log


def test_test_tool_evaluates_dumps_and_draws(runs, tmp_path):
    out = tmp_path / 'results.pkl'
    proc = run_tool(['test.py', TINY_CONFIG,
                     osp.join(runs['straight'], 'iter_4.pth'),
                     '--work-dir', str(tmp_path), '--out', str(out),
                     '--show-dir', 'vis'], runs['root'])
    log = proc.out
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in log  # COCO table
    assert 'coco/bbox_mAP' in log
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2  # the two val images
    assert results[0]['pred_instances']['bboxes'].shape == (10, 4)
    drawn = sorted(tmp_path.glob('*/vis/*.jpg'))
    assert len(drawn) == 2
    # ground truth and predictions side by side: twice the image's width
    assert mmcv.imread(str(drawn[0])).shape == (64, 128, 3)


class Payload:
    """Stands for any object a checkpoint should not be able to build."""


def test_checkpoint_with_unlisted_global_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=dict(payload=Payload())), path)
    with pytest.raises(pickle.UnpicklingError) as error:
        CheckpointLoader.load_checkpoint(path)  # what Runner.resume calls
    name = f'{Payload.__module__}.{Payload.__qualname__}'
    assert f'Unsupported global: GLOBAL {name}' in str(error.value)


def test_only_history_buffer_statistics_may_be_fetched(tmp_path):
    """mmengine pickles ``getattr(HistoryBuffer, 'min')`` etc.; any other
    ``getattr`` in a checkpoint is refused."""
    import detr_plugin.engine  # noqa: F401
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(ok=HistoryBuffer.mean), path)
    assert torch.load(path)['ok'] is HistoryBuffer.mean
    torch.save(dict(bad=HistoryBuffer.update), path)
    with pytest.raises(pickle.UnpicklingError, match="'update'"):
        torch.load(path)
