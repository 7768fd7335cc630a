"""DINO (Zhang et al. 2023): denoising anchor boxes on Deformable DETR.

Three ideas on two-stage Deformable DETR with box refinement:

* **Contrastive denoising** (section 3.3): in training, each ground-truth box
  enters the decoder as extra queries, in groups of a positive (the box and
  label slightly noised: the label flipped with probability ``label_noise /
  2``, the box corners moved by less than ``box_noise / 2`` of its size) and a
  negative (moved by ``box_noise / 2`` to ``box_noise`` of its size, to be
  classified as no object). The positives must reconstruct their box, with
  fixed targets instead of matching; an attention mask keeps the groups
  from seeing each other and the matching queries from seeing any of them.
  Their losses are logged apart (``dn_loss_*``).
* **Mixed query selection** (3.4): the top encoder proposals give the
  reference boxes only; the content queries stay learned embeddings.
* **Look forward twice** (3.5): a layer's box loss reaches the previous
  layer's box head (the refined reference is passed to the head with its
  gradient, to the next layer detached). Each layer's positional query is
  an MLP of its reference box's sine encoding.

Here: :class:`CdnQueryGenerator`, :class:`DinoTransformerDecoder`,
:class:`DINO` and :class:`DINOHead`; the rest is Deformable DETR's.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers.transformer import (coordinate_to_encoding,
                                             inverse_sigmoid)
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS
from .box_precision import sigmoid_references
from .deformable_attention import LevelShapes
from .deformable_detr import (DeformableDETR, DeformableDETRHead,
                              DeformableDetrTransformerDecoder,
                              gather_queries)
from .detr_head import MLP
from .hungarian_assigner import QueryMatches
from .match_costs import BatchedTargets


class CdnQueryGenerator(BaseModule):
    """Noised ground truth as denoising queries, and their attention mask.

    Args:
        num_classes: ``C``; the label embedding has one row per class.
        embed_dims: ``D``.
        num_matching_queries: ``Q``, the queries that follow the denoising
            ones.
        label_noise_scale: twice the probability of a random label.
        box_noise_scale: the noise's extent, in box sizes.
        group_cfg: ``dynamic=True`` (default): as many groups as fit in
            ``num_dn_queries`` positives; else ``num_groups``.
    """

    def __init__(self, num_classes: int, embed_dims: int,
                 num_matching_queries: int, label_noise_scale: float = 0.5,
                 box_noise_scale: float = 1.0,
                 group_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.num_classes, self.embed_dims = num_classes, embed_dims
        self.num_matching_queries = num_matching_queries
        self.label_noise_scale = label_noise_scale
        self.box_noise_scale = box_noise_scale
        group_cfg = group_cfg or {}
        self.dynamic = group_cfg.get('dynamic', True)
        self.num_dn_queries = group_cfg.get('num_dn_queries', 100)
        self.num_groups = group_cfg.get('num_groups')
        self.label_embedding = nn.Embedding(num_classes, embed_dims)

    def groups(self, max_gts: int) -> int:
        """Denoising groups for a batch whose largest image has ``max_gts``
        boxes (at least one)."""
        if not self.dynamic:
            return max(int(self.num_groups), 1)
        return max(self.num_dn_queries // max_gts, 1) if max_gts else 1

    def __call__(self, batch_data_samples) -> Tuple[Tensor, Tensor, Tensor,
                                                    Dict[str, int]]:
        """The denoising queries of a batch.

        Returns:
            ``label_queries`` ``(B, N, D)`` and ``box_queries`` ``(B, N, 4)``
            (before the sigmoid; cxcywh), ``N = 2 * groups * max_gts``, laid
            out per group as ``max_gts`` positives then ``max_gts``
            negatives (zero where an image has fewer boxes); ``attn_mask``
            ``(N + Q, N + Q)`` bool, True = may not attend; and ``dn_meta``
            (``num_denoising_queries`` N, ``num_denoising_groups``).
        """
        labels, boxes, image, slot = [], [], [], []
        for b, sample in enumerate(batch_data_samples):
            gt = sample.gt_instances
            labels.append(gt.labels)
            boxes.append(gt.bboxes)
            image.append(torch.full_like(gt.labels, b))
            slot.append(torch.arange(len(gt.labels), device=gt.labels.device))
        # normalized by each image's size, copied to the device at once
        sizes = gt.bboxes.new_tensor([[s.img_shape[1], s.img_shape[0]] * 2
                                      for s in batch_data_samples])
        boxes = torch.cat(boxes) / sizes[torch.cat(image)]
        num_gts = [len(x) for x in labels]
        max_gts = max(num_gts)
        num_groups = self.groups(max_gts)
        parts = 2 * num_groups  # (positive, negative) per group
        # noise in the order mmdet draws it, so that a seeded run of either
        # implementation draws the same noise
        labels = self.noisy_labels(torch.cat(labels).repeat(parts))
        boxes = self.noisy_boxes(boxes, num_groups)
        part = torch.arange(parts, device=labels.device).repeat_interleave(
            sum(num_gts))
        index = (torch.cat(image).repeat(parts),
                 part * max_gts + torch.cat(slot).repeat(parts))
        num_dn = parts * max_gts
        batch = len(batch_data_samples)
        label_queries = labels.new_zeros(
            (batch, num_dn, self.embed_dims), dtype=torch.float32)
        box_queries = labels.new_zeros((batch, num_dn, 4),
                                       dtype=torch.float32)
        label_queries[index] = self.label_embedding(labels)
        box_queries[index] = boxes
        return label_queries, box_queries, \
            self.attn_mask(max_gts, num_groups, labels.device), \
            dict(num_denoising_queries=num_dn,
                 num_denoising_groups=num_groups)

    def noisy_labels(self, labels: Tensor) -> Tensor:
        """Each label replaced by a random class with probability
        ``label_noise_scale / 2``."""
        flip = torch.nonzero(torch.rand_like(labels.float()) <
                             self.label_noise_scale * 0.5).view(-1)
        return labels.scatter(
            0, flip, torch.randint_like(flip, 0, self.num_classes))

    def noisy_boxes(self, boxes: Tensor, num_groups: int) -> Tensor:
        """``(G, 4)`` normalized xyxy boxes -> ``(2 * groups * G, 4)`` noised
        cxcywh before the sigmoid: per group the positives (each corner moved
        by under ``box_noise_scale / 2`` of the box's width/height), then the
        negatives (by ``box_noise_scale / 2`` to ``box_noise_scale``)."""
        count = len(boxes)
        boxes = boxes.repeat(2 * num_groups, 1)
        sign = torch.randint_like(boxes, 0, 2, dtype=torch.float32) * 2 - 1
        negative = (torch.arange(len(boxes), device=boxes.device) //
                    count) % 2  # 1 at the negatives
        # in [0, 1) for the positives, [1, 2) for the negatives
        size = torch.rand_like(boxes) + negative[:, None]
        wh = bbox_xyxy_to_cxcywh(boxes)[:, 2:].repeat(1, 2)
        noisy = boxes + size * sign * wh * self.box_noise_scale / 2
        return inverse_sigmoid(bbox_xyxy_to_cxcywh(noisy.clamp(0., 1.)),
                               eps=1e-3)

    def attn_mask(self, max_gts: int, num_groups: int,
                  device: torch.device) -> Tensor:
        """Matching queries do not see denoising ones; a group sees only
        itself."""
        num_dn = 2 * num_groups * max_gts
        total = num_dn + self.num_matching_queries
        group = torch.arange(total, device=device) // (2 * max_gts or 1)
        group[num_dn:] = num_groups  # the matching queries: a group apart
        blocked = group[:, None] != group[None, :]
        blocked[num_dn:, num_dn:] = False
        blocked[:num_dn, num_dn:] = False  # denoising queries see them
        return blocked


@MODELS.register_module()
class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """Deformable DETR's refining decoder whose positional queries are an
    MLP of each reference box's sine encoding, and whose head sees the
    refined boxes with their gradient (look forward twice)."""

    look_forward_twice = True
    refine_eps = 1e-3

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ref_point_head = MLP(2 * self.embed_dims, self.embed_dims,
                                  self.embed_dims, 2)

    def query_pos(self, query_pos: Optional[Tensor],
                  scaled_references: Tensor) -> Tensor:
        """``MLP(PE(box))`` of the ``(B, Q, L, 4)`` references' first
        level."""
        return self.ref_point_head(coordinate_to_encoding(
            scaled_references[:, :, 0], self.embed_dims // 2))


@MODELS.register_module()
class DINO(DeformableDETR):
    """DINO: Deformable DETR (two-stage, box refinement) with contrastive
    denoising queries in training and mixed query selection.

    Args:
        dn_cfg: :class:`CdnQueryGenerator`'s noise and group settings.
        with_box_refine, as_two_stage: must be True (DINO's design).
        *args, **kwargs: :class:`.deformable_detr.DeformableDETR`'s.
    """

    decoder_type = 'DinoTransformerDecoder'
    dn_generator_type = CdnQueryGenerator

    def __init__(self, *args, dn_cfg: Optional[dict] = None,
                 with_box_refine: bool = True, as_two_stage: bool = True,
                 **kwargs) -> None:
        if not (with_box_refine and as_two_stage):
            raise ValueError('DINO refines boxes in two stages: '
                             'with_box_refine and as_two_stage must be True')
        super().__init__(*args, with_box_refine=True, as_two_stage=True,
                         **kwargs)
        self.dn_query_generator = self.dn_generator_type(
            self.bbox_head.num_classes, self.embed_dims, self.num_queries,
            **(dn_cfg or {}))

    @classmethod
    def config_dict_types(cls) -> dict:
        return dict(super().config_dict_types(), dn_cfg=cls.dn_generator_type)

    @property
    def query_embedding_dims(self) -> int:
        """The content queries are learned (mixed query selection)."""
        return self.embed_dims

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.xavier_uniform_(self.query_embedding.weight)

    def content_queries(self, proposal_memory: Tensor, top: Tensor) -> Tensor:
        """The learned content queries ``(B, Q, D)`` (mixed query
        selection)."""
        return self.query_embedding.weight[None].expand(len(top), -1, -1)

    @staticmethod
    def proposal_score(scores: Tensor) -> Tensor:
        """Proposals rank by their best class logit."""
        return scores.max(-1)[0]

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor, level_shapes: LevelShapes,
                    batch_data_samples=None, **kwargs) -> Tuple[Dict, Dict]:
        """Learned content queries ``(B, Q, D)`` and the top proposals'
        boxes as references; in training the denoising queries go first,
        with their attention mask, and the head gets the top proposals'
        scores and boxes and ``dn_meta``."""
        scores, boxes, top, proposal_memory = self.top_proposals(
            memory, memory_mask, spatial_shapes, level_shapes)
        references = gather_queries(boxes, top).detach()
        query = self.content_queries(proposal_memory, top)
        self_attn_mask, head_inputs = None, {}
        if self.training:
            dn_query, dn_references, self_attn_mask, dn_meta = \
                self.dn_query_generator(batch_data_samples)
            query = torch.cat((dn_query, query), 1)
            references = torch.cat((dn_references, references), 1)
            head_inputs = dict(
                enc_outputs_class=gather_queries(scores, top),
                enc_outputs_coord=sigmoid_references(
                    gather_queries(boxes, top)),
                dn_meta=dn_meta)
        return dict(query=query, query_pos=None, memory=memory,
                    reference_points=sigmoid_references(references),
                    self_attn_mask=self_attn_mask), head_inputs


@MODELS.register_module()
class DINOHead(DeformableDETRHead):
    """Deformable DETR's head; the denoising queries get fixed targets (their
    group's ground truth) and their own loss terms ``dn_loss_*``; the
    proposals' loss is over the classes."""

    def loss(self, hidden_states: Tensor, batch_data_samples,
             references: Sequence[Tensor],
             enc_outputs_class: Optional[Tensor] = None,
             enc_outputs_coord: Optional[Tensor] = None,
             dn_meta: Optional[Dict[str, int]] = None) -> dict:
        """``loss_*``/``d{i}.loss_*`` of the matching queries, ``enc_loss_*``
        of the selected proposals and ``dn_loss_*``/``d{i}.dn_loss_*`` of
        the denoising queries (the first ``num_denoising_queries``)."""
        num_dn = dn_meta['num_denoising_queries'] if dn_meta else 0
        targets = BatchedTargets.from_samples(batch_data_samples,
                                              hidden_states.device)
        losses, cls_logits = self.matched_losses(hidden_states, references,
                                                 targets, first_query=num_dn)
        if enc_outputs_class is not None:
            losses.update(self.proposal_losses(
                enc_outputs_class, enc_outputs_coord, targets, binary=False))
        if dn_meta:
            matches = denoising_matches(
                targets.num_gts, dn_meta['num_denoising_groups'], num_dn,
                len(hidden_states), cls_logits.device)
            # the box losses read the matched (positive) queries' boxes only
            box_preds = self.matched_boxes(
                hidden_states.new_zeros(*hidden_states.shape[:2], num_dn, 4,
                                        dtype=torch.float32),
                hidden_states, references, matches)
            losses.update(self.named_losses(
                *self.set_losses(cls_logits[:, :, :num_dn], box_preds,
                                 targets, matches),
                kind='dn_loss'))
        return losses


def denoising_matches(num_gts: List[int], num_groups: int, num_dn: int,
                      num_layers: int, device: torch.device) -> QueryMatches:
    """The fixed matches of the denoising queries: in every layer, group
    ``k``'s positive query ``j`` of image ``b`` is box ``j`` of image ``b``
    (its negatives stay unmatched: no object)."""
    per_group = num_dn // num_groups
    pairs = [(b, k * per_group + j, j) for b, count in enumerate(num_gts)
             for k in range(num_groups) for j in range(count)]
    pairs = torch.tensor(pairs, dtype=torch.long,
                         device=device).view(-1, 3).repeat(num_layers, 1)
    layer = torch.arange(num_layers, device=device).repeat_interleave(
        len(pairs) // num_layers if num_layers else 0)
    return QueryMatches(layer, pairs[:, 0], pairs[:, 1], pairs[:, 2],
                        len(pairs) // max(num_layers, 1))
