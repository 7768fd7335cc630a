"""RT-DETR's backbone: PResNet-vd, which is mmdet's ``ResNetV1d`` but for one
shortcut.

mmdet's ``ResNetV1d`` (deep 3x3 stem, average-pool shortcut) already is the
official PResNet variant d, with one difference: the official code gives
block 0 of *every* stage a projection shortcut (1x1 conv + BN), whereas mmdet
(like torchvision) projects only where the stride or the channels change.
For R50/R101 every stage changes one of them, so the two agree. For the
BasicBlock depths (R18/R34) the first stage maps 64 to 64 channels at stride
1: the official block 0 has a 64->64 projection there and mmdet's has
none; the released R18/R34 weights hold it.
"""
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmdet.models.backbones import ResNetV1d
from mmdet.models.layers import ResLayer
from torch import nn

from ..registry import MODELS


@MODELS.register_module()
class PResNet(ResNetV1d):
    """``ResNetV1d`` whose every stage starts with a projection shortcut.

    Where mmdet builds none (stride 1, same channels: the first stage of
    R18/R34) block 0 gets ``downsample = Sequential(Identity, conv 1x1,
    norm)``, the layout mmdet uses for R50's stride-1 first stage (an
    identity ``AvgPool2d(1)`` at index 0), so the keys are
    ``layer1.0.downsample.1`` / ``.2`` for every depth. Otherwise identical
    to ``ResNetV1d`` (same arguments); outputs ``(B, C_s, H / 2^(s+2),
    W / 2^(s+2))`` for each stage ``s`` of ``out_indices``.
    """

    def make_res_layer(self, **kwargs) -> ResLayer:
        layer = super().make_res_layer(**kwargs)
        if layer[0].downsample is None:
            channels = kwargs['planes'] * kwargs['block'].expansion
            layer[0].downsample = nn.Sequential(
                nn.Identity(),
                build_conv_layer(kwargs['conv_cfg'], kwargs['inplanes'],
                                 channels, kernel_size=1, bias=False),
                build_norm_layer(kwargs['norm_cfg'], channels)[1])
        return layer
