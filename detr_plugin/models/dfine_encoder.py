"""D-FINE's hybrid encoder: RT-DETR's (:mod:`.hybrid_encoder`) with three
parts of its cross-scale fusion replaced (D-FINE's ``hybrid_encoder.py``):

* the lateral 1x1 convs have no activation;
* downsampling is :class:`SCDown` (a 1x1 conv, then a depthwise 3x3 stride-2
  conv, both with BN and without activation) instead of a full 3x3 conv;
* the fusion blocks are :class:`RepNCSPELAN4` (GELAN blocks of CSP layers of
  RepVGG blocks), always with SiLU.

Key names follow the official module's (``cv1`` ... ``cv4``) after the
ConvModule renaming of :mod:`detr_plugin.checkpoint.dfine`.
"""
import torch
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from ..registry import MODELS
from .hybrid_encoder import CSPRepLayer, HybridEncoder

_SILU = dict(type='SiLU')


class SCDown(nn.Module):
    """``(B, C, h, w)`` -> ``(B, C, h / 2, w / 2)``: 1x1 conv + BN, then a
    depthwise ``kernel x kernel`` stride-2 conv + BN (no activation)."""

    def __init__(self, channels: int, kernel: int = 3,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.cv1 = ConvModule(channels, channels, 1, norm_cfg=norm_cfg,
                              act_cfg=None)
        self.cv2 = ConvModule(channels, channels, kernel, 2, kernel // 2,
                              groups=channels, norm_cfg=norm_cfg,
                              act_cfg=None)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv2(self.cv1(x))


class RepNCSPELAN4(nn.Module):
    """GELAN fusion ``(B, C_in, h, w)`` -> ``(B, C_out, h, w)``: ``cv1``
    (1x1 to ``C_mid``) split in halves ``y0, y1``; ``y2 = cv2(y1)``, ``y3 =
    cv3(y2)`` (each a :class:`.hybrid_encoder.CSPRepLayer` of
    ``num_blocks`` to ``C_branch`` channels and a 3x3 conv);
    ``cv4([y0, y1, y2, y3])`` (1x1). Every conv has BN and SiLU."""

    def __init__(self, in_channels: int, out_channels: int,
                 mid_channels: int, branch_channels: int,
                 num_blocks: int = 1, norm_cfg: dict = dict(type='BN')
                 ) -> None:
        super().__init__()
        half = mid_channels // 2

        def conv(c_in: int, c_out: int, size: int = 1) -> ConvModule:
            return ConvModule(c_in, c_out, size, padding=size // 2,
                              norm_cfg=norm_cfg, act_cfg=_SILU)

        self.split = half
        self.cv1 = conv(in_channels, mid_channels)
        self.cv2, self.cv3 = (nn.Sequential(
            CSPRepLayer(c_in, branch_channels, num_blocks, 1., norm_cfg,
                        _SILU), conv(branch_channels, branch_channels, 3))
            for c_in in (half, branch_channels))
        self.cv4 = conv(mid_channels + 2 * branch_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        outs = list(self.cv1(x).split(self.split, 1))
        outs.append(self.cv2(outs[-1]))
        outs.append(self.cv3(outs[-1]))
        return self.cv4(torch.cat(outs, 1))


@MODELS.register_module()
class DFINEHybridEncoder(HybridEncoder):
    """:class:`.hybrid_encoder.HybridEncoder` with D-FINE's lateral convs,
    :class:`SCDown` and :class:`RepNCSPELAN4` fusion (``C_mid = 2D``,
    ``C_branch = round(expansion * D // 2)``, ``round(3 * depth_mult)``
    RepVGG blocks per CSP layer). Arguments as the parent's (``act`` is
    unused by the fusion blocks: SiLU, as the official code)."""

    def lateral_conv(self) -> nn.Module:
        return ConvModule(self.hidden_dim, self.hidden_dim, 1,
                          norm_cfg=self.norm_cfg, act_cfg=None)

    def downsample_conv(self) -> nn.Module:
        return SCDown(self.hidden_dim, 3, self.norm_cfg)

    def fusion_block(self) -> nn.Module:
        dims = self.hidden_dim
        return RepNCSPELAN4(2 * dims, dims, 2 * dims,
                            round(self.expansion * dims // 2),
                            round(3 * self.depth_mult), self.norm_cfg)
