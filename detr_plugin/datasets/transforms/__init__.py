"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile,  # noqa: F401
                              CorruptImageError, ImageSizeError)
from .dense_o2o import DenseMixUp, DenseMosaic  # noqa: F401
from .stuff_instances import AddStuffInstances  # noqa: F401
