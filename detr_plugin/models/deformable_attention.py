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
layer adds it). On a CPU, with gradients, :func:`sample_levels_grid` follows
mmcv's PyTorch path (``grid_sample`` of each level's ``(B*H, D/H, h, w)``
map) but weights and sums each level's samples as they come instead of
stacking all of them first; without gradients :func:`sample_levels_cpu`
computes the same bilinear sums as gathers of contiguous value rows. mmcv's
own function is what ONNX tracing records.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.ops.multi_scale_deform_attn import (
    MultiScaleDeformableAttention, MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch)
from torch import Tensor

from ..registry import MODELS
from .box_precision import float32_box_math

# (h_l, w_l) of each feature level as Python ints: the CPU paths loop over
# them, and reading them off a device tensor would synchronize each time
LevelShapes = Sequence[Tuple[int, int]]


def sample_levels_grid(value: Tensor, level_shapes: LevelShapes,
                       locations: Tensor, weights: Tensor) -> Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch``, level by level: the
    same ``grid_sample`` per level, but each level's ``(B*H, D/H, Q, K)``
    samples are weighted and summed over ``K`` at once, so the ``L``-times
    larger stack of all samples that mmcv builds (and keeps for its backward)
    never exists, and each level's grid and weights are contiguous.
    ``tools/benchmark.py --model deformable_detr --only sampling`` times
    both (Deformable DETR's encoder at 512 x 640, 6,800 queries): forward +
    backward 1.04-1.55x faster than mmcv's on the 2-core development CPU
    (AMD EPYC, avx512_bf16, 2 threads, medians of 5-7, four runs). Arguments
    and result as :func:`sample_levels_cpu`.
    """
    batch, _, heads, dims = value.shape
    queries = locations.size(1)
    shapes = level_shapes
    # (L, B*H, Q, K, 2) and (L, B*H, 1, Q, K)
    grids = (2 * locations - 1).permute(3, 0, 2, 1, 4, 5).flatten(1, 2)
    grids = grids.contiguous()
    weights = weights.permute(3, 0, 2, 1, 4).flatten(1, 2)[:, :, None]
    weights = weights.contiguous()
    maps = value.split([height * width for height, width in shapes], 1)
    out = 0
    for level, (height, width) in enumerate(shapes):
        value_map = maps[level].permute(0, 2, 3, 1).reshape(
            batch * heads, dims, height, width)
        samples = F.grid_sample(value_map, grids[level], mode='bilinear',
                                padding_mode='zeros', align_corners=False)
        out = out + (samples * weights[level]).sum(-1)
    return out.view(batch, heads * dims, queries).transpose(1, 2)


def sample_levels_cpu(value: Tensor, level_shapes: LevelShapes,
                      locations: Tensor, weights: Tensor) -> Tensor:
    """What mmcv's ``multi_scale_deformable_attn_pytorch`` computes -- the
    attention-weighted sum of bilinear samples, zero outside each map
    (``grid_sample`` with ``align_corners=False``) -- as one
    ``F.embedding_bag``: every sample is 4 corners, each a row of the value
    table (the ``D / H`` values of a head at a position, contiguous) times
    its bilinear weight x the attention weight. mmcv's path reads every
    channel plane separately in ``grid_sample`` and then stacks, weights and
    sums all samples; here the corners are computed per level with scalar
    sizes. In the same benchmark (``sampling_infer``) this was 2.6-4x
    faster than mmcv's; ``embedding_bag``'s backward is slower than
    ``grid_sample``'s (0.8-0.9 s against 0.36 s there), so this path serves
    inference only.

    Args:
        value: ``(B, S, H, D/H)``.
        level_shapes: ``(h_l, w_l)`` of each level, Python ints.
        locations: ``(B, Q, H, L, K, 2)`` normalized (x, y) per level.
        weights: ``(B, Q, H, L, K)``.

    Returns:
        ``(B, Q, D)``.
    """
    batch, size, heads, dims = value.shape
    queries = locations.size(1)
    locations = locations.permute(3, 5, 0, 1, 2, 4)  # (L, 2, B, Q, H, K)
    weights = weights.permute(3, 0, 1, 2, 4)  # (L, B, Q, H, K)
    table_row = (torch.arange(batch, device=value.device)[:, None, None,
                                                          None] * heads +
                 torch.arange(heads, device=value.device)[:, None]) * size
    rows, row_weights, level_start = [], [], 0
    for level, (height, width) in enumerate(level_shapes):
        (x0, wx0), (x1, wx1) = _neighbours(locations[level, 0], width)
        (y0, wy0), (y1, wy1) = _neighbours(locations[level, 1], height)
        start = table_row + level_start  # (B, 1, H, 1)
        level_start += height * width
        rows.append(torch.stack((start + y0 * width + x0,
                                 start + y0 * width + x1,
                                 start + y1 * width + x0,
                                 start + y1 * width + x1), -1))
        attention = weights[level]
        row_weights.append(torch.stack(
            (wy0 * wx0 * attention, wy0 * wx1 * attention,
             wy1 * wx0 * attention, wy1 * wx1 * attention), -1))
    per_query = locations.size(0) * locations.size(-1) * 4  # L * K corners
    out = F.embedding_bag(
        torch.stack(rows, 3).view(-1, per_query),
        value.permute(0, 2, 1, 3).reshape(-1, dims), mode='sum',
        per_sample_weights=torch.stack(row_weights, 3).view(
            -1, per_query).to(value.dtype))  # bf16 values under autocast
    return out.view(batch, queries, heads * dims)


def sample_levels_discrete(value: Tensor, level_shapes: LevelShapes,
                           locations: Tensor, weights: Tensor) -> Tensor:
    """RT-DETRv2's ``discrete`` sampling: each location reads the value of
    one cell, ``int(x * w + 0.5)`` (truncated, as the official code, then
    clamped into the map; the official clamps both axes to ``h - 1``, equal
    on square maps), without interpolation: gathers only, no
    ``grid_sample`` -- for runtimes that lack it. Arguments and result as
    :func:`sample_levels_cpu`."""
    batch, size, heads, dims = value.shape
    queries = locations.size(1)
    table = value.permute(0, 2, 1, 3)  # (B, H, S, D/H)
    out, start = 0, 0
    for level, (height, width) in enumerate(level_shapes):
        loc = locations[:, :, :, level].transpose(1, 2)  # (B, H, Q, K, 2)
        x = (loc[..., 0] * width + 0.5).long().clamp(0, width - 1)
        y = (loc[..., 1] * height + 0.5).long().clamp(0, height - 1)
        index = (start + y * width + x).flatten(2)  # (B, H, Q*K)
        start += height * width
        samples = table.gather(2, index[..., None].expand(-1, -1, -1, dims))
        out = out + (samples.view(*loc.shape[:-1], dims) *
                     weights[:, :, :, level].transpose(1, 2)[..., None]
                     ).sum(3)  # (B, H, Q, D/H)
    return out.permute(0, 2, 1, 3).reshape(batch, queries, heads * dims)


def _neighbours(coord: Tensor, size: int):
    """The two pixels around normalized coordinates ``coord`` on an axis of
    ``size`` pixels (pixel centres at ``(i + 0.5) / size``): ``(index,
    weight)`` each, the index clamped into the map and the weight zero for a
    pixel outside it."""
    pixel = coord * size - 0.5
    low = pixel.floor()
    frac = pixel - low
    low = low.long()
    high = low + 1
    return ((low.clamp(0, size - 1), (1 - frac) * ((low >= 0) & (low < size))),
            (high.clamp(0, size - 1), frac * ((high >= 0) & (high < size))))


@MODELS.register_module()
class DeformableAttention(MultiScaleDeformableAttention):
    """mmcv's multi-scale deformable attention in this package's interface.

    Args:
        embed_dims: width ``D``.
        num_heads: heads ``H``.
        num_levels: feature levels ``L``.
        num_points: sampled points ``K`` per head and level.
        dropout: dropout on the output (before the layer's residual).
        sampling: ``'bilinear'`` (default) or RT-DETRv2's ``'discrete'``
            (:func:`sample_levels_discrete`; its sampling offsets are then
            not trained, as the official code).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8,
                 num_levels: int = 4, num_points: int = 4,
                 dropout: float = 0.1, sampling: str = 'bilinear',
                 init_cfg=None) -> None:
        super().__init__(embed_dims, num_heads, num_levels, num_points,
                         dropout=dropout, batch_first=True,
                         init_cfg=init_cfg)
        if sampling not in ('bilinear', 'discrete'):
            raise ValueError(f"sampling must be 'bilinear' or 'discrete', "
                             f"not {sampling!r}")
        self.sampling = sampling
        if sampling == 'discrete':
            self.sampling_offsets.requires_grad_(False)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                level_shapes: Optional[LevelShapes] = None,
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
            level_shapes: ``spatial_shapes`` as Python ints (read off the
                tensor when None).
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
        offsets = self.sampling_offsets(query).view(
            batch, num_queries, self.num_heads, -1, 2)
        weight_logits = self.attention_weights(query).view(
            batch, num_queries, self.num_heads, -1)
        out = self.sample(value, offsets, weight_logits, reference_points,
                          spatial_shapes, level_start_index,
                          level_shapes or spatial_shapes.tolist())
        return self.dropout(self.output_proj(out))

    @float32_box_math
    def sample(self, value: Tensor, offsets: Tensor, weight_logits: Tensor,
               reference_points: Tensor, spatial_shapes: Tensor,
               level_start_index: Tensor, level_shapes: LevelShapes
               ) -> Tensor:
        """The attention-weighted bilinear samples ``(B, Lq, D)``, in float32
        under any autocast: the sampling locations are box math, and mmcv's
        CUDA kernel would cast them and the weights to the values' dtype
        (fp16 under autocast) and accumulate their gradients in it.

        Args:
            value: ``(B, S, H, D/H)``.
            offsets: ``(B, Lq, H, L*K, 2)`` predicted sampling offsets.
            weight_logits: ``(B, Lq, H, L*K)`` before their softmax.
            reference_points, spatial_shapes, level_start_index,
                level_shapes: as :meth:`forward`'s.
        """
        offsets = offsets.view(*offsets.shape[:3], self.num_levels,
                               self.num_points, 2)  # (traces batch-free)
        weights = weight_logits.softmax(-1).view(offsets.shape[:-1])
        points = reference_points[:, :, None, :, None]  # (B, Lq, 1, L, 1, R)
        if reference_points.size(-1) == 2:  # offsets in pixels of the level
            width_height = spatial_shapes.flip(-1)  # (L, 2) as (w, h)
            locations = points + offsets / width_height[:, None, :]
        else:  # offsets in units of the box's half-size / K
            locations = points[..., :2] + offsets / self.num_points * \
                points[..., 2:] * 0.5
        return self.sample_locations(value, locations, weights,
                                     spatial_shapes, level_start_index,
                                     level_shapes)

    def sample_locations(self, value: Tensor, locations: Tensor,
                         weights: Tensor, spatial_shapes: Tensor,
                         level_start_index: Tensor,
                         level_shapes: LevelShapes) -> Tensor:
        """``sum A V_l(p)``, ``(B, Lq, D)``, of the ``(B, S, H, D/H)``
        values at ``locations`` ``(B, Lq, H, L, K, 2)`` normalized, weighted
        by ``weights`` ``(B, Lq, H, L, K)``, on the path for the device
        (mmcv's CUDA kernel, its PyTorch function under tracing, or this
        module's CPU samplers)."""
        if self.sampling == 'discrete':
            return sample_levels_discrete(value, level_shapes, locations,
                                          weights)
        if value.is_cuda:
            return MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, locations, weights,
                self.im2col_step)
        if torch.jit.is_tracing():
            return multi_scale_deformable_attn_pytorch(
                value, spatial_shapes, locations, weights)
        if torch.is_grad_enabled():
            return sample_levels_grid(value, level_shapes, locations, weights)
        return sample_levels_cpu(value, level_shapes, locations, weights)
