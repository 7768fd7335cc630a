"""D-FINE (Peng et al. 2025): RT-DETR whose boxes are distributions.

What D-FINE changes on :mod:`.rtdetr`:

* **FDR** (:mod:`.fine_distribution`): each layer's box MLP (reading
  ``output + previous output.detach()``) adds logits to the previous
  layer's four edge-offset distributions; their expectation, applied to the
  first layer's fixed "pre" box, is the layer's box and the next reference;
* **LQE**: the logits get an MLP of the distributions' top-4 probabilities;
* a gate replaces the decoder layer's second residual and norm; the
  cross-attention has no value/output projection and (3, 6, 3) points;
* **losses** (:class:`DFINEHead`): every output (layers, pre boxes,
  proposals) is classified by its own match and boxed by the *union* of all
  matches; **FGL**: cross-entropy with the two bins around each target
  edge, IoU-weighted; **DDF** (GO-LSD): the last layer's distributions
  distilled into the others, KL at temperature 5.

DEIM (Huang et al. 2025) trains the same model with SiLU MLPs/FFN
(``mlp_act``/FFN ``act_cfg``) and the matchability-aware loss
(:class:`MatchabilityAwareLoss`); its data recipe is in the configs.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from ..registry import MODELS
from .box_precision import float32_box_math
from .deformable_attention import DeformableAttention, LevelShapes
from .detr_head import (MLP, BoxMLP, at_least_one, mean_over_processes,
                        refine)
from .dino import denoising_matches
from .fine_distribution import (box_to_bin_targets, distance_to_box,
                                integral, interpolated_bin_loss,
                                weighting_function)
from .hungarian_assigner import QueryMatches
from .match_costs import BatchedTargets
from .rtdetr import (RTDETR, RTDETRCdnQueryGenerator, RTDETRHead,
                     RTDETRTransformerDecoder)
from .transformer_layers import BaseTransformerLayer


@MODELS.register_module()
class DFINEDeformableAttention(DeformableAttention):
    """D-FINE's deformable cross-attention: ``P_l`` points at level ``l``,
    one softmax over all ``sum P_l`` points of a head, offsets scaled by
    ``offset_scale / P_l`` of the reference box, and the memory itself as
    the values (no value or output projection); the points are laid into
    the ``(L, max P_l)`` grid of mmcv's kernel and our samplers (weight 0
    in the unused slots).

    Args:
        embed_dims, num_heads, dropout, sampling: as
            :class:`.deformable_attention.DeformableAttention`'s.
        num_points: ``P_l`` per level (its length is the number of levels).
        offset_scale: the offsets' unit, in reference box sizes (0.5).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8,
                 num_points: Sequence[int] = (3, 6, 3),
                 offset_scale: float = 0.5, dropout: float = 0.,
                 sampling: str = 'bilinear', init_cfg=None) -> None:
        points = tuple(int(p) for p in num_points)
        super().__init__(embed_dims, num_heads, len(points), max(points),
                         dropout, sampling, init_cfg)
        total = sum(points)
        self.points_per_level, self.offset_scale = points, offset_scale
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * total * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * total)
        self.value_proj = self.output_proj = nn.Identity()  # raw memory
        if sampling == 'discrete':
            self.sampling_offsets.requires_grad_(False)
        self.register_buffer('num_points_scale', torch.tensor(
            [1. / p for p in points for _ in range(p)]), persistent=False)
        self.register_buffer('point_slots', torch.tensor(
            [level * max(points) + k for level, p in enumerate(points)
             for k in range(p)]), persistent=False)
        self.init_weights()

    def init_weights(self) -> None:
        """The official initialization: zero weights, each head's offsets
        ``k`` times its direction (on the unit square's border) for its
        ``k``-th point of a level, uniform attention."""
        if not hasattr(self, 'points_per_level'):
            return  # mmcv's constructor calls it before ours sets them
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads) * (2 * math.pi / self.num_heads)
        direction = torch.stack([angles.cos(), angles.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True)[0]
        scale = torch.cat([torch.arange(1, p + 1)
                           for p in self.points_per_level]).float()
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(
                (direction[:, None] * scale[None, :, None]).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)

    @float32_box_math
    def sample(self, value: Tensor, offsets: Tensor, weight_logits: Tensor,
               reference_points: Tensor, spatial_shapes: Tensor,
               level_start_index: Tensor, level_shapes: LevelShapes
               ) -> Tensor:
        """Offsets ``(B, Lq, H, P, 2)`` and logits ``(B, Lq, H, P)`` around
        ``reference_points`` ``(B, Lq, 1, 4)`` cxcywh (one box for every
        level) -> the weighted samples ``(B, Lq, D)`` (float32 under
        autocast); the rest as the parent's."""
        boxes = reference_points[:, :, :1, None]  # (B, Lq, 1, 1, 4)
        locations = boxes[..., :2] + offsets * self.num_points_scale[
            :, None] * boxes[..., 2:] * self.offset_scale
        weights = weight_logits.softmax(-1)
        grid = (*weights.shape[:3], self.num_levels, self.num_points)
        if len(set(self.points_per_level)) > 1:
            slots = grid[3] * grid[4]
            locations = locations.new_zeros(*grid[:3], slots, 2).index_copy(
                3, self.point_slots, locations)
            weights = weights.new_zeros(*grid[:3], slots).index_copy(
                3, self.point_slots, weights)
        return self.sample_locations(
            value, locations.view(*grid, 2), weights.view(grid),
            spatial_shapes, level_start_index, level_shapes)


class Gate(nn.Module):
    """``LayerNorm(g1 * x1 + g2 * x2)`` with ``(g1, g2) = sigmoid(W [x1,
    x2] + b)``, ``(..., D)`` each; starts at ``(x1 + x2) / 2``."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dims, 2 * dims)
        self.norm = nn.LayerNorm(dims)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, residual: Tensor, update: Tensor) -> Tensor:
        gates = self.gate(torch.cat((residual, update), -1)).sigmoid()
        first, second = gates.chunk(2, -1)
        return self.norm(first * residual + second * update)


@MODELS.register_module()
class DFINEDecoderLayer(BaseTransformerLayer):
    """Self-attention, norm, cross-attention into a :class:`Gate`, FFN,
    norm (the FFN's sum clamped to fp16's range first). Built as a
    :class:`.transformer_layers.BaseTransformerLayer` with two attentions,
    an FFN and two norms (its ``operation_order`` is fixed)."""

    def __init__(self, attn_cfgs, ffn_cfgs, operation_order: Sequence[str] = (
            'self_attn', 'norm', 'cross_attn', 'ffn', 'norm'),
                 **kwargs) -> None:
        super().__init__(attn_cfgs, ffn_cfgs, operation_order, **kwargs)
        self.gateway = Gate(self.embed_dims)

    def forward(self, query: Tensor, key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """``(B, Q, D)`` -> ``(B, Q, D)``; ``value`` the memory, ``kwargs``
        the cross-attention's reference boxes and levels."""
        query = self.norms[0](query + self.attentions[0](
            query, query, query, query_pos=query_pos, key_pos=query_pos,
            attn_mask=self_attn_mask))
        query = self.gateway(query, self.attentions[1](
            query, key, value, query_pos=query_pos,
            key_padding_mask=key_padding_mask, **kwargs))
        return self.norms[1]((query + self.ffns[0](query)).clamp(
            -65504, 65504))


@MODELS.register_module()
class DFINETransformerDecoder(RTDETRTransformerDecoder):
    """The FDR decoder (the module docstring).

    Args:
        reg_max: ``R``, bins per edge minus one.
        reg_scale, up: ``W(n)``'s curvature and range (kept as buffers:
            checkpoints carry them; X uses reg_scale 8).
        mlp_act: activation of the query-position MLP ('relu'; DEIM
            'silu').
        *args, **kwargs: :class:`.rtdetr.RTDETRTransformerDecoder`'s.
    """

    def __init__(self, *args, reg_max: int = 32, reg_scale: float = 4.,
                 up: float = 0.5, mlp_act: str = 'relu', **kwargs) -> None:
        kwargs['layer_cfg'] = dict(kwargs.get('layer_cfg', {}))
        kwargs['layer_cfg'].setdefault('type', 'DFINEDecoderLayer')
        super().__init__(*args, **kwargs)
        self.reg_max = reg_max
        self.register_buffer('reg_scale', torch.tensor([float(reg_scale)]))
        self.register_buffer('up', torch.tensor([float(up)]))
        self.query_pos_head = MLP(4, 2 * self.embed_dims, self.embed_dims, 2,
                                  mlp_act)

    def forward(self, query: Tensor, value: Tensor, reference_points: Tensor,
                corner_branches: Sequence[nn.Module], pre_branch: nn.Module,
                **kwargs) -> Dict[str, Tensor]:
        """Decode ``(B, Q, D)`` queries from ``(B, Q, 4)`` boxes
        (normalized cxcywh, detached) over the ``(B, S, D)`` memory.

        Args:
            corner_branches: layer ``i``'s MLP to ``4 * (R + 1)`` logits.
            pre_branch: the first layer's box MLP (an RT-DETR refinement).
            **kwargs: ``self_attn_mask`` and the levels, for the layers.

        Returns:
            ``hidden_states`` ``(L, B, Q, D)``, ``corners`` ``(L, B, Q, 4
            (R + 1))`` (accumulated logits), ``boxes`` ``(L, B, Q, 4)``,
            ``initial_boxes`` ``(B, Q, 4)`` (every layer's reference,
            detached), ``pre_boxes`` ``(B, Q, 4)`` and ``W(n)``'s ``up``
            and ``reg_scale``; ``L`` stops at ``eval_idx`` at inference.
        """
        weights = weighting_function(self.reg_max, self.up, self.reg_scale)
        references, previous, corners = reference_points, 0, 0
        hidden_states, all_corners, all_boxes = [], [], []
        for i, layer in enumerate(self.active_layers):
            query_pos = self.query_pos_head(references).clamp(-10, 10)
            query = layer(query, value=value, query_pos=query_pos,
                          reference_points=references[:, :, None], **kwargs)
            if i == 0:
                pre_boxes = refine(pre_branch(query), references,
                                   self.refine_eps)
                initial = pre_boxes.detach()
            corners = corner_branches[i](query + previous) + corners
            boxes = distance_to_box(initial, integral(corners, weights),
                                    self.reg_scale)
            hidden_states.append(query)
            all_corners.append(corners)
            all_boxes.append(boxes)
            references, previous = boxes.detach(), query.detach()
        return dict(hidden_states=torch.stack(hidden_states),
                    corners=torch.stack(all_corners),
                    boxes=torch.stack(all_boxes), initial_boxes=initial,
                    pre_boxes=pre_boxes, up=self.up, reg_scale=self.reg_scale)

    @staticmethod
    def config_dict_types() -> dict:
        return dict(layer_cfg='DFINEDecoderLayer')


class DFINECdnQueryGenerator(RTDETRCdnQueryGenerator):
    """RT-DETR's denoising queries with positive noised sizes."""
    absolute_sizes = True


@MODELS.register_module()
class DFINE(RTDETR):
    """D-FINE: RT-DETR with the FDR decoder and :class:`DFINEHead`.

    Args:
        *args, **kwargs: :class:`.rtdetr.RTDETR`'s; a ``decoder_in_channels``
            equal to the decoder's width gets no input projection (the
            official code's identity; X projects 384 to 256).
    """

    decoder_type = 'DFINETransformerDecoder'
    dn_generator_type = DFINECdnQueryGenerator

    def _init_layers(self) -> None:
        super()._init_layers()
        for level, channels in enumerate(self.decoder_in_channels):
            if channels == self.embed_dims:
                self.input_proj[level] = nn.Identity()

    def init_weights(self) -> None:
        """RT-DETR's, then the gates and D-FINE's attention init."""
        super().init_weights()
        for module in self.decoder.modules():
            if isinstance(module, (Gate, DFINEDeformableAttention)):
                module.init_weights()
        for linear in self.decoder.query_pos_head.layers:
            nn.init.xavier_uniform_(linear.weight)

    def forward_decoder(self, query: Tensor, query_pos: Optional[Tensor],
                        memory: Tensor, reference_points: Tensor,
                        **kwargs) -> Dict[str, Tensor]:
        """:meth:`DFINETransformerDecoder.forward`'s outputs, for the head
        (``kwargs``: the levels and masks, for the layers)."""
        head = self.bbox_head
        return self.decoder(
            query, memory, reference_points,
            corner_branches=head.reg_branches, pre_branch=head.pre_bbox_head,
            **kwargs)


class LocalizationQuality(nn.Module):
    """LQE: ``logits + MLP([top-k probabilities, their mean] per edge)``
    of the ``(..., 4 (R + 1))`` corner logits; ``(..., C)`` logits."""

    def __init__(self, top_k: int = 4, hidden_dims: int = 64,
                 num_layers: int = 2, act: str = 'relu') -> None:
        super().__init__()
        self.top_k = top_k
        self.reg_conf = BoxMLP(4 * (top_k + 1), hidden_dims, 1, num_layers,
                               act)
        nn.init.zeros_(self.reg_conf.layers[-1].weight)
        nn.init.zeros_(self.reg_conf.layers[-1].bias)

    @float32_box_math
    def forward(self, logits: Tensor, corners: Tensor) -> Tensor:
        probs = corners.unflatten(-1, (4, -1)).softmax(-1)
        top = probs.topk(self.top_k, -1)[0]
        stats = torch.cat((top, top.mean(-1, keepdim=True)), -1).flatten(-2)
        return logits + self.reg_conf(stats)


@MODELS.register_module()
class MatchabilityAwareLoss(nn.Module):
    """DEIM's MAL, elementwise: ``BCE(logits, t)`` with target ``t =
    IoU^gamma`` and weight 1 at the matched (query, class) pairs, target 0
    and weight ``sigmoid(logits)^gamma`` (detached) elsewhere. Interface
    as :class:`.rtdetr.RTDETRVarifocalLoss`'s."""

    def __init__(self, gamma: float = 1.5, loss_weight: float = 1.,
                 use_sigmoid: bool = True) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('MatchabilityAwareLoss is a sigmoid loss')
        self.gamma, self.loss_weight = gamma, loss_weight

    def forward(self, logits: Tensor, scores: Tensor,
                positive: Tensor) -> Tensor:
        prob = logits.detach().sigmoid()
        weight = torch.where(positive, torch.ones_like(prob),
                             prob.pow(self.gamma))
        return self.loss_weight * F.binary_cross_entropy_with_logits(
            logits, scores.pow(self.gamma), weight=weight, reduction='none')


def union_of_matches(matches: QueryMatches) -> QueryMatches:
    """GO-LSD's matching union: over every output's pairs, each (image,
    query) keeps the box it is matched to most often (ties: the lowest box
    index), as one output's :class:`.hungarian_assigner.QueryMatches`
    (sorted by image and query; a box may have several queries)."""
    pairs = torch.stack((matches.batch_idx, matches.query_idx,
                         matches.gt_idx), 1)
    if not len(pairs):
        return matches
    unique, counts = torch.unique(pairs, dim=0, return_counts=True)
    # unique is sorted by (image, query, box); a stable sort by count,
    # then by (image, query), leaves each query's best box first
    order = torch.sort(counts, descending=True, stable=True)[1]
    order = order[torch.sort(unique[order, 0] * (unique[:, 1].max() + 1) +
                             unique[order, 1], stable=True)[1]]
    unique = unique[order]
    first = torch.ones(len(unique), dtype=torch.bool, device=unique.device)
    first[1:] = (unique[1:, :2] != unique[:-1, :2]).any(1)
    kept = unique[first]
    return QueryMatches(torch.zeros_like(kept[:, 0]), kept[:, 0], kept[:, 1],
                        kept[:, 2], len(kept))


def repeat_matches(matches: QueryMatches, num_layers: int) -> QueryMatches:
    """One output's matches as the same matches of ``num_layers``."""
    count, device = matches.num_per_layer, matches.batch_idx.device
    return QueryMatches(
        torch.arange(num_layers, device=device).repeat_interleave(count),
        *(t.repeat(num_layers) for t in (matches.batch_idx,
                                         matches.query_idx, matches.gt_idx)),
        count)


@MODELS.register_module()
class DFINEHead(RTDETRHead):
    """D-FINE's head: per layer a classifier with LQE and a corner MLP; the
    pre-box MLP; the proposals' classifier and box MLP (the last branch);
    the losses of the module docstring.

    Args:
        reg_max: ``R`` (as the decoder's).
        mlp_act: the MLPs' activation ('relu'; DEIM 'silu').
        lqe_cfg: :class:`LocalizationQuality`'s ``top_k``, ``hidden_dims``,
            ``num_layers``.
        loss_fgl, loss_ddf: the FGL and DDF weights (0.15, 1.5).
        ddf_temperature: DDF's softmax temperature (5).
        *args, **kwargs: :class:`.rtdetr.RTDETRHead`'s (``loss_cls`` may
            be :class:`MatchabilityAwareLoss`).
    """

    def __init__(self, *args, reg_max: int = 32, mlp_act: str = 'relu',
                 lqe_cfg: Optional[dict] = None, loss_fgl: float = 0.15,
                 loss_ddf: float = 1.5, ddf_temperature: float = 5.,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dims, layers = self.embed_dims, len(self.cls_branches) - 1
        self.reg_max = reg_max
        self.reg_branches = nn.ModuleList(
            [BoxMLP(dims, dims, 4 * (reg_max + 1), 3, mlp_act)
             for _ in range(layers)] + [BoxMLP(dims, dims, 4, 3, mlp_act)])
        self.pre_bbox_head = BoxMLP(dims, dims, 4, 3, mlp_act)
        self.lqe_layers = nn.ModuleList(
            LocalizationQuality(**dict(lqe_cfg or {}, act=mlp_act))
            for _ in range(layers))
        self.loss_fgl_weight, self.loss_ddf_weight = loss_fgl, loss_ddf
        self.ddf_temperature = ddf_temperature

    def init_weights(self) -> None:
        """Deformable DETR's (classifier prior, zero last box layers), the
        pre-box MLP's last layer zero too."""
        super().init_weights()
        nn.init.zeros_(self.pre_bbox_head.layers[-1].weight)
        nn.init.zeros_(self.pre_bbox_head.layers[-1].bias)

    def classify_layers(self, hidden_states: Tensor, corners: Tensor,
                        first_layer: int = 0) -> Tensor:
        """Logits ``(L, B, Q, C)`` with LQE of ``(L, B, Q, D)`` outputs and
        their ``(L, B, Q, 4 (R + 1))`` corners."""
        return torch.stack([
            self.lqe_layers[first_layer + i](
                self.cls_branches[first_layer + i](hidden), corner)
            for i, (hidden, corner) in enumerate(zip(hidden_states,
                                                     corners))])

    def forward(self, hidden_states: Tensor, corners: Tensor, boxes: Tensor,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Every decoded layer's logits ``(L, B, Q, C)`` and boxes ``(L, B,
        Q, 4)`` (normalized cxcywh)."""
        return self.classify_layers(hidden_states, corners), boxes

    def predict(self, hidden_states: Tensor, corners: Tensor, boxes: Tensor,
                batch_data_samples, rescale: bool = True, **kwargs):
        """Detections of the last decoded layer (``eval_idx``)."""
        last = len(hidden_states) - 1
        logits = self.classify_layers(hidden_states[-1:], corners[-1:], last)
        return self.predict_by_feat(
            logits, boxes[-1:], [s.metainfo for s in batch_data_samples],
            rescale=rescale)

    # ------------------------------------------------------------ training
    def loss(self, hidden_states: Tensor, corners: Tensor, boxes: Tensor,
             initial_boxes: Tensor, pre_boxes: Tensor, up: Tensor,
             reg_scale: Tensor, batch_data_samples,
             enc_outputs_class: Optional[Tensor] = None,
             enc_outputs_coord: Optional[Tensor] = None,
             dn_meta: Optional[Dict[str, int]] = None) -> Dict[str, Tensor]:
        """The losses of the matching queries (``loss_*``: the last layer,
        ``d{i}.loss_*``, ``pre_loss_*``, ``enc_loss_*``) and of the
        denoising ones (``dn_loss_*``, ``d{i}.dn_loss_*``,
        ``pre_dn_loss_*``); ``*`` is ``cls``, ``bbox``, ``iou``, ``fgl``,
        ``ddf`` (no FGL/DDF for pre and enc, no DDF for the last layer).
        Inputs as :meth:`DFINETransformerDecoder.forward`'s outputs (``Q =
        num_dn + num_queries``), the proposals ``(B, num_queries, ·)``
        (none in eval mode)."""
        num_dn = dn_meta['num_denoising_queries'] if dn_meta else 0
        targets = BatchedTargets.from_samples(batch_data_samples,
                                              hidden_states.device)
        logits = self.classify_layers(hidden_states, corners)
        pre_logits = self.cls_branches[0](hidden_states[0])
        num_layers = len(hidden_states)
        num_gts = at_least_one(mean_over_processes(
            sum(targets.num_gts), hidden_states.device))
        match = slice(num_dn, None)
        # outputs: the layers, the pre boxes, the proposals
        enc = [] if enc_outputs_class is None else [None]
        out_logits = torch.cat([logits[:, :, match],
                                pre_logits[None, :, match]] +
                               [enc_outputs_class[None] for _ in enc])
        out_boxes = torch.cat([boxes[:, :, match], pre_boxes[None, :, match]]
                              + [enc_outputs_coord[None] for _ in enc])
        own = self.assigner.assign(out_logits.detach(), out_boxes.detach(),
                                   targets)
        union = union_of_matches(own)
        scales = (up, reg_scale)
        losses, balance = self.output_losses(
            out_logits, out_boxes, targets, own, num_gts, union,
            corners[:, :, match], initial_boxes[:, match], logits[:, :,
                                                                  match],
            names=[f'd{i}.' for i in range(num_layers - 1)] +
            ['', 'pre_'] + ['enc_' for _ in enc], kind='loss',
            scales=scales)
        losses.update(self._logged_errors(logits[-1, :, match], targets,
                                          own.layer(num_layers - 1)))
        if dn_meta:
            dn = slice(None, num_dn)
            groups = dn_meta['num_denoising_groups']
            dn_matches = denoising_matches(targets.num_gts, groups, num_dn,
                                           1, hidden_states.device)
            losses.update(self.output_losses(
                torch.cat((logits[:, :, dn], pre_logits[None, :, dn])),
                torch.cat((boxes[:, :, dn], pre_boxes[None, :, dn])),
                targets, repeat_matches(dn_matches, num_layers + 1),
                num_gts * groups, dn_matches, corners[:, :, dn],
                initial_boxes[:, dn], logits[:, :, dn],
                names=[f'd{i}.' for i in range(num_layers - 1)] +
                ['', 'pre_'], kind='dn_loss', scales=scales,
                ddf_balance=balance)[0])
        return losses

    def output_losses(self, logits: Tensor, boxes: Tensor,
                      targets: BatchedTargets, own: QueryMatches,
                      num_gts, union: QueryMatches, corners: Tensor,
                      initial_boxes: Tensor, layer_logits: Tensor,
                      names: Sequence[str], kind: str,
                      scales: Tuple[Tensor, Tensor],
                      ddf_balance: Optional[Tuple[Tensor, Tensor]] = None
                      ) -> Tuple[Dict[str, Tensor], Tuple[Tensor, Tensor]]:
        """Named losses of ``N`` outputs ``(N, B, Q, ·)`` whose first ``L``
        are the decoder layers (with ``corners`` ``(L, B, Q, 4 (R + 1))``):
        classification by ``own`` matches / ``num_gts``; L1, GIoU and (the
        layers) FGL by the ``union`` matches / their number; DDF of layers
        before the last; and DDF's balance (:meth:`distribution_losses`)."""
        num_outputs, num_layers = len(logits), len(corners)
        cls = self.iou_target_class_loss(logits, boxes, targets, own) / \
            num_gts
        repeated = repeat_matches(union, num_outputs)
        l1, giou = self._box_losses(boxes, targets, repeated, num_outputs)
        fgl, ddf, ddf_balance = self.distribution_losses(
            corners, boxes[:num_layers], layer_logits[-1], initial_boxes,
            targets, union, scales, ddf_balance)
        losses = {}
        for i, name in enumerate(names):
            losses[f'{name}{kind}_cls'] = cls[i]
            losses[f'{name}{kind}_bbox'] = l1[i]
            losses[f'{name}{kind}_iou'] = giou[i]
            if i < num_layers:
                losses[f'{name}{kind}_fgl'] = fgl[i]
            if i < num_layers - 1:
                losses[f'{name}{kind}_ddf'] = ddf[i]
        return losses, ddf_balance

    @float32_box_math
    def distribution_losses(self, corners: Tensor, boxes: Tensor,
                            teacher_logits: Tensor, initial_boxes: Tensor,
                            targets: BatchedTargets, matches: QueryMatches,
                            scales: Tuple[Tensor, Tensor],
                            ddf_balance: Optional[Tuple[Tensor, Tensor]] = None
                            ) -> Tuple[Tensor, Tensor, Tuple[Tensor, Tensor]]:
        """FGL ``(L,)`` and DDF ``(L - 1,)`` of the layers' corners ``(L, B,
        Q, 4 (R + 1))`` and boxes ``(L, B, Q, 4)``, given one set of
        matches for all layers.

        FGL: per matched edge the interpolated cross-entropy with its
        target bins (relative to ``initial_boxes`` ``(B, Q, 4)``), times the
        IoU of the layer's box, summed / matches. DDF: per edge of every
        query ``T^2 KL(teacher || layer)`` at temperature ``T``, weighted by
        the teacher's (last layer's) best class probability -- at matches,
        the layer's IoU --, the matched and unmatched means combined in
        proportion to the square roots of their counts (``ddf_balance``:
        those weights given, as the denoising queries take the matching
        queries'; returned). ``scales``: ``W(n)``'s ``up``, ``reg_scale``."""
        bins = self.reg_max + 1
        idx = (matches.batch_idx, matches.query_idx)
        gt = targets.boxes_cxcywh[idx[0], matches.gt_idx]
        bin_targets = box_to_bin_targets(
            initial_boxes[idx].detach(), bbox_cxcywh_to_xyxy(gt),
            self.reg_max, *scales)
        count = at_least_one(mean_over_processes(matches.num_per_layer,
                                                 corners.device))
        temperature = self.ddf_temperature
        teacher = F.softmax(corners[-1].detach().reshape(-1, bins) /
                            temperature, -1)
        matched = torch.zeros(corners.shape[1:3], dtype=torch.bool,
                              device=corners.device)
        matched[idx] = True
        matched = matched[..., None].expand(-1, -1, 4).reshape(-1)
        if ddf_balance is None:
            scale = 8 / corners.size(1)  # the official per-8-images count
            ddf_balance = ((matched.sum() * scale)**0.5,
                           ((~matched).sum() * scale)**0.5)
        positive_weight, negative_weight = ddf_balance
        teacher_weight = teacher_logits.detach().sigmoid().max(-1)[0]
        fgl, ddf = [], []
        for layer in range(len(corners)):
            iou = self.matched_iou(boxes[layer][idx], targets, matches)
            fgl.append((interpolated_bin_loss(
                corners[layer][idx].reshape(-1, bins), *bin_targets) *
                iou.repeat_interleave(4)).sum() / count)
            if layer == len(corners) - 1:
                continue
            weight = teacher_weight.index_put(idx, iou.to(
                teacher_weight.dtype))
            kl = F.kl_div(F.log_softmax(corners[layer].reshape(-1, bins) /
                                        temperature, -1), teacher,
                          reduction='none').sum(-1)
            kl = kl * weight[..., None].expand(-1, -1, 4).reshape(-1) * \
                temperature**2
            terms = [part.mean() * w for part, w in (
                (kl[matched], positive_weight),
                (kl[~matched], negative_weight)) if part.numel()]
            ddf.append(sum(terms) / (positive_weight + negative_weight))
        ddf = torch.stack(ddf) if ddf else corners.new_zeros(0)
        return torch.stack(fgl) * self.loss_fgl_weight, \
            ddf * self.loss_ddf_weight, ddf_balance
