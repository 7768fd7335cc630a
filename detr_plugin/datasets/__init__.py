"""mmdet's ``CocoDataset`` and ``CocoPanopticDataset`` with DETR's data
checks, the check of a config's data before training, the transforms, and
the synthetic shapes sets of the demos and tests."""
from .checked_coco import CheckedCocoDataset, DatasetReport
from .checked_coco_panoptic import CheckedCocoPanopticDataset
from .coco_annotations import DatasetCheckError
from .dataset_check import audit_split, check_dataset_config
from .filter_logging import FilterLogMixin, LoggingCocoDataset
from .synthetic_panoptic import STUFF, generate_panoptic_shapes_dataset
from .synthetic_shapes import SHAPES, generate_shapes_dataset
from .transforms import (CheckedLoadImageFromFile, CorruptImageError,
                         ImageSizeError)

__all__ = [
    'CheckedCocoDataset', 'CheckedCocoPanopticDataset', 'DatasetReport',
    'DatasetCheckError', 'audit_split', 'check_dataset_config',
    'FilterLogMixin', 'LoggingCocoDataset', 'SHAPES', 'STUFF',
    'generate_panoptic_shapes_dataset', 'generate_shapes_dataset',
    'CheckedLoadImageFromFile', 'CorruptImageError', 'ImageSizeError'
]
