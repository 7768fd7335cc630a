"""DETR's matching costs, computed for a whole batch at once (paper eq. 1).

``cost = w_cls * (-p[target class]) + w_l1 * L1(cxcywh) + w_giou * (-GIoU)``
with weights 1, 5 and 2 in DETR (its successors replace ``-p`` by the focal
cost of the sigmoid probability, :class:`FocalLossCost`). Every cost takes
predictions for ``N`` queries per image (all decoder layers folded into
``N``) and the batch's ground truth padded to ``G`` boxes per image, and
returns ``(B, N, G)``; columns past an image's own box count are padding the
assigner never reads.
"""
from dataclasses import dataclass
from typing import List, Sequence

import torch
from mmdet.structures.bbox import (bbox_cxcywh_to_xyxy, bbox_overlaps,
                                   bbox_xyxy_to_cxcywh)
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..registry import TASK_UTILS


@dataclass
class BatchedTargets:
    """Ground truth of a batch, padded to ``G = max(num_gts)`` boxes.

    Attributes:
        labels: ``(B, G)`` class indices (0 in the padding).
        boxes_xyxy: ``(B, G, 4)`` boxes in pixels of the network input (x1,
            y1, x2, y2).
        boxes_cxcywh: ``(B, G, 4)`` boxes as (cx, cy, w, h) normalized by the
            image size, DETR's regression target.
        img_factors: ``(B, 4)`` ``(w, h, w, h)`` of each image in pixels.
        num_gts: boxes per image, on the host.
        num_gts_tensor: ``(B,)`` float, the same on the device.
        images: per image its file and id, for messages.
    """
    labels: Tensor
    boxes_xyxy: Tensor
    boxes_cxcywh: Tensor
    img_factors: Tensor
    num_gts: List[int]
    num_gts_tensor: Tensor
    images: List[str]

    @classmethod
    def from_samples(cls, batch_data_samples,
                     device: torch.device) -> 'BatchedTargets':
        """The ``gt_instances`` of mmdet's data samples, padded."""
        return cls.from_instances(
            [s.gt_instances for s in batch_data_samples],
            [s.metainfo for s in batch_data_samples], device)

    @classmethod
    def from_instances(cls, batch_gt_instances: Sequence,
                       batch_img_metas: Sequence[dict],
                       device: torch.device) -> 'BatchedTargets':
        """Pad mmdet's per-image ``InstanceData`` (bboxes xyxy, labels)."""
        num_gts = [len(gt) for gt in batch_gt_instances]
        boxes = [gt.bboxes.float().reshape(-1, 4).to(device)
                 for gt in batch_gt_instances]
        labels = [gt.labels.long().to(device) for gt in batch_gt_instances]
        if max(num_gts, default=0) == 0:  # pad_sequence needs one row
            boxes = [b.new_zeros((1, 4)) for b in boxes]
            labels = [lab.new_zeros(1) for lab in labels]
        boxes_xyxy = pad_sequence(boxes, batch_first=True)
        # what the host knows, in one copy to the device
        host = torch.tensor(
            [[meta['img_shape'][1], meta['img_shape'][0]] * 2 + [count]
             for meta, count in zip(batch_img_metas, num_gts)],
            dtype=torch.float32, device=device)
        factors = host[:, :4]
        return cls(
            labels=pad_sequence(labels, batch_first=True),
            boxes_xyxy=boxes_xyxy,
            boxes_cxcywh=bbox_xyxy_to_cxcywh(boxes_xyxy / factors[:, None]),
            img_factors=factors,
            num_gts=num_gts,
            num_gts_tensor=host[:, 4],
            images=[f'{meta.get("img_path", "?")} (img_id '
                    f'{meta.get("img_id", "?")})'
                    for meta in batch_img_metas])

    def slice(self, index: slice) -> 'BatchedTargets':
        """The targets of the images ``index`` of the batch."""
        return BatchedTargets(self.labels[index], self.boxes_xyxy[index],
                              self.boxes_cxcywh[index],
                              self.img_factors[index], self.num_gts[index],
                              self.num_gts_tensor[index], self.images[index])


