"""The detr_plugin scope resolves DETR's parts to this package and the rest
to mmdet; mmdet's own scope is untouched by importing the package."""
import mmdet.models
import pytest
from helpers.configs import DETR_R50
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmengine.registry import DefaultScope

import detr_plugin
from detr_plugin import registry
from detr_plugin.mmdet_reference import (build_mmdet_model, build_plugin_model,
                                         mmdet_config_path)

PLUGIN_MODELS = ['DETR', 'DETRHead', 'SinePositionalEncoding',
                 'LearnedPositionalEncoding', 'MultiheadAttention',
                 'BaseTransformerLayer', 'DetrTransformerEncoder',
                 'DetrTransformerDecoder']
PLUGIN_TASK_UTILS = ['HungarianAssigner', 'ClassificationCost',
                     'BBoxL1Cost', 'IoUCost']


def test_every_registry_is_a_child_of_mmdets():
    from mmdet import registry as mmdet_registry
    for name in ['MODELS', 'TASK_UTILS', 'DATASETS', 'TRANSFORMS', 'METRICS',
                 'HOOKS', 'VISUALIZERS', 'OPTIM_WRAPPERS', 'LOOPS']:
        ours = getattr(registry, name)
        assert ours.parent is getattr(mmdet_registry, name), name
        assert ours.scope == 'detr_plugin'


@pytest.mark.parametrize('name', PLUGIN_MODELS)
def test_plugin_scope_resolves_detr_parts_to_plugin(name):
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        cls = registry.MODELS.get(name)
    assert cls.__module__.startswith('detr_plugin.'), cls


@pytest.mark.parametrize('name', PLUGIN_TASK_UTILS)
def test_plugin_scope_resolves_assigner_and_costs_to_plugin(name):
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        cls = registry.TASK_UTILS.get(name)
    assert cls.__module__.startswith('detr_plugin.'), cls


@pytest.mark.parametrize('registry_name,name,module', [
    ('MODELS', 'ResNet', 'mmdet.models.backbones'),
    ('MODELS', 'DetDataPreprocessor', 'mmdet.models.data_preprocessors'),
    ('MODELS', 'FFN', 'mmcv.cnn.bricks.transformer'),
    ('DATASETS', 'CocoDataset', 'mmdet.datasets'),
    ('TRANSFORMS', 'PackDetInputs', 'mmdet.datasets.transforms'),
    ('METRICS', 'CocoMetric', 'mmdet.evaluation'),
    ('VISUALIZERS', 'DetLocalVisualizer', 'mmdet.visualization'),
])
def test_plugin_scope_falls_back_to_mmdet(registry_name, name, module):
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        cls = getattr(registry, registry_name).get(name)
    assert cls is not None and cls.__module__.startswith(module), cls


@pytest.mark.parametrize('name', PLUGIN_MODELS[:3] + ['ResNet'])
def test_mmdet_scope_is_unchanged(name):
    with DefaultScope.overwrite_default_scope('mmdet'):
        cls = MMDET_MODELS.get(name)
    assert cls.__module__.startswith('mmdet.'), cls
    assert name not in MMDET_MODELS.module_dict or \
        MMDET_MODELS.module_dict[name].__module__.startswith('mmdet.')
    for task_util in PLUGIN_TASK_UTILS:
        assert MMDET_TASK_UTILS.module_dict[task_util].__module__ \
            .startswith('mmdet.')


def test_configs_build_their_own_models():
    ours = build_plugin_model(DETR_R50)
    theirs = build_mmdet_model(
        mmdet_config_path('detr/detr_r50_8xb2-150e_coco.py'))
    assert type(ours) is detr_plugin.models.DETR
    assert type(ours.bbox_head) is detr_plugin.models.DETRHead
    assert type(theirs) is mmdet.models.DETR
    assert type(theirs.bbox_head) is mmdet.models.DETRHead
    assert type(theirs.bbox_head.assigner).__module__.startswith('mmdet.')
    # ...and both use mmdet's ResNet.
    assert type(ours.backbone) is type(theirs.backbone)
