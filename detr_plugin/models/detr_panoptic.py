"""Panoptic DETR (paper section 4.4; official ``DETRsegm``): DETR and a mask
head.

The box detector is :class:`DETR` unchanged (its weights keep their names,
so a box model's checkpoint loads into it). The mask head
(:mod:`.mask_head`) reads the last decoder layer's queries, the encoder
memory, the input projection's map and the backbone's finer stages
(``backbone.out_indices`` must list them: ResNet-50 stages 1-3, strides 4, 8
and 16, before the last) and gives one mask logit map per query at stride 4.

Training adds two losses on the last decoder layer's matched queries (the
official code skips the auxiliary layers' masks as too costly): mmdet's
sigmoid ``FocalLoss`` (alpha 0.25, gamma 2) and ``DiceLoss`` with
``naive_dice=True, eps=1`` -- exactly the official ``1 - (2 sum(p t) + 1) /
(sum(p) + sum(t) + 1)`` -- between the logits upsampled (bilinear) to the
padded input and the ground-truth masks (``data_preprocessor.pad_mask``),
both divided by the number of boxes. DETR treats stuff regions as objects;
the data pipeline adds them to the instances
(:class:`~detr_plugin.datasets.transforms.AddStuffInstances`).

``freeze_detector=True`` is the paper's second stage: every weight but the
mask head's is frozen and its modules stay in eval mode (BN statistics
fixed, no dropout: the frozen detector computes what it will at test time;
the official code freezes the weights only), and the detector runs without
gradients.

Prediction: ``pred_instances`` with ``masks`` for the thing detections
(labels below ``num_things_classes``: the classes ``CocoMetric`` knows) and
``pred_panoptic_seg`` (:mod:`.panoptic_postprocess`).
"""
import contextlib
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from ..registry import MODELS
from .detr import DETR
from .detr_head import at_least_one, mean_over_processes
from .hungarian_assigner import QueryMatches
from .mask_head import MaskHeadSmallConv, MHAttentionMap
from .match_costs import BatchedTargets
from .panoptic_postprocess import (instance_masks, masks_in_image,
                                   panoptic_segmentation)

MASK_MODULES = ('bbox_attention', 'mask_head')


