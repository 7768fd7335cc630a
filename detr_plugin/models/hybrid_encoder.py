"""RT-DETR's hybrid encoder: attention within the coarsest map, convolutions
across the maps (RT-DETR, section 4.2).

* input projection: a 1x1 conv + BN per backbone level, to ``hidden_dim``;
* AIFI (intra-scale interaction): one post-norm transformer encoder layer
  over the stride-32 map, with a fixed 2-D sine-cosine position embedding
  (:func:`sincos_position_embedding`);
* CCFM (cross-scale fusion): a top-down FPN then a bottom-up PAN whose
  fusion blocks are CSP layers of RepVGG blocks (:class:`CSPRepLayer`).

Channels, strides and concatenation orders are the official
rtdetrv2_pytorch ``HybridEncoder``'s, so its weights load by renaming
(:mod:`detr_plugin.checkpoint.rtdetr`).
"""
import copy
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_activation_layer, fuse_conv_bn
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from ..registry import MODELS
from .transformer_layers import DetrTransformerEncoder


def sincos_position_embedding(height: int, width: int, embed_dims: int,
                              temperature: float = 10000.,
                              device: Optional[torch.device] = None
                              ) -> Tensor:
    """The official RT-DETR position embedding of an ``height x width`` map
    whose features are flattened row-major (``k = y * width + x``).

    Returns:
        ``(1, height * width, embed_dims)`` float32; row ``k`` is ``[sin(a
        w) | cos(a w) | sin(b w) | cos(b w)]`` with ``a = k // height``,
        ``b = k % height`` and ``w_j = temperature^(-j / (embed_dims / 4))``,
        ``j < embed_dims / 4``.

    The official code enumerates the grid x-major (``k = x * height + y``)
    while the features are y-major: on a square map ``(a, b) = (y, x)``,
    on any other the rows are assigned to other positions. The released
    weights were trained with that, so it is kept (transformers >= 5.x
    computes the y-major embedding instead: equal on square maps only).
    """
    if embed_dims % 4:
        raise ValueError(f'embed_dims={embed_dims} is not divisible by 4')
    quarter = embed_dims // 4
    omega = 1. / temperature**(
        torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    k = torch.arange(height * width, device=device)
    angles = [pos.float()[:, None] * omega
              for pos in (k // height, k % height)]
    return torch.cat([f(a) for a in angles for f in (torch.sin, torch.cos)],
                     dim=1)[None]


class RepVGGBlock(BaseModule):
    """``act(BN(conv3x3(x)) + BN(conv1x1(x)))``, ``(B, C, H, W)`` ->
    ``(B, C, H, W)``; :meth:`fuse` folds it into one 3x3 conv for export.

    Args:
        channels: ``C``.
        norm_cfg: the norms' config; act_cfg: the activation's.
    """

    def __init__(self, channels: int, norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'), init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv1, self.conv2 = (
            ConvModule(channels, channels, size, padding=size // 2,
                       norm_cfg=norm_cfg, act_cfg=None) for size in (3, 1))
        self.act = build_activation_layer(act_cfg)
        self.fused: Optional[nn.Conv2d] = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace both branches by one 3x3 conv with bias that computes
        their eval-mode sum (BN with its running statistics folded in, the
        1x1 kernel zero-padded to 3x3). Irreversible; for inference; a
        fused block stays as it is."""
        if self.fused is not None:
            return
        k3, k1 = (fuse_conv_bn(copy.deepcopy(branch)).conv
                  for branch in (self.conv1, self.conv2))
        fused = copy.deepcopy(k3)
        fused.weight.copy_(k3.weight + F.pad(k1.weight, [1, 1, 1, 1]))
        fused.bias.copy_(k3.bias + k1.bias)
        del self.conv1, self.conv2
        self.fused = fused


class CSPRepLayer(BaseModule):
    """``conv3(blocks(conv1(x)) + conv2(x))``: ``(B, C_in, H, W)`` ->
    ``(B, C_out, H, W)``.

    ``conv1`` / ``conv2`` are 1x1 ConvModules to ``hidden = int(C_out *
    expansion)`` channels, ``blocks`` (``bottlenecks``) ``num_blocks``
    :class:`RepVGGBlock`; ``conv3`` a 1x1 ConvModule to ``C_out`` where
    ``hidden != C_out``, else the identity.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 num_blocks: int = 3, expansion: float = 1.,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='SiLU'), init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        hidden = int(out_channels * expansion)
        self.conv1, self.conv2 = (
            ConvModule(in_channels, hidden, 1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for _ in range(2))
        self.bottlenecks = nn.Sequential(*(
            RepVGGBlock(hidden, norm_cfg, act_cfg) for _ in range(num_blocks)))
        self.conv3 = nn.Identity() if hidden == out_channels else ConvModule(
            hidden, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


@MODELS.register_module()
class HybridEncoder(BaseModule):
    """RT-DETR's neck: input projection, AIFI, CCFM (the module docstring).

    Args:
        in_channels: channels of the backbone maps, finest first.
        feat_strides: their strides (each twice the previous: the FPN
            upsamples by 2); kept for the detector.
        hidden_dim: channels ``D`` of every output.
        num_heads, dim_feedforward, dropout: AIFI's attention heads, FFN
            width and dropout (attention weights, both residual branches and
            the FFN's hidden layer, as ``nn.TransformerEncoderLayer``).
        enc_act: AIFI's FFN activation config (exact GELU).
        use_encoder_idx: the levels AIFI runs on (one encoder each).
        num_encoder_layers: layers per encoder (0: no AIFI).
        pe_temperature: temperature of the position embedding.
        expansion: hidden width of the CSP layers relative to ``D``.
        depth_mult: RepVGG blocks per CSP layer: ``round(3 * depth_mult)``.
        act: activation config of the convolutions (SiLU).
        norm_cfg: config of every BN (e.g. ``SyncBN``).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (512, 1024, 2048),
                 feat_strides: Sequence[int] = (8, 16, 32),
                 hidden_dim: int = 256,
                 num_heads: int = 8,
                 dim_feedforward: int = 1024,
                 dropout: float = 0.,
                 enc_act: dict = dict(type='GELU'),
                 use_encoder_idx: Sequence[int] = (2, ),
                 num_encoder_layers: int = 1,
                 pe_temperature: float = 10000.,
                 expansion: float = 1.,
                 depth_mult: float = 1.,
                 act: dict = dict(type='SiLU'),
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(feat_strides) != len(in_channels):
            raise ValueError(f'{len(in_channels)} in_channels but '
                             f'{len(feat_strides)} feat_strides')
        self.in_channels = tuple(in_channels)
        self.feat_strides = tuple(feat_strides)
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = tuple(use_encoder_idx)
        self.pe_temperature = pe_temperature
        self.input_proj = ModuleList(
            ConvModule(c, hidden_dim, 1, norm_cfg=norm_cfg, act_cfg=None)
            for c in in_channels)
        layer = dict(
            attn_cfgs=dict(embed_dims=hidden_dim, num_heads=num_heads,
                           attn_drop=dropout, proj_drop=dropout),
            ffn_cfgs=dict(embed_dims=hidden_dim,
                          feedforward_channels=dim_feedforward,
                          ffn_drop=dropout, act_cfg=enc_act),
            operation_order=('self_attn', 'norm', 'ffn', 'norm'))
        self.encoder = ModuleList(
            DetrTransformerEncoder(num_encoder_layers, layer)
            for _ in self.use_encoder_idx) if num_encoder_layers else \
            ModuleList()

        self.norm_cfg, self.act = norm_cfg, act
        self.expansion, self.depth_mult = expansion, depth_mult
        fusions = range(len(in_channels) - 1)
        self.lateral_convs = ModuleList(self.lateral_conv() for _ in fusions)
        self.fpn_blocks = ModuleList(self.fusion_block() for _ in fusions)
        self.downsample_convs = ModuleList(
            self.downsample_conv() for _ in fusions)
        self.pan_blocks = ModuleList(self.fusion_block() for _ in fusions)

    # the CCFM's parts (D-FINE's encoder replaces them)
    def lateral_conv(self) -> nn.Module:
        """The top-down path's 1x1 conv (+ BN, activation)."""
        return ConvModule(self.hidden_dim, self.hidden_dim, 1,
                          norm_cfg=self.norm_cfg, act_cfg=self.act)

    def downsample_conv(self) -> nn.Module:
        """The bottom-up path's stride-2 3x3 conv (+ BN, activation)."""
        return ConvModule(self.hidden_dim, self.hidden_dim, 3, 2, 1,
                          norm_cfg=self.norm_cfg, act_cfg=self.act)

    def fusion_block(self) -> nn.Module:
        """``2D`` -> ``D`` channels: a :class:`CSPRepLayer`."""
        return CSPRepLayer(2 * self.hidden_dim, self.hidden_dim,
                           round(3 * self.depth_mult), self.expansion,
                           self.norm_cfg, self.act)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Fuse the backbone maps.

        Args:
            feats: ``(B, in_channels[l], H_l, W_l)`` per level, finest
                first, each twice the size of the next (input sizes a
                multiple of the largest stride).

        Returns:
            ``(B, D, H_l, W_l)`` per level, finest first.
        """
        proj = [p(x) for p, x in zip(self.input_proj, feats)]
        for encoder, level in zip(self.encoder, self.use_encoder_idx):
            proj[level] = self.aifi(encoder, proj[level])
        # top-down: each lateral conv's output replaces the coarser map
        inner = [proj[-1]]
        for j, (lateral, fpn) in enumerate(zip(self.lateral_convs,
                                               self.fpn_blocks)):
            inner[0] = lateral(inner[0])
            up = F.interpolate(inner[0], scale_factor=2., mode='nearest')
            inner.insert(0, fpn(torch.cat([up, proj[-2 - j]], dim=1)))
        # bottom-up, fusing with the lateral outputs
        outs = [inner[0]]
        for j, (down, pan) in enumerate(zip(self.downsample_convs,
                                            self.pan_blocks)):
            outs.append(pan(torch.cat([down(outs[-1]), inner[j + 1]], dim=1)))
        return tuple(outs)

    def aifi(self, encoder: DetrTransformerEncoder, x: Tensor) -> Tensor:
        """``(B, D, h, w)`` -> ``(B, D, h, w)``: self-attention over the
        map's ``h * w`` positions, the embedding computed for its size."""
        batch, dims, height, width = x.shape
        pos = sincos_position_embedding(height, width, dims,
                                        self.pe_temperature, x.device)
        seq = encoder(x.flatten(2).transpose(1, 2), query_pos=pos,
                      key_padding_mask=None)  # (B, h * w, D)
        return seq.transpose(1, 2).reshape(batch, dims, height, width)

    def init_weights(self) -> None:
        """Keep PyTorch's default initialization, the official code's
        (mmcv's ``ConvModule.init_weights`` would redraw every conv Kaiming-
        normal, fan-out); an ``init_cfg`` (e.g. Pretrained) still applies."""
        if self.init_cfg:
            super().init_weights()

    def fuse(self) -> None:
        """Fold every :class:`RepVGGBlock` (for export; irreversible)."""
        for module in self.modules():
            if isinstance(module, RepVGGBlock):
                module.fuse()
