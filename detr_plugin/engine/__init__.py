"""Training-runtime pieces: hooks, safe checkpoint loading, CPU autocast.

Importing it allow-lists mmengine's checkpoint types for ``torch.load`` and
registers all of mmdet's modules: a child registry finds its parents' modules
only once registered, and mmdet registers them lazily for its own scope only
(else ``DetLocalVisualizer``, ``CocoMetric``, mmdet's transforms are not
found from the ``detr_plugin`` scope).
"""
from mmdet.utils import register_all_modules

from . import hooks  # noqa: F401  (registers the hooks)
from .cpu_autocast import CPUAutocastOptimWrapper
from .safe_checkpoint import (MMENGINE_CHECKPOINT_GLOBALS,
                              allow_mmengine_checkpoint_globals)

allow_mmengine_checkpoint_globals()
register_all_modules(init_default_scope=False)

__all__ = [
    'CPUAutocastOptimWrapper', 'MMENGINE_CHECKPOINT_GLOBALS',
    'allow_mmengine_checkpoint_globals'
]
