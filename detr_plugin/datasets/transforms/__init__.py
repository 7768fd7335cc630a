"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile, CorruptImageError,
                              decode_image)
from .stuff_instances import AddStuffInstances

__all__ = [
    'AddStuffInstances', 'CheckedLoadImageFromFile', 'CorruptImageError',
    'decode_image'
]
