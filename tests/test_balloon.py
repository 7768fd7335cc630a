"""configs/balloon: fine-tuning an 80-class checkpoint on a 1-class set.

The balloon config is trained for one epoch of 8 of its 61 training images
with a tiny model at 256 px (then evaluated on all 13 val images),
starting from a fake 80-class "COCO" checkpoint of the same tiny
architecture saved in mmdet's key layout (what ``load_from`` points at).
"""
import os.path as osp
import subprocess
import sys

import torch
from helpers.configs import (CONFIG_DIR, DETR_R50, REPO_ROOT, data_overrides,
                             tiny_config)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from detr_plugin.checkpoint import plugin_to_mmdet
from mmdet_reference import build_plugin_model

SIZE = (256, 256)
BALLOON_CONFIG = osp.join(CONFIG_DIR, 'balloon',
                          'detr_r50_8xb2-50e_balloon.py')


class SnapshotAfterLoad(Hook):
    """Copies the model's weights once ``load_from`` is in (before_train)."""

    def before_train(self, runner):
        self.state = {k: v.clone() for k, v in
                      runner.model.state_dict().items()}


def small_balloon_config(root: str, work_dir: str, load_from: str) -> Config:
    cfg = Config.fromfile(BALLOON_CONFIG)
    cfg.model = tiny_config(num_classes=cfg.model.bbox_head.num_classes).model
    cfg.merge_from_dict(data_overrides(root, ('balloon', ),
                                       ('train', 'val', 'test')))
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=SIZE, keep_ratio=True),
        dict(type='PackDetInputs')
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=SIZE, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ]
    loader = dict(num_workers=0, persistent_workers=False)
    cfg.merge_from_dict(dict(
        train_dataloader=dict(dataset=dict(pipeline=train_pipeline,
                                           indices=8), **loader),
        test_dataloader=dict(dataset=dict(pipeline=test_pipeline), **loader),
        train_cfg=dict(max_epochs=1),
        default_hooks=dict(logger=dict(interval=10),
                           visualization=dict(draw=False)),
        work_dir=work_dir, load_from=load_from,
        randomness=dict(seed=0)))
    # no validation during training: runner.test() evaluates once
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    return cfg


def test_balloon_config_is_the_coco_config_with_other_data():
    cfg = Config.fromfile(BALLOON_CONFIG)
    coco = Config.fromfile(DETR_R50)
    assert cfg.model.bbox_head.num_classes == 1
    # load_from holds the whole model: no ImageNet backbone first
    assert cfg.model.backbone.init_cfg is None
    cfg.model.bbox_head.num_classes = 80
    cfg.model.backbone.init_cfg = coco.model.backbone.init_cfg
    assert cfg.model == coco.model
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.metainfo.classes == ('balloon', )
        assert cfg[loader].dataset.data_root == 'data/balloon/'
    assert cfg.test_evaluator.ann_file == \
        'data/balloon/annotations/instances_val.json'
    assert cfg.load_from.endswith('.pth')
    assert dict(type='AdaptCheckpointHook') in cfg.custom_hooks
    assert cfg.custom_imports.imports == ['detr_plugin']  # the base's


def test_importing_the_package_registers_what_configs_name():
    """In a fresh interpreter, ``import detr_plugin`` (the base config's
    only custom import) registers every type the balloon config names: its
    hooks, dataset and transforms resolve in the ``detr_plugin`` scope."""
    cfg = Config.fromfile(BALLOON_CONFIG)
    names = dict(
        HOOKS=[h['type'] for h in cfg.custom_hooks]
        + [h['type'] for h in cfg.default_hooks.values()],
        DATASETS=[cfg.train_dataloader.dataset.type],
        TRANSFORMS=[t['type'] for t in cfg.train_dataloader.dataset.pipeline
                    if 'type' in t])
    code = ('import detr_plugin, detr_plugin.registry as r\n'
            'from mmengine.registry import DefaultScope\n'
            "with DefaultScope.overwrite_default_scope('detr_plugin'):\n"
            f'    for kind, names in {names!r}.items():\n'
            '        for name in names:\n'
            '            assert getattr(r, kind).get(name), (kind, name)\n'
            "print('registered')")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.stdout.strip() == 'registered', proc.stderr[-3000:]
    assert 'AdaptCheckpointHook' in names['HOOKS']
    assert 'CheckedCocoDataset' in names['DATASETS']


def test_finetune_from_80_class_checkpoint(balloon_root, tmp_path):
    coco_model = build_plugin_model(tiny_config(num_classes=80))
    coco_state = coco_model.state_dict()
    ckpt = str(tmp_path / 'coco_80_classes.pth')
    torch.save(dict(state_dict=plugin_to_mmdet(coco_state), meta={}), ckpt)

    runner = Runner.from_cfg(small_balloon_config(balloon_root, str(tmp_path),
                                                  ckpt))
    snapshot = SnapshotAfterLoad()
    runner.register_hook(snapshot, priority='VERY_LOW')
    runner.train()
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()

    # one clear line, and none of mmengine's mismatch / missing-key warnings
    lines = [line for line in log.splitlines() if 're-initialized' in line]
    assert len(lines) == 1, lines
    assert 'bbox_head.fc_cls.weight: (81, 32) -> (2, 32)' in lines[0]
    assert 'size mismatch' not in log and 'missing keys' not in log
    # every other weight is the checkpoint's
    loaded = snapshot.state
    assert loaded['bbox_head.fc_cls.weight'].shape == (2, 32)
    assert set(loaded) == set(coco_state)
    for key, value in coco_state.items():
        if not key.startswith('bbox_head.fc_cls.'):
            assert torch.equal(loaded[key], value), key

    metrics = runner.test()
    for name in ('mAP', 'mAP_50', 'mAP_75'):
        assert 0 <= metrics[f'coco/bbox_{name}'] <= 1
    for name in ('mAP_s', 'mAP_m', 'mAP_l'):  # -1: no box of that size
        assert metrics[f'coco/bbox_{name}'] == -1 or \
            0 <= metrics[f'coco/bbox_{name}'] <= 1
