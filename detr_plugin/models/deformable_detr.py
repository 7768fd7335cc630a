"""Deformable DETR (Zhu et al. 2021): multi-scale deformable attention.

The encoder reads four feature levels (the backbone's strides 8/16/32 and one
more at 64, through mmdet's ``ChannelMapper`` neck), each position tagged
with its sine encoding plus a learned level embedding (section 4.1). Both the
encoder's self-attention and the decoder's cross-attention are
:class:`.deformable_attention.DeformableAttention`: every query samples a few
points around its reference point on every level, so the cost is linear in
the number of positions. Padding is handled by *valid ratios*: the share of
each level that is image, by which normalized reference points are scaled
(appendix A.2). Queries start from reference points predicted from their
positional embedding, and boxes are predicted relative to them.

Two options (section 4.2): *iterative box refinement* -- each decoder layer
refines its queries' reference boxes with its own box head, passed on
detached -- and *two-stage* -- the encoder's positions act as proposals
(``(cx, cy)`` of the position, ``(w, h) = 0.05 * 2^level``), scored and
refined by an extra head, and the top ``Q`` become the decoder's reference
boxes and (through their sine encoding) its queries.

Here: the encoder and decoder (reference points), :class:`DeformableDETR`
(multi-level input, proposals) and :class:`DeformableDETRHead` (a classifier
and box MLP per decoder layer, plus the proposals' binary loss).
"""
import copy
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers.transformer import (coordinate_to_encoding,
                                             inverse_sigmoid)
from mmengine.model import bias_init_with_prob
from torch import Tensor, nn

from ..registry import MODELS
from .box_precision import sigmoid_references
from .deformable_attention import DeformableAttention, LevelShapes
from .detr import DETR, resize_mask
from .detr_head import DETRHead, refine
from .match_costs import BatchedTargets
from .transformer_layers import DetrTransformerDecoder, DetrTransformerEncoder


def valid_size(mask: Tensor) -> Tensor:
    """``(B, 2)`` image width and height, in cells, of a level's
    ``(B, h, w)`` padding mask (True = padded)."""
    return torch.stack(((~mask[:, 0, :]).sum(1), (~mask[:, :, 0]).sum(1)),
                       -1).float()


def valid_ratio(mask: Optional[Tensor], batch: int,
                device: torch.device) -> Tensor:
    """``(B, 2)`` share of a level's width and height that is image (1 where
    nothing is padded)."""
    if mask is None:
        return torch.ones(batch, 2, device=device)
    height, width = mask.shape[1:]
    return torch.stack(((~mask[:, 0, :]).sum(1) / width,
                        (~mask[:, :, 0]).sum(1) / height), -1)


