"""Faults during training leave a work dir that resumes from a good state.

``tools/train.py`` runs in subprocesses (a tiny DETR, 64 x 64 images, one
image per iteration, a checkpoint every 2 iterations through
``AtomicCheckpointHook``, ``NonFiniteLossHook`` on):

* a truncated JPEG stops the run naming the file; ``skip_corrupt=True``
  resumes past it, counting it in the log;
* a NaN loss stops the run naming the iteration and the loss terms, writing
  no checkpoint from the poisoned step; ``action='skip'`` resumes, skipping
  (and counting) those steps without changing the weights;
* a SIGKILL while a checkpoint is being written leaves the last complete
  checkpoint in place and ``last_checkpoint`` naming it; ``--resume`` goes
  on from it. With mmengine's own ``CheckpointHook`` the same kill leaves a
  truncated file and, with ``max_keep_ckpts``, no complete checkpoint at
  all -- the reason for ``AtomicCheckpointHook``;
* a data problem stops ``tools/train.py`` before the first iteration.

Plus unit tests of the pieces: the optimizer step pre-hook, the
completeness test of checkpoint files and the choice of the checkpoint to
resume from.
"""
import copy
import os
import os.path as osp
import warnings
from types import SimpleNamespace

import pytest
import torch
from helpers.configs import (CONFIG_DIR, add_eval_split, tiny_config,
                             tiny_train_config, write_config)
from helpers.data import (broken_copy, edit_annotations, set_image_size,
                          truncate_file, write_rotated_jpeg)
from helpers.tools import (load_checkpoint, load_tool, run_tool,
                           run_until_stalled)

from detr_plugin.checkpoint import (atomic_write, find_resumable_checkpoint,
                                    is_complete_checkpoint)
from detr_plugin.engine.hooks import (AtomicCheckpointHook, NonFiniteLossHook,
                                      nonfinite_terms)

cli = load_tool('cli')


def last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def checkpoint_files(work_dir):
    return sorted(n for n in os.listdir(work_dir) if n.endswith('.pth'))


def assert_stopped_at_good_checkpoint(work_dir, iteration=2):
    """The run wrote ``iter_{iteration}.pth``, nothing later, and that file
    loads with finite weights."""
    path = osp.join(work_dir, f'iter_{iteration}.pth')
    assert last_checkpoint(work_dir) == path
    assert not osp.exists(osp.join(work_dir, f'iter_{iteration + 2}.pth'))
    ckpt = load_checkpoint(path)
    assert ckpt['meta']['iter'] == iteration
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    return ckpt


def assert_finished(proc, work_dir, iteration=4):
    assert proc.returncode == 0, proc.out[-5000:]
    path = osp.join(work_dir, f'iter_{iteration}.pth')
    assert last_checkpoint(work_dir) == path
    ckpt = load_checkpoint(path)
    assert ckpt['meta']['iter'] == iteration
    return ckpt


