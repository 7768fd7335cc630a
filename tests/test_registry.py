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
from mmdet_reference import (build_mmdet_model, build_plugin_model,
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


def test_importing_changes_no_global_and_safe_loading_is_a_call():
    """In a fresh process: ``import detr_plugin`` leaves mmengine's
    checkpoint loaders, torch's allow-list and mmengine's FLOP table as they
    were; ``use_safe_loading()`` then replaces every scheme's loader."""
    import subprocess
    import sys
    # torch allows one of its own types when torch._dynamo is first imported
    code = '''
import torch
import torch._dynamo
from mmengine.analysis.complexity_analysis import _DEFAULT_SUPPORTED_FLOP_OPS
from mmengine.runner import CheckpointLoader
before = (dict(CheckpointLoader._schemes), torch.serialization.get_safe_globals(),
          dict(_DEFAULT_SUPPORTED_FLOP_OPS))
import detr_plugin
after = (dict(CheckpointLoader._schemes), torch.serialization.get_safe_globals(),
         dict(_DEFAULT_SUPPORTED_FLOP_OPS))
assert before == after, 'import changed a global'
from detr_plugin.checkpoint import files, use_safe_loading
use_safe_loading()
loaders = {k: v.__module__ for k, v in CheckpointLoader._schemes.items()}
assert set(loaders.values()) == {files.__name__}, loaders
print('ok')
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True)
    assert proc.stdout.strip() == 'ok', proc.stderr[-2000:]


def package_imports():
    """``{module: modules of detr_plugin it imports}``, every import
    statement counted (also the ones inside functions)."""
    import ast
    import os.path as osp
    from pathlib import Path
    root = Path(detr_plugin.__file__).parent
    graph = {}
    for path in root.rglob('*.py'):
        parts = path.relative_to(root.parent).with_suffix('').parts
        name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
        package = name if parts[-1] == '__init__' else name.rpartition('.')[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition('.')[0]
                target = node.module or ''
                target = f'{base}.{target}'.strip('.') if node.level else \
                    target
                found.add(target)
                found.update(f'{target}.{a.name}' for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = found
    return {name: {t for t in targets if t in graph and t != name}
            for name, targets in graph.items()}, osp


def test_the_package_imports_no_circle_and_models_no_engine():
    graph, _ = package_imports()
    state = {}

    def visit(module, path):
        state[module] = 'open'
        for target in sorted(graph[module]):
            if state.get(target) == 'open':
                # a package's __init__ importing its own modules is no circle
                # unless one of them imports the package back
                raise AssertionError(' -> '.join(path + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 'done'

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    for module, targets in graph.items():
        if module.startswith('detr_plugin.models'):
            assert not any(t.startswith('detr_plugin.engine')
                           for t in targets), module
    source = ''.join(open(m.__file__).read() for m in [
        detr_plugin.models.hungarian_assigner, detr_plugin.models.detr_head])
    assert 'MessageHub' not in source
