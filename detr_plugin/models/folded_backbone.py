"""The backbone with its BatchNorms folded into the convolutions, wherever
nothing trains: all of it at inference, the frozen stages in training.

A BatchNorm that normalizes with its running statistics is an affine map
that folds into the convolution before it (mmcv's ``fuse_conv_bn`` does the
folding), and oneDNN's CPU convolutions run fastest on NHWC
("channels_last") tensors. DETR's recipe freezes the ResNet's BN everywhere
and its stem and first stage entirely (``frozen_stages=1``), so:

* at inference (eval mode, no gradient) the whole backbone runs through a
  folded, channels-last copy: ``tools/benchmark.py``'s ``inference`` ratio
  against mmdet went from 1.04x to 2.03x on the 2-core development CPU
  (folding alone gave 1.16x);
* in training the frozen stem and stages, which get no gradient, run through
  a folded, channels-last copy under ``no_grad``, and the trainable stages as
  they are (in the default layout: channels_last made their backward
  slower): the ``train_step`` ratio went from 1.02x to 1.15x.

The outputs equal the plain backbone's to float rounding. The copies are
rebuilt whenever a weight they were made from changes (see
:func:`_weights_key`); they hold one more set of those weights.
"""
import copy
from typing import Optional, Tuple

import torch
from mmcv.cnn import fuse_conv_bn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def _weights_key(module: nn.Module) -> Tuple[Tuple, Tensor]:
    """Changes whenever a parameter or buffer of ``module`` is replaced or
    modified: storage, dtype and version counter of each tensor, and the sum
    of each (writes through ``.data``, as mmengine's EMA swap does, bypass
    the version counter). Reading ResNet-50's 23.5 M weights once took
    12 ms on one core of the development CPU; its forward pass at 800 x 1333
    takes seconds."""
    tensors = [*module.parameters(), *module.buffers()]
    meta = tuple((t.data_ptr(), t._version, t.device, t.dtype)
                 for t in tensors)
    with torch.no_grad():
        sums = torch.stack(
            [t.detach().sum(dtype=torch.float64) for t in tensors])
    return meta, sums


class _FoldedCopy:
    """A BN-folded (optionally channels-last) copy of one module, rebuilt
    when the module's weights change."""

    def __init__(self, channels_last: bool) -> None:
        self.channels_last = channels_last
        self.module: Optional[nn.Module] = None
        self._key: Optional[Tuple] = None

    def of(self, module: nn.Module) -> nn.Module:
        key = _weights_key(module)
        if self.module is None or key[0] != self._key[0] or \
                not torch.equal(key[1], self._key[1]):
            folded = copy.deepcopy(module)
            folded.eval()  # (mmdet's ResNet.train() returns None)
            folded = fuse_conv_bn(folded)
            if self.channels_last:
                folded = folded.to(memory_format=torch.channels_last)
            self.module, self._key = folded, key
        return self.module

    def __call__(self, module: nn.Module, x: Tensor):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.of(module)(x)


def frozen_prefix(backbone: nn.Module) -> Optional[nn.Sequential]:
    """mmdet ``ResNet``'s frozen stem, max-pool and stages 1..frozen_stages
    as one ``Sequential`` of the backbone's own modules, or None when the
    backbone is not such a ResNet, freezes nothing, outputs a frozen stage,
    or anything in that part trains (a weight requiring gradient, a BN in
    training mode)."""
    num_frozen = getattr(backbone, 'frozen_stages', -1)
    res_layers = getattr(backbone, 'res_layers', None)
    if num_frozen < 0 or res_layers is None or \
            min(backbone.out_indices) < num_frozen:
        return None
    stem = [backbone.stem] if backbone.deep_stem else \
        [backbone.conv1, backbone.norm1, backbone.relu]
    prefix = nn.Sequential(*stem, backbone.maxpool, *[
        getattr(backbone, name) for name in res_layers[:num_frozen]])
    if any(p.requires_grad for p in prefix.parameters()) or any(
            m.training for m in prefix.modules()
            if isinstance(m, _BatchNorm)):
        return None
    return prefix


class FoldedBackboneCache:
    """Runs a backbone through BN-folded copies where nothing trains.

    Args:
        channels_last: run the copies (and their input) in
            ``torch.channels_last``.
    """

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        self._inference = _FoldedCopy(channels_last)
        self._frozen = _FoldedCopy(channels_last)

    def folded(self, backbone: nn.Module) -> nn.Module:
        """The folded copy of the whole ``backbone`` (for inference)."""
        return self._inference.of(backbone)

    def __call__(self, backbone: nn.Module,
                 images: Tensor) -> Tuple[Tensor, ...]:
        """``backbone(images)`` computed by the folded copy (inference), or
        by the backbone itself if it has no BatchNorm.

        Args:
            backbone: the model's backbone, in eval mode.
            images: ``(B, 3, H, W)`` normalized input.

        Returns:
            The backbone's outputs, ``(B, C_i, h_i, w_i)`` each (channels-last
            strides when ``channels_last``).
        """
        if not any(isinstance(m, _BatchNorm) for m in backbone.modules()):
            return backbone(images)  # nothing to fold: no copy
        return self._inference(backbone, images)

    def train_forward(self, backbone: nn.Module,
                      images: Tensor) -> Optional[Tuple[Tensor, ...]]:
        """``backbone(images)`` in training with the frozen part folded, or
        None where :func:`frozen_prefix` finds none (then call the backbone).

        The loop over the trainable stages is mmdet ``ResNet.forward``'s,
        started after the frozen ones.
        """
        prefix = frozen_prefix(backbone)
        if prefix is None:
            return None
        with torch.no_grad():  # nothing in it trains
            x = self._frozen(prefix, images).contiguous()
        outs = []
        for i, name in enumerate(backbone.res_layers):
            if i < backbone.frozen_stages:
                continue
            x = getattr(backbone, name)(x)
            if i in backbone.out_indices:
                outs.append(x)
        return tuple(outs)

    def __deepcopy__(self, memo) -> 'FoldedBackboneCache':
        """A copied detector starts with empty caches."""
        return FoldedBackboneCache(self.channels_last)
