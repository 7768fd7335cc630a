"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile, CorruptImageError,
                              ImageSizeError, decode_image, image_header)
from .stuff_instances import AddStuffInstances

__all__ = [
    'AddStuffInstances', 'CheckedLoadImageFromFile', 'CorruptImageError',
    'ImageSizeError', 'decode_image', 'image_header'
]
