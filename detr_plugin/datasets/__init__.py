"""mmdet's ``CocoDataset`` with DETR's data checks, the check of a config's
data before training, and the synthetic shapes set."""
from .checked_coco import CheckedCocoDataset, DatasetReport
from .coco_annotations import DatasetCheckError
from .dataset_check import audit_split, check_dataset_config
from .filter_logging import FilterLogMixin, LoggingCocoDataset
from .synthetic_shapes import SHAPES, generate_shapes_dataset
from .transforms import (CheckedLoadImageFromFile, CorruptImageError,
                         ImageSizeError)

__all__ = [
    'CheckedCocoDataset', 'DatasetReport', 'DatasetCheckError', 'audit_split',
    'check_dataset_config', 'FilterLogMixin', 'LoggingCocoDataset', 'SHAPES',
    'generate_shapes_dataset', 'CheckedLoadImageFromFile', 'CorruptImageError',
    'ImageSizeError'
]
