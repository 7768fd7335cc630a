"""Checkpoints that survive a kill at any moment, and a resume that finds them.

mmengine 0.10.7's ``CheckpointHook`` writes into the final path, deletes the
oldest kept checkpoint *before* saving and rewrites ``last_checkpoint`` (read
unchecked by ``--resume``) in place: a kill can leave a truncated file, no
checkpoint at all, a wrong ``last_checkpoint``. :class:`AtomicCheckpointHook`
saves through the ``'atomic_local'`` backend (temporary file, fsync, rename),
prunes what is on disk after the save, and repairs the work dir on resume.
"""
import errno
import os
import os.path as osp
from pathlib import Path
from typing import Optional

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ...checkpoint import (STALE_TMP, CheckpointMisfitError,
                           CheckpointWriteError, atomic_write,
                           checkpoint_steps, find_resumable_checkpoint,
                           fit_to_model, is_complete_checkpoint,
                           use_safe_loading)
from ...registry import HOOKS


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` writing with :func:`atomic_write`."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments and files) that a kill
    at any moment cannot break; see the module's docstring."""

    def __init__(self, *args, max_keep_ckpts: int = -1,
                 backend_args: Optional[dict] = None, **kwargs) -> None:
        use_safe_loading()  # before the runner resumes
        if backend_args is None and kwargs.get('file_client_args') is None \
                and '://' not in str(kwargs.get('out_dir')):
            backend_args = dict(backend='atomic_local')
        # mmengine's pruning (before the save) is off; ours follows it
        super().__init__(*args, max_keep_ckpts=-1, backend_args=backend_args,
                         **kwargs)
        self.keep_newest = max_keep_ckpts

    def before_run(self, runner) -> None:
        """On ``--resume`` without a path (the runner's private ``_resume``
        and ``_load_from``: no public accessor), repair the work dir before
        ``load_or_resume`` reads it, on the main process while the others
        wait. Other runs (``tools/test.py`` on a work dir being written, a
        fresh training) leave it alone."""
        super().before_run(runner)
        if getattr(runner, '_resume', False) and \
                getattr(runner, '_load_from', None) is None:
            if is_main_process():
                self._repair(runner.work_dir)
            barrier()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On ``--resume``, refuse a checkpoint that does not fit the model
        (the config changed since): mmengine would load it with a warning,
        then fail inside the optimizer at the first step."""
        if not getattr(runner, '_resume', False):
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        last = Path(runner.work_dir, 'last_checkpoint')
        path = getattr(runner, '_load_from', None) or (  # what mmengine read
            last.read_text().strip() if last.is_file() else
            f'the newest checkpoint of {runner.work_dir}')
        try:
            fit_to_model(checkpoint.get('state_dict', checkpoint), model,
                         path, refuse_misfit=True)
        except CheckpointMisfitError as e:
            raise CheckpointMisfitError(
                f'--resume: {e} (--resume continues the run the checkpoint '
                'is of: use its config, or start a new run from it with '
                'load_from)') from None

    def _repair(self, work_dir: str) -> None:
        # self.out_dir is made final in before_train, after the resume
        ckpt_dir = work_dir if self.out_dir in (None, work_dir) else osp.join(
            self.out_dir, osp.basename(work_dir.rstrip(osp.sep)))
        if not osp.isdir(ckpt_dir):  # nothing saved yet, or remote
            return
        for folder in {ckpt_dir, work_dir}:
            for stale in filter(STALE_TMP.match, os.listdir(folder)):
                os.remove(osp.join(folder, stale))
                print_log(f'removed {osp.join(folder, stale)}, left by a '
                          'killed checkpoint save', logger='current')
        last_file = osp.join(work_dir, 'last_checkpoint')
        recorded = Path(last_file).read_text().strip() \
            if osp.isfile(last_file) else ''
        best = find_resumable_checkpoint(ckpt_dir, self.filename_tmpl)
        if best is None and not recorded:  # mmengine: "checkpoint None"
            print_log(f'--resume: no checkpoint found in {ckpt_dir} (no '
                      'last_checkpoint, no complete iter_*.pth or '
                      'epoch_*.pth): training starts from scratch.',
                      logger='current', level=30)
        if best not in (None, recorded):
            what = ('is missing or empty' if not recorded else
                    f'names the older {recorded}' if is_complete_checkpoint(
                        recorded) else
                    f'names {recorded}, which is missing or incomplete')
            print_log(f'{last_file} {what}; pointing it at the newest '
                      f'complete checkpoint {best} (what --resume will load)',
                      logger='current', level=30)
            atomic_write(best, last_file)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """mmengine's save (atomic through the backend; it then rewrites
        ``last_checkpoint`` in place, which :meth:`_repair` makes good if a
        kill cuts it), then the pruning of the checkpoints on disk up to
        this step (a longer earlier run's later ones are not ours). A full
        disk ends the run in one message saying what is intact."""
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise CheckpointWriteError(
                f'no space left on the device of {self.out_dir} while '
                f'saving the checkpoint of step {step}: nothing of it was '
                'kept (it was written to a temporary file, removed), and the '
                'checkpoints saved before are intact. Fix: free space (or '
                'point --work-dir elsewhere), then resume from the last '
                'one: python tools/train.py CONFIG --resume') from None
        if self.keep_newest <= 0 or not is_main_process():
            return
        backend = self.file_backend
        found = checkpoint_steps(backend.list_dir_or_file(self.out_dir),
                                 self.filename_tmpl)
        for old in sorted(s for s in found if s <= step)[:-self.keep_newest]:
            path = backend.join_path(self.out_dir, found[old])
            # DeepSpeed saves folders
            (backend.rmtree if backend.isdir(path) else backend.remove)(path)
