"""RT-DETR(v2) (Zhao et al. 2024; Lv et al. 2024): a real-time DETR.

DINO's decoder and training on a cheaper front:

* the transformer encoder is gone: the neck (:class:`.hybrid_encoder.
  HybridEncoder`) runs one self-attention layer on the stride-32 map and
  fuses the three levels with convolutions; the decoder reads them through a
  1x1 convolution + BatchNorm each, without padding mask or level embedding;
* **IoU-aware query selection**: the ``Q`` encoder positions whose proposal
  scores best (any class) give the reference boxes *and*, detached, the
  content queries (DINO's are learned);
* each layer's query position is an MLP of its reference box (no sine
  encoding), the decoder has no final norm, and a layer refines the boxes
  with the previous layer's box gradient (DINO's "look forward twice");
  inference may stop after layer ``eval_idx``;
* denoising as DINO's, laid out as the official code lays it (see
  :class:`RTDETRCdnQueryGenerator`);
* classification by a varifocal loss whose target is the IoU of the
  matched box (:func:`varifocal_loss`); L1 x 5 and GIoU x 2 as DINO's.

Here: the denoising layout, the decoder, :class:`RTDETR` and
:class:`RTDETRHead`; the rest is DINO's and Deformable DETR's.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from torch import Tensor, nn

from ..registry import MODELS
from .box_precision import float32_box_math
from .deformable_attention import DeformableAttention
from .deformable_detr import DeformableDetrTransformerDecoder, gather_queries
from .detr import DETR
from .detr_head import MLP, at_least_one, mean_over_processes
from .dino import DINO, CdnQueryGenerator, DINOHead
from .hungarian_assigner import QueryMatches
from .match_costs import BatchedTargets


class RTDETRCdnQueryGenerator(CdnQueryGenerator):
    """DINO's denoising queries in the official RT-DETR layout.

    The noise is DINO's; what differs is where it is drawn and what fills
    the slots of an image with fewer boxes than the batch's largest:

    * the labels and boxes are padded to ``(B, max_gts)`` and repeated per
      group *before* the noise is drawn, in the order (and shapes) the
      official code draws it -- so a seeded run of either draws the same;
    * a padded slot's label is a zero padding row of the embedding (``C +
      1`` rows), its box is the empty box at the origin (``inverse_sigmoid``
      with ``eps`` 1e-5: -11.5), not DINO's zero content at the centre.
    """

    reference_eps = 1e-5
    # D-FINE makes a noised box's width and height positive (RT-DETR does
    # not: a box whose corners crossed keeps a negative size)
    absolute_sizes = False

    def __init__(self, num_classes: int, embed_dims: int, *args,
                 **kwargs) -> None:
        super().__init__(num_classes, embed_dims, *args, **kwargs)
        self.label_embedding = nn.Embedding(num_classes + 1, embed_dims,
                                            padding_idx=num_classes)

    def __call__(self, batch_data_samples):
        """As :class:`.dino.CdnQueryGenerator`'s."""
        gts = [s.gt_instances for s in batch_data_samples]
        num_gts = [len(gt) for gt in gts]
        batch, max_gts = len(gts), max(num_gts)
        groups = self.groups(max_gts)
        device = gts[0].labels.device
        labels = torch.full((batch, max_gts), self.num_classes,
                            dtype=torch.int32, device=device)
        boxes = torch.zeros(batch, max_gts, 4, device=device)
        real = torch.zeros(batch, max_gts, dtype=torch.bool, device=device)
        # each image's (w, h, w, h), copied to the device at once
        sizes = torch.tensor([[s.img_shape[1], s.img_shape[0]] * 2
                              for s in batch_data_samples],
                             dtype=torch.float32, device=device)
        for b, gt in enumerate(gts):
            labels[b, :len(gt)] = gt.labels.int()
            boxes[b, :len(gt)] = bbox_xyxy_to_cxcywh(gt.bboxes.float()) / \
                sizes[b]
            real[b, :len(gt)] = True
        labels, boxes, real = (labels.repeat(1, 2 * groups),
                               boxes.repeat(1, 2 * groups, 1),
                               real.repeat(1, 2 * groups))
        # 1 at each group's second half, the negatives
        negative = (torch.arange(labels.size(1), device=device) //
                    max(max_gts, 1) % 2).float()[None, :, None]
        if self.label_noise_scale > 0:
            flip = torch.rand_like(labels, dtype=torch.float) < \
                self.label_noise_scale * 0.5
            random = torch.randint_like(flip, 0, self.num_classes,
                                        dtype=labels.dtype)
            labels = torch.where(flip & real, random, labels)
        if self.box_noise_scale > 0:
            half_size = boxes[..., 2:].repeat(1, 1, 2) * 0.5 * \
                self.box_noise_scale
            sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
            size = torch.rand_like(boxes) + negative
            boxes = bbox_xyxy_to_cxcywh((bbox_cxcywh_to_xyxy(boxes) + sign *
                                         size * half_size).clamp(0., 1.))
            if self.absolute_sizes:
                boxes = boxes.abs()
        num_dn = labels.size(1)
        return self.label_embedding(labels), \
            inverse_sigmoid(boxes, eps=self.reference_eps), \
            self.attn_mask(max_gts, groups, device), \
            dict(num_denoising_queries=num_dn, num_denoising_groups=groups)


