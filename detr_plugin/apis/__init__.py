"""Inference on images: detections, COCO-style results and attention maps."""
from .attention_maps import AttentionMaps, attention_maps
from .inferencer import (DETRInferencer, coco_results, image_ids,
                         list_images)

__all__ = [
    'AttentionMaps', 'attention_maps', 'DETRInferencer', 'coco_results',
    'image_ids', 'list_images'
]
