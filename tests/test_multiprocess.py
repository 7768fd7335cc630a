"""Two CPU processes (gloo, ``tools/dist_train.sh``) train like one.

One iteration, one image per process, against one process with both images
as one batch. Both images have the same size (no padding) and different
numbers of boxes; BN is frozen (the config's ``requires_grad=False``,
``norm_eval=True``) and there is no dropout, so the only cross-process
coupling is what DETR needs: the box-loss normalizer and (with
``sync_cls_avg_factor``) the classification normalizer are averaged over
processes, and DDP averages the gradients.
"""
import json
import os.path as osp

import pytest
from helpers.configs import TINY_CONFIG
from helpers.data import make_shapes
from helpers.tools import free_port, load_checkpoint, read_log, run_tool

# One plain SGD step without gradient clipping, so that "weights after the
# step" compares the gradients (weights = initial - 0.01 * grad; gradients
# reach ~100 here: with sync_cls_avg_factor=False the weights differ by 0.36,
# while float32 rounding leaves 2.4e-7): clipping would
# rescale a wrong loss normalizer away, and AdamW's first step,
# lr * g / (|g| + eps), is about lr * sign(g) -- for gradients that are
# analytically zero (the attention key biases) it turns rounding noise
# (~1e-10) into steps of up to lr, so AdamW's weights differ there (measured
# 3e-4 at lr 1e-3) while its first moments (0.1 * g) agree to 4e-6.
ONE_STEP = ['train_cfg.max_iters=1', 'default_hooks.checkpoint.interval=1',
            'optim_wrapper.clip_grad=None', 'optim_wrapper.optimizer.type=SGD',
            'optim_wrapper.optimizer.lr=0.01',
            'optim_wrapper.optimizer.weight_decay=0.0']


@pytest.fixture(scope='module')
def two_images(tmp_path_factory):
    """A root with 2 training images of 64x64 with different box counts."""
    root = str(tmp_path_factory.mktemp('dist'))
    make_shapes(osp.join(root, 'data', 'shapes'), num_train=2, num_val=1,
                seed=5)  # 4 and 1 boxes
    ann = json.load(open(osp.join(root, 'data', 'shapes', 'annotations',
                                  'instances_train.json')))
    counts = [sum(a['image_id'] == img['id'] for a in ann['annotations'])
              for img in ann['images']]
    assert counts[0] != counts[1] and min(counts) > 0, counts
    return root


def test_two_processes_match_one_batch(two_images):
    root = two_images
    run_tool(['dist_train.sh', TINY_CONFIG, '2', '--work-dir', 'dist',
              '--cfg-options', *ONE_STEP], root, PORT=str(free_port()))
    run_tool(['train.py', TINY_CONFIG, '--work-dir', 'single',
              '--cfg-options', *ONE_STEP,
              'train_dataloader.batch_size=2'], root)
    log = read_log(osp.join(root, 'dist'))
    assert 'Distributed training: True' in log

    dist = load_checkpoint(osp.join(root, 'dist', 'iter_1.pth'))
    single = load_checkpoint(osp.join(root, 'single', 'iter_1.pth'))
    assert dist['meta']['iter'] == single['meta']['iter'] == 1
    for key, weight in single['state_dict'].items():
        diff = (dist['state_dict'][key] - weight).abs().max()
        assert diff <= 1e-5, (key, float(diff))


@pytest.mark.parametrize('args,nproc', [
    (['dist_train.sh', TINY_CONFIG, '--work-dir', 'w'], '--work-dir'),
    (['dist_test.sh', TINY_CONFIG, 'c.pth', '0'], '0')], ids=['flag', 'zero'])
def test_launch_scripts_name_a_wrong_process_count(tmp_path, args, nproc):
    """torchrun said 'Unsupported nproc_per_node value: --work-dir', or
    asserted bare on 0."""
    proc = run_tool(args, str(tmp_path), check=False)
    assert proc.returncode == 2
    assert f'usage: bash tools/{args[0]} CONFIG' in proc.out
    assert f"NPROC: the number of processes, 1 or more; got '{nproc}'" \
        in proc.out
