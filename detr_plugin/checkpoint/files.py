"""Checkpoint files: loaded without running code, whatever their scheme, and
written so that a kill at any moment leaves a complete one.

torch >= 2.6 loads with ``weights_only=True``: tensors, containers,
primitives and the globals given to ``add_safe_globals``. mmengine 0.10.7
registers none, yet its checkpoints hold the ``MessageHub`` state
(``HistoryBuffer`` objects with numpy histories, whose pickle fetches the
statistics as ``getattr(HistoryBuffer, 'min')``), and its loaders of URLs
(``http(s)://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``) go
through ``torch.hub.load_state_dict_from_url``, which unpickles with
``weights_only=False``: a downloaded (or hub-cached) file ran its code.
:func:`use_safe_loading` makes every scheme of mmengine's
``CheckpointLoader`` fetch the file and read it with :func:`safe_load`:
``weights_only=True`` with exactly :data:`MMENGINE_CHECKPOINT_GLOBALS`.
"""
import io
import os
import os.path as osp
import pickle
import re
import uuid
import zipfile
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Union
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

SafeGlobal = Union[Callable, tuple]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file that pickles a global off the allow-list (it could run code).
    """


class CheckpointReadError(OSError):
    """A file that is truncated, not a PyTorch checkpoint or not
    reachable."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (the message says what is
    intact)."""


# HistoryBuffer's default statistics, pickled with its state
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_statistic(owner: Any, name: str) -> Callable:
    """The only ``getattr`` a checkpoint may call: a HistoryBuffer statistic.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint calls getattr({owner!r}, {name!r}); only '
        f'HistoryBuffer.{{{",".join(HISTORY_BUFFER_STATISTICS)}}} are '
        'allowed by detr_plugin.checkpoint')


# numpy's multiarray._reconstruct and multiarray.scalar, each allowed under
# the numpy 2 (numpy._core) and the numpy 1 (numpy.core) path
_MULTIARRAY = (np.zeros(1).__reduce__()[0], np.float64(0).__reduce__()[0])
# numpy >= 1.25 builds each dtype as an instance of its class (the bool and
# numeric ones, not the object dtype's)
_DTYPE_CLASSES = {type(np.dtype(t)) for t in '?' + np.typecodes['AllInteger']
                  + np.typecodes['Float']} - {np.dtype}

MMENGINE_CHECKPOINT_GLOBALS = [
    HistoryBuffer,
    (history_buffer_statistic, 'builtins.getattr'),
    np.ndarray,
    np.dtype,
    *[(f, f'numpy.{core}.multiarray.{f.__name__}') for f in _MULTIARRAY
      for core in ('_core', 'core')],
    *_DTYPE_CLASSES,
]


def _global_name(allowed: SafeGlobal) -> str:
    """``'argparse.Namespace'``: how pickle names an allowed global."""
    if isinstance(allowed, tuple):
        return allowed[1]
    return f'{allowed.__module__}.{allowed.__qualname__}'


def safe_load(source, what: str = 'a checkpoint',
              allowed: Optional[Sequence[SafeGlobal]] = None,
              map_location='cpu', name: Optional[str] = None) -> Any:
    """``torch.load(weights_only=True)`` of a path or file object with
    exactly the ``allowed`` globals (None: :data:`MMENGINE_CHECKPOINT_
    GLOBALS`); ``name``: how messages name a file object.

    Raises:
        UnsafeCheckpointError: naming the file and the refused global.
        CheckpointReadError: naming the file, when it is truncated or not a
            checkpoint.
    """
    name = name or str(source)
    previous = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(
        list(MMENGINE_CHECKPOINT_GLOBALS if allowed is None else allowed))
    try:
        return torch.load(source, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r'GLOBAL (\S+)', str(error))
        said = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(\n\n|$)',
                         str(error), re.S)
        raise UnsafeCheckpointError(
            f'refusing to load {name} as {what}: ' + (
                f'it pickles {found.group(1)}, which is not on the '
                'allow-list (' + ("mmengine's types, detr_plugin.checkpoint"
                                  if allowed is None else ', '.join(
                                      _global_name(g) for g in allowed)) +
                '); unpickling it could run arbitrary code.' if found else
                'its pickle holds what a safe load refuses ('
                f'{said.group(1) if said else error}): not a PyTorch '
                'checkpoint, or one that could run code.') +
            ' Use checkpoints saved by mmengine, or converted from a '
            'trusted release by tools/convert_checkpoint.py.') from None
    except (RuntimeError, EOFError, KeyError, ValueError) as error:
        if isinstance(source, str) and is_complete_checkpoint(source):
            raise  # another problem than the file (e.g. map_location)
        said = str(error).split('. ')[0]
        raise CheckpointReadError(
            f'cannot load {name} as {what}: the file is truncated or not a '
            f'PyTorch checkpoint ({type(error).__name__}'
            f'{": " + said if said else ""}). Fix: copy it again, or use '
            'another checkpoint (e.g. an earlier one of its work dir).'
        ) from None
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(previous)


