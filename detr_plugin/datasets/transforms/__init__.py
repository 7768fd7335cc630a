"""Data transforms of this package (registered in its scope)."""
from .stuff_instances import AddStuffInstances

__all__ = ['AddStuffInstances']
