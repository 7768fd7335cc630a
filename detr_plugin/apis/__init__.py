"""Inference on images: detections and attention maps."""
from .attention_maps import AttentionMaps, attention_maps  # noqa: F401
from .inferencer import DETRInferencer  # noqa: F401
