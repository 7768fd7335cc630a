"""Checkpoints that survive a kill at any moment, and a resume that finds them.

What mmengine 0.10.7 does, and what can go wrong when the process dies:

* ``save_checkpoint`` pickles into memory, then ``LocalBackend.put`` opens
  the *final* path with ``'wb'`` and writes: killed during the write, a
  truncated ``iter_N.pth`` lies in the work dir (and a re-saved name
  truncates the good file first);
* ``CheckpointHook`` with ``max_keep_ckpts`` *deletes the oldest kept
  checkpoint before* saving the new one: killed while saving, the work dir
  may hold no complete checkpoint at all;
* ``work_dir/last_checkpoint`` (the path ``--resume`` reads, through
  ``find_latest_checkpoint``, with no check of the file) is rewritten in
  place after the save: killed in between, it names an older checkpoint, a
  deleted one, or is empty.

:class:`AtomicLocalBackend` (file backend ``'atomic_local'``) writes to a
temporary file in the same folder, ``fsync``\\ s it and ``os.replace``\\ s
it onto the final path, so a checkpoint path holds either the old complete
file or the new complete file. :class:`AtomicCheckpointHook` is mmengine's
``CheckpointHook`` using it, saving first, then updating ``last_checkpoint``
atomically, then deleting old checkpoints; and before the run (before
mmengine's ``load_or_resume`` reads ``last_checkpoint``) it points
``last_checkpoint`` at the newest *complete* checkpoint of the work dir if it
names a missing, truncated or older one (:func:`find_resumable_checkpoint`).
"""
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import Optional, Union

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..registry import HOOKS

ATOMIC_BACKEND = 'atomic_local'
LAST_CHECKPOINT = 'last_checkpoint'


# the temporary files atomic_write makes for checkpoints and last_checkpoint
_STALE_TMP = re.compile(r'\.(.+\.pth|last_checkpoint)\.[^.]+\.tmp$')


def _file_mode() -> int:
    """The mode ``open(path, 'w')`` gives a new file: 0o666 minus umask
    (``mkstemp`` makes 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(data: Union[bytes, str], path: str,
                 fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` never holds a part of it.

    The bytes go to a hidden temporary file in ``path``'s folder (same file
    system), are flushed and ``fsync``-ed, and the file is renamed onto
    ``path`` with ``os.replace`` (atomic on POSIX and Windows). A kill at any
    moment leaves ``path`` as it was or complete, and at worst a
    ``.<name>.tmp*`` file behind.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode('utf-8')
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.',
                               suffix='.tmp', dir=folder)
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    if fsync and hasattr(os, 'O_DIRECTORY'):  # make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put``/``put_text`` are
    :func:`atomic_write`. Select it with
    ``backend_args=dict(backend='atomic_local')``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive with
    its central directory, which is written last, and a pickle); a folder
    (a DeepSpeed checkpoint) counts as complete."""
    if osp.isdir(path):
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith('data.pkl') for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _template_regex(filename_tmpl: str) -> re.Pattern:
    """``'iter_{}.pth'`` -> a regex matching ``iter_<int>.pth``."""
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile(re.escape(head) + r'(\d+)' + re.escape(tail) + '$')


