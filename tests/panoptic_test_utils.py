"""A tiny panoptic DETR and batches with ground-truth masks."""
import numpy as np
from mmdet.structures.mask import BitmapMasks

from detr_test_utils import make_batch, tiny_config


def tiny_panoptic_config(num_things: int = 3, num_stuff: int = 2,
                         num_queries: int = 6, **model):
    """``tiny_config`` as a ``DETRPanoptic`` with the official mask head:
    128-d (the block widths halve from it down to 8 channels for GroupNorm
    8), ResNet-18 stages 1-3 (8, 16, 32 channels) as its FPN levels, masks
    at stride 4; ``model`` overrides the model config."""
    cfg = tiny_config(num_classes=num_things + num_stuff,
                      num_queries=num_queries, embed_dims=128, num_layers=1)
    cfg.merge_from_dict(dict(model=dict(
        type='DETRPanoptic', num_things_classes=num_things,
        data_preprocessor=dict(pad_mask=True),
        backbone=dict(out_indices=(0, 1, 2, 3)),
        mask_head=dict(num_heads=8, fpn_dims=(32, 16, 8)))))
    cfg.merge_from_dict(dict(model=model))
    return cfg


def make_panoptic_batch(img_shapes, num_gts, num_classes, seed=0):
    """``make_batch`` whose instances also have masks (each its box, filled),
    padded to the batch input shape as ``pad_mask=True`` pads them."""
    inputs, samples = make_batch(img_shapes, num_gts, num_classes, seed)
    height, width = inputs.shape[-2:]
    for sample in samples:
        masks = np.zeros((len(sample.gt_instances), height, width), np.uint8)
        for mask, (x1, y1, x2, y2) in zip(
                masks, sample.gt_instances.bboxes.round().int().tolist()):
            mask[y1:y2, x1:x2] = 1
        sample.gt_instances.masks = BitmapMasks(masks, height, width)
    return inputs, samples