# ------------------------------------------------------- corrupt images
def test_truncated_image_stops_then_is_skipped_on_resume(shapes, tmp_path):
    """An image cut short after a run saved iteration 2: ``--resume`` stops
    before its first iteration (the check reads each file's end) naming the
    file and the fix, iteration 2 kept; with ``corrupt_images=skip`` the
    run goes on, the loader skipping the file at iteration 3."""
    root = broken_copy(shapes, str(tmp_path / 'data'))
    cfg = write_config(tiny_train_config(root), str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    run_tool(['train.py', cfg, '--work-dir', work, '--cfg-options',
              'train_cfg.max_iters=2'], str(tmp_path))
    bad = osp.join(root, 'train', '000003.jpg')  # read by iteration 3
    truncate_file(bad)

    proc = run_tool(['train.py', cfg, '--work-dir', work, '--resume'],
                    str(tmp_path), check=False)
    assert proc.returncode != 0
    assert f'image ids 3; corrupt image file {bad}' in proc.out
    assert 'train_dataloader.dataset.corrupt_images=skip' in proc.out
    assert 'Iter(train)' not in proc.out
    assert_stopped_at_good_checkpoint(work)

    proc = run_tool(['train.py', cfg, '--work-dir', work, '--resume',
                     '--cfg-options',
                     'train_dataloader.dataset.corrupt_images=skip'],
                    str(tmp_path))
    assert f'Auto resumed from the latest checkpoint {work}/iter_2.pth' \
        in proc.out
    assert f'skipped corrupt image file {bad}' in proc.out
    assert '1 corrupt image(s) skipped so far' in proc.out
    assert_finished(proc, work)


# ------------------------------------------------------- non-finite loss
def test_nan_loss_stops_without_a_poisoned_checkpoint_then_skips(shapes,
                                                                 tmp_path):
    cfg = write_config(tiny_train_config(shapes), str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    nan_loss = 'model.bbox_head.loss_bbox.loss_weight=nan'
    proc = run_tool(['train.py', cfg, '--work-dir', work, '--cfg-options',
                     'train_cfg.max_iters=2'], str(tmp_path))
    good = assert_finished(proc, work, iteration=2)

    proc = run_tool(['train.py', cfg, '--work-dir', work, '--resume',
                     '--cfg-options', nan_loss], str(tmp_path), check=False)
    assert proc.returncode != 0
    assert 'NonFiniteLossError: non-finite loss at iteration 3 ' in proc.out
    assert 'loss_bbox=nan' in proc.out and 'd0.loss_bbox=nan' in proc.out
    assert 'this step was not applied' in proc.out
    assert 'Saving checkpoint' not in proc.out.split('Auto resumed')[1]
    assert_stopped_at_good_checkpoint(work)

    proc = run_tool(['train.py', cfg, '--work-dir', work, '--resume',
                     '--cfg-options', nan_loss,
                     'default_hooks.nonfinite_loss.action=skip'],
                    str(tmp_path))
    assert 'skipped this step (1 skipped so far)' in proc.out
    assert 'skipped this step (2 skipped so far)' in proc.out
    skipped = assert_finished(proc, work)
    # no update happened: the weights and the optimizer state are those of
    # iteration 2
    for key, value in good['state_dict'].items():
        assert torch.equal(value, skipped['state_dict'][key]), key
    assert skipped['optimizer']['state'][0]['step'] == \
        good['optimizer']['state'][0]['step'] == 2


def test_step_pre_hook_drops_nonfinite_gradients():
    """Unit: the pre-hook skips the optimizer step (no update, no state) on
    a NaN gradient, and after_train_iter names the terms or counts."""
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(optim_wrapper=SimpleNamespace(
        optimizer=optimizer), iter=6, epoch=0)
    hook.before_train(runner)
    before = [p.detach().clone() for p in layer.parameters()]
    loss = layer(torch.ones(1, 3)).sum() * float('nan')
    loss.backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    assert optimizer.state_dict()['state'] == {}
    outputs = dict(loss=loss.detach(), loss_cls=torch.tensor(0.5),
                   loss_bbox=torch.tensor(float('inf')))
    assert str(nonfinite_terms(outputs)) == "{'loss': nan, 'loss_bbox': inf}"
    with pytest.raises(FloatingPointError,
                       match=r'iteration 7 .*loss_bbox=inf \(first term: '
                       r'loss_bbox\).*this step was not applied'):
        hook.after_train_iter(runner, 6, outputs=outputs)
    # as mmengine's parse_losses hands them over: still requiring grad,
    # which float() of a tensor warns about in every training run
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert str(nonfinite_terms(dict(
            loss=layer(torch.ones(1, 3)).sum() * float('nan'),
            loss_cls=layer(torch.ones(1, 3)).sum()))) == "{'loss': nan}"
    # a finite step still updates
    optimizer.zero_grad()
    layer(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before[0], layer.weight)
    hook.after_train(runner)
    assert optimizer._optimizer_step_pre_hooks == {}


# ------------------------------------------------- kill during a save
def test_kill_while_saving_keeps_the_last_complete_checkpoint(shapes,
                                                              tmp_path):
    cfg = write_config(tiny_train_config(
        shapes, stalls=True,
        default_hooks=dict(checkpoint=dict(max_keep_ckpts=1))),
        str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    args = ['train.py', cfg, '--work-dir', work]
    run_until_stalled(args, str(tmp_path), stall_file='iter_4.pth')
    names = sorted(os.listdir(work))
    # killed after writing every byte of iter_4, before its rename: the
    # old checkpoint is still there (mmengine deletes it first)
    assert 'iter_4.pth' not in names and 'iter_2.pth' in names
    assert any(n.startswith('.iter_4.pth.') for n in names), names
    assert_stopped_at_good_checkpoint(work)

    proc = run_tool(args + ['--resume'], str(tmp_path))
    assert f'Auto resumed from the latest checkpoint {work}/iter_2.pth' \
        in proc.out
    assert 'left by a killed checkpoint save' in proc.out
    assert_finished(proc, work)
    assert sorted(n for n in os.listdir(work) if 'pth' in n) == \
        ['iter_4.pth']  # max_keep_ckpts=1, and no temporary file


def test_max_keep_ckpts_holds_again_after_a_kill_before_pruning(shapes,
                                                                tmp_path):
    """A kill after a save and before the pruning of the oldest checkpoint
    leaves one checkpoint too many, which mmengine's bookkeeping of the kept
    ids (in the message hub) never deletes (issue 14, item 9). The pruning
    looks at the disk, so the next save restores max_keep_ckpts."""
    cfg = write_config(tiny_train_config(shapes), str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    # what that kill leaves with max_keep_ckpts=1: iter_2 and iter_4
    run_tool(['train.py', cfg, '--work-dir', work], str(tmp_path))
    assert checkpoint_files(work) == ['iter_2.pth', 'iter_4.pth']
    run_tool(['train.py', cfg, '--work-dir', work, '--resume',
              '--cfg-options', 'train_cfg.max_iters=6',
              'default_hooks.checkpoint.max_keep_ckpts=1'], str(tmp_path))
    assert checkpoint_files(work) == ['iter_6.pth']
    assert last_checkpoint(work) == osp.join(work, 'iter_6.pth')


def test_mmengine_checkpoint_hook_loses_every_checkpoint(shapes, tmp_path):
    """Why the hook exists: mmengine's CheckpointHook with max_keep_ckpts=1
    deletes iter_2 before writing iter_4 into its final path; a kill during
    that write leaves a truncated iter_4, no complete checkpoint, and a
    last_checkpoint naming a deleted file. (If a new mmengine passes this
    test no more, AtomicCheckpointHook's reordering may be unnecessary.)"""
    mmengine_hook = dict(
        _delete_=True, type='CheckpointHook', by_epoch=False, interval=2,
        max_keep_ckpts=1, backend_args=dict(backend='stall_local'))
    cfg = write_config(tiny_train_config(
        shapes, stalls=True, default_hooks=dict(checkpoint=mmengine_hook)),
        str(tmp_path / 'cfg.py'))
    work = str(tmp_path / 'work')
    run_until_stalled(['train.py', cfg, '--work-dir', work], str(tmp_path),
                      stall_file='iter_4.pth')
    assert not osp.exists(osp.join(work, 'iter_2.pth'))
    assert not is_complete_checkpoint(osp.join(work, 'iter_4.pth'))
    assert last_checkpoint(work) == osp.join(work, 'iter_2.pth')
    assert find_resumable_checkpoint(work) is None


def _save(path, value):
    torch.save({'state_dict': {'w': torch.tensor([value])}}, path)


def test_find_resumable_checkpoint(tmp_path):
    work = str(tmp_path)
    _save(f'{work}/iter_2.pth', 2.)
    _save(f'{work}/iter_4.pth', 4.)
    truncate_file(f'{work}/iter_4.pth', 0.5)
    with open(f'{work}/.iter_6.pth.abc.tmp', 'wb') as f:
        f.write(b'partial')
    assert not is_complete_checkpoint(f'{work}/iter_4.pth')
    assert is_complete_checkpoint(f'{work}/iter_2.pth')
    # last_checkpoint naming a truncated file, nothing, or a deleted file
    for recorded in (f'{work}/iter_4.pth', '', f'{work}/iter_0.pth'):
        atomic_write(recorded, f'{work}/last_checkpoint')
        assert find_resumable_checkpoint(work) == f'{work}/iter_2.pth'
    os.remove(f'{work}/last_checkpoint')
    assert find_resumable_checkpoint(work) == f'{work}/iter_2.pth'
    # a complete checkpoint newer than the one recorded (killed between the
    # save and the last_checkpoint update) wins
    atomic_write(f'{work}/iter_2.pth', f'{work}/last_checkpoint')
    _save(f'{work}/iter_4.pth', 4.)
    os.utime(f'{work}/iter_2.pth', (1, 1))
    assert find_resumable_checkpoint(work) == f'{work}/iter_4.pth'


def test_before_run_repairs_last_checkpoint(tmp_path):
    work = str(tmp_path)
    _save(f'{work}/iter_2.pth', 2.)
    _save(f'{work}/iter_4.pth', 4.)
    truncate_file(f'{work}/iter_4.pth', 0.5)
    atomic_write(f'{work}/iter_4.pth', f'{work}/last_checkpoint')
    with open(f'{work}/.last_checkpoint.x1.tmp', 'w') as f:
        f.write('half')
    hook = AtomicCheckpointHook(interval=2, by_epoch=False)
    # a run that does not resume (tools/test.py, a fresh training) leaves
    # the work dir as it is, even a temporary file a live run may be writing
    for runner in (SimpleNamespace(work_dir=work, _resume=False,
                                   _load_from=None),
                   SimpleNamespace(work_dir=work, _resume=True,
                                   _load_from=f'{work}/iter_2.pth')):
        hook.before_run(runner)
        assert last_checkpoint(work) == f'{work}/iter_4.pth'
        assert '.last_checkpoint.x1.tmp' in os.listdir(work)
    hook.before_run(SimpleNamespace(work_dir=work, _resume=True,
                                    _load_from=None))  # --resume
    assert last_checkpoint(work) == f'{work}/iter_2.pth'
    assert sorted(os.listdir(work)) == ['iter_2.pth', 'iter_4.pth',
                                        'last_checkpoint']


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_2.pth')
    atomic_write(b'old', path)
    mode = os.stat(path).st_mode & 0o777
    assert mode == 0o666 & ~_umask()

    def fail(fd):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(b'new', path)
    with open(path, 'rb') as f:
        assert f.read() == b'old'
    assert os.listdir(tmp_path) == ['iter_2.pth']


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


# ---------------------------------- data problems in train.py and test.py
def _wrong_num_classes(cfg, root):
    cfg.model.bbox_head.num_classes = 80


def _misspelt_class(cfg, root):
    cfg.train_dataloader.dataset.metainfo = dict(
        classes=('Circle', 'square', 'triangle'))


def _malformed_json(cfg, root):
    with open(osp.join(root, 'annotations', 'instances_train.json'),
              'w') as f:
        f.write('{"images": [')


def _deleted_image(cfg, root):
    os.remove(osp.join(root, 'train', '000002.jpg'))


def _exif_rotated_image(cfg, root):
    edit_annotations(root, lambda data: set_image_size(data, 2, 48, 64))
    write_rotated_jpeg(osp.join(root, 'train', '000002.jpg'), 48, 64)


def _corrupt_val_image(cfg, root):
    truncate_file(osp.join(root, 'val', '000001.jpg'))
    add_eval_split(cfg, root, 'val')


BAD_DATA = {
    'wrong num_classes': (_wrong_num_classes, [
        'model.bbox_head.num_classes is 80 but train_dataloader.dataset '
        'has 3 classes']),
    'misspelt class': (_misspelt_class, [
        'train_dataloader.dataset.metainfo.classes',
        "'Circle' -> 'circle'?"]),
    'malformed JSON': (_malformed_json, [
        'instances_train.json', 'is not valid JSON']),
    'deleted image': (_deleted_image, [
        '1 of the image files listed in', '000002.jpg']),
    # issue 14, item 1: trained silently with wrong boxes
    'EXIF-rotated image': (_exif_rotated_image, [
        '000002.jpg (img_id 2) decodes to 64 x 48 (h x w) but the annotation '
        'file gives 48 x 64', 'EXIF orientation 6',
        "color_type='color_ignore_orientation'"]),
    # issue 14, item 8: found at the first validation, after an epoch
    'corrupt val image': (_corrupt_val_image, [
        'the val data of the config', 'val_dataloader.dataset: 1 image files'
        ' are unreadable', 'val/000001.jpg', 'cannot skip images']),
}


@pytest.mark.parametrize('case', list(BAD_DATA))
def test_train_stops_before_the_first_iteration_on_bad_data(shapes, tmp_path,
                                                            case):
    """The runner's datasets check their annotations as they load, and
    DataCheckHook the rest before the first iteration: exit status 1, the
    culprit named in one error (no traceback), no iteration, nothing written
    in the work dir but the config and log."""
    change, fragments = BAD_DATA[case]
    root = broken_copy(shapes, str(tmp_path / 'shapes'))
    cfg = tiny_train_config(root)
    change(cfg, root)
    work = str(tmp_path / 'work')
    proc = run_tool(['train.py', write_config(cfg, str(tmp_path / 'c.py')),
                     '--work-dir', work], str(tmp_path), check=False)
    assert proc.returncode == 1
    assert 'error: ' in proc.out and 'Traceback' not in proc.out, proc.out
    for fragment in fragments:
        assert fragment in proc.out, f'{fragment!r} not in:\n{proc.out}'
    assert 'Iter(train)' not in proc.out
    assert not osp.exists(osp.join(work, 'last_checkpoint'))


def test_test_tool_checks_the_test_split_first(shapes, tmp_path):
    """tools/test.py checks ``test_dataloader`` before the first image (the
    runner's own dataset, DataCheckHook)."""
    from helpers.detector import write_tiny_detector
    root = broken_copy(shapes, str(tmp_path / 'shapes'))
    os.remove(osp.join(root, 'val', '000001.jpg'))
    cfg = add_eval_split(tiny_train_config(root), root, 'test')
    _, checkpoint, _ = write_tiny_detector(tmp_path)
    proc = run_tool(['test.py', write_config(cfg, str(tmp_path / 'c.py')),
                     checkpoint, '--work-dir', str(tmp_path / 'work')],
                    str(tmp_path), check=False)
    assert proc.returncode == 1
    assert proc.out.strip().splitlines()[-1].startswith('error: ') or \
        'error: the test data of the config' in proc.out, proc.out[-2000:]
    assert 'test_dataloader.dataset' in proc.out
    assert '000001.jpg' in proc.out


# ------------------------------------------- mistakes in the config itself
CONFIG_MISTAKES = {
    # issue 14, item 5: an epoch trained, then no checkpoint at the save
    'hook argument typo': ('default_hooks.checkpoint.max_keep_ckpt=2', [
        'error: default_hooks.checkpoint.max_keep_ckpt: AtomicCheckpointHook '
        "takes no argument 'max_keep_ckpt' (did you mean max_keep_ckpts?)"]),
    # issue 14, item 10: raw tracebacks from deep inside mmengine
    'value of the wrong type': ('optim_wrapper.optimizer.lr=abc', [
        'error: --cfg-options optim_wrapper.optimizer.lr=abc: expected a '
        "number, like the config's value 0.001"]),
    # mmengine's TypeError named the class, not the key, after the log
    'model argument': ('model.bbox_head.num_clases=3', [
        'error: model.bbox_head.num_clases: DETRHead takes no argument '
        "'num_clases' (did you mean num_classes?); remove or rename it."]),
    'optimizer argument': ('optim_wrapper.optimizer.weight_decy=0.1', [
        'error: optim_wrapper.optimizer.weight_decy: AdamW takes no '
        "argument 'weight_decy' (did you mean weight_decay?)"]),
    'empty subset': ('train_dataloader.dataset.indices=0', [
        'train_dataloader.dataset.indices=0 keeps none of its images. Fix: '
        'indices=None for all']),
    # issue 31, item 5: mmengine's KeyError, a traceback
    'type typo': ('model.type=DETRR', [
        "error: model: 'DETRR' is not a registered type (did you mean "
        'DETR?)']),
    # issue 31, item 5: a ValueError's traceback from the dataset's build
    'option value typo': ('train_dataloader.dataset.invalid_boxes=eror', [
        "error: train_dataloader.dataset.invalid_boxes='eror': choose one "
        "of ('drop', 'error') (did you mean 'error'?)."]),
}


@pytest.mark.parametrize('case', list(CONFIG_MISTAKES))
def test_config_mistakes_stop_train_before_the_first_iteration(
        shapes, tmp_path, case):
    """Found before the runner trains (the first two before the data is
    even read), the key named, one line where it is not a data problem."""
    option, fragments = CONFIG_MISTAKES[case]
    cfg = write_config(tiny_train_config(shapes), str(tmp_path / 'c.py'))
    proc = run_tool(['train.py', cfg, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options', option], str(tmp_path), check=False)
    assert proc.returncode != 0
    for fragment in fragments:
        assert fragment in proc.out, proc.out[-3000:]
    assert 'Iter(train)' not in proc.out
    assert 'Traceback' not in proc.out


def test_hook_arguments_are_checked_against_each_hook_class():
    """mmengine's own CheckpointHook too; a hook without ``**kwargs`` names
    its own arguments; EMAHook's extra arguments are its model's."""
    cfg = tiny_config()
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1,
                                        max_keep=1)
    with pytest.raises(SystemExit, match=r'default_hooks\.checkpoint\.'
                       r"max_keep: CheckpointHook takes no argument 'max_keep"
                       r"' \(did you mean max_keep_ckpts\?\)"):
        cli.check_config_arguments(cfg)
    cfg = tiny_config()
    cfg.custom_hooks = [dict(type='EMAHook', momentum=0.001),
                        dict(type='NonFiniteLossHook', acton='skip')]
    with pytest.raises(SystemExit, match=r"custom_hooks\.1\.acton: "
                       r"NonFiniteLossHook takes no argument 'acton' \(did "
                       r'you mean action\?\)'):
        cli.check_config_arguments(cfg)
    cfg.custom_hooks.pop()
    cli.check_config_arguments(cfg)  # passes


def test_an_argument_typo_inside_a_built_part_names_its_config_key():
    """Found from the registries and the classes' signatures before
    anything is built: a dict a class builds from without a ``type``
    (DINO's ``dn_cfg`` -> CdnQueryGenerator, DETR's ``encoder`` -> its
    encoder type, a layer's ``attn_cfgs``), the class a typed dict names
    (mmcv has a ResNet too, without norm_eval), and a type no registry
    knows (issue 31: mmengine's KeyError, a traceback, before)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'demo', 'dino_r18_shapes.py'))
    cli.check_config_arguments(cfg)  # the config as it is: passes
    for option, message in (
            ('model.dn_cfg.label_noise', r"^error: model\.dn_cfg\.label_noise: "
             r"CdnQueryGenerator takes no argument 'label_noise' \(did you "
             r'mean label_noise_scale\?\)'),
            ('model.backbone.norm_evl', r'^error: model\.backbone\.norm_evl: '
             r"ResNet takes no argument 'norm_evl' \(did you mean "
             r'norm_eval\?\)'),
            ('model.encoder.num_layer', r'^error: model\.encoder\.num_layer: '
             r"DeformableDetrTransformerEncoder takes no argument 'num_layer'"
             r' \(did you mean num_layers\?\)'),
            ('model.decoder.layer_cfg.attn_cfgs.1.num_head',
             r'^error: model\.decoder\.layer_cfg\.attn_cfgs\.1\.num_head: '
             r"DeformableAttention takes no argument 'num_head'")):
        broken = copy.deepcopy(cfg)
        broken.merge_from_dict({option: 1})
        with pytest.raises(SystemExit, match=message):
            cli.check_config_arguments(broken)
    broken = copy.deepcopy(cfg)
    broken.model.type = 'DETRR'
    with pytest.raises(SystemExit, match=(
            r"^error: model: 'DETRR' is not a registered type \(did you mean "
            r'DETR\?\); fix the name')):
        cli.check_config_arguments(broken)


def test_every_config_passes_the_argument_check():
    """No false alarm on the repository's configs (mmdet's types and ours,
    every registry)."""
    import glob

    from mmengine.config import Config
    configs = glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    assert len(configs) > 20
    for path in configs:
        cli.check_config_arguments(Config.fromfile(path))


def test_a_torchvision_backbone_without_torchvision_is_named_before_training():
    """mmdet's R50 recipes initialise the backbone from torchvision://;
    without torchvision mmengine failed at the start of training, after the
    runner's log (the balloon config, whose load_from holds the whole model,
    no longer asks for it)."""
    import sys
    from unittest import mock

    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'detr_r50_8xb2.py'))
    with mock.patch.dict(sys.modules, {'torchvision': None}):
        with pytest.raises(SystemExit, match=(
                r'^error: model\.backbone\.init_cfg loads torchvision://'
                r'resnet50 through torchvision, which does not import here '
                r'\(ModuleNotFoundError: .*\)\. Fix: install the torchvision '
                r'release of your torch, or, when load_from holds the whole '
                r'model \(fine-tuning\), --cfg-options model\.backbone\.'
                r'init_cfg=None')):
            cli.check_pretrained_sources(cfg)
        cfg.model.backbone.init_cfg = [dict(
            type='Pretrained', checkpoint='torchvision://resnet18')]
        with pytest.raises(SystemExit, match=r'^error: model\.backbone\.'
                           r'init_cfg loads torchvision://resnet18'):
            cli.check_pretrained_sources(cfg)  # a list of them
        cfg.model.backbone.init_cfg = None
        cli.check_pretrained_sources(cfg)  # passes
        cli.check_pretrained_sources(Config.fromfile(osp.join(
            CONFIG_DIR, 'balloon', 'detr_r50_8xb2-50e_balloon.py')))


def cli_args(config, **changes):
    """What tools/train.py's parser gives ``cli.load_config``."""
    return SimpleNamespace(**dict(dict(
        config=config, launcher='none', cfg_options=None, work_dir=None,
        local_rank=0), **changes))


def test_command_line_slips_are_one_line_before_anything_runs(tmp_path,
                                                              monkeypatch):
    """Each was a traceback: a config name typo (FileNotFoundError), a
    work dir that is a file (FileExistsError after the runner's start),
    --launcher pytorch without torchrun (KeyError: 'RANK'),
    --auto-scale-lr without auto_scale_lr, an empty --resume (an unset
    variable: mmengine's 'checkpoint file not found: ')."""
    from mmengine.config import Config
    demo = osp.join(CONFIG_DIR, 'demo', 'detr_r18_shapes.py')
    typo = demo.replace('shapes.py', 'shape.py')
    with pytest.raises(SystemExit, match=(
            rf'^error: CONFIG {typo}: no such file \(did you mean {demo}\?\)'
            r'\.$')):
        cli.load_config(cli_args(typo))
    work_file = tmp_path / 'notes.txt'
    work_file.write_text('')
    with pytest.raises(SystemExit, match=f'^error: the work dir {work_file} '
                       'is a file; give --work-dir a folder.$'):
        cli.load_config(cli_args(demo, work_dir=str(work_file)))
    monkeypatch.delenv('RANK', raising=False)
    with pytest.raises(SystemExit, match=(
            r'^error: --launcher pytorch: RANK is not set, so this process '
            r'was not started by torchrun. Fix: bash tools/dist_train.sh')):
        cli.load_config(cli_args(demo, launcher='pytorch'))
    for scale in ({}, None):
        cfg = Config(dict(auto_scale_lr=scale))
        with pytest.raises(SystemExit, match=r'^error: --auto-scale-lr needs '
                           r'auto_scale_lr = dict\(base_batch_size=\.\.\.\)'):
            cli.enable_auto_scale_lr(cfg)
    with pytest.raises(SystemExit, match='^error: --resume got an empty path'):
        cli.set_resume(Config(), '')


def test_no_workers_needs_no_persistent_workers():
    """``train_dataloader.num_workers=0`` (debugging) with the base's
    ``persistent_workers=True``: torch refused it when the runner built the
    loader, after its log; the flag is turned off instead, said in a line."""
    cfg = cli.load_config(cli_args(
        osp.join(CONFIG_DIR, 'detr_r50_8xb2.py'),
        cfg_options={'train_dataloader.num_workers': 0}))
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True  # 2 workers


def test_a_full_disk_ends_in_one_line_saying_what_is_intact(shapes,
                                                            tmp_path):
    """mmengine's raw ``OSError: [Errno 28]`` traceback became one error
    that says nothing of the failed checkpoint was kept, the earlier ones
    are intact, and how to go on (issue 31, item 5)."""
    cfg = tiny_train_config(shapes)
    cfg.custom_imports.imports.append('helpers.disk_full')
    work = str(tmp_path / 'work')
    proc = run_tool(['train.py', write_config(cfg, str(tmp_path / 'c.py')),
                     '--work-dir', work], str(tmp_path), check=False)
    assert proc.returncode == 1
    last = proc.out.strip().splitlines()[-1]
    assert last.startswith(f'error: no space left on the device of {work} '
                           'while saving the checkpoint of step 2: nothing '
                           'of it was kept'), proc.out[-2000:]
    assert 'the checkpoints saved before are intact' in last
    assert 'Traceback' not in proc.out
    assert not [n for n in os.listdir(work) if n.endswith('.pth')]
