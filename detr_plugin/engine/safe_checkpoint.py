"""Allow-list what mmengine writes into checkpoints for ``torch.load``.

torch >= 2.6 loads with ``weights_only=True``: only tensors, containers,
primitives and the globals given to ``add_safe_globals``. mmengine 0.10.7
registers none, yet every checkpoint its ``Runner`` saves holds the
``MessageHub`` state: ``HistoryBuffer`` objects with numpy histories, whose
pickle fetches the buffer's statistics as ``getattr(HistoryBuffer, 'min')``.
So ``--resume``, ``load_from`` and ``tools/test.py`` fail with ``Unsupported
global: ... HistoryBuffer``. :data:`MMENGINE_CHECKPOINT_GLOBALS` allows
exactly those globals: ``HistoryBuffer``; numpy's ``ndarray``, ``dtype``,
``_reconstruct`` and ``scalar`` (under the numpy 2 ``numpy._core`` and numpy 1
``numpy.core`` paths) and the dtype classes of the bool and numeric dtypes
(not the object dtype); ``getattr`` bound to
:func:`history_buffer_statistic`. Anything else is still refused by torch,
naming the global; ``weights_only=False`` (arbitrary code) is never set.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

SafeGlobal = Union[Callable, Tuple[Callable, str]]

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


def _under_both_numpy_paths(obj: Callable) -> List[SafeGlobal]:
    """``obj`` of ``numpy.<_core|core>.multiarray`` named by both paths."""
    tail = obj.__module__.split('.')[-1]  # 'multiarray'
    return [(obj, f'numpy.{core}.{tail}.{obj.__name__}')
            for core in ('_core', 'core')]


_reconstruct = np.zeros(1).__reduce__()[0]  # numpy's multiarray._reconstruct
_scalar = np.float64(0).__reduce__()[0]  # numpy's multiarray.scalar
# numpy >= 1.25 builds each dtype as an instance of its class, e.g.
# numpy.dtypes.Float64DType (HistoryBuffer's histories: float64 / int64)
_dtype_classes = {type(np.dtype(t)) for t in '?' + np.typecodes['AllInteger']
                  + np.typecodes['Float']} - {np.dtype}

MMENGINE_CHECKPOINT_GLOBALS: List[SafeGlobal] = [
    HistoryBuffer,
    (history_buffer_statistic, 'builtins.getattr'),
    np.ndarray,
    np.dtype,
    *_under_both_numpy_paths(_reconstruct),
    *_under_both_numpy_paths(_scalar),
    *_dtype_classes,
]


def allow_mmengine_checkpoint_globals() -> None:
    """Register :data:`MMENGINE_CHECKPOINT_GLOBALS` with torch (idempotent;
    done when :mod:`detr_plugin.engine` is imported)."""
    torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)
