"""DETR's mask head (paper section 4.4, figure 8; official
``models/segmentation.py``).

Per query, :class:`MHAttentionMap` scores the query against every position
of the encoder memory, one map per head; :class:`MaskHeadSmallConv`
concatenates those maps with the input projection's feature map and
upsamples FPN-style through the backbone's finer stages, giving one mask
logit map per query at the finest stage's stride (4 for a ResNet's stage 1).
Module and parameter names are the official ones (``q_linear``/``k_linear``;
``lay*``, ``gn*``, ``adapter*``, ``out_lay``), so its release loads as is.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS


@MODELS.register_module()
class MHAttentionMap(BaseModule):
    """Multi-head attention weights of queries over the memory (no values).

    Args:
        query_dims: width ``D`` of queries and memory.
        hidden_dims: width of the projected queries and keys, split over
            ``num_heads`` heads.
        num_heads: heads ``N``, one map each.
        dropout: on the weights (official: 0).
    """

    def __init__(self, query_dims: int, hidden_dims: int, num_heads: int,
                 dropout: float = 0., init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_heads = num_heads
        self.q_linear = nn.Linear(query_dims, hidden_dims)
        self.k_linear = nn.Linear(query_dims, hidden_dims)
        self.dropout = nn.Dropout(dropout)
        self.scale = (hidden_dims / num_heads)**-0.5

    def init_weights(self) -> None:
        """Xavier-uniform weights, zero biases (official)."""
        for linear in (self.q_linear, self.k_linear):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: Tensor, memory: Tensor,
                memory_mask: Optional[Tensor]) -> Tensor:
        """Attention weights ``(B, Q, N, h*w)``.

        Args:
            query: ``(B, Q, D)`` decoder outputs.
            memory: ``(B, h*w, D)`` encoder outputs.
            memory_mask: ``(B, h*w)`` bool, True at padding; or None.

        As the official module, one softmax runs over heads *and* positions
        together: a query's ``N * h * w`` weights sum to 1.
        """
        batch, num_queries, _ = query.shape
        q = self.q_linear(query).view(batch, num_queries, self.num_heads, -1)
        k = self.k_linear(memory).view(batch, memory.size(1),
                                       self.num_heads, -1)
        weights = torch.einsum('bqnc,bknc->bqnk', q * self.scale, k)
        if memory_mask is not None:
            weights = weights.masked_fill(memory_mask[:, None, None],
                                          float('-inf'))
        weights = weights.flatten(2).softmax(-1).view_as(weights)
        return self.dropout(weights)


@MODELS.register_module()
class MaskHeadSmallConv(BaseModule):
    """3x3 conv + GroupNorm(8) + ReLU blocks, upsampled by nearest
    interpolation and added to 1x1-adapted backbone maps (FPN-style).

    Widths: ``in_dims`` for ``lay1``, then ``context_dims / 2, / 4, ...``,
    one halving per block. With the official three levels (ResNet-50
    stages 3, 2, 1: ``fpn_dims=(1024, 512, 256)``) the blocks are ``lay1``
    to ``lay5``; ``len(fpn_dims)`` levels give ``len(fpn_dims) + 2`` blocks.

    Args:
        in_dims: channels of the input: ``D`` features + ``N`` attention
            maps.
        fpn_dims: channels of the backbone maps, coarse to fine.
        context_dims: ``D``, whose fractions give the block widths.
    """

    def __init__(self, in_dims: int, fpn_dims: Sequence[int] = (1024, 512,
                                                                 256),
                 context_dims: int = 256, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_levels = len(fpn_dims)
        widths = [in_dims] + [context_dims // 2**(i + 1)
                              for i in range(self.num_levels + 1)]
        for i, (d_in, d_out) in enumerate(
                zip([in_dims] + widths[:-1], widths), start=1):
            self.add_module(f'lay{i}', nn.Conv2d(d_in, d_out, 3, padding=1))
            self.add_module(f'gn{i}', nn.GroupNorm(8, d_out))
        for i, dims in enumerate(fpn_dims, start=1):
            self.add_module(f'adapter{i}', nn.Conv2d(dims, widths[i], 1))
        self.out_lay = nn.Conv2d(widths[-1], 1, 3, padding=1)

    def init_weights(self) -> None:
        """Kaiming-uniform (a=1) convolutions, zero biases (official)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def _block(self, i: int, x: Tensor) -> Tensor:
        x = getattr(self, f'lay{i}')(x)
        return F.relu(getattr(self, f'gn{i}')(x))

    def forward(self, features: Tensor, attention_maps: Tensor,
                fpn_feats: Sequence[Tensor], batch_idx: Tensor) -> Tensor:
        """Mask logits ``(M, H, W)`` of ``M`` queries, at the finest map's
        size ``(H, W)``.

        Args:
            features: ``(B, D, h, w)``, the input projection's output.
            attention_maps: ``(M, N, h, w)`` of the ``M`` queries.
            fpn_feats: ``num_levels`` backbone maps ``(B, C_i, H_i, W_i)``,
                coarse to fine.
            batch_idx: ``(M,)`` image of each query. Only these ``M`` masks
                are computed (the official head computes all ``B * Q``; every
                mask is computed alone, so the selected ones are the same).
        """
        if len(fpn_feats) != self.num_levels:
            raise ValueError(f'the mask head has {self.num_levels} FPN '
                             f'levels but got {len(fpn_feats)} backbone maps '
                             f'besides the last: set backbone.out_indices '
                             f'to {self.num_levels + 1} stages')
        x = torch.cat([features[batch_idx], attention_maps], dim=1)
        x = self._block(2, self._block(1, x))
        for i, fpn in enumerate(fpn_feats, start=1):
            lateral = getattr(self, f'adapter{i}')(fpn)[batch_idx]
            x = lateral + F.interpolate(x, size=lateral.shape[-2:],
                                        mode='nearest')
            x = self._block(i + 2, x)
        return self.out_lay(x)[:, 0]