def find_resumable_checkpoint(work_dir: str, ckpt_dir: Optional[str] = None,
                              filename_tmpl: Optional[str] = None
                              ) -> Optional[str]:
    """The newest complete checkpoint to resume from, or ``None``.

    The file named by ``work_dir/last_checkpoint`` if it is complete and no
    complete checkpoint in ``ckpt_dir`` is newer; else the newest complete
    ``filename_tmpl`` file of ``ckpt_dir`` (by modification time, then by
    its number). Truncated files and temporary files are never returned.

    Args:
        work_dir: where ``last_checkpoint`` is.
        ckpt_dir: where the checkpoints are (default ``work_dir``).
        filename_tmpl: the checkpoint names, ``'{}'`` standing for the epoch
            or iteration (default: ``epoch_{}.pth`` and ``iter_{}.pth``).
    """
    ckpt_dir = ckpt_dir or work_dir
    recorded = None
    last_file = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(last_file):
        with open(last_file) as f:
            recorded = f.read().strip() or None
    pattern = _template_regex(filename_tmpl) if filename_tmpl else \
        re.compile(r'(?:epoch|iter)_(\d+)\.pth$')
    candidates = []
    for path in glob.glob(osp.join(glob.escape(ckpt_dir), '*')):
        match = pattern.match(osp.basename(path))
        if match and is_complete_checkpoint(path):
            candidates.append((os.stat(path).st_mtime, int(match.group(1)),
                               path))
    newest = max(candidates)[2] if candidates else None
    if recorded and osp.exists(recorded) and \
            is_complete_checkpoint(recorded):
        if newest is None or os.stat(recorded).st_mtime >= \
                os.stat(newest).st_mtime:
            return recorded
    return newest


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that a kill at any moment cannot break.

    Same arguments and files as ``CheckpointHook``; the differences:

    * a local ``out_dir`` is written through :class:`AtomicLocalBackend`
      (unless ``backend_args`` is given): no truncated checkpoint files;
    * each save is: write the checkpoint, then ``last_checkpoint``
      (atomically), then delete checkpoints beyond ``max_keep_ckpts`` --
      mmengine deletes first, so a kill while saving could leave none;
    * ``before_run`` (which mmengine calls before ``load_or_resume``) points
      ``last_checkpoint`` at :func:`find_resumable_checkpoint` if it names a
      missing, truncated or older checkpoint, with a warning: ``--resume``
      then picks the newest complete checkpoint. It also deletes the
      temporary files of saves that were killed.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        if backend_args is None and kwargs.get('file_client_args') is None \
                and (out_dir is None or '://' not in str(out_dir)):
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _checkpoint_dir(self, runner) -> str:
        """``out_dir`` as ``before_train`` will set it."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(self.out_dir,
                        osp.basename(runner.work_dir.rstrip(osp.sep)))

    def before_run(self, runner) -> None:
        """When the run resumes automatically (``--resume`` without a path),
        repair ``work_dir/last_checkpoint`` before it is read: on the main
        process, while every other process waits at a barrier, so all of
        them resume from the same checkpoint. Runs that do not resume (e.g.
        ``tools/test.py`` on a work dir a training is still writing) leave
        the work dir alone."""
        super().before_run(runner)
        if not getattr(runner, '_resume', False) or \
                getattr(runner, '_load_from', None) is not None:
            return
        if is_main_process():
            self._repair(runner)
        barrier()

    def _repair(self, runner) -> None:
        """Delete the temporary files of killed saves and point
        ``last_checkpoint`` at the newest complete checkpoint."""
        ckpt_dir = self._checkpoint_dir(runner)
        if '://' in ckpt_dir or not osp.isdir(ckpt_dir):
            return
        stale_files = [
            p for folder in {ckpt_dir, runner.work_dir}
            for p in glob.glob(osp.join(glob.escape(folder), '.*.tmp'))
            if _STALE_TMP.match(osp.basename(p))]
        for stale in stale_files:
            os.remove(stale)  # a write killed before its rename
            print_log(f'removed {stale}, left by a killed checkpoint save',
                      logger='current')
        last_file = osp.join(runner.work_dir, LAST_CHECKPOINT)
        recorded = ''
        if osp.isfile(last_file):
            with open(last_file) as f:
                recorded = f.read().strip()
        best = find_resumable_checkpoint(runner.work_dir, ckpt_dir,
                                         self.filename_tmpl)
        if best is None or best == recorded:
            return
        what = (f'names {recorded}, which is missing or incomplete'
                if recorded and not (osp.exists(recorded)
                                     and is_complete_checkpoint(recorded))
                else f'names the older {recorded}' if recorded
                else 'is missing or empty')
        print_log(
            f'{last_file} {what}; pointing it at the newest complete '
            f'checkpoint {best} (what --resume will load)',
            logger='current', level=30)
        atomic_write(best, last_file)

    def _save_checkpoint_with_step(self, runner, step, meta):
        """Save, record ``last_checkpoint``, then delete the old ones."""
        to_remove = []
        if self.max_keep_ckpts > 0 and not (
                len(self.keep_ckpt_ids) > 0
                and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            # saved in the checkpoint's message hub, as mmengine does
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        atomic_write(self.last_ckpt,
                     osp.join(runner.work_dir, LAST_CHECKPOINT))
        for old_step in to_remove:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)