class _WeightedCost:

    def __init__(self, weight: float = 1.) -> None:
        self.weight = weight


@TASK_UTILS.register_module()
class ClassificationCost(_WeightedCost):
    """``-weight * softmax(logits)[target class]``."""

    def __call__(self, cls_logits: Tensor, box_preds: Tensor,
                 targets: BatchedTargets) -> Tensor:
        """Args: cls_logits ``(B, N, C + 1)``; box_preds unused.

        Returns: ``(B, N, G)``.
        """
        probs = cls_logits.float().softmax(-1)
        index = targets.labels[:, None, :].expand(-1, probs.size(1), -1)
        return -self.weight * probs.gather(2, index)


@TASK_UTILS.register_module()
class FocalLossCost(_WeightedCost):
    """``weight * (focal(p, 1) - focal(p, 0))`` at the target class, ``p`` the
    sigmoid probability (the cost of DETR's successors, as mmdet's
    ``FocalLossCost``): ``focal(p, 1) = -alpha (1 - p)^gamma log(p + eps)``,
    ``focal(p, 0) = -(1 - alpha) p^gamma log(1 - p + eps)``.

    Args:
        alpha, gamma: the focal loss's.
        eps: added inside the logarithms.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.,
                 eps: float = 1e-12, weight: float = 1.) -> None:
        super().__init__(weight)
        self.alpha, self.gamma, self.eps = alpha, gamma, eps

    def __call__(self, cls_logits: Tensor, box_preds: Tensor,
                 targets: BatchedTargets) -> Tensor:
        """Args: cls_logits ``(B, N, C)`` sigmoid logits; box_preds unused.

        Returns: ``(B, N, G)``.
        """
        index = targets.labels[:, None, :].expand(-1, cls_logits.size(1), -1)
        prob = cls_logits.float().gather(2, index).sigmoid()  # (B, N, G)
        neg_cost = -(1 - prob + self.eps).log() * (1 - self.alpha) * \
            prob.pow(self.gamma)
        pos_cost = -(prob + self.eps).log() * self.alpha * \
            (1 - prob).pow(self.gamma)
        return self.weight * (pos_cost - neg_cost)


@TASK_UTILS.register_module()
class BBoxL1Cost(_WeightedCost):
    """``weight * L1`` between normalized (cx, cy, w, h) boxes."""

    def __call__(self, cls_logits: Tensor, box_preds: Tensor,
                 targets: BatchedTargets) -> Tensor:
        """Args: box_preds ``(B, N, 4)`` normalized cxcywh.

        Returns: ``(B, N, G)``.
        """
        return self.weight * torch.cdist(
            box_preds.float(), targets.boxes_cxcywh, p=1)


@TASK_UTILS.register_module()
class IoUCost(_WeightedCost):
    """``-weight * IoU`` (GIoU by default) between boxes in pixels.

    Args:
        iou_mode: ``'giou'`` (DETR) or ``'iou'``.
    """

    def __init__(self, iou_mode: str = 'giou', weight: float = 1.) -> None:
        super().__init__(weight)
        self.iou_mode = iou_mode

    def __call__(self, cls_logits: Tensor, box_preds: Tensor,
                 targets: BatchedTargets) -> Tensor:
        """Args: box_preds ``(B, N, 4)`` normalized cxcywh.

        Returns: ``(B, N, G)``.
        """
        pred_xyxy = bbox_cxcywh_to_xyxy(box_preds.float()) * \
            targets.img_factors[:, None, :]
        overlaps = bbox_overlaps(pred_xyxy, targets.boxes_xyxy,
                                 mode=self.iou_mode, is_aligned=False)
        return -self.weight * overlaps
