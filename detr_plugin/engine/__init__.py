"""Training-runtime pieces: hooks, safe checkpoint loading, CPU autocast.

Importing this package (``detr_plugin`` does) allow-lists the types that
mmengine writes into checkpoints for ``torch.load(weights_only=True)`` and
registers :class:`CPUAutocastOptimWrapper` and the hooks of :mod:`.hooks` in
the ``detr_plugin`` scope. It also registers all of mmdet's modules: a child
registry finds its parents' modules only once they are registered, and mmdet
registers them lazily only for its own scope, so without this
``DetLocalVisualizer``, ``DetVisualizationHook``, ``CocoMetric`` or mmdet's
transforms are not found from the ``detr_plugin`` scope.
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
