"""Data transforms registered in the ``detr_plugin`` scope."""
from .checked_loading import (CheckedLoadImageFromFile, CorruptImageError,
                              decode_image)

__all__ = ['CheckedLoadImageFromFile', 'CorruptImageError', 'decode_image']