# ------------------------------------------------- mmengine's URL schemes
def download(url: str, model_dir: Optional[str] = None) -> str:
    """The local copy of ``url`` in torch.hub's cache (``$TORCH_HOME/hub/
    checkpoints``, as mmengine's loader keeps it), downloaded when absent
    (by the first process of a machine; the others wait)."""
    from mmengine.dist import barrier, get_dist_info
    from torch.hub import download_url_to_file, get_dir
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    path = osp.join(model_dir, osp.basename(urlparse(url).path))
    if get_dist_info()[0] == 0 and not osp.exists(path):
        os.makedirs(model_dir, exist_ok=True)
        try:
            download_url_to_file(url, path, progress=False)
        except (URLError, OSError) as e:
            raise CheckpointReadError(
                f'cannot download the checkpoint {url} '
                f'({getattr(e, "reason", e)}). Fix: download it where there '
                f'is network and give its local path instead (load_from, or '
                f'the checkpoint argument), or place it at {path}.') from None
    barrier()
    return path


def load_from_url(url: str, map_location=None, model_dir=None) -> Any:
    """``http(s)://``: the downloaded file, read by :func:`safe_load`."""
    path = download(url, model_dir)
    return safe_load(path, f'the checkpoint of {url}',
                     map_location=map_location)


def load_from_local(filename: str, map_location=None) -> Any:
    """A local file, read by :func:`safe_load`."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    return safe_load(filename, map_location=map_location)


def _named_url(filename: str, map_location=None) -> Any:
    """``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
    ``openmmlab://``, ``mmcls://``: the name looked up in mmengine's tables,
    then :func:`load_from_url` (or, for an open-mmlab file in mmengine's
    home, :func:`load_from_local`)."""
    from mmengine.runner import checkpoint as mm
    scheme, name = filename.split('://', 1)
    if scheme in ('torchvision', 'modelzoo'):
        return load_from_url(mm.get_torchvision_models()[name], map_location)
    if scheme == 'mmcls':
        return mm._process_mmcls_checkpoint(load_from_url(
            mm.get_mmcls_models()[name], map_location))
    name = mm.get_deprecated_model_names().get(name, name)
    url = mm.get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_from_url(url, map_location)
    return load_from_local(osp.join(mm._get_mmengine_home(), url),
                           map_location)


def _from_backend(filename: str, map_location=None) -> Any:
    """``s3://``, ``petrel://``: the bytes from mmengine's file backend."""
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(filename, backend_args=dict(backend='petrel'))
    return safe_load(io.BytesIO(backend.get(filename)), name=filename,
                     map_location=map_location)


SCHEMES: Dict[Union[str, tuple], Callable] = {
    '': load_from_local,
    ('http://', 'https://'): load_from_url,
    ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://',
     'mmcls://'): _named_url,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): _from_backend,
}


def use_safe_loading() -> None:
    """Make mmengine's ``CheckpointLoader`` (``load_from``, ``--resume``,
    ``init_cfg``'s ``Pretrained``, mmdet's ``init_detector``) read every
    scheme with :func:`safe_load` (``pavi://`` is refused: its loader has
    no safe form). A global of mmengine's, set by the tools, the inferencer
    and the checkpoint hooks; idempotent."""
    from mmengine.runner import CheckpointLoader

    def refuse(filename, map_location=None):
        raise UnsafeCheckpointError(
            f'{filename}: pavi:// checkpoints are read by mmengine with '
            'torch.load(weights_only=False), which can run code; download '
            'the file and give its local path.')
    for prefixes, loader in list(SCHEMES.items()) + [('pavi://', refuse)]:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)


# ------------------------------------------------ writing, and resuming
# the temporary files of atomic_write for checkpoints and last_checkpoint
STALE_TMP = re.compile(r'\.(.+\.pth|last_checkpoint)\.[^.]+\.tmp$')


def atomic_write(data: Union[bytes, str], path: str) -> None:
    """Write ``data`` so that ``path`` never holds a part of it: into a
    hidden ``.<name>.<random>.tmp`` beside it, fsync-ed, then
    ``os.replace``-d (neither the standard library nor mmengine has it)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex}.tmp')
    try:
        with open(tmp, 'xb') as f:  # mode 0o666 & ~umask, as open(path)
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, 'O_DIRECTORY'):  # make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
    pattern = re.compile(re.escape(filename_tmpl).replace(r'\{\}', r'(\d+)')
                         if filename_tmpl else r'(?:epoch|iter)_(\d+)\.pth')
    return {int(m.group(1)): name for name in names
            for m in [pattern.fullmatch(name)] if m}


def find_resumable_checkpoint(ckpt_dir: str,
                              filename_tmpl: Optional[str] = None
                              ) -> Optional[str]:
    """The newest (by modification time, then step) complete checkpoint in
    ``ckpt_dir``, or ``None``."""
    found = [(os.stat(path).st_mtime, step, path)
             for step, name in checkpoint_steps(os.listdir(ckpt_dir),
                                                filename_tmpl).items()
             for path in [osp.join(ckpt_dir, name)]
             if is_complete_checkpoint(path)]
    return max(found)[2] if found else None