def level_grid(height: int, width: int, device: torch.device) -> Tensor:
    """``(h*w, 2)`` pixel centres ``(x + 0.5, y + 0.5)`` of a level, row by
    row."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=device) + 0.5,
        torch.arange(width, dtype=torch.float32, device=device) + 0.5,
        indexing='ij')
    return torch.stack((xs.reshape(-1), ys.reshape(-1)), -1)


def scaled_references(references: Tensor, valid_ratios: Tensor) -> Tensor:
    """``(B, Q, R)`` references normalized by the image -> ``(B, Q, L, R)``
    normalized by each (padded) level, as deformable attention samples."""
    ratios = valid_ratios if references.size(-1) == 2 else \
        torch.cat((valid_ratios, valid_ratios), -1)
    return references[:, :, None] * ratios[:, None]


@MODELS.register_module()
class DeformableDetrTransformerEncoder(DetrTransformerEncoder):
    """Layers of deformable self-attention; each position's reference point
    is its own centre."""

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Optional[Tensor], spatial_shapes: Tensor,
                valid_ratios: Tensor,
                level_shapes: Optional[LevelShapes] = None,
                **kwargs) -> Tensor:
        """Encode ``(B, S, D)`` flattened levels (positions ``query_pos``,
        padding ``(B, S)``) of ``spatial_shapes`` ``(L, 2)`` (and as Python
        ints, ``level_shapes``) with ``valid_ratios`` ``(B, L, 2)``; returns
        the memory ``(B, S, D)``."""
        level_shapes = level_shapes or spatial_shapes.tolist()
        centres = torch.cat([
            level_grid(h, w, query.device) / (valid_ratios[:, None, level] *
                                              spatial_shapes[level].flip(0))
            for level, (h, w) in enumerate(level_shapes)], 1)
        references = scaled_references(centres, valid_ratios)
        return super().forward(query, query_pos, key_padding_mask,
                               reference_points=references,
                               spatial_shapes=spatial_shapes,
                               level_shapes=level_shapes, **kwargs)


@MODELS.register_module()
class DeformableDetrTransformerDecoder(DetrTransformerDecoder):
    """Layers of self-attention and deformable cross-attention around each
    query's reference point, optionally refined layer by layer."""

    # the head sees each layer's refined reference detached (DINO: with its
    # gradient, "look forward twice"); eps of the refinement's
    # inverse_sigmoid
    look_forward_twice = False
    refine_eps = 1e-5

    def forward(self, query: Tensor, query_pos: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor], reference_points: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[Sequence[nn.Module]] = None,
                **kwargs) -> Tuple[Tensor, List[Tensor]]:
        """Decode the queries.

        Args:
            query, query_pos: ``(B, Q, D)``.
            value: ``(B, S, D)`` the memory; key_padding_mask its padding.
            reference_points: ``(B, Q, 2)`` or ``(B, Q, 4)`` normalized.
            valid_ratios: ``(B, L, 2)``.
            reg_branches: with box refinement, each layer's box MLP.
            **kwargs: ``spatial_shapes``, ``level_start_index``,
                ``self_attn_mask`` for the layers.

        Returns:
            ``hidden_states`` ``(L, B, Q, D)`` (after ``post_norm``) and the
            reference each layer started from (``(B, Q, R)`` each; a 2-D
            reference becomes 4-D once refined).
        """
        outputs, layer_references = [], []
        head_reference = reference_points
        layers = self.active_layers
        for i, layer in enumerate(layers):
            layer_references.append(head_reference)
            scaled = scaled_references(reference_points, valid_ratios)
            query = layer(query, value=value,
                          query_pos=self.query_pos(query_pos, scaled),
                          key_padding_mask=key_padding_mask,
                          reference_points=scaled, **kwargs)
            # the last layer's refined boxes would feed no layer: not computed
            if reg_branches is not None and i + 1 < len(layers):
                refined = refine(reg_branches[i](query), reference_points,
                                 self.refine_eps)
                reference_points = refined.detach()
                head_reference = refined if self.look_forward_twice else \
                    reference_points
            outputs.append(self.post_norm(query))
        if not self.return_intermediate:
            outputs, layer_references = outputs[-1:], layer_references[-1:]
        return torch.stack(outputs), layer_references

    @property
    def active_layers(self) -> Sequence[nn.Module]:
        """The layers a forward runs (RT-DETR may stop early at
        inference)."""
        return self.layers

    def query_pos(self, query_pos: Tensor, scaled_references: Tensor
                  ) -> Tensor:
        """The queries' positions at a layer (DINO derives them from the
        ``(B, Q, L, R)`` references)."""
        return query_pos


def gather_queries(values: Tensor, index: Tensor) -> Tensor:
    """``values[b, index[b]]``: ``(B, S, C)`` and ``(B, Q)`` -> ``(B, Q,
    C)``."""
    return values.gather(1, index[..., None].expand(-1, -1, values.size(-1)))


