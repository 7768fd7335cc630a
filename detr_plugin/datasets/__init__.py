"""Data: the synthetic shapes sets used by the demos and the tests, and
transforms (registered in the ``detr_plugin`` scope)."""
from . import transforms  # noqa: F401  (registers them)
from .synthetic_panoptic import STUFF, generate_panoptic_shapes_dataset
from .synthetic_shapes import SHAPES, generate_shapes_dataset

__all__ = ['SHAPES', 'STUFF', 'generate_panoptic_shapes_dataset',
           'generate_shapes_dataset']
