"""Multi-scale deformable attention (Zhu et al. 2021, section 4.1, eq. 3).

Each query attends to a few sampled points per head and feature level
instead of every key: ``out = W_o sum_h sum_l sum_k A_hlk V_l(p + dp_hlk)``,
with the offsets ``dp`` and weights ``A`` (softmax over the levels and points
of a head) predicted from ``query + query_pos`` by linear layers, ``p`` the
query's reference point (normalized; a 2-D point, or a 4-D box whose
half-size scales the offsets) and ``V_l(x)`` the value map of level ``l``
sampled bilinearly, zero outside the map.

The module is mmcv's ``MultiScaleDeformableAttention`` (its parameters,
initialization and CUDA kernel, used on GPUs), adapted to this package's
attention interface: batch-first, the layer's keyword inputs, no residual (the
layer adds it).
"""
from typing import Optional

import torch
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention, MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch)
from torch import Tensor

from ..registry import MODELS


@MODELS.register_module()
class DeformableAttention(MultiScaleDeformableAttention):
    """mmcv's multi-scale deformable attention in this package's interface.

    Args:
        embed_dims: width ``D``.
        num_heads: heads ``H``.
        num_levels: feature levels ``L``.
        num_points: sampled points ``K`` per head and level.
        dropout: dropout on the output (before the layer's residual).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8,
                 num_levels: int = 4, num_points: int = 4,
                 dropout: float = 0.1, init_cfg=None) -> None:
        super().__init__(embed_dims, num_heads, num_levels, num_points,
                         dropout=dropout, batch_first=True,
                         init_cfg=init_cfg)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Sample the value maps around each query's reference point.

        Args:
            query: ``(B, Lq, D)``.
            key: unused (the offsets come from the query).
            value: ``(B, S, D)``, the ``L`` maps flattened and concatenated
                (``S = sum h_l w_l``); ``query`` when None (encoder).
            query_pos: ``(B, Lq, D)``, added to the query.
            key_padding_mask: ``(B, S)`` bool, True = padding (its values are
                zeroed).
            reference_points: ``(B, Lq, L, 2)`` normalized (x, y) per level,
                or ``(B, Lq, L, 4)`` (cx, cy, w, h).
            spatial_shapes: ``(L, 2)`` long, ``(h_l, w_l)``.
            level_start_index: ``(L,)`` long, where each map starts in ``S``.
            **kwargs: other attentions' inputs (ignored).

        Returns:
            ``(B, Lq, D)`` after ``output_proj`` and dropout (no residual).
        """
        value = query if value is None else value
        if query_pos is not None:
            query = query + query_pos
        batch, num_queries, _ = query.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.)
        value = value.view(batch, value.size(1), self.num_heads, -1)
        heads_levels_points = (batch, num_queries, self.num_heads,
                               self.num_levels, self.num_points)
        offsets = self.sampling_offsets(query).view(*heads_levels_points, 2)
        weights = self.attention_weights(query).view(
            batch, num_queries, self.num_heads, -1).softmax(-1).view(
                *heads_levels_points)
        points = reference_points[:, :, None, :, None]  # (B, Lq, 1, L, 1, R)
        if reference_points.size(-1) == 2:  # offsets in pixels of the level
            width_height = spatial_shapes.flip(-1)  # (L, 2) as (w, h)
            locations = points + offsets / width_height[:, None, :]
        else:  # offsets in units of the box's half-size / K
            locations = points[..., :2] + offsets / self.num_points * \
                points[..., 2:] * 0.5
        if value.is_cuda:
            out = MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, locations, weights,
                self.im2col_step)
        else:
            out = multi_scale_deformable_attn_pytorch(
                value, spatial_shapes, locations, weights)
        return self.dropout(self.output_proj(out))
