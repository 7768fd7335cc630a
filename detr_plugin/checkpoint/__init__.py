"""Checkpoints: their layouts (mmdet's, the official releases', transformers'
and RT-DETR's), their files
(loaded without running code, written atomically) and their fit to a model.
The hooks of :mod:`detr_plugin.engine.hooks` call down into it; nothing here
imports a hook."""
from .files import (MMENGINE_CHECKPOINT_GLOBALS, STALE_TMP,
                    CheckpointReadError, CheckpointWriteError,
                    UnsafeCheckpointError, atomic_write,
                    checkpoint_steps, find_resumable_checkpoint,
                    is_complete_checkpoint, safe_load, use_safe_loading)
from .fit import (CLASS_ROWS, CLASSIFIER, CheckpointMisfitError, by_module,
                  fit_to_model, misfit_message, missing_tensors,
                  shape_mismatches)
from .layouts import (COCO_CATEGORY_IDS, COCO_PANOPTIC_IDS, MMDET_LAYOUTS,
                      coco_class_names, convert_checkpoint, mmdet_to_plugin,
                      model_variant, num_classes_of, official_to_plugin,
                      plugin_to_mmdet, plugin_to_official)
from .dfine import (convert_dfine_checkpoint, dfine_config,
                    dfine_hf_to_plugin, dfine_official_to_plugin)
from .hf import convert_hf_checkpoint, hf_to_plugin, hf_variant
from .rtdetr import (convert_rtdetr_checkpoint, rtdetr_config,
                     rtdetr_hf_to_plugin, rtdetr_official_to_plugin)

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'STALE_TMP', 'CheckpointReadError',
    'CheckpointWriteError',
    'UnsafeCheckpointError', 'atomic_write', 'checkpoint_steps',
    'find_resumable_checkpoint', 'is_complete_checkpoint', 'safe_load',
    'use_safe_loading', 'CLASS_ROWS', 'CLASSIFIER', 'CheckpointMisfitError',
    'by_module', 'fit_to_model', 'misfit_message', 'missing_tensors',
    'shape_mismatches', 'COCO_CATEGORY_IDS', 'COCO_PANOPTIC_IDS',
    'MMDET_LAYOUTS', 'coco_class_names', 'convert_checkpoint',
    'mmdet_to_plugin', 'model_variant', 'num_classes_of',
    'official_to_plugin', 'plugin_to_mmdet', 'plugin_to_official',
    'convert_hf_checkpoint', 'hf_to_plugin', 'hf_variant',
    'convert_rtdetr_checkpoint', 'rtdetr_config', 'rtdetr_hf_to_plugin',
    'rtdetr_official_to_plugin', 'convert_dfine_checkpoint', 'dfine_config',
    'dfine_hf_to_plugin', 'dfine_official_to_plugin'
]
