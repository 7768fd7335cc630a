"""Count what would make a GPU wait for the host (or the host for the GPU).

On a GPU, ``torch.cuda.set_sync_debug_mode('warn')`` warns at every
synchronizing call (:func:`count_cuda_syncs`). A CPU has nothing to wait
for, so :class:`HostSyncCounter` counts the calls that synchronize when the
tensors are on a GPU: reading values on the host (``item``, ``tolist``,
``numpy``, ``cpu``, ``bool``/``int``/``float`` of a tensor), ops whose output
size depends on the values (``nonzero``, boolean indexing, ``unique``,
``bincount``, ``masked_select``, ``repeat_interleave`` without
``output_size``), and tensors made from host data (``torch.tensor``,
``as_tensor``, ``new_tensor`` and ``from_numpy`` of Python or numpy values: a
pageable host-to-device copy). It sees what Python calls, not what ATen does
inside an op.
"""
import warnings
from collections import Counter
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy,
         torch.Tensor.cpu, torch.Tensor.__bool__, torch.Tensor.__int__,
         torch.Tensor.__float__, torch.Tensor.__index__}
DATA_SIZED = {torch.nonzero, torch.Tensor.nonzero, torch.unique,
              torch.Tensor.unique, torch.bincount, torch.Tensor.bincount,
              torch.masked_select, torch.Tensor.masked_select,
              torch.argwhere, torch.equal, torch.Tensor.equal,
              torch.allclose, torch.Tensor.allclose}
FROM_HOST = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor,
             torch.from_numpy}


def _is_bool_tensor(index) -> bool:
    if isinstance(index, (tuple, list)):
        return any(_is_bool_tensor(i) for i in index)
    return isinstance(index, torch.Tensor) and index.dtype == torch.bool


class HostSyncCounter(TorchFunctionMode):
    """``with HostSyncCounter() as syncs: ...``; then ``syncs.total`` and
    ``syncs.by_call`` (a ``Counter`` of call names)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_call = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_call.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', str(func))
        if func in READS or func in DATA_SIZED:
            self.by_call[name] += 1
        elif func in FROM_HOST and args and \
                not isinstance(args[-1 if func is torch.Tensor.new_tensor
                                    else 0], torch.Tensor):
            self.by_call[name] += 1
        elif func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) \
                and len(args) > 1 and _is_bool_tensor(args[1]):
            self.by_call[f'{name}[bool]'] += 1
        elif func in (torch.repeat_interleave,
                      torch.Tensor.repeat_interleave) and \
                isinstance(args[1] if len(args) > 1 else
                           kwargs.get('repeats'), torch.Tensor) and \
                kwargs.get('output_size') is None:
            self.by_call[name] += 1
        return func(*args, **kwargs)


@contextmanager
def count_cuda_syncs():
    """On a GPU: yields a list that collects one warning message per
    synchronizing call (``torch.cuda.set_sync_debug_mode``)."""
    found = []
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(0)
    found.extend(str(w.message) for w in caught
                 if 'synchronizing' in str(w.message).lower())
