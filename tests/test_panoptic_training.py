"""Two-stage training: with ``freeze_detector`` a fine-tune step changes the
mask head and nothing else, the optimizer holds the mask head's weights
only; end to end, the detector learns too. And the tools run the two stages
and the evaluation (PQ, box and mask AP) on a tiny panoptic shapes set."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from helpers.configs import CONFIG_DIR, tiny_panoptic_config
from helpers.tools import run_tool

from mmdet_reference import build_plugin_model
from detr_plugin.models.detr_panoptic import MASK_MODULES
from mmdet_reference import make_batch

TRAINABLE_BN = dict(frozen_stages=-1, norm_eval=False,
                    norm_cfg=dict(type='BN', requires_grad=True))


def one_step(freeze_detector: bool):
    """A model (BN trainable in the detector's config) before and after one
    AdamW step on a batch of two padded images, and its optimizer (without
    gradient clipping, whose tiny gradients would leave Adam's steps below
    float resolution for some weights)."""
    cfg = tiny_panoptic_config(freeze_detector=freeze_detector,
                               backbone=TRAINABLE_BN)
    cfg.optim_wrapper.clip_grad = None
    torch.manual_seed(0)
    model = build_plugin_model(cfg).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, samples = make_batch([(64, 96), (48, 80)], [3, 2], 5,
                                 with_masks=True)
    loss, _ = model.parse_losses(model.loss(inputs, samples))
    optim_wrapper.update_params(loss)
    return model, optim_wrapper, before


def is_mask_head(key: str) -> bool:
    return key.split('.')[0] in MASK_MODULES


def test_frozen_detector_fine_tune_changes_the_mask_head_only():
    model, optim_wrapper, before = one_step(freeze_detector=True)
    after = model.state_dict()
    detector = [k for k in after if not is_mask_head(k)]
    assert len(detector) > 100 and any('running_mean' in k for k in detector)
    for key in detector:  # weights and BN statistics
        assert torch.equal(after[key], before[key]), key
    for key in (k for k in after if is_mask_head(k)):
        assert not torch.equal(after[key], before[key]), key
    # the optimizer's groups hold exactly the mask head's weights
    optimized = {id(p) for group in optim_wrapper.optimizer.param_groups
                 for p in group['params']}
    mask_params = {id(p) for name in MASK_MODULES
                   for p in getattr(model, name).parameters()}
    assert optimized == mask_params
    # the detector stays in eval mode (BN statistics, dropout)
    assert model.training and model.mask_head.training
    assert not any(m.training for m in model.backbone.modules())
    assert not model.decoder.training and not model.bbox_head.training


def test_end_to_end_step_changes_the_detector_too():
    model, optim_wrapper, before = one_step(freeze_detector=False)
    after = model.state_dict()
    # (mmdet's ResNet starts its residual branches' last BN at zero: their
    # convolutions get no gradient in the first step, that BN does)
    for key in ('backbone.conv1.weight', 'backbone.layer4.1.bn2.weight',
                'encoder.layers.0.attentions.0.in_proj_weight',
                'bbox_head.fc_cls.weight', 'backbone.bn1.running_mean',
                'mask_head.lay1.weight'):
        assert not torch.equal(after[key], before[key]), key
    assert len(optim_wrapper.optimizer.param_groups) == sum(
        p.requires_grad for p in model.parameters())


def test_tools_train_boxes_then_masks_then_test_print_pq(tmp_path):
    from synthetic_panoptic import generate_panoptic_shapes_dataset
    generate_panoptic_shapes_dataset(
        str(tmp_path / 'data' / 'shapes_panoptic'), num_train=6, num_val=3)
    tiny = ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'default_hooks.checkpoint.interval=2']
    boxes = osp.join(CONFIG_DIR, 'demo', 'detr_r18_shapes-panoptic-boxes.py')
    masks = osp.join(CONFIG_DIR, 'demo', 'detr_r18_shapes-panoptic.py')
    run_tool(['train.py', boxes, '--work-dir', 'boxes', '--cfg-options',
              *tiny], cwd=str(tmp_path))
    run_tool(['train.py', masks, '--work-dir', 'masks', '--cfg-options',
              *tiny, 'train_cfg.val_interval=2', 'load_from=boxes/iter_2.pth',
              'val_dataloader.num_workers=0',
              'val_dataloader.persistent_workers=False'], cwd=str(tmp_path))
    proc = run_tool(['test.py', masks, 'masks/iter_2.pth', '--work-dir',
                     'masks', '--cfg-options',
                     'test_dataloader.num_workers=0',
                     'test_dataloader.persistent_workers=False'],
                    cwd=str(tmp_path))
    out = proc.stdout + proc.stderr
    for key in ('coco_panoptic/PQ:', 'coco_panoptic/SQ_st:', '| Things |',
                '| Stuff  |', 'Evaluating bbox'):  # (2 steps: no thing yet)
        assert key in out, key
    run_tool(['infer.py', masks, 'masks/iter_2.pth',
              'data/shapes_panoptic/val', '--out-dir', 'infer',
              '--score-thr', '0'], cwd=str(tmp_path))
    assert len(glob.glob(str(tmp_path / 'infer' / 'panoptic' / '*.jpg'))) \
        == 3


@pytest.mark.parametrize('name', ['detr_r50_8xb2-panoptic-25e_coco.py',
                                  'detr_r50_8xb2-panoptic-boxes-300e_coco.py'])
def test_coco_panoptic_configs_build(name):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'detr_panoptic', name))
    assert cfg.model.bbox_head.num_classes == 133
    # mmdet's panoptic dataset with the checks, and its COCO metainfo
    assert cfg.train_dataloader.dataset.type == 'CheckedCocoPanopticDataset'
    from mmdet.datasets import CocoPanopticDataset

    from detr_plugin.datasets import CheckedCocoPanopticDataset
    assert CheckedCocoPanopticDataset.METAINFO is CocoPanopticDataset.METAINFO
    if cfg.model.type == 'DETRPanoptic':
        assert cfg.model.freeze_detector and cfg.train_cfg.max_epochs == 25
        assert [m['type'] for m in cfg.test_evaluator] == [
            'CocoPanopticMetric', 'CocoMetric']


def test_frozen_detector_must_come_from_the_checkpoint(tmp_path):
    """Stage 2 trains the mask head on a frozen detector: a checkpoint that
    lacks or misfits a detector tensor (another class count's classifier, a
    backbone alone) is refused instead of reset or left random, and no
    checkpoint at all stops tools/train.py before the runner is built."""
    from types import SimpleNamespace

    from mmengine.config import Config

    from helpers.tools import load_tool
    cli = load_tool('cli')
    from detr_plugin.engine.hooks import AdaptCheckpointHook
    cfg = tiny_panoptic_config(freeze_detector=True)
    model = build_plugin_model(cfg)
    from unittest import mock
    runner = SimpleNamespace(model=model, cfg=dict(load_from='boxes.pth'),
                             logger=mock.Mock())
    boxes = {k: v for k, v in model.state_dict().items()
             if not is_mask_head(k)}
    AdaptCheckpointHook().after_load_checkpoint(runner, dict(state_dict=dict(
        boxes)))  # the box model: the mask head is what trains
    (warning, ), _ = runner.logger.warning.call_args  # it starts as built
    assert 'missing from the checkpoint boxes.pth or have other shapes ' \
        'there (in bbox_attention.q_linear: 2, ' in warning
    assert warning.endswith('): they keep their initial values.')
    other_classes = dict(boxes, **{'bbox_head.fc_cls.weight': torch.zeros(
        4, 128), 'bbox_head.fc_cls.bias': torch.zeros(4)})
    backbone = {k: v for k, v in boxes.items() if k.startswith('backbone.')}
    for state_dict, what in ((other_classes, r'classifier bbox_head\.fc_cls'
                              r'\.weight is \(4, 128\)'),
                             (backbone, r'lacks \d+ of the model')):
        with pytest.raises(ValueError, match=rf'boxes\.pth .*{what}.* Those '
                           'tensors are frozen'):
            AdaptCheckpointHook().after_load_checkpoint(
                runner, dict(state_dict=state_dict))
    with pytest.raises(SystemExit, match='load_from is not set: the '
                       'detector would stay random'):
        cli.check_frozen_detector(Config(dict(model=cfg.model)))
    # --resume drops load_from: a work dir without a checkpoint resumes none
    with pytest.raises(SystemExit, match=r'\(--resume drops it\) and .* '
                       'holds no checkpoint to resume'):
        cli.check_frozen_detector(Config(dict(
            model=cfg.model, resume=True, work_dir=str(tmp_path))))
    for loaded in (dict(load_from='x'), dict(model=dict(
            cfg.model, init_cfg=dict(type='Pretrained', checkpoint='x')))):
        cli.check_frozen_detector(Config(dict(dict(model=cfg.model),
                                              **loaded)))
