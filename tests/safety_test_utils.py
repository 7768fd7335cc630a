"""Fixtures of the bad-data and fault tests: a tiny shapes set, broken copies
of it, a tiny training config, subprocess runs of ``tools/*.py``, and (for
the kill tests, imported by the training subprocess through
``custom_imports``) save stalls that stop a checkpoint write half-way.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from detr_test_utils import REPO_ROOT

SHAPES_CLASSES = ('circle', 'square', 'triangle')
# the training subprocesses stall a checkpoint save when these are set
STALL_FILE_ENV = 'DETR_TEST_STALL_SAVE_OF'  # e.g. 'iter_4.pth'
STALL_MARKER_ENV = 'DETR_TEST_STALL_MARKER'  # touched when stalled


def make_shapes(root: str, num_train: int = 6, num_val: int = 2) -> str:
    """The synthetic shapes set (64 x 64, 3 classes) at ``root``: every
    training image has at least one box (``empty_fraction=0``)."""
    from detr_plugin.datasets import generate_shapes_dataset
    generate_shapes_dataset(root, num_train=num_train, num_val=num_val,
                            image_size=(64, 64), empty_fraction=0.)
    return root


def broken_copy(src: str, dst: str,
                edit_json: Optional[Callable[[dict], None]] = None,
                split: str = 'train') -> str:
    """Copy the set at ``src`` to ``dst`` and let ``edit_json`` change the
    parsed ``annotations/instances_{split}.json`` in place."""
    shutil.copytree(src, dst)
    if edit_json is not None:
        path = ann_path(dst, split)
        with open(path) as f:
            data = json.load(f)
        edit_json(data)
        with open(path, 'w') as f:
            json.dump(data, f)  # NaN / Infinity written as JSON5 literals
    return dst


def ann_path(root: str, split: str = 'train') -> str:
    return osp.join(root, 'annotations', f'instances_{split}.json')


def truncate_file(path: str, keep: float = 0.6) -> None:
    """Cut the file to ``keep`` of its bytes (a partly copied download)."""
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def dataset_overrides(root: str, classes=SHAPES_CLASSES,
                      split: str = 'train', **dataset) -> dict:
    """``merge_from_dict`` overrides pointing ``{split}_dataloader`` at the
    set in ``root`` (extra ``dataset`` keys merged in)."""
    return {f'{split}_dataloader': dict(dataset=dict(
        dict(data_root=root.rstrip('/') + '/',
             ann_file=f'annotations/instances_{split}.json',
             data_prefix=dict(img=f'{split}/'),
             metainfo=dict(classes=tuple(classes))), **dataset))}


def tiny_train_config(root: str, classes=SHAPES_CLASSES, max_iters: int = 4,
                      stalls: bool = False, **overrides):
    """A :func:`tiny_config` model trained for ``max_iters`` iterations of
    one image (no shuffling: iteration ``k`` reads image ``k``) on ``root``,
    a checkpoint every 2 iterations through :class:`AtomicCheckpointHook`,
    :class:`NonFiniteLossHook` on, no validation. ``stalls``: import this
    module in the run (for :func:`run_until_stalled`)."""
    from detr_test_utils import tiny_config
    cfg = tiny_config(num_classes=len(classes))
    pipeline = [dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')]
    cfg.merge_from_dict(dict(
        custom_imports=dict(imports=[
            'detr_plugin', 'detr_plugin.engine', 'detr_plugin.safety'] +
            (['safety_test_utils'] if stalls else []),
            allow_failed_imports=False),
        train_dataloader=dict(
            batch_size=1, num_workers=0, persistent_workers=False,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='CheckedCocoDataset', pipeline=pipeline))))
    cfg.merge_from_dict(dataset_overrides(root, classes))
    cfg.train_dataloader.batch_sampler = None
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=1000)
    cfg.param_scheduler = []
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.default_hooks.checkpoint = dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=2)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.nonfinite_loss = dict(type='NonFiniteLossHook')
    cfg.log_processor = dict(type='LogProcessor', window_size=1,
                             by_epoch=False)
    cfg.randomness = dict(seed=0)
    cfg.merge_from_dict(overrides)
    return cfg


def write_config(cfg, path: str) -> str:
    cfg.dump(path)
    return path


def tool_env(**extra) -> dict:
    tests_dir = osp.join(REPO_ROOT, 'tests')
    return dict(os.environ, OMP_NUM_THREADS='1',
                PYTHONPATH=os.pathsep.join([REPO_ROOT, tests_dir]), **extra)


def run_tool(args: Sequence[str], cwd: str, timeout: int = 300,
             **env) -> subprocess.CompletedProcess:
    """``python tools/<args[0]> args[1:]``; the result whatever its status
    (``.out``: stdout + stderr)."""
    proc = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', args[0]), *args[1:]],
        cwd=cwd, env=tool_env(**env), capture_output=True, text=True,
        timeout=timeout)
    proc.out = proc.stdout + proc.stderr
    return proc


def run_until_stalled(args: Sequence[str], cwd: str, stall_file: str,
                      timeout: float = 300) -> str:
    """Start ``tools/<args[0]>`` with a save of ``stall_file`` stalled
    half-way (see :func:`_install_save_stalls`), wait until it stalls, kill
    it with SIGKILL; return its output."""
    marker = osp.join(cwd, f'stalled-{time.monotonic_ns()}')
    log = open(osp.join(cwd, f'{osp.basename(marker)}.log'), 'w+')
    proc = subprocess.Popen(
        [sys.executable, osp.join(REPO_ROOT, 'tools', args[0]), *args[1:]],
        cwd=cwd, env=tool_env(**{STALL_FILE_ENV: stall_file,
                                 STALL_MARKER_ENV: marker}),
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not osp.exists(marker):
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(
                    f'{args} ended (status {proc.returncode}) before '
                    f'stalling:\n{log.read()[-5000:]}')
            if time.monotonic() > deadline:
                raise AssertionError(f'{args} did not stall in {timeout} s')
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    log.seek(0)
    return log.read()


def _stall(path: str) -> None:
    """Signal the test and wait to be killed."""
    with open(os.environ[STALL_MARKER_ENV], 'w') as f:
        f.write(path)
    time.sleep(3600)


def _install_save_stalls() -> None:
    """In a training subprocess (this module imported by the config's
    ``custom_imports``) with ``DETR_TEST_STALL_SAVE_OF`` set:

    * ``AtomicLocalBackend`` (``'atomic_local'``): the ``os.fsync`` of the
      temporary file of that checkpoint stalls -- all bytes written, not yet
      renamed onto the checkpoint's path;
    * ``backend_args=dict(backend='stall_local')``: mmengine's
      ``LocalBackend.put`` (open the final path, write) stalls after writing
      half of that checkpoint's bytes.
    """
    from mmengine.fileio import LocalBackend, register_backend
    target = os.environ.get(STALL_FILE_ENV)
    if not target:
        return

    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f'/proc/self/fd/{fd}') if isinstance(fd, int) \
            else ''
        if osp.basename(path).startswith(f'.{target}.'):
            _stall(path)
        return real_fsync(fd)

    os.fsync = fsync

    class StallLocalBackend(LocalBackend):

        def put(self, obj: bytes, filepath) -> None:
            if osp.basename(str(filepath)) != target:
                return super().put(obj, filepath)
            with open(filepath, 'wb') as f:  # as LocalBackend.put does
                f.write(obj[:len(obj) // 2])
                f.flush()
            _stall(str(filepath))

    register_backend('stall_local', StallLocalBackend, force=True)


_install_save_stalls()
