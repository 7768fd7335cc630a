"""Allow-list what mmengine writes into checkpoints for ``torch.load``.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers,
primitives and the globals given to ``add_safe_globals``. mmengine 0.10.7
registers none, yet every checkpoint its ``Runner`` saves holds the
``MessageHub`` state: ``HistoryBuffer`` objects with numpy histories, whose
pickle fetches the buffer's statistics as ``getattr(HistoryBuffer, 'min')``.
So ``--resume``, ``load_from`` and ``tools/test.py`` fail with ``Unsupported
global: ... HistoryBuffer``. :data:`MMENGINE_CHECKPOINT_GLOBALS` allows
exactly the globals those pickles name; anything else is still refused, and
``weights_only=False`` (arbitrary code) is never set. torch's refusals
suggest it and do not name the file: :func:`safe_load` names the file and
what it refused, and is mmengine's loader of local files (``load_from``,
``--resume``, ``tools/test.py``, mmdet's ``init_detector``).
"""
import os.path as osp
import pickle
import re
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from .hooks.atomic_checkpoint import is_complete_checkpoint

SafeGlobal = Union[Callable, Tuple[Callable, str]]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A file that pickles a global off the allow-list (it could run code).
    """


class CheckpointReadError(OSError):
    """A file that is truncated or not a PyTorch checkpoint."""


# HistoryBuffer's default statistics, pickled with its state
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_statistic(owner: Any, name: str) -> Callable:
    """The only ``getattr`` a checkpoint may call: a HistoryBuffer statistic.

    Raises:
        pickle.UnpicklingError: for any other object or attribute.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint calls getattr({owner!r}, {name!r}); only '
        f'HistoryBuffer.{{{",".join(HISTORY_BUFFER_STATISTICS)}}} are '
        'allowed by detr_plugin.engine.safe_checkpoint')


# numpy's multiarray._reconstruct and multiarray.scalar, each allowed under
# the numpy 2 (numpy._core) and the numpy 1 (numpy.core) path
_MULTIARRAY = (np.zeros(1).__reduce__()[0], np.float64(0).__reduce__()[0])
# numpy >= 1.25 builds each dtype as an instance of its class, e.g.
# numpy.dtypes.Float64DType (HistoryBuffer's histories: float64 / int64);
# the bool and numeric ones, not the object dtype's
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


def safe_load(path: str, what: str = 'a checkpoint',
              allowed: Optional[Sequence[SafeGlobal]] = None,
              map_location='cpu') -> Any:
    """``torch.load(weights_only=True)`` of ``path`` with exactly the
    ``allowed`` globals (None: the process-wide allow-list).

    Raises:
        UnsafeCheckpointError: naming the file and the refused global, when
            the file pickles anything else (it could run code on loading).
        CheckpointReadError: naming the file, when it is truncated or not a
            checkpoint.
    """
    # Exactly `allowed`, and the process-wide allow-list restored
    # afterwards: torch's `safe_globals` context manager would remove on
    # exit even globals that were allowed before it.
    previous = torch.serialization.get_safe_globals()
    if allowed is not None:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(list(allowed))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r'GLOBAL (\S+)', str(error))
        names = ', '.join(g[1] if isinstance(g, tuple) else
                          f'{g.__module__}.{g.__name__}' for g in allowed) \
            if allowed is not None else \
            "mmengine's types, detr_plugin.engine.safe_checkpoint"
        said = re.search(r'WeightsUnpickler error:\s*(.*?)\s*(\n\n|$)',
                         str(error), re.S)
        raise UnsafeCheckpointError(
            f'refusing to load {path} as {what}: ' + (
                f'it pickles {found.group(1)}, which is not on the '
                f'allow-list ({names}); unpickling it could run arbitrary '
                'code.' if found else 'its pickle holds what a safe load '
                f'refuses ({said.group(1) if said else error}): not a '
                'PyTorch checkpoint, or one that could run code.') +
            ' Use checkpoints saved by mmengine, or converted from a '
            'trusted release by tools/convert_checkpoint.py.') from None
    except (RuntimeError, EOFError, KeyError, ValueError) as error:
        if is_complete_checkpoint(path):
            raise  # another problem than the file (e.g. map_location)
        said = str(error).split('. ')[0]
        raise CheckpointReadError(
            f'cannot load {path} as {what}: the file is truncated or not a '
            f'PyTorch checkpoint ({type(error).__name__}'
            f'{": " + said if said else ""}). Fix: copy it again, or use '
            'another checkpoint (e.g. an earlier one of its work dir).'
        ) from None
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(previous)


def load_from_local(filename: str, map_location=None) -> Any:
    """mmengine's loader of local checkpoint files, by :func:`safe_load`
    (registered for them when :mod:`detr_plugin.engine` is imported)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    return safe_load(filename, map_location=map_location)


def allow_mmengine_checkpoint_globals() -> None:
    """Register :data:`MMENGINE_CHECKPOINT_GLOBALS` with torch and
    :func:`load_from_local` with mmengine (idempotent; done when
    :mod:`detr_plugin.engine` is imported)."""
    torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)
    CheckpointLoader.register_scheme('', load_from_local, force=True)
