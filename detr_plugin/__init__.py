"""DETR (Carion et al. 2020) for the OpenMMLab stack.

Importing the package registers its modules in the ``detr_plugin`` registry
scope (children of mmdet's registries); see :mod:`detr_plugin.registry`.
"""
from . import datasets  # noqa: F401  (registers the transforms)
from . import engine  # noqa: F401  (checkpoint allow-list, CPU AMP, ...)
from . import models  # noqa: F401  (registers the modules)
from . import safety  # noqa: F401  (data checks, fault-safe hooks)
from .registry import MODELS, TASK_UTILS  # noqa: F401

__version__ = '0.1.0'
