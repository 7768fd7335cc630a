"""The ``detr_plugin`` registry scope.

Every registry here is a *child* of mmdet's registry of the same kind (the
way mmyolo owns its scope). With ``default_scope = 'detr_plugin'`` a config
resolves ``DETR``, ``DETRHead``, ``HungarianAssigner``, ... to this package's
classes and everything it does not define (``ResNet``, ``CocoDataset``,
transforms, ``CocoMetric``, hooks, optimizers) to mmdet's or mmengine's.

The promise: importing the package registers mmdet's own modules in mmdet's
registries (as mmdet does for its scope) and adds a file backend under a new
name (``'atomic_local'``), and changes nothing else -- nothing of this
package in mmdet's registries, no checkpoint loader of mmengine's, no entry
of torch's allow-list or mmengine's FLOP table -- so mmdet's own configs
build and load as before. One global is set by an explicit call:
``detr_plugin.checkpoint.use_safe_loading()`` makes mmengine's checkpoint
loader read every scheme without running code (the only place that loader
can be told); the tools, the inferencer and the checkpoint hooks call it.
``tests/test_registry.py`` checks both.
"""
from typing import Optional

from mmdet import registry as mmdet_registry
from mmengine.registry import Registry


def _child(parent: Registry) -> Registry:
    # A lookup in this scope first imports this package (registering its
    # modules) and mmdet's modules of the same kind: a child's lookup falls
    # back to its parent's registered names but does not trigger the
    # parent's own lazy import.
    return Registry(parent.name, parent=parent, scope='detr_plugin',
                    locations=['detr_plugin'] + list(parent._locations))


# One child per registry of mmdet, under mmdet's name: RUNNERS,
# RUNNER_CONSTRUCTORS, LOOPS, HOOKS, DATASETS, DATA_SAMPLERS, TRANSFORMS,
# MODELS, MODEL_WRAPPERS, WEIGHT_INITIALIZERS, OPTIMIZERS, OPTIM_WRAPPERS,
# OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, METRICS, EVALUATOR,
# TASK_UTILS, VISUALIZERS, VISBACKENDS, LOG_PROCESSORS.
globals().update({
    name: _child(parent) for name, parent in vars(mmdet_registry).items()
    if isinstance(parent, Registry) and parent.scope == 'mmdet'})


def registered_class(registry: Registry, kind) -> Optional[type]:
    """The class a config's ``type`` names in ``registry`` (``kind``
    itself when a class), or None."""
    try:
        found = kind if isinstance(kind, type) else registry.get(kind)
    except Exception:  # a type of a scope not imported here
        return None
    return found if isinstance(found, type) else None
