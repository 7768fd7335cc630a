"""DETR (Carion et al. 2020) and its family for the OpenMMLab stack.

Importing the package registers everything a config can name in the
``detr_plugin`` registry scope (children of mmdet's registries; see
:mod:`detr_plugin.registry`): the models, the datasets and transforms, the
hooks and the optimizer wrapper.
"""
from . import datasets  # noqa: F401  (datasets and their transforms)
from . import engine  # noqa: F401  (hooks, checkpoint allow-list, CPU AMP)
from . import models  # noqa: F401  (the detectors' modules)
from .registry import MODELS, TASK_UTILS  # noqa: F401

__version__ = '0.1.0'
