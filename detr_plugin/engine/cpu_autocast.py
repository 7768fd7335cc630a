"""Mixed precision on the CPU: the forward under ``torch.autocast('cpu')``.

mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator, so
``tools/train.py --amp`` selects this wrapper when CUDA is unavailable.
bfloat16 keeps float32's exponent range, so no loss scaling is needed; the
DETR head casts logits and boxes to float32 before matching and losses.
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from ..registry import OPTIM_WRAPPERS


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX).
    Without, bf16 autocast is emulated: a DETR R50 training step took 96 s
    against 4 s in fp32 on an AVX2-only AMD EPYC."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` enables CPU autocast.

    mmengine's ``BaseModel.train_step`` runs the data preprocessor and the
    loss forward inside ``optim_context``; the backward pass and the
    optimizer step run outside it, on float32 parameters and gradients.

    Args:
        dtype: the autocast dtype, ``'bfloat16'`` (default) or
            ``'float16'`` (slow on most CPUs, and unscaled).
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) \
            else dtype
        if self.cast_dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'CPU autocast dtype must be bfloat16 or '
                             f'float16, got {dtype}')

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` + autocast."""
        with super().optim_context(model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
