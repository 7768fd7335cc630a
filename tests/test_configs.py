"""Every config under configs/ builds and runs one loss and one predict.

Pretrained initialisation is switched off (no weights can be fetched in
tests); the variants are also checked against mmdet's shipped DETR configs on
the keys they override.
"""
import glob
import os.path as osp

import pytest
import torch
from helpers.configs import CONFIG_DIR, DETR_R50, DETR_R50_ALIAS
from helpers.tools import load_tool
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdet_reference import (build_plugin_model, load_config,
                             mmdet_config_path)
from mmdet_reference import make_batch

CONFIGS = sorted(
    osp.relpath(path, CONFIG_DIR)
    for path in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if not osp.relpath(path, CONFIG_DIR).startswith('_base_'))


def test_configs_are_found():
    assert 'detr_r50_8xb2.py' in CONFIGS
    assert 'detr/detr_r50_8xb2-150e_coco.py' in CONFIGS
    assert len(CONFIGS) >= 5


def test_short_name_is_the_150_epoch_recipe():
    """``configs/detr_r50_8xb2.py``, the command users are told, builds the
    config of ``configs/detr/detr_r50_8xb2-150e_coco.py``."""
    alias, recipe = Config.fromfile(DETR_R50_ALIAS), Config.fromfile(DETR_R50)
    assert alias.to_dict() == recipe.to_dict()
    assert alias.train_cfg.max_epochs == 150


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs(name):
    cfg = load_config(osp.join(CONFIG_DIR, name))  # backbone.init_cfg=None
    cfg.load_from = None
    model = build_plugin_model(cfg)
    num_classes = cfg.model.bbox_head.num_classes
    # two images padded to one batch, one of them without boxes, with masks
    # (which the panoptic models' loss reads); 4x the size for two-stage
    # models, whose feature positions are the proposals
    scale = 4 if cfg.model.get('as_two_stage') or \
        cfg.model.type in ('DINO', 'RTDETR', 'DFINE') else 1
    inputs, samples = make_batch([(64 * scale, 64 * scale),
                                  (48 * scale, 56 * scale)], [3, 0],
                                 num_classes=num_classes, with_masks=True)

    model.train()
    losses = model.loss(inputs, samples)
    num_layers = cfg.model.decoder.num_layers
    # every decoder layer's matching loss (two-stage: + enc_loss_*, DINO: +
    # dn_loss_* per layer)
    assert len([k for k in losses if k.split('.')[-1] == 'loss_cls']) == \
        num_layers
    sigmoid = cfg.model.bbox_head.get('loss_cls', {}).get('use_sigmoid')
    # a sigmoid classifier has no no-object class to count predictions by
    for key in ('class_error', ) + (() if sigmoid else
                                    ('cardinality_error', )):
        assert key in losses
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key

    model.eval()
    with torch.no_grad():
        results = model.predict(inputs, samples)
    # the top-k of the queries (softmax) or of (query, class) pairs
    top_k = min(cfg.model.test_cfg.max_per_img, cfg.model.num_queries *
                (num_classes if sigmoid else 1))
    for result in results:
        pred = result.pred_instances
        num = top_k
        if 'pred_panoptic_seg' in result:  # the thing detections of the top-k
            num = len(pred)
            assert num <= top_k
            assert pred.masks.shape[1:] == result.ori_shape == \
                result.pred_panoptic_seg.sem_seg.shape[1:]
        assert pred.bboxes.shape == (num, 4)
        assert pred.scores.shape == pred.labels.shape == (num, )
        assert torch.isfinite(pred.bboxes).all()
        assert (pred.labels < num_classes).all()


# our configs with the name of one of mmdet's: the same recipe
MMDET_EQUIVALENTS = [name for name in CONFIGS
                     if osp.isfile(mmdet_config_path(name))]


