"""Box math in float32 under any autocast (fp16 or bf16).

Mixed precision (``--amp``) runs linear layers, convolutions and attention in
fp16 (CUDA, with a loss scaler) or bf16 (CPUs with native bf16). A DETR's box
math does not survive either:

* fp16's largest value is 65,504 and its step below 1 is 2^-11: a reference
  point's sigmoid above 0.9995 rounds to 1, and ``inverse_sigmoid``'s gradient
  ``1 / (x (1 - x))`` overflows (for a reference at 0.9985 Conditional DETR's
  and Deformable DETR's gradients were inf at every loss scale);
* bf16 keeps 8 significant bits: ``inverse_sigmoid(reference)`` near 2 has a
  step of 2^-6, so a layer's refinement smaller than that is rounded away.

So the references' sigmoid and its inverse, the box refinement, the
proposals, the matching costs, the deformable-attention sampling and the box
and classification losses run in float32 through :func:`float32_box_math`;
the layers that produce box deltas and logits stay in the autocast dtype.
"""
import functools
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor


@contextmanager
def autocast_off():
    """Disable every autocast that is on (CUDA's, the CPU's)."""
    with ExitStack() as stack:
        for device in ('cuda', 'cpu'):
            if torch.is_autocast_enabled(device):
                stack.enter_context(torch.autocast(device, enabled=False))
        yield


def fp16_autocast() -> bool:
    """Whether an fp16 autocast is on (CUDA's or the CPU's): then a loss
    scaler steps the optimizer (``AmpOptimWrapper``,
    ``CPUAutocastOptimWrapper(dtype='float16')``) and skips a step whose
    gradients overflow."""
    return any(torch.is_autocast_enabled(device) and
               torch.get_autocast_dtype(device) == torch.float16
               for device in ('cuda', 'cpu'))


def as_float32(value):
    """``value`` with floating-point tensors (also inside lists and tuples)
    cast to float32; anything else unchanged."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(as_float32(v) for v in value)
    return value


def float32_box_math(fn):
    """Decorator: run ``fn`` with autocast off and its floating-point tensor
    arguments in float32 (its results are then float32 too)."""

    @functools.wraps(fn)
    def in_float32(*args, **kwargs):
        with autocast_off():
            return fn(*as_float32(args),
                      **{k: as_float32(v) for k, v in kwargs.items()})
    return in_float32


@float32_box_math
def sigmoid_references(logits: Tensor) -> Tensor:
    """Normalized reference points ``sigmoid(logits)`` ``(..., R)``, in
    float32."""
    return logits.sigmoid()
