"""Mixed precision on the CPU: the forward under ``torch.autocast('cpu')``.

mmengine's ``AmpOptimWrapper`` autocasts on an accelerator only (it asserts
one), so ``tools/train.py --amp`` selects this wrapper when CUDA is
unavailable. bf16 keeps float32's exponent range and needs no loss scaling;
fp16 (``--amp-dtype float16``: how CI checks on a CPU what a GPU's fp16
``--amp`` computes) gets a dynamic loss scaler, as ``AmpOptimWrapper`` does
on a GPU. The DETRs' box math runs in float32 either way
(``detr_plugin/models/box_precision.py``).
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from ..registry import OPTIM_WRAPPERS


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX).
    Without, bf16 autocast is emulated: a DETR R50 training step took 96 s
    against 4 s in fp32 on an AVX2-only AMD EPYC."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` for a model on the CPU.

    mmengine's ``BaseModel.train_step`` runs the data preprocessor and the
    loss forward inside ``optim_context``; the backward pass and the
    optimizer step run outside it, on float32 parameters and gradients. The
    scaling (``backward``, ``step``, the scaler's state in checkpoints) is
    ``AmpOptimWrapper``'s, with torch's CPU ``GradScaler``, disabled for
    bf16.

    Args:
        dtype: the autocast dtype, ``'bfloat16'`` (default) or
            ``'float16'`` (slow on most CPUs; loss-scaled).
        loss_scale: with fp16, ``'dynamic'`` (default), a float (static
            scale) or ``GradScaler`` arguments, as ``AmpOptimWrapper``'s.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 **kwargs) -> None:
        # AmpOptimWrapper.__init__ asserts an accelerator and builds CUDA's
        # scaler: only OptimWrapper's part of it is wanted here
        OptimWrapper.__init__(self, **kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) \
            else dtype
        if self.cast_dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f'CPU autocast dtype must be bfloat16 or '
                             f'float16, got {dtype}')
        fp16 = self.cast_dtype == torch.float16
        self._scale_update_param = loss_scale if isinstance(
            loss_scale, float) else None
        scaler_args = dict(init_scale=loss_scale) if isinstance(
            loss_scale, float) else dict(loss_scale) if isinstance(
                loss_scale, dict) else {}
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=fp16,
                                                **scaler_args)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` + CPU
        autocast; a model on a GPU is refused by name."""
        device = next((p.device for p in model.parameters()), None)
        if device is not None and device.type != 'cpu':
            raise RuntimeError(
                f'CPUAutocastOptimWrapper autocasts on the CPU, but the '
                f'model {type(model).__name__} is on {device}: use '
                "mmengine's AmpOptimWrapper there (tools/train.py --amp "
                'picks it when CUDA is available).')
        with OptimWrapper.optim_context(self, model), torch.autocast(
                'cpu', dtype=self.cast_dtype):
            yield
