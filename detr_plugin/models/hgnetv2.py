"""HGNetV2, the backbone of D-FINE and DEIM (PaddleDetection's PP-HGNetV2,
as D-FINE's ``src/nn/backbone/hgnetv2.py`` builds it).

A stem of stride 4, then four stages. A stage is an optional depthwise 3x3
stride-2 conv (BN, no activation) and a chain of HG blocks. An HG block runs
``layer_num`` convs in series -- k x k ones, or in the last two stages
"light" ones (a 1x1 conv without activation, then a depthwise k x k one) --
concatenates its input with every conv's output and aggregates them with two
1x1 convs (to ``out / 2`` channels, then to ``out``); every block of a stage
but the first adds its input. Each conv that has a ReLU is followed, with
``use_lab`` (D-FINE S/M/N), by a learnable affine ``scale * x + bias`` of
two scalars.

The official file also defines an ESE attention as the other aggregation;
its HGNetv2 never selects it (``HG_Stage`` passes ``agg='se'``), so neither
its weights nor transformers' port have it, and neither does this file.

Key names are the official ones (``stem.stem2a.conv.weight``,
``stages.2.blocks.1.layers.0.conv2.lab.scale``, ...; transformers' are
renamed by :mod:`detr_plugin.checkpoint.hgnetv2`), so the official ImageNet
weights ``PPHGNetV2_B*_stage1.pth`` load with
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from collections import OrderedDict
from functools import partial
from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODELS

# each stage's (downsample, light convs, kernel size): the same in every size
STAGE_KINDS = ((False, False, 3), (True, False, 3), (True, True, 5),
               (True, True, 5))


class LearnableAffine(nn.Module):
    """``scale * x + bias`` with two learnable scalars (start 1 and 0)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x + self.bias


