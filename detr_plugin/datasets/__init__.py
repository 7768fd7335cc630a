"""Data helpers: the synthetic shapes set used by the demo and the tests."""
from .synthetic_shapes import SHAPES, generate_shapes_dataset

__all__ = ['SHAPES', 'generate_shapes_dataset']
