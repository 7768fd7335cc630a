"""Allow-list what mmengine writes into checkpoints for ``torch.load``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: the
unpickler accepts only tensors, containers, primitive types and the globals
registered with ``torch.serialization.add_safe_globals``. mmengine 0.10.7
registers nothing, yet every checkpoint its ``Runner`` saves holds the
``MessageHub`` state: ``mmengine.logging.HistoryBuffer`` objects whose
histories are numpy arrays (and numpy scalars), and whose pickled state
carries the buffer's statistic methods, written by pickle as
``getattr(HistoryBuffer, 'min')`` etc. So ``--resume`` (and ``load_from``,
``tools/test.py``) fail with ``Unsupported global: GLOBAL
mmengine.logging.history_buffer.HistoryBuffer``.

:data:`MMENGINE_CHECKPOINT_GLOBALS` allow-lists exactly those globals:

* ``HistoryBuffer``;
* ``numpy.ndarray``, ``numpy.dtype`` and numpy's ``_reconstruct`` and
  ``scalar`` (under both their numpy 2 ``numpy._core`` and numpy 1
  ``numpy.core`` paths, so checkpoints written with either load), and the
  dtype classes of numpy's bool and numeric dtypes (``Float64DType``, ...;
  not the object dtype, whose arrays hold pickled Python objects);
* ``builtins.getattr`` bound to :func:`history_buffer_statistic`, a
  ``getattr`` that returns only ``HistoryBuffer.{min,max,current,mean}``
  and refuses every other attribute.

Anything else, e.g. a pickled custom class, is still refused by torch with an
error naming the offending global. ``weights_only=False`` is never set: it
would let a checkpoint run arbitrary code.
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
_NUMERIC_DTYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                   np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                   np.float64)
_dtype_classes = [type(np.dtype(t)) for t in _NUMERIC_DTYPES
                  if type(np.dtype(t)) is not np.dtype]

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
    """Register :data:`MMENGINE_CHECKPOINT_GLOBALS` with torch (idempotent).

    Called when :mod:`detr_plugin.engine` is imported, so every entry point
    that imports it (``tools/train.py``, ``tools/test.py``, a config's
    ``custom_imports``) resumes and loads mmengine checkpoints with
    ``weights_only=True``.
    """
    torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)
