"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile, CorruptImageError,
                              decode_image, find_corruption)

__all__ = ['CheckedLoadImageFromFile', 'CorruptImageError', 'decode_image',
           'find_corruption']
