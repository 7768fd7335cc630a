"""The ``detr_plugin`` registry scope.

Every registry here is a *child* of mmdet's registry of the same kind (the way
mmyolo owns its scope). With ``default_scope = 'detr_plugin'`` a config resolves
``DETR``, ``DETRHead``, ``HungarianAssigner``, ... to this package's classes and
everything it does not define (``ResNet``, ``CocoDataset``, transforms,
``CocoMetric``, hooks, optimizers) to mmdet's or mmengine's. Nothing is ever
registered into mmdet's registries, so importing this package changes nothing
that mmdet's own configs build.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry



def _child(name: str, parent: Registry) -> Registry:
    # A lookup in this scope first imports this package (registering its
    # modules) and mmdet's modules of the same kind: a child's lookup falls
    # back to its parent's registered names but does not trigger the
    # parent's own lazy import.
    return Registry(name, parent=parent, scope='detr_plugin',
                    locations=['detr_plugin'] + list(parent._locations))


RUNNERS = _child('runner', mmdet_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child('runner constructor',
                             mmdet_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child('loop', mmdet_registry.LOOPS)
HOOKS = _child('hook', mmdet_registry.HOOKS)
DATASETS = _child('dataset', mmdet_registry.DATASETS)
DATA_SAMPLERS = _child('data sampler', mmdet_registry.DATA_SAMPLERS)
TRANSFORMS = _child('transform', mmdet_registry.TRANSFORMS)
MODELS = _child('model', mmdet_registry.MODELS)
MODEL_WRAPPERS = _child('model_wrapper', mmdet_registry.MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = _child('weight initializer',
                             mmdet_registry.WEIGHT_INITIALIZERS)
OPTIMIZERS = _child('optimizer', mmdet_registry.OPTIMIZERS)
OPTIM_WRAPPERS = _child('optim_wrapper', mmdet_registry.OPTIM_WRAPPERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child('optimizer constructor',
                                    mmdet_registry.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child('parameter scheduler',
                          mmdet_registry.PARAM_SCHEDULERS)
METRICS = _child('metric', mmdet_registry.METRICS)
EVALUATOR = _child('evaluator', mmdet_registry.EVALUATOR)
TASK_UTILS = _child('task util', mmdet_registry.TASK_UTILS)
VISUALIZERS = _child('visualizer', mmdet_registry.VISUALIZERS)
VISBACKENDS = _child('vis_backend', mmdet_registry.VISBACKENDS)
LOG_PROCESSORS = _child('log_processor', mmdet_registry.LOG_PROCESSORS)