def test_configs_named_as_mmdets_are_found():
    assert MMDET_EQUIVALENTS == [
        'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
        'dab_detr/dab-detr_r50_8xb2-50e_coco.py',
        'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
        'deformable_detr/deformable-detr-refine_r50_16xb2-50e_coco.py',
        'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'] + [
        f'detr/detr_{name}.py' for name in (
            'r101_8xb2-500e_coco', 'r18_8xb2-500e_coco',
            'r50_8xb2-150e_coco', 'r50_8xb2-500e_coco')] + [
        'dino/dino-4scale_r50_8xb2-12e_coco.py']


@pytest.mark.parametrize('name', MMDET_EQUIVALENTS)
def test_variant_matches_mmdet_recipe(name):
    ours = Config.fromfile(osp.join(CONFIG_DIR, name))
    theirs = Config.fromfile(mmdet_config_path(name))
    assert ours.train_cfg == theirs.train_cfg
    assert ours.param_scheduler == theirs.param_scheduler
    # ours is AtomicCheckpointHook (mmengine's CheckpointHook, written
    # atomically); its arguments must be mmdet's
    ours_ckpt = dict(ours.default_hooks.checkpoint)
    theirs_ckpt = dict(theirs.default_hooks.checkpoint)
    assert ours_ckpt.pop('type') == 'AtomicCheckpointHook'
    assert theirs_ckpt.pop('type') == 'CheckpointHook'
    assert ours_ckpt == theirs_ckpt
    assert ours.auto_scale_lr.base_batch_size == \
        theirs.auto_scale_lr.base_batch_size
    for key in ('depth', 'init_cfg'):
        assert ours.model.backbone[key] == theirs.model.backbone[key]


def test_dc5_dilates_the_last_stage():
    from detr_plugin.registry import MODELS
    cfg = load_config(osp.join(CONFIG_DIR, 'detr',
                               'detr_r50-dc5_8xb2-150e_coco.py'))
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        backbone = MODELS.build(cfg.model.backbone)
    backbone.eval()
    with torch.no_grad():
        feat = backbone(torch.zeros(1, 3, 64, 96))[-1]
    assert feat.shape == (1, 2048, 4, 6)  # stride 16, not 32
    assert cfg.train_cfg.max_epochs == 150


def test_train_tool_flags_edit_the_config_as_mmdet(monkeypatch):
    cli = load_tool('cli')
    monkeypatch.setenv('LOCAL_RANK', '0')  # load_config sets it if unset
    monkeypatch.setenv('RANK', '0')  # --launcher pytorch: torchrun's
    train = load_tool('train')
    args = train.parse_args([DETR_R50_ALIAS, '--resume', '--cfg-options',
                             'train_dataloader.batch_size=4'])
    cfg = cli.load_config(args)
    cli.set_resume(cfg, args.resume)
    assert cfg.work_dir == './work_dirs/detr_r50_8xb2'
    assert cfg.resume is True and cfg.load_from is None  # latest in work_dir
    assert cfg.train_dataloader.batch_size == 4

    args = train.parse_args([DETR_R50_ALIAS, '--resume', 'a/iter_8.pth',
                             '--work-dir', 'out', '--launcher', 'pytorch'])
    cfg = cli.load_config(args)
    cli.set_resume(cfg, args.resume)
    assert cfg.work_dir == 'out' and cfg.load_from == 'a/iter_8.pth'
    if not torch.cuda.is_available():
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
        assert cfg.model_wrapper_cfg.device_ids is None

    cli.enable_auto_scale_lr(cfg)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)


@pytest.mark.parametrize('name', [n for n in CONFIGS
                                  if n.startswith('demo/')])
def test_demo_learning_rates_are_for_their_batch(name):
    """--auto-scale-lr halved the demos' learning rates, set for one
    process of batch 8, by the COCO recipe's base_batch_size=16."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    assert cfg.auto_scale_lr.base_batch_size == \
        cfg.train_dataloader.batch_size == 8
