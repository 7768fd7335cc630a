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

Folding is used only where it is exact (:func:`can_fold`: BN in eval mode
with running statistics, plain convolutions, no hooks) and each new copy is
checked once against the original on a small input, in float32 (under
autocast the copy then runs in the autocast dtype like the backbone would).
The outputs equal the plain backbone's to float rounding. The copies hold
one more set of the weights they were made from, so they are dropped
(:meth:`FoldedBackboneCache.clear`) wherever those weights can change -- the
detector calls it when it switches between ``train()`` and ``eval()``
(mmengine's EMA hook swaps the weights just before ``model.eval()``) and when
a state dict is loaded into it; code that writes weights by hand calls
``detector.refresh_folded_backbone()`` -- and rebuilt lazily at the next
forward. Nothing is checked per forward.
"""
import copy
import warnings
from contextlib import contextmanager
from typing import Optional, Tuple

import torch
from mmcv.cnn import fuse_conv_bn
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def can_fold(module: nn.Module) -> bool:
    """Whether ``fuse_conv_bn`` has something to fold in ``module`` (a BN)
    and folds it exactly: every BN normalizes with running statistics and an
    affine map (eval mode, ``track_running_stats``, ``affine``), every
    convolution is a plain ``nn.Conv2d`` (subclasses such as mmcv's
    weight-standardized ConvWS transform the weight in ``forward``), and no
    module has forward hooks (the copy would bypass them)."""
    has_bn = False
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            if m.training or not m.affine or m.running_mean is None:
                return False
            has_bn = True
        if isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d:
            return False
        if m._forward_hooks or m._forward_pre_hooks:
            return False
    return has_bn


class _FoldedCopy:
    """A BN-folded (optionally channels-last) copy of one module, built at
    its first use after :meth:`clear`.

    Each new copy is checked against the module on a small random input
    (mmcv's ``fuse_conv_bn`` pairs a BN with the convolution registered
    before it, which is not always the one it follows in ``forward``); if
    they differ, folding is switched off for good with a warning.
    """

    def __init__(self, channels_last: bool) -> None:
        self.channels_last = channels_last
        self.module: Optional[nn.Module] = None
        self.failed = False

    def clear(self) -> None:
        """Drop the copy (the module's weights may have changed)."""
        self.module = None

    def of(self, module: nn.Module, x) -> Optional[nn.Module]:
        """The folded copy of ``module``, or None where folding failed its
        check (on a small input of ``x``'s kind; on ``x`` itself when it is
        a tuple of maps, a neck's input, whose sizes must keep their
        ratios). A module with a ``fuse()`` (RT-DETR's hybrid encoder:
        RepVGG branches into one convolution) is fused first."""
        if self.failed:
            return None
        if self.module is None:
            folded = copy.deepcopy(module)
            folded.eval()  # (mmdet's ResNet.train() returns None)
            try:
                if hasattr(folded, 'fuse'):
                    folded.fuse()
                folded = fuse_conv_bn(folded)
                if self.channels_last:
                    folded = folded.to(memory_format=torch.channels_last)
                agrees = self._agrees(module, folded, x if isinstance(
                    x, (tuple, list)) else _probe_like(x))
            except RuntimeError:  # e.g. a BN paired with a conv of
                agrees = False  # another width
            if not agrees:
                self.failed, self.module = True, None
                warnings.warn(
                    f'{type(module).__name__}: the BN-folded copy does not '
                    'compute what the module computes; running it '
                    'unfolded (set model.fold_backbone_bn=False to '
                    'silence this).')
                return None
            self.module = folded
        return self.module

    def _agrees(self, module: nn.Module, folded: nn.Module,
                probe: Tensor) -> bool:
        """Same outputs in float32 (also when called under autocast or with
        TF32 convolutions and matmuls allowed on a GPU, whose rounding would
        exceed the tolerance and is not the fold's)."""
        device = _as_tuple(probe)[0].device.type
        with torch.no_grad(), torch.autocast(device, enabled=False), \
                no_tf32():
            expected = _as_tuple(module(probe))
            actual = _as_tuple(folded(self._layout(probe)))
        return len(expected) == len(actual) and all(
            e.shape == a.shape and torch.allclose(
                a.float(), e.float(), rtol=1e-3,
                atol=1e-3 * float(e.abs().max()) + 1e-5)
            for e, a in zip(expected, actual))

    def _layout(self, x):
        if isinstance(x, (tuple, list)):
            return type(x)(self._layout(t) for t in x)
        return x.contiguous(memory_format=torch.channels_last) \
            if self.channels_last else x

    def __call__(self, module: nn.Module, x: Tensor):
        """``module(x)`` through the folded copy (None if it failed)."""
        folded = self.of(module, x)
        return None if folded is None else folded(self._layout(x))


@contextmanager
def no_tf32():
    """TF32 off for CUDA's matmuls and cuDNN's convolutions (restored
    after)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, \
        torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def _as_tuple(outputs) -> Tuple[Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) \
        else (outputs, )


def _probe_like(x: Tensor) -> Tensor:
    """One small random image of ``x``'s kind, 64 x 64 (stride 32 leaves a
    2 x 2 map)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, x.size(1), 64, 64, generator=gen).to(x)


def frozen_prefix(backbone: nn.Module) -> Optional[nn.Sequential]:
    """mmdet ``ResNet``'s frozen stem, max-pool and stages 1..frozen_stages
    as one ``Sequential`` of the backbone's own modules, or None when the
    backbone is not such a ResNet, freezes nothing, outputs a frozen stage,
    or anything in that part trains (a weight requiring gradient, a BN in
    training mode)."""
    from mmdet.models.backbones import ResNet
    if not isinstance(backbone, ResNet) or \
            type(backbone).forward is not ResNet.forward:
        return None  # e.g. RegNet: another forward, no max-pool
    num_frozen = backbone.frozen_stages
    if num_frozen < 0 or min(backbone.out_indices) < num_frozen:
        return None
    stem = [backbone.stem] if backbone.deep_stem else \
        [backbone.conv1, backbone.norm1, backbone.relu]
    prefix = nn.Sequential(*stem, backbone.maxpool, *[
        getattr(backbone, name)
        for name in backbone.res_layers[:num_frozen]])
    if any(p.requires_grad for p in prefix.parameters()) or \
            not can_fold(prefix):
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
        self._neck = _FoldedCopy(channels_last)

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
        if not can_fold(backbone):
            return backbone(images)  # nothing to fold, or not exactly
        outputs = self._inference(backbone, images)
        return backbone(images) if outputs is None else outputs

    def neck(self, neck: nn.Module,
             feats: Tuple[Tensor, ...]) -> Optional[Tuple[Tensor, ...]]:
        """``neck(feats)`` at inference through its folded copy, or None
        where it has no BatchNorm to fold (mmdet's ChannelMapper has
        GroupNorms) or the fold failed its check."""
        if not can_fold(neck):
            return None
        return self._neck(neck, tuple(feats))

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
            x = self._frozen(prefix, images)
        if x is None:  # the fold failed its check
            return None
        x = x.contiguous()
        outs = []
        for i, name in enumerate(backbone.res_layers):
            if i < backbone.frozen_stages:
                continue
            x = getattr(backbone, name)(x)
            if i in backbone.out_indices:
                outs.append(x)
        return tuple(outs)

    def clear(self) -> None:
        """Drop both copies; they are rebuilt at their next use."""
        self._inference.clear()
        self._frozen.clear()
        self._neck.clear()

    def __deepcopy__(self, memo) -> 'FoldedBackboneCache':
        """A copied detector starts with empty caches."""
        return FoldedBackboneCache(self.channels_last)