@MODELS.register_module()
class DETRPanoptic(DETR):
    """DETR with the official mask head; see the module docstring.

    Args:
        mask_head: ``num_heads`` of the attention maps (official: 8) and
            ``fpn_dims``, the channels of the backbone maps before the last,
            coarse to fine (ResNet-50: ``(1024, 512, 256)``).
        num_things_classes: classes ``0..T-1`` are things, the rest stuff;
            default all (instance segmentation).
        freeze_detector: train the mask head alone.
        loss_mask: mmdet loss config for the focal term.
        loss_dice: mmdet loss config for the dice term.
        *args, **kwargs: :class:`DETR`'s; ``test_cfg`` also takes
            ``mask_thr`` (0.5), ``panoptic_score_thr`` (0.85) and
            ``min_segment_area`` (4 pixels).
    """

    def __init__(self,
                 *args,
                 mask_head: dict = dict(num_heads=8,
                                        fpn_dims=(1024, 512, 256)),
                 num_things_classes: Optional[int] = None,
                 freeze_detector: bool = False,
                 loss_mask: dict = dict(type='FocalLoss', use_sigmoid=True,
                                        gamma=2.0, alpha=0.25,
                                        loss_weight=1.0),
                 loss_dice: dict = dict(type='DiceLoss', use_sigmoid=True,
                                        activate=True, naive_dice=True,
                                        eps=1.0, loss_weight=1.0),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.with_neck or self.bbox_head.use_sigmoid:
            raise ValueError('DETRPanoptic reads the backbone maps and the '
                             'no-object class: use no neck and the softmax '
                             'classifier (loss_cls CrossEntropyLoss)')
        mask_head = dict(mask_head)
        num_heads = mask_head.pop('num_heads', 8)
        self.bbox_attention = MHAttentionMap(self.embed_dims,
                                             self.embed_dims, num_heads)
        self.mask_head = MaskHeadSmallConv(self.embed_dims + num_heads,
                                           context_dims=self.embed_dims,
                                           **mask_head)
        self.loss_mask = MODELS.build(loss_mask)
        self.loss_dice = MODELS.build(loss_dice)
        self.num_things_classes = self.bbox_head.num_classes \
            if num_things_classes is None else num_things_classes
        self.freeze_detector = freeze_detector
        if freeze_detector:
            for module in self.detector_modules():
                module.requires_grad_(False)

    def detector_modules(self) -> List[nn.Module]:
        """Every child module but the mask head's."""
        return [module for name, module in self.named_children()
                if name not in MASK_MODULES]

    def train(self, mode: bool = True) -> 'DETRPanoptic':
        """With ``freeze_detector``, the detector stays in eval mode."""
        super().train(mode)
        if self.freeze_detector:
            for module in self.detector_modules():
                module.eval()
        return self

    # --------------------------------- what the mask head reads from DETR
    def forward_encoder(self, feat: Tensor, feat_mask: Optional[Tensor],
                        feat_pos: Tensor) -> Dict:
        """DETR's; also hands the projected map and the padding on."""
        return dict(super().forward_encoder(feat, feat_mask, feat_pos),
                    input_features=feat, memory_mask=feat_mask)

    def pre_decoder(self, memory: Tensor, input_features: Tensor,
                    memory_mask: Optional[Tensor],
                    **kwargs) -> Tuple[Dict, Dict]:
        """DETR's queries; ``memory`` ``(B, h*w, D)``, ``input_features``
        ``(B, h*w, D)`` and ``memory_mask`` ``(B, h*w)`` go to the head
        inputs."""
        decoder_inputs, head_inputs = super().pre_decoder(memory, **kwargs)
        head_inputs.update(memory=memory, input_features=input_features,
                           memory_mask=memory_mask)
        return decoder_inputs, head_inputs

    def mask_logits(self, img_feats: Tuple[Tensor, ...], head_inputs: Dict,
                    batch_idx: Tensor, query_idx: Tensor) -> Tensor:
        """``(M, H/4, W/4)`` mask logits of query ``query_idx[i]`` of image
        ``batch_idx[i]`` over the padded input ``(H, W)``."""
        batch, _, height, width = img_feats[-1].shape
        maps = self.bbox_attention(head_inputs['hidden_states'][-1],
                                   head_inputs['memory'],
                                   head_inputs['memory_mask'])
        maps = maps[batch_idx, query_idx].unflatten(-1, (height, width))
        features = head_inputs['input_features'].transpose(1, 2).unflatten(
            -1, (height, width))  # (B, D, h, w)
        return self.mask_head(features, maps, img_feats[-2::-1], batch_idx)

    def all_mask_logits(self, img_feats: Tuple[Tensor, ...],
                        head_inputs: Dict) -> Tensor:
        """``(B, Q, H/4, W/4)``: every query's mask logits."""
        batch, num_queries = head_inputs['hidden_states'].shape[1:3]
        pairs = torch.arange(batch * num_queries,
                             device=head_inputs['memory'].device)
        return self.mask_logits(
            img_feats, head_inputs, pairs // num_queries,
            pairs % num_queries).unflatten(0, (batch, num_queries))

    # ------------------------------------------------------------ training
    def loss(self, batch_inputs: Tensor, batch_data_samples) -> Dict:
        """DETR's losses (every layer) plus ``loss_mask`` and ``loss_dice``.
        """
        frozen = torch.no_grad() if self.freeze_detector else \
            contextlib.nullcontext()
        with frozen:
            img_feats = self.extract_feat(batch_inputs)
            head_inputs = self.forward_transformer(img_feats,
                                                   batch_data_samples)
            cls_logits, box_preds = self.bbox_head(
                head_inputs['hidden_states'])
        targets = BatchedTargets.from_samples(batch_data_samples,
                                              cls_logits.device)
        matches = self.bbox_head.assigner.assign(cls_logits, box_preds,
                                                 targets)  # every layer
        losses = self.bbox_head.loss_dict(cls_logits, box_preds, targets,
                                          matches)
        losses.update(self.mask_loss(
            img_feats, head_inputs, matches.layer(-1),
            [s.gt_instances for s in batch_data_samples],
            batch_data_samples[0].batch_input_shape))
        return losses

    def mask_loss(self, img_feats: Tuple[Tensor, ...], head_inputs: Dict,
                  matches: QueryMatches, batch_gt_instances,
                  input_shape: Tuple[int, int]) -> Dict:
        """Focal and dice losses of the matched queries' masks, each divided
        by the number of boxes (averaged over processes, at least 1); the
        ground-truth masks cover the padded input ``input_shape``."""
        num_boxes = at_least_one(mean_over_processes(
            matches.num_per_layer, img_feats[-1].device))
        if matches.num_per_layer == 0:  # keep the mask head in the graph
            zero = sum(p.sum() for name in MASK_MODULES
                       for p in getattr(self, name).parameters()) * 0
            return dict(loss_mask=zero, loss_dice=zero)
        if any('masks' not in gt for gt in batch_gt_instances):
            raise KeyError('gt_instances have no masks: load them '
                           '(LoadPanopticAnnotations, or LoadAnnotations '
                           'with with_mask=True)')
        sizes = {(gt.masks.height, gt.masks.width)
                 for gt in batch_gt_instances}
        if sizes != {tuple(input_shape)}:
            raise ValueError(f'ground-truth masks of {sorted(sizes)} pixels '
                             f'for a padded input of {tuple(input_shape)}: '
                             f'set data_preprocessor.pad_mask=True')
        logits = self.mask_logits(img_feats, head_inputs, matches.batch_idx,
                                  matches.query_idx)
        gt_masks = pad_sequence(
            [gt.masks.to_tensor(torch.bool, logits.device)
             for gt in batch_gt_instances], batch_first=True)  # (B,G,H,W)
        target = gt_masks[matches.batch_idx, matches.gt_idx].flatten(1)
        pred = F.interpolate(logits[:, None].float(),  # float32 under AMP
                             size=gt_masks.shape[-2:], mode='bilinear',
                             align_corners=False).flatten(1)
        target = target.float()
        return dict(
            loss_mask=self.loss_mask(pred, target,
                                     avg_factor=num_boxes * pred.size(1)),
            loss_dice=self.loss_dice(pred, target, avg_factor=num_boxes))

    # ----------------------------------------------------------- inference
    def predict(self, batch_inputs: Tensor, batch_data_samples,
                rescale: bool = True) -> list:
        """Thing detections with masks and the panoptic map, at the original
        image size (``rescale``) or the network input's."""
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        cls_logits, box_preds = self.bbox_head(
            head_inputs['hidden_states'][-1:])
        metas = [s.metainfo for s in batch_data_samples]
        detections = self.bbox_head.predict_by_feat(cls_logits, box_preds,
                                                    metas, rescale=rescale)
        all_logits = self.all_mask_logits(img_feats, head_inputs)
        cfg = self.test_cfg or {}
        for img, (sample, dets) in enumerate(
                zip(batch_data_samples, detections)):
            meta = metas[img]
            out_size = meta['ori_shape'] if rescale else meta['img_shape']
            logits = masks_in_image(all_logits[img], meta['batch_input_shape'],
                                    meta['img_shape'])
            things = dets.labels < self.num_things_classes
            queries = dets.query_index[things]
            sample.pred_instances = dets[things]
            sample.pred_instances.masks = instance_masks(
                logits[queries], out_size, cfg.get('mask_thr', 0.5))
            sample.pred_panoptic_seg = PixelData(sem_seg=panoptic_segmentation(
                cls_logits[-1, img], logits, out_size,
                self.num_things_classes, cfg.get('panoptic_score_thr', 0.85),
                cfg.get('min_segment_area', 4))[None])
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor, batch_data_samples=None
                 ) -> Tuple[Tensor, Tensor, Tensor]:
        """Tensor mode: class logits and boxes of every layer, and every
        query's mask logits ``(B, Q, H/4, W/4)``."""
        img_feats = self.extract_feat(batch_inputs)
        head_inputs = self.forward_transformer(img_feats, batch_data_samples)
        cls_logits, box_preds = self.bbox_head(head_inputs['hidden_states'])
        return cls_logits, box_preds, self.all_mask_logits(img_feats,
                                                           head_inputs)