@MODELS.register_module()
class DeformableDETR(DETR):
    """Deformable DETR: multi-level deformable attention, reference points.

    Args:
        with_box_refine: each decoder layer refines the reference boxes.
        as_two_stage: the decoder's queries and references are the top
            ``num_queries`` encoder proposals.
        num_feature_levels: ``L``, the neck's outputs.
        *args, **kwargs: :class:`.detr.DETR`'s (a ``neck`` is required).
    """

    encoder_type = 'DeformableDetrTransformerEncoder'
    decoder_type = 'DeformableDetrTransformerDecoder'

    def __init__(self, *args, with_box_refine: bool = False,
                 as_two_stage: bool = False, num_feature_levels: int = 4,
                 decoder: dict, bbox_head: dict, **kwargs) -> None:
        self.with_box_refine, self.as_two_stage = with_box_refine, as_two_stage
        self.num_feature_levels = num_feature_levels
        # one head per decoder layer (plus the proposals'), shared unless
        # refined
        bbox_head = dict(bbox_head, share_pred_layer=not with_box_refine,
                         num_pred_layer=decoder['num_layers'] + as_two_stage,
                         as_two_stage=as_two_stage)
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head,
                         **kwargs)

    @property
    def query_embedding_dims(self) -> int:
        """Position and content of each query (none: two-stage)."""
        return 0 if self.as_two_stage else 2 * self.embed_dims

    def _init_layers(self) -> None:
        super()._init_layers()
        dims = self.embed_dims
        self.level_embed = nn.Parameter(
            torch.empty(self.num_feature_levels, dims))
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(dims, dims)
            self.memory_trans_norm = nn.LayerNorm(dims)
        else:
            self.reference_points_fc = nn.Linear(dims, 2)
        if self.as_two_stage and not self.query_embedding_dims:
            # queries and positions from the proposals' sine encoding
            self.pos_trans_fc = nn.Linear(2 * dims, 2 * dims)
            self.pos_trans_norm = nn.LayerNorm(2 * dims)

    def init_weights(self) -> None:
        """DETR's, then mmcv's initialization of the deformable attentions
        (sampling offsets on a circle), xavier for the new projections and a
        normal level embedding, as mmdet."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, DeformableAttention):
                module.init_weights()
        for name in ('memory_trans_fc', 'pos_trans_fc',
                     'reference_points_fc'):
            if hasattr(self, name):
                nn.init.xavier_uniform_(getattr(self, name).weight)
        if hasattr(self, 'reference_points_fc'):
            nn.init.zeros_(self.reference_points_fc.bias)
        nn.init.normal_(self.level_embed)

    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        pixel_mask: Optional[Tensor]) -> Tuple[Dict, Dict]:
        """Flatten and concatenate the levels ``(B, D, h_l, w_l)``.

        Returns:
            The encoder's ``feat`` ``(B, S, D)``, ``feat_mask`` ``(B, S)``
            (or None), ``feat_pos`` ``(B, S, D)`` (sine + level embedding),
            ``spatial_shapes`` ``(L, 2)`` (and as Python ints,
            ``level_shapes``), ``level_start_index`` ``(L,)``,
            ``valid_ratios`` ``(B, L, 2)``; the decoder's the same but
            ``feat``/``feat_pos``.
        """
        feats, masks, positions, ratios = [], [], [], []
        for level, feat in enumerate(img_feats):
            mask = resize_mask(pixel_mask, feat)
            pos = self.positional_encoding(mask, feat).to(feat.dtype)
            feats.append(feat.flatten(2).transpose(1, 2))
            positions.append(pos.flatten(2).transpose(1, 2) +
                             self.level_embed[level])
            masks.append(None if mask is None else mask.flatten(1))
            ratios.append(valid_ratio(mask, feat.size(0), feat.device))
        level_shapes = [tuple(f.shape[-2:]) for f in img_feats]
        spatial_shapes = torch.tensor(level_shapes,
                                      device=img_feats[0].device)
        sizes = spatial_shapes.prod(1)
        level_inputs = dict(
            spatial_shapes=spatial_shapes, level_shapes=level_shapes,
            level_start_index=torch.cat((sizes.new_zeros(1),
                                         sizes.cumsum(0)[:-1])),
            valid_ratios=torch.stack(ratios, 1))
        mask = None if pixel_mask is None else torch.cat(masks, 1)
        return (dict(feat=torch.cat(feats, 1), feat_mask=mask,
                     feat_pos=torch.cat(positions, 1), **level_inputs),
                dict(memory_mask=mask, **level_inputs))

    def forward_encoder(self, feat: Tensor, feat_mask: Optional[Tensor],
                        feat_pos: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor, valid_ratios: Tensor,
                        level_shapes: LevelShapes) -> Dict:
        """The memory ``(B, S, D)``, and its mask and shapes for the
        proposals."""
        memory = self.encoder(feat, feat_pos, feat_mask,
                              spatial_shapes=spatial_shapes,
                              level_start_index=level_start_index,
                              valid_ratios=valid_ratios,
                              level_shapes=level_shapes)
        return dict(memory=memory, memory_mask=feat_mask,
                    spatial_shapes=spatial_shapes, level_shapes=level_shapes)

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor, level_shapes: LevelShapes,
                    **kwargs) -> Tuple[Dict, Dict]:
        """Queries ``(B, Q, D)``, positions and reference points: learned
        (single stage, ``(B, Q, 2)``) or the top proposals (two-stage,
        ``(B, Q, 4)``; their scores and boxes go to the head's loss)."""
        batch, dims = memory.size(0), self.embed_dims
        head_inputs = {}
        if self.as_two_stage:
            scores, boxes, top, _ = self.top_proposals(
                memory, memory_mask, spatial_shapes, level_shapes)
            references = sigmoid_references(
                gather_queries(boxes, top).detach())
            # the boxes' sine encoding in (x, y, w, h) order
            pos = coordinate_to_encoding(references[..., [1, 0, 2, 3]],
                                         dims // 2)
            query_pos, query = self.pos_trans_norm(
                self.pos_trans_fc(pos)).split(dims, -1)
            if self.training:
                head_inputs = dict(
                    enc_outputs_class=scores,
                    enc_outputs_coord=sigmoid_references(boxes))
        else:
            query_pos, query = self.query_embedding.weight[None].expand(
                batch, -1, -1).split(dims, -1)
            references = sigmoid_references(
                self.reference_points_fc(query_pos))
        return dict(query=query, query_pos=query_pos, memory=memory,
                    reference_points=references), head_inputs

    def top_proposals(self, memory: Tensor, memory_mask: Optional[Tensor],
                      spatial_shapes: Tensor, level_shapes: LevelShapes
                      ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Score and refine every encoder proposal with the extra head
        branch; the ``num_queries`` best.

        Returns:
            Scores ``(B, S, C)``, boxes before their sigmoid ``(B, S, 4)``,
            the indices of the best ``(B, Q)`` (by :meth:`proposal_score`)
            and the projected memory the head read ``(B, S, D)``.
        """
        proposal_memory, proposals = self.encoder_proposals(
            memory, memory_mask, spatial_shapes, level_shapes)
        branch = len(self.decoder.layers)  # the branch after the layers'
        scores = self.bbox_head.cls_branches[branch](proposal_memory)
        boxes = self.bbox_head.reg_branches[branch](proposal_memory).float() \
            + proposals  # before their sigmoid: float32 (box math)
        if scores.size(1) < self.num_queries:
            raise ValueError(
                f'two-stage {type(self).__name__} selects num_queries='
                f'{self.num_queries} proposals, one per feature position, but '
                f'this batch has only {scores.size(1)} positions (levels '
                f'{list(level_shapes)}): feed larger images or lower '
                'num_queries')
        top = self.proposal_score(scores).topk(self.num_queries, dim=1)[1]
        return scores, boxes, top, proposal_memory

    @staticmethod
    def proposal_score(scores: Tensor) -> Tensor:
        """``(B, S)`` ranking of proposals: the object logit (binary)."""
        return scores[..., 0]

    def encoder_proposals(self, memory: Tensor, memory_mask: Optional[Tensor],
                          spatial_shapes: Tensor, level_shapes: LevelShapes
                          ) -> Tuple[Tensor, Tensor]:
        """One proposal per encoder position (section 4.2).

        Returns:
            The memory projected for the proposal head ``(B, S, D)`` (zero at
            padding and invalid proposals) and the proposals ``(B, S, 4)``
            before their sigmoid (``inf`` at padding, and where a coordinate
            is outside (0.01, 0.99)).
        """
        batch, proposals, start = memory.size(0), [], 0
        for level, (h, w) in enumerate(level_shapes):
            size = spatial_shapes[level].flip(0)[None].float() \
                if memory_mask is None else \
                valid_size(memory_mask[:, start:start + h * w].view(
                    batch, h, w))
            size = size[:, None]  # (B or 1, 1, 2)
            centres = level_grid(h, w, memory.device)[None] / size
            proposals.append(torch.cat(
                (centres, torch.full_like(centres, 0.05 * 2.0**level)), -1))
            start += h * w
        proposals = torch.cat(proposals, 1)
        invalid = ((proposals <= 0.01) | (proposals >= 0.99)).any(
            -1, keepdim=True)
        if memory_mask is not None:
            invalid = invalid | memory_mask[..., None]
        proposals = inverse_sigmoid(proposals, eps=0).masked_fill(
            invalid, float('inf'))
        memory = memory.masked_fill(invalid, 0.)
        return self.memory_trans_norm(self.memory_trans_fc(memory)), \
            proposals

    def forward_decoder(self, query: Tensor, query_pos: Tensor,
                        memory: Tensor, memory_mask: Optional[Tensor],
                        reference_points: Tensor, spatial_shapes: Tensor,
                        level_start_index: Tensor, valid_ratios: Tensor,
                        **kwargs) -> Dict:
        """``hidden_states`` ``(L, B, Q, D)`` and ``references`` (the
        reference each layer started from)."""
        hidden_states, references = self.decoder(
            query, query_pos, memory, memory_mask, reference_points,
            valid_ratios, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            reg_branches=self.bbox_head.reg_branches
            if self.with_box_refine else None, **kwargs)
        return dict(hidden_states=hidden_states, references=references)


@MODELS.register_module()
class DeformableDETRHead(DETRHead):
    """A classifier and box MLP per decoder layer (one module for all unless
    refined; in two-stage one more, for the encoder's proposals, whose loss
    is binary: object or not).

    Args:
        num_pred_layer: branches (decoder layers, + 1 in two-stage).
        share_pred_layer: one module repeated (without box refinement).
        as_two_stage: the last branch scores proposals.
        *args, **kwargs: :class:`.detr_head.DETRHead`'s.
    """

    def __init__(self, *args, num_pred_layer: int = 6,
                 share_pred_layer: bool = True, as_two_stage: bool = False,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.as_two_stage = as_two_stage
        copy_of = (lambda m: m) if share_pred_layer else copy.deepcopy
        self.cls_branches = nn.ModuleList(
            copy_of(self.fc_cls) for _ in range(num_pred_layer))
        self.reg_branches = nn.ModuleList(
            copy_of(self.reg_mlp) for _ in range(num_pred_layer))
        del self.fc_cls, self.reg_mlp

    def init_weights(self) -> None:
        """Focal prior on the classifiers; box MLPs start at their reference
        (last layer zero), the first layer's boxes small (w, h bias -2)
        unless two-stage, as mmdet."""
        for branch in self.cls_branches:
            if self.use_sigmoid:
                nn.init.constant_(branch.bias, bias_init_with_prob(0.01))
        for branch in self.reg_branches:
            nn.init.zeros_(branch.layers[-1].weight)
            nn.init.zeros_(branch.layers[-1].bias)
        if not self.as_two_stage:
            nn.init.constant_(self.reg_branches[0].layers[-1].bias[2:], -2.)

    def cls_branch(self, layer: int) -> nn.Module:
        return self.cls_branches[layer]

    def reg_branch(self, layer: int) -> nn.Module:
        return self.reg_branches[layer]

    @property
    def shares_branches(self) -> bool:
        return self.reg_branches[0] is self.reg_branches[-1]

    def loss(self, hidden_states: Tensor, batch_data_samples,
             references: Sequence[Tensor],
             enc_outputs_class: Optional[Tensor] = None,
             enc_outputs_coord: Optional[Tensor] = None) -> dict:
        """DETR's losses of every layer, plus ``enc_loss_*`` of the
        proposals ``(B, S, C)`` / ``(B, S, 4)`` in two-stage."""
        targets = BatchedTargets.from_samples(batch_data_samples,
                                              hidden_states.device)
        losses = self.matched_losses(hidden_states, references, targets)[0]
        if enc_outputs_class is not None:
            losses.update(self.proposal_losses(
                enc_outputs_class, enc_outputs_coord, targets))
        return losses

    def proposal_losses(self, scores: Tensor, boxes: Tensor,
                        targets: BatchedTargets, binary: bool = True) -> dict:
        """``enc_loss_*``: the set loss of the proposals, every box labelled
        class 0 (object) when ``binary``."""
        if binary:
            targets = replace(targets, labels=torch.zeros_like(targets.labels))
        scores, boxes = scores[None], boxes[None]  # as one layer
        matches = self.assigner.assign(scores, boxes, targets)
        return self.named_losses(
            *self.set_losses(scores, boxes, targets, matches),
            kind='enc_loss')
