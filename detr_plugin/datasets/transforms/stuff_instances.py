"""Stuff regions as instances, as DETR predicts them.

DETR's panoptic model detects stuff like things: one box, class and mask per
stuff class present in the image (the official dataset lists every segment
of the COCO panoptic file as a target). mmdet's ``CocoPanopticDataset`` and
``LoadPanopticAnnotations`` keep only thing instances and paint every
segment into ``gt_seg_map``; this transform, right after loading, appends
one instance per stuff label found there, so that flips, resizes and crops
then move them with the things.
"""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.structures.mask import BitmapMasks

from ...registry import TRANSFORMS


@TRANSFORMS.register_module()
class AddStuffInstances(BaseTransform):
    """Append each stuff class of ``gt_seg_map`` as an instance.

    Required keys: ``gt_seg_map`` ``(H, W)`` (labels, ``ignore_index`` =
    VOID), ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_masks``
    (``BitmapMasks``), ``gt_ignore_flags`` -- what
    ``LoadPanopticAnnotations(with_seg=True)`` writes. Modified: the last
    four, with the stuff instances after the things, in label order; each
    box is the tight box of its mask.

    Args:
        num_things: labels ``0..num_things-1`` are things, the others stuff.
        ignore_index: the VOID label of ``gt_seg_map``.
    """

    def __init__(self, num_things: int, ignore_index: int = 255) -> None:
        self.num_things = num_things
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        seg = results['gt_seg_map']
        labels = [label for label in np.unique(seg)
                  if self.num_things <= label != self.ignore_index]
        height, width = seg.shape
        stuff = BitmapMasks(
            np.stack([seg == label for label in labels]).astype(np.uint8)
            if labels else np.zeros((0, height, width), np.uint8),
            height, width)
        boxes = results['gt_bboxes']
        results['gt_bboxes'] = boxes.cat(
            [boxes, stuff.get_bboxes(type(boxes))])
        results['gt_bboxes_labels'] = np.concatenate(
            [results['gt_bboxes_labels'],
             np.asarray(labels, np.int64)])
        results['gt_ignore_flags'] = np.concatenate(
            [results['gt_ignore_flags'], np.zeros(len(labels), bool)])
        results['gt_masks'] = BitmapMasks.cat([results['gt_masks'], stuff])
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_things={self.num_things}, '
                f'ignore_index={self.ignore_index})')
