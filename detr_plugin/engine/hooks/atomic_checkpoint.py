"""Checkpoints that survive a kill at any moment, and a resume that finds them.

mmengine 0.10.7's ``CheckpointHook`` writes into the final path (a kill
leaves it truncated), deletes the oldest kept checkpoint *before* saving (a
kill can leave none) and rewrites ``last_checkpoint``, which ``--resume``
reads unchecked, in place. :class:`AtomicCheckpointHook` saves through that
hook with three changes: the ``'atomic_local'`` backend (write a temporary
file, fsync, rename); its own pruning after the save, of what is on disk (a
kill before the pruning is made up at the next save); and, before a
``--resume`` run reads ``last_checkpoint``, removing the temporary files of
killed saves and pointing it at the newest complete checkpoint.
"""
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ...registry import HOOKS

ATOMIC_BACKEND = 'atomic_local'
# the temporary files of atomic_write for checkpoints and last_checkpoint
_STALE_TMP = re.compile(r'\.(.+\.pth|last_checkpoint)\.[^.]+\.tmp$')


def atomic_write(data: Union[bytes, str], path: str,
                 fsync: bool = True) -> None:
    """Write ``data`` so that ``path`` never holds a part of it: into a
    hidden ``.<name>.*.tmp`` beside it, fsync-ed, then ``os.replace``-d."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.',
                               suffix='.tmp', dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open(path, 'w'); mkstemp: 0o600
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode() if isinstance(data, str) else data)
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
    """mmengine's ``LocalBackend`` writing with :func:`atomic_write`."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip (its central directory
    is written last) with a pickle, or a folder (DeepSpeed's)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith('data.pkl') for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return osp.isdir(path)


def checkpoint_steps(names: Iterable[str], filename_tmpl: Optional[str] = None
                     ) -> Dict[int, str]:
    """``{step: name}`` of the ``names`` that ``filename_tmpl`` makes
    (default ``epoch_{}.pth`` and ``iter_{}.pth``)."""
    head, _, tail = (filename_tmpl or '').partition('{}')
    pattern = re.compile(re.escape(head) + r'(\d+)' + re.escape(tail) + '$'
                         if filename_tmpl else r'(?:epoch|iter)_(\d+)\.pth$')
    matches = ((pattern.match(name), name) for name in names)
    return {int(m.group(1)): name for m, name in matches if m}


def find_resumable_checkpoint(work_dir: str, ckpt_dir: Optional[str] = None,
                              filename_tmpl: Optional[str] = None
                              ) -> Optional[str]:
    """The newest (by modification time, then step) complete checkpoint of
    ``ckpt_dir`` (default ``work_dir``), or ``None``."""
    ckpt_dir = ckpt_dir or work_dir
    paths = [(os.stat(path).st_mtime, step, path) for step, path in (
        (step, osp.join(ckpt_dir, name)) for step, name in checkpoint_steps(
            os.listdir(ckpt_dir), filename_tmpl).items())
        if is_complete_checkpoint(path)]
    return max(paths)[2] if paths else None


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments and files) that a kill
    at any moment cannot break; see the module's docstring."""

    def __init__(self, *args, max_keep_ckpts: int = -1,
                 backend_args: Optional[dict] = None, **kwargs) -> None:
        if backend_args is None and kwargs.get('file_client_args') is None \
                and '://' not in str(kwargs.get('out_dir')):
            backend_args = dict(backend=ATOMIC_BACKEND)
        # mmengine's pruning (before the save) is off; ours follows it
        super().__init__(*args, max_keep_ckpts=-1, backend_args=backend_args,
                         **kwargs)
        self.keep_newest = max_keep_ckpts

    def before_run(self, runner) -> None:
        """On a ``--resume`` run without a path, repair the work dir before
        ``load_or_resume`` reads it: on the main process while the others
        wait, so that all resume from the same checkpoint. Other runs (e.g.
        ``tools/test.py`` on a work dir being written) leave it alone."""
        super().before_run(runner)
        if getattr(runner, '_resume', False) and \
                getattr(runner, '_load_from', None) is None:
            if is_main_process():
                self._repair(runner.work_dir)
            barrier()

    def _repair(self, work_dir: str) -> None:
        ckpt_dir = work_dir if self.out_dir in (None, work_dir) else osp.join(
            self.out_dir, osp.basename(work_dir.rstrip(osp.sep)))
        if not osp.isdir(ckpt_dir):  # nothing saved yet, or remote
            return
        for stale in {*glob.glob(osp.join(glob.escape(ckpt_dir), '.*.tmp')),
                      *glob.glob(osp.join(glob.escape(work_dir), '.*.tmp'))}:
            if _STALE_TMP.match(osp.basename(stale)):
                os.remove(stale)  # a write killed before its rename
                print_log(f'removed {stale}, left by a killed checkpoint '
                          'save', logger='current')
        last_file = osp.join(work_dir, 'last_checkpoint')
        recorded = Path(last_file).read_text().strip() \
            if osp.isfile(last_file) else ''
        best = find_resumable_checkpoint(work_dir, ckpt_dir,
                                         self.filename_tmpl)
        if best is None or best == recorded:
            return
        what = ('is missing or empty' if not recorded else
                f'names the older {recorded}' if is_complete_checkpoint(
                    recorded) else
                f'names {recorded}, which is missing or incomplete')
        print_log(f'{last_file} {what}; pointing it at the newest complete '
                  f'checkpoint {best} (what --resume will load)',
                  logger='current', level=30)
        atomic_write(best, last_file)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """mmengine's save (atomic through the backend; it then rewrites
        ``last_checkpoint`` in place, which :meth:`_repair` makes good if a
        kill cuts it), then the pruning of the checkpoints on disk up to
        this step (a longer earlier run's later ones are not ours)."""
        super()._save_checkpoint_with_step(runner, step, meta)
        if self.keep_newest <= 0 or not is_main_process():
            return
        found = checkpoint_steps(self.file_backend.list_dir_or_file(
            self.out_dir), self.filename_tmpl)
        for old in sorted(s for s in found if s <= step)[:-self.keep_newest]:
            path = self.file_backend.join_path(self.out_dir, found[old])
            if self.file_backend.isdir(path):
                self.file_backend.rmtree(path)  # DeepSpeed's folders
            else:
                self.file_backend.remove(path)
