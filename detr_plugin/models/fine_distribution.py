"""D-FINE's box parametrization: Fine-grained Distribution Refinement (FDR;
Peng et al. 2025, section 3.2).

A box is its reference box plus four edge offsets, each the expectation of
a distribution over ``R + 1`` bins whose values are the non-uniform
weighting function ``W(n)`` (:func:`weighting_function`): dense near 0 (fine
corrections), sparse towards the ends (``+-2 up * s`` box sizes, ``s =
reg_scale``). The functions here: ``W``, the expectation
(:func:`integral`), decoding offsets into boxes (:func:`distance_to_box`)
and encoding a target box as the two bins around each edge offset with
their interpolation weights (:func:`box_to_bin_targets`, the FGL loss's
target). Boxes are normalized ``(cx, cy, w, h)``; an offset ``d`` places
an edge at ``(s / 2 + d) w / s`` from the reference's centre (``d = 0``:
the reference's own edge).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from torch import Tensor

from .box_precision import float32_box_math


def weighting_function(reg_max: int, up: Tensor, reg_scale: Tensor
                       ) -> Tensor:
    """``W(n)``, ``(R + 1,)`` ascending, for ``R = reg_max`` (even) bins
    (``up``, ``reg_scale`` ``(1,)`` tensors; differentiable in them as the
    official code's, though neither is trained).

    With ``u = |up| |s|`` and ``c = (u + 1)^(2 / (R - 2))``: the ends are
    ``-+2u``, the middle 0, and between them ``-+(c^i - 1)`` for ``i = 1 ..
    R/2 - 1`` (``c^(R/2 - 1) - 1 = u``)."""
    bound = up.abs()[0] * reg_scale.abs()[0]
    step = (bound + 1)**(2 / (reg_max - 2))
    inner = torch.stack([step**i - 1 for i in range(1, reg_max // 2)])
    zero = torch.zeros_like(bound)
    return torch.cat([(-2 * bound)[None], -inner.flip(0), zero[None], inner,
                      (2 * bound)[None]])


@float32_box_math
def integral(corner_logits: Tensor, weights: Tensor) -> Tensor:
    """The expected offsets ``(..., 4)`` of ``(..., 4 * (R + 1))`` logits
    (four edges' distributions, softmax per edge) under ``W`` ``(R +
    1,)``, in float32 under any autocast (the matrix product would run in
    the autocast's dtype)."""
    probs = corner_logits.unflatten(-1, (4, -1)).softmax(-1)
    return probs @ weights.to(probs.dtype)


@float32_box_math
def distance_to_box(references: Tensor, offsets: Tensor, reg_scale: Tensor
                    ) -> Tensor:
    """Boxes ``(..., 4)`` cxcywh of references ``(..., 4)`` cxcywh and edge
    offsets ``(..., 4)`` (left, top, right, bottom), in float32 under any
    autocast; offset 0 keeps the reference."""
    scale = reg_scale.abs()
    centre, size = references[..., :2], references[..., 2:]
    half = 0.5 * scale
    top_left = centre - (half + offsets[..., :2]) * size / scale
    bottom_right = centre + (half + offsets[..., 2:]) * size / scale
    return bbox_xyxy_to_cxcywh(torch.cat((top_left, bottom_right), -1))


@torch.no_grad()
def box_to_bin_targets(references: Tensor, boxes_xyxy: Tensor, reg_max: int,
                       up: Tensor, reg_scale: Tensor, eps: float = 0.1
                       ) -> Tuple[Tensor, Tensor, Tensor]:
    """The FGL targets of ``(N, 4)`` boxes relative to ``(N, 4)``
    references (cxcywh): per edge (``4N``, in (l, t, r, b) order per box)
    the left bin ``n`` with ``W(n) <= d < W(n + 1)`` (a float in ``[0, R -
    eps]``) and the weights of the right and left bins, linear in ``d``
    between them; an offset beyond an end is all on the end bin."""
    scale = reg_scale.abs()
    unit = references[:, 2:] / scale + 1e-16
    centre = references[:, :2]
    offsets = torch.cat(((centre - boxes_xyxy[:, :2]) / unit,
                         (boxes_xyxy[:, 2:] - centre) / unit), -1) - \
        0.5 * scale
    offsets = offsets.reshape(-1)
    values = weighting_function(reg_max, up, reg_scale)
    left = (values[None] <= offsets[:, None]).sum(1) - 1
    inside = (left >= 0) & (left < reg_max)
    index = left.clamp(0, reg_max - 1)
    to_left = (offsets - values[index]).abs()
    to_right = (values[index + 1] - offsets).abs()
    right_weight = torch.where(inside, to_left / (to_left + to_right),
                               (left >= reg_max).to(offsets.dtype))
    bins = left.clamp(min=0).to(offsets.dtype).clamp(max=reg_max - eps)
    return bins, right_weight, 1 - right_weight


def interpolated_bin_loss(corner_logits: Tensor, bins: Tensor,
                          right_weight: Tensor, left_weight: Tensor
                          ) -> Tensor:
    """FGL per edge ``(4N,)``: the cross-entropies of ``(4N, R + 1)``
    logits with the left bin ``floor(bins)`` and the right bin, weighted by
    their interpolation weights."""
    left = bins.long()
    return F.cross_entropy(corner_logits, left, reduction='none') * \
        left_weight + F.cross_entropy(corner_logits, left + 1,
                                      reduction='none') * right_weight
