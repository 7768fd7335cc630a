"""Training-runtime pieces: the hooks and CPU autocast.

Importing it registers all of mmdet's modules: a child registry finds its
parents' modules only once registered, and mmdet registers them lazily for
its own scope only (else ``DetLocalVisualizer``, ``CocoMetric``, mmdet's
transforms are not found from the ``detr_plugin`` scope).
"""
from mmdet.utils import register_all_modules

from . import hooks  # noqa: F401  (registers the hooks)
from .cpu_autocast import CPUAutocastOptimWrapper  # noqa: F401

register_all_modules(init_default_scope=False)
