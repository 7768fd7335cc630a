"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile,  # noqa: F401
                              CorruptImageError, ImageSizeError)
from .stuff_instances import AddStuffInstances  # noqa: F401
