"""DETR's mask post-processing (official ``PostProcessSegm`` and
``PostProcessPanoptic``) into mmdet's result formats.

* Instance masks: each query's mask logits, upsampled (bilinear) to the
  padded input, cropped to the image, thresholded (probability > 0.5) and
  resized (nearest) to the output size: ``pred_instances.masks``.
* Panoptic map: queries whose best class is not no-object and scores above
  0.85 compete for pixels; each pixel goes to the query with the highest mask
  logit; stuff queries of one class form one segment; segments of at most 4
  pixels (at the output size) lose their queries and the competition is run
  again without them, until none is that small. The map holds mmdet's
  segment ids (``label + instance * INSTANCE_OFFSET``, instances numbered
  from 1 for things, 0 for stuff; ``num_classes`` is VOID), as
  ``pred_panoptic_seg.sem_seg`` for ``CocoPanopticMetric``.

Where the official code differs, on purpose:

* it resizes the logits of the padded input to the image size (padding
  included); here the padding is cropped first, as its ``PostProcessSegm``
  does;
* it merges a class's stuff queries in its first pass only, so its second
  pass drops them as "empty" and hands their pixels to other queries; here
  they stay merged;
* with no query kept it labels the whole image as category 1; here it is
  VOID.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.evaluation.functional import INSTANCE_OFFSET
from torch import Tensor


def masks_in_image(mask_logits: Tensor, batch_input_shape: Tuple[int, int],
                   img_shape: Tuple[int, int]) -> Tensor:
    """``(Q, h, w)`` mask logits over the padded input (any stride) ->
    ``(Q, H, W)`` over the image: bilinear to the input size, padding
    cropped."""
    upsampled = F.interpolate(mask_logits[None].float(),
                              size=tuple(batch_input_shape),
                              mode='bilinear', align_corners=False)[0]
    return upsampled[:, :img_shape[0], :img_shape[1]]


def instance_masks(image_logits: Tensor, out_size: Tuple[int, int],
                   mask_thr: float = 0.5) -> Tensor:
    """``(Q, H, W)`` logits over the image -> ``(Q, *out_size)`` bool masks:
    probability > ``mask_thr``, then nearest resizing (official)."""
    if image_logits.size(0) == 0:
        return image_logits.new_zeros((0, ) + tuple(out_size), dtype=bool)
    binary = (image_logits.sigmoid() > mask_thr).float()
    return F.interpolate(binary[None], size=tuple(out_size),
                         mode='nearest')[0].bool()


def _segment_map(labels: Tensor, image_logits: Tensor,
                 out_size: Tuple[int, int],
                 num_things: int) -> Tuple[Tensor, Tensor]:
    """Each pixel's segment id ``out_size`` and each query's segment area.

    The argmax over queries is taken at the image size and resized to
    ``out_size`` with ``nearest-exact`` (pixel centres, as the official
    PIL ``NEAREST`` resize)."""
    owner = image_logits.argmax(0)[None, None].float()
    owner = F.interpolate(owner, size=tuple(out_size),
                          mode='nearest-exact')[0, 0].long()
    is_thing = labels < num_things
    instance = torch.cumsum(is_thing.long(), 0) * is_thing
    segment_ids = labels + instance * INSTANCE_OFFSET  # stuff: merged
    pixels = torch.bincount(owner.flatten(), minlength=len(labels))
    unique_ids, segment = torch.unique(segment_ids, return_inverse=True)
    areas = pixels.new_zeros(len(unique_ids)).index_add_(0, segment, pixels)
    return segment_ids[owner], areas[segment]


def panoptic_segmentation(cls_logits: Tensor, image_logits: Tensor,
                          out_size: Tuple[int, int], num_things: int,
                          score_thr: float = 0.85,
                          min_area: int = 4) -> Tensor:
    """The panoptic map of one image (see the module docstring).

    Args:
        cls_logits: ``(Q, C + 1)``, the last class no-object.
        image_logits: ``(Q, H, W)`` mask logits over the image
            (:func:`masks_in_image`).
        out_size: ``(h, w)`` of the map (the original image).
        num_things: labels below it are things, the others stuff.
        score_thr: class probability a query must exceed.
        min_area: segments of at most this many pixels are dropped.

    Returns:
        ``(h, w)`` int32 segment ids; ``C`` (VOID) where no query is kept.
    """
    num_classes = cls_logits.size(-1) - 1
    scores, labels = cls_logits.float().softmax(-1).max(-1)
    keep = (labels != num_classes) & (scores > score_thr)
    labels, image_logits = labels[keep], image_logits[keep]
    while len(labels):
        pan, areas = _segment_map(labels, image_logits, out_size, num_things)
        small = areas <= min_area
        if not small.any():
            return pan.int()
        labels, image_logits = labels[~small], image_logits[~small]
    return torch.full(tuple(out_size), num_classes, dtype=torch.int32,
                      device=cls_logits.device)
