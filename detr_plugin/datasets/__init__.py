"""mmdet's ``CocoDataset`` and ``CocoPanopticDataset`` with DETR's data
checks, the check of a config's data before training, and the transforms."""
from .checked_coco import CheckedCocoDataset, DatasetReport  # noqa: F401
from .checked_coco_panoptic import CheckedCocoPanopticDataset  # noqa: F401
from .coco_annotations import DatasetCheckError  # noqa: F401
from .dataset_check import (audit_split, check_dataset_config,  # noqa: F401
                            name_dataset_configs)
from .transforms import (CheckedLoadImageFromFile,  # noqa: F401
                         CorruptImageError, ImageSizeError)
