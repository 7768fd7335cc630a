"""Test fixtures shipped with the package, as ``mmdet.testing`` ships mmdet's.

:func:`make_batch` builds what a detector's ``loss``/``predict`` take
(padded inputs and ``DetDataSample`` objects with boxes); the parity tests,
the unit tests and ``tools/benchmark.py`` feed both implementations from it.
"""
from typing import Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData


def random_boxes(num: int, height: int, width: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``(num, 4)`` valid xyxy boxes inside a ``height x width`` image."""
    xy = torch.rand(num, 2, generator=generator) * torch.tensor(
        [width * 0.7, height * 0.7])
    wh = (torch.rand(num, 2, generator=generator) * 0.3 + 0.05) * \
        torch.tensor([width, height])
    return torch.cat([xy, xy + wh], dim=1)


def make_batch(img_shapes: Sequence[Tuple[int, int]],
               num_gts: Sequence[int],
               num_classes: int = 80,
               seed: int = 0,
               with_masks: bool = False):
    """Normalised inputs padded to one shape, and their data samples.

    Args:
        img_shapes: ``(h, w)`` of each image before padding.
        num_gts: boxes per image.
        with_masks: also ``gt_instances.masks`` (each box filled), padded to
            the batch input shape as ``pad_mask=True`` pads them (panoptic
            models read them).

    Returns:
        ``inputs`` ``(B, 3, H, W)`` and a list of ``DetDataSample`` with
        ``gt_instances`` (xyxy pixel boxes, labels) and the metainfo the
        detector reads (``img_shape``, ``batch_input_shape``,
        ``scale_factor``, ``ori_shape``).
    """
    generator = torch.Generator().manual_seed(seed)
    pad_h = max(h for h, _ in img_shapes)
    pad_w = max(w for _, w in img_shapes)
    inputs = torch.zeros(len(img_shapes), 3, pad_h, pad_w)
    samples = []
    for i, ((h, w), n) in enumerate(zip(img_shapes, num_gts)):
        inputs[i, :, :h, :w] = torch.randn(3, h, w, generator=generator)
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            batch_input_shape=(pad_h, pad_w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=random_boxes(n, h, w, generator),
            labels=torch.randint(0, num_classes, (n, ), generator=generator))
        if with_masks:
            masks = np.zeros((n, pad_h, pad_w), np.uint8)
            for mask, (x1, y1, x2, y2) in zip(
                    masks,
                    sample.gt_instances.bboxes.round().int().tolist()):
                mask[y1:y2, x1:x2] = 1
            sample.gt_instances.masks = BitmapMasks(masks, pad_h, pad_w)
        samples.append(sample)
    return inputs, samples