class ConvBNAct(ConvModule):
    """k x k conv (no bias, padding ``(k - 1) // 2``) -> norm -> ReLU ->
    :class:`LearnableAffine` (``use_lab``); ``act=False`` drops the last
    two. Keys ``conv``, ``bn`` (for BN/SyncBN norms), ``lab``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1, act: bool = True,
                 use_lab: bool = False, norm_cfg: dict = dict(type='BN')):
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         (kernel_size - 1) // 2, groups=groups, bias=False,
                         norm_cfg=norm_cfg,
                         act_cfg=dict(type='ReLU') if act else None)
        self.lab = LearnableAffine() if act and use_lab else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.lab(super().forward(x))


class StemBlock(nn.Module):
    """(B, 3, H, W) -> (B, out, H / 4, W / 4) (rounded up): a 3x3 stride-2
    conv to ``mid``, then two branches on its map padded by one at the right
    and bottom -- a 2x2 max-pool and two 2x2 convs (``mid / 2``, ``mid``;
    padded again between them) -- concatenated (pool first), a 3x3 stride-2
    conv back to ``mid`` and a 1x1 conv to ``out``."""

    def __init__(self, mid: int, out: int, conv: Callable[..., nn.Module]):
        super().__init__()
        self.stem1 = conv(3, mid, 3, stride=2)
        self.stem2a = conv(mid, mid // 2, 2)
        self.stem2b = conv(mid // 2, mid, 2)
        self.stem3 = conv(2 * mid, mid, 3, stride=2)
        self.stem4 = conv(mid, out, 1)
        self.pool = nn.MaxPool2d(2, stride=1, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))  # (B, mid, H/2 + 1, W/2 + 1)
        convs = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        x = torch.cat([self.pool(x), convs], 1)  # (B, 2 mid, H/2, W/2)
        return self.stem4(self.stem3(x))


def light_conv(in_channels: int, out_channels: int, kernel_size: int,
               conv: Callable[..., nn.Module]) -> nn.Sequential:
    """``conv1``: 1x1, BN only; ``conv2``: depthwise k x k, BN, ReLU."""
    return nn.Sequential(OrderedDict(
        conv1=conv(in_channels, out_channels, 1, act=False),
        conv2=conv(out_channels, out_channels, kernel_size,
                   groups=out_channels)))


class HGBlock(nn.Module):
    """(B, in, H, W) -> (B, out, H, W): ``layer_num`` convs to ``mid``
    channels in series, ``cat(input, each output)`` (``in + layer_num *
    mid`` channels) aggregated by 1x1 convs to ``out / 2`` and ``out``,
    plus the input if ``residual``."""

    def __init__(self, in_channels: int, mid: int, out: int, layer_num: int,
                 kernel_size: int, light: bool, residual: bool,
                 conv: Callable[..., nn.Module]):
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList(
            light_conv(c, mid, kernel_size, conv) if light else
            conv(c, mid, kernel_size)
            for c in [in_channels] + [mid] * (layer_num - 1))
        self.aggregation = nn.Sequential(
            conv(in_channels + layer_num * mid, out // 2, 1),
            conv(out // 2, out, 1))

    def forward(self, x: Tensor) -> Tensor:
        outs = [x]
        for layer in self.layers:
            outs.append(layer(outs[-1]))
        y = self.aggregation(torch.cat(outs, 1))
        return y + x if self.residual else y


def hg_stage(in_channels: int, mid: int, out: int, num_blocks: int,
             layer_num: int, downsample: bool, light: bool, kernel_size: int,
             conv: Callable[..., nn.Module]) -> nn.Sequential:
    """``downsample`` (depthwise 3x3 stride 2, BN only; absent when not
    ``downsample``), then ``blocks``: ``num_blocks`` HG blocks, residual
    but the first."""
    blocks = [HGBlock(in_channels if j == 0 else out, mid, out, layer_num,
                      kernel_size, light, j > 0, conv)
              for j in range(num_blocks)]
    parts = OrderedDict(blocks=nn.Sequential(*blocks))
    if downsample:
        parts = OrderedDict(downsample=conv(in_channels, in_channels, 3,
                                            stride=2, groups=in_channels,
                                            act=False), **parts)
    return nn.Sequential(parts)


@MODELS.register_module()
class HGNetV2(BaseModule):
    """HGNetV2 B0-B6 (D-FINE: N and S use B0, M B2, L B4, X B5).

    Args:
        arch: ``'B0'`` ... ``'B6'`` (the official ``name``).
        use_lab: a learnable affine after every activation (the official
            ``use_lab``; D-FINE's S/M/N configs set it, L/X do not).
        out_indices: the stages whose maps are returned, 0..3 at strides
            4, 8, 16, 32 (the official ``return_idx``; N uses ``(2, 3)``).
        frozen_stages: as mmdet's ResNet: -1 freezes nothing, 0 the stem,
            ``k`` the stem and stages ``0..k-1`` (no gradients, held in eval
            mode). The official ``freeze_at=-1`` is -1, ``freeze_at >= 0``
            with ``freeze_stem_only=True`` (D-FINE L/X) is 0, and
            ``freeze_at=a`` with ``freeze_stem_only=False`` is ``a + 1``.
            The official code only stops the gradients: a frozen part's BNs
            still update their statistics unless ``freeze_norm`` -- which no
            official config leaves off with a frozen stem.
        freeze_norm: every BN's weight and bias without gradients and its
            statistics fixed (eval mode), as the official ``freeze_norm``'s
            FrozenBatchNorm2d (D-FINE L/X; the state dict keeps
            ``num_batches_tracked``).
        norm_eval: every BN in eval mode while training (its weight and bias
            still learn).
        norm_cfg: the norm of every conv.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=...)`` for the
            official ImageNet weights (same key names).
    """

    # arch: (stem mid, out channels), convs per HG block, each stage's
    # (mid, out channels, HG blocks); a stage's input has the previous
    # stage's (the stem's) channels
    arch_settings = {
        'B0': ((16, 16), 3, ((16, 64, 1), (32, 256, 1), (64, 512, 2),
                             (128, 1024, 1))),
        'B1': ((24, 32), 3, ((32, 64, 1), (48, 256, 1), (96, 512, 2),
                             (192, 1024, 1))),
        'B2': ((24, 32), 4, ((32, 96, 1), (64, 384, 1), (128, 768, 3),
                             (256, 1536, 1))),
        'B3': ((24, 32), 5, ((32, 128, 1), (64, 512, 1), (128, 1024, 3),
                             (256, 2048, 1))),
        'B4': ((32, 48), 6, ((48, 128, 1), (96, 512, 1), (192, 1024, 3),
                             (384, 2048, 1))),
        'B5': ((32, 64), 6, ((64, 128, 1), (128, 512, 2), (256, 1024, 5),
                             (512, 2048, 2))),
        'B6': ((48, 96), 6, ((96, 192, 2), (192, 512, 3), (384, 1024, 6),
                             (768, 2048, 3))),
    }

    def __init__(self, arch: str = 'B4', use_lab: bool = False,
                 out_indices: Sequence[int] = (1, 2, 3),
                 frozen_stages: int = -1, freeze_norm: bool = False,
                 norm_eval: bool = False, norm_cfg: dict = dict(type='BN'),
                 init_cfg=None):
        super().__init__(init_cfg)
        if arch not in self.arch_settings:
            raise KeyError(f'HGNetV2 arch {arch!r} is none of '
                           f'{sorted(self.arch_settings)}')
        if not set(out_indices) <= {0, 1, 2, 3}:
            raise ValueError(f'out_indices {out_indices} are not stages 0-3')
        (stem_mid, in_channels), layer_num, stages = self.arch_settings[arch]
        conv = partial(ConvBNAct, use_lab=use_lab, norm_cfg=norm_cfg)
        self.stem = StemBlock(stem_mid, in_channels, conv)
        self.stages = nn.ModuleList()
        for (mid, out, num_blocks), kind in zip(stages, STAGE_KINDS):
            self.stages.append(hg_stage(in_channels, mid, out, num_blocks,
                                        layer_num, *kind, conv))
            in_channels = out
        self.out_indices = tuple(out_indices)
        self.out_channels = [stages[i][1] for i in self.out_indices]
        self.frozen_stages = frozen_stages
        self.freeze_norm = freeze_norm
        self.norm_eval = norm_eval or freeze_norm
        if freeze_norm:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.requires_grad_(False)
        self._freeze_stages()

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        for m in [self.stem, *self.stages[:self.frozen_stages]]:
            m.eval()
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> 'HGNetV2':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """(B, 3, H, W) -> for each stage ``s`` of ``out_indices`` its map
        (B, out_channels, H / 2^(s+2), W / 2^(s+2)), sizes rounded up."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
