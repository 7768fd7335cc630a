"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile, CorruptImageError,
                              ImageSizeError, decode_image, image_header)

__all__ = ['CheckedLoadImageFromFile', 'CorruptImageError', 'ImageSizeError',
           'decode_image', 'image_header']