@MODELS.register_module()
class RTDETRTransformerDecoder(DeformableDetrTransformerDecoder):
    """DINO's refining decoder whose positional queries are an MLP of the
    reference box itself, without a final norm, stopping after layer
    ``eval_idx`` at inference.

    Args:
        eval_idx: the layer whose boxes are the detections (-1: the last);
            training runs and supervises every layer.
        *args, **kwargs: :class:`DeformableDetrTransformerDecoder`'s.
    """

    look_forward_twice = True
    refine_eps = 1e-5

    def __init__(self, *args, eval_idx: int = -1, **kwargs) -> None:
        kwargs.setdefault('post_norm_cfg', None)
        super().__init__(*args, **kwargs)
        self.eval_idx = eval_idx % len(self.layers)
        self.query_pos_head = MLP(4, 2 * self.embed_dims, self.embed_dims, 2)

    @property
    def active_layers(self) -> Sequence[nn.Module]:
        return self.layers if self.training else \
            self.layers[:self.eval_idx + 1]

    def query_pos(self, query_pos: Optional[Tensor],
                  scaled_references: Tensor) -> Tensor:
        """``MLP(box)`` of the ``(B, Q, L, 4)`` references' first level."""
        return self.query_pos_head(scaled_references[:, :, 0])


@MODELS.register_module()
class RTDETR(DINO):
    """RT-DETR: the hybrid encoder as neck, IoU-aware query selection, DINO's
    denoising and refinement.

    Args:
        decoder_in_channels: channels of the neck's maps, one per level
            (each gets a 1x1 convolution + BatchNorm to ``D``).
        *args, **kwargs: :class:`.dino.DINO`'s (no ``encoder``, no
            ``positional_encoding``: both are in the neck).
    """

    decoder_type = 'RTDETRTransformerDecoder'
    dn_generator_type = RTDETRCdnQueryGenerator

    def __init__(self, *args,
                 decoder_in_channels: Sequence[int] = (256, 256, 256),
                 **kwargs) -> None:
        self.decoder_in_channels = tuple(decoder_in_channels)
        kwargs.setdefault('num_feature_levels', len(self.decoder_in_channels))
        super().__init__(*args, **kwargs)

    @classmethod
    def config_dict_types(cls) -> dict:
        return dict(decoder=cls.decoder_type, dn_cfg=cls.dn_generator_type)

    @property
    def query_embedding_dims(self) -> int:
        """The content queries are the selected encoder features."""
        return 0

    def _init_layers(self) -> None:
        self.decoder = MODELS.build({'type': self.decoder_type,
                                     **self.decoder})
        self.embed_dims = dims = self.decoder.embed_dims
        self.input_proj = nn.ModuleList(
            ConvModule(channels, dims, 1, bias=False,
                       norm_cfg=dict(type='BN'), act_cfg=None)
            for channels in self.decoder_in_channels)
        self.memory_trans_fc = nn.Linear(dims, dims)
        self.memory_trans_norm = nn.LayerNorm(dims)

    def init_weights(self) -> None:
        """As the official code: xavier for the decoder's matrices and the
        projections, mmcv's deformable-attention init, the head's priors."""
        DETR.init_weights(self)
        for module in self.decoder.modules():
            if isinstance(module, DeformableAttention):
                module.init_weights()
        for linear in [self.memory_trans_fc] + [
                c.conv for c in self.input_proj if hasattr(c, 'conv')]:
            nn.init.xavier_uniform_(linear.weight)

    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        pixel_mask: Optional[Tensor] = None
                        ) -> Tuple[dict, dict]:
        """Project and flatten the neck's levels ``(B, C_l, h_l, w_l)``
        into the memory ``(B, S, D)``. There is no padding mask: as the
        official code, RT-DETR trains and infers on unpadded batches (the
        configs resize every image to the batch's size)."""
        feats = [proj(feat) for proj, feat in zip(self.input_proj, img_feats)]
        level_shapes = [tuple(feat.shape[-2:]) for feat in feats]
        spatial_shapes = torch.tensor(level_shapes, device=feats[0].device)
        sizes = spatial_shapes.prod(1)
        levels = dict(spatial_shapes=spatial_shapes, level_shapes=level_shapes)
        memory = torch.cat([feat.flatten(2).transpose(1, 2)
                            for feat in feats], 1)
        return dict(memory=memory, **levels), dict(
            memory_mask=None, **levels,
            level_start_index=torch.cat((sizes.new_zeros(1),
                                         sizes.cumsum(0)[:-1])),
            valid_ratios=memory.new_ones(len(feats[0]), len(feats), 2))

    def forward_encoder(self, memory: Tensor, **levels) -> dict:
        """The neck encoded: the memory as is."""
        return dict(memory=memory, memory_mask=None, **levels)

    def content_queries(self, proposal_memory: Tensor, top: Tensor) -> Tensor:
        """The selected proposals' features ``(B, Q, D)``, detached."""
        return gather_queries(proposal_memory, top).detach()


@MODELS.register_module()
class RTDETRVarifocalLoss(nn.Module):
    """RT-DETR's varifocal loss, elementwise.

    ``BCE(logits, scores) * w`` with ``w = scores`` at the matched (query,
    class) pairs -- ``scores`` there is the IoU of the matched box -- and
    ``alpha * sigmoid(logits)^gamma`` elsewhere (detached). mmdet's
    ``VarifocalLoss`` tells the pairs apart by ``scores > 0`` instead, so a
    match whose IoU is 0 weighs ``alpha p^gamma`` there and 0 in the
    official loss: the official weighting needs the matches themselves.

    Args:
        alpha, gamma: the negatives' weight (official: 0.75, 2).
        loss_weight: the loss's weight.
        use_sigmoid: must be True (read by the head).
    """

    def __init__(self, alpha: float = 0.75, gamma: float = 2.,
                 loss_weight: float = 1., use_sigmoid: bool = True) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('RTDETRVarifocalLoss is a sigmoid loss')
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, logits: Tensor, scores: Tensor,
                positive: Tensor) -> Tensor:
        """Logits, IoU targets (0 but at ``positive``) and ``positive``
        (bool), ``(..., C)`` each -> the weighted loss ``(..., C)``."""
        prob = logits.detach().sigmoid()
        weight = torch.where(positive, scores,
                             self.alpha * prob.pow(self.gamma))
        return self.loss_weight * F.binary_cross_entropy_with_logits(
            logits, scores, weight=weight, reduction='none')


@MODELS.register_module()
class RTDETRHead(DINOHead):
    """DINO's head (per-layer branches, denoising and proposal losses) with
    :class:`RTDETRVarifocalLoss` as ``loss_cls``: its IoU targets are the
    matched boxes'.

    Args:
        *args, **kwargs: :class:`.dino.DINOHead`'s.
    """

    def __init__(self, *args, loss_cls: dict = dict(
            type='RTDETRVarifocalLoss', use_sigmoid=True, alpha=0.75,
            gamma=2., loss_weight=1.), **kwargs) -> None:
        super().__init__(*args, loss_cls=loss_cls, **kwargs)

    @float32_box_math
    def set_losses(self, cls_logits: Tensor, box_preds: Tensor,
                   targets: BatchedTargets, matches: QueryMatches
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(L,)`` varifocal, L1 and GIoU losses per layer, the first two
        normalized by the matched boxes (as the box losses)."""
        loss_bbox, loss_iou = self._box_losses(box_preds, targets, matches,
                                               cls_logits.size(0))
        num_boxes = at_least_one(mean_over_processes(
            matches.num_per_layer, cls_logits.device))
        loss_cls = self.iou_target_class_loss(
            cls_logits, box_preds, targets, matches) / num_boxes
        return loss_cls, loss_bbox, loss_iou

    @float32_box_math
    def iou_target_class_loss(self, cls_logits: Tensor, box_preds: Tensor,
                              targets: BatchedTargets,
                              matches: QueryMatches) -> Tensor:
        """``(L,)`` summed ``loss_cls`` of ``(L, B, Q, C)`` logits whose
        targets are the matched boxes' ``(L, B, Q, 4)`` IoUs."""
        idx = (matches.layer_idx, matches.batch_idx, matches.query_idx)
        labels = targets.labels[matches.batch_idx, matches.gt_idx]
        iou = self.matched_iou(box_preds[idx], targets, matches)
        positive = torch.zeros_like(cls_logits, dtype=torch.bool)
        positive[idx + (labels, )] = True
        scores = torch.zeros_like(cls_logits).index_put(idx + (labels, ), iou)
        return self.loss_cls(cls_logits, scores, positive).flatten(1).sum(1)

    @staticmethod
    def matched_iou(boxes: Tensor, targets: BatchedTargets,
                    matches: QueryMatches) -> Tensor:
        """IoU ``(M,)`` of matched boxes ``(M, 4)`` with targets."""
        return bbox_overlaps(
            bbox_cxcywh_to_xyxy(boxes.detach().float()),
            bbox_cxcywh_to_xyxy(targets.boxes_cxcywh[matches.batch_idx,
                                                     matches.gt_idx]),
            is_aligned=True)
