"""DETR's mask head: shapes over a padded batch, the attention maps' padding
and softmax, predictions at the original size, and the mask losses on
hand-computed cases and against the official formulas."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from helpers.configs import tiny_panoptic_config
from mmdet_reference import build_plugin_model
from detr_plugin.models import QueryMatches
from mmdet_reference import make_batch


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build_plugin_model(tiny_panoptic_config()).eval()


@pytest.fixture(scope='module')
def padded_batch(model):
    """Images 64 x 96 and 32 x 64 (padded to 64 x 96) through the model."""
    inputs, samples = make_batch([(64, 96), (32, 64)], [2, 3], 5,
                                 with_masks=True)
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        head_inputs = model.forward_transformer(feats, samples)
    return inputs, samples, feats, head_inputs


def test_mask_logits_of_a_padded_batch_at_stride_4(model, padded_batch):
    _, _, feats, head_inputs = padded_batch
    with torch.no_grad():
        logits = model.all_mask_logits(feats, head_inputs)
        # a few (image, query) pairs alone: the same masks
        some = model.mask_logits(feats, head_inputs, torch.tensor([1, 0, 1]),
                                 torch.tensor([4, 2, 0]))
    assert logits.shape == (2, 6, 64 // 4, 96 // 4)
    assert torch.allclose(some, logits[[1, 0, 1], [4, 2, 0]], atol=1e-5)
    # tensor mode (mmdet's forward(mode='tensor')): every layer's classes
    # and boxes, the last layer's masks
    inputs, samples = padded_batch[:2]
    with torch.no_grad():
        cls, boxes, masks = model(inputs, samples, mode='tensor')
    assert cls.shape == (1, 2, 6, 6) and boxes.shape == (1, 2, 6, 4)
    assert torch.allclose(masks, logits, atol=1e-5)


def test_attention_maps_ignore_padding_and_sum_to_one(model, padded_batch):
    _, _, _, head_inputs = padded_batch
    with torch.no_grad():
        maps = model.bbox_attention(head_inputs['hidden_states'][-1],
                                    head_inputs['memory'],
                                    head_inputs['memory_mask'])
    padding = head_inputs['memory_mask']  # (2, 2 * 3): stride 32
    assert maps.shape == (2, 6, 8, 2 * 3)
    # the 2nd image covers the top-left 1 x 2 of the 2 x 3 map
    assert not padding[0].any() and padding[1].sum() == 4
    assert (maps[1][..., padding[1]] == 0).all()
    assert (maps[1][..., ~padding[1]] > 0).all()
    # one softmax over heads and positions together (official)
    assert torch.allclose(maps.sum((2, 3)), torch.ones(2, 6), atol=1e-5)


def test_predictions_at_the_original_image_size(model, padded_batch):
    inputs, samples, _, _ = padded_batch
    samples = copy.deepcopy(samples)
    samples[1].set_metainfo(dict(ori_shape=(96, 160),
                                 scale_factor=(0.5, 0.5)))
    confident = copy.deepcopy(model)
    with torch.no_grad():  # every query a confident thing of class 0
        confident.bbox_head.fc_cls.bias[0] = 20.
        results = confident.predict(inputs, samples)
    for result, size in zip(results, [(64, 96), (96, 160)]):
        pred = result.pred_instances
        assert len(pred) == 6 and (pred.labels == 0).all()
        assert pred.masks.shape == (6, *size) and pred.masks.dtype == \
            torch.bool
        pan = result.pred_panoptic_seg.sem_seg
        assert pan.shape == (1, *size)
        # six queries kept, each thing its own instance id
        assert set(pan.unique().tolist()) <= {1000 * i for i in range(1, 7)}


def official_dice(logits, targets, num_boxes):
    """``dice_loss`` of facebookresearch/detr ``models/segmentation.py``."""
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * (probs * targets).sum(1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_boxes


def official_focal(logits, targets, num_boxes, alpha=0.25, gamma=2):
    """``sigmoid_focal_loss`` of the same file."""
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets,
                                            reduction='none')
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t)**gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def mask_losses(model, monkeypatch, logits, gt_masks):
    """``model.mask_loss`` for ``M`` matched queries of one image whose
    mask logits are ``logits`` ``(M, H, W)`` (at the target size) and whose
    boxes' masks are ``gt_masks`` ``(M, H, W)``."""
    num, height, width = gt_masks.shape
    monkeypatch.setattr(model, 'mask_logits', lambda *args: logits)
    gts = [InstanceData(masks=BitmapMasks(gt_masks.astype(np.uint8),
                                          height, width))]
    pairs = torch.arange(num)
    matches = QueryMatches(torch.zeros_like(pairs), torch.zeros_like(pairs),
                           pairs, pairs, num)
    return model.mask_loss((torch.zeros(1), ), {}, matches, gts,
                           (height, width))


def test_focal_and_dice_losses_hand_computed(model, monkeypatch):
    # two masks of 1 x 4 pixels; probabilities 1/2, 1/2, 3/4, 1/4 and 1/2 x 4
    third = math.log(3)
    logits = torch.tensor([[[0., 0., third, -third]], [[0., 0., 0., 0.]]])
    gt = np.array([[[1, 0, 1, 0]], [[0, 0, 0, 0]]])
    losses = mask_losses(model, monkeypatch, logits, gt)
    # dice: 1 - (2 * 1.25 + 1) / (2 + 2 + 1) = 0.3 and 1 - 1 / (2 + 1) = 2/3,
    # summed and divided by the 2 boxes
    assert losses['loss_dice'].item() == pytest.approx((0.3 + 2 / 3) / 2,
                                                       rel=1e-6)
    # focal per pixel: alpha_t (1 - p_t)^2 (-log p_t) with alpha 0.25 for
    # foreground, 0.75 for background: 0.25 * 1/4 * log 2, 0.75 * 1/4 * log
    # 2, 0.25 * 1/16 * log(4/3), 0.75 * 1/16 * log(4/3); mean per mask, sum,
    # divided by the 2 boxes
    log2, log43 = math.log(2), math.log(4 / 3)
    first = (0.25 * log2 / 4 + 0.75 * log2 / 4 + 0.25 * log43 / 16 +
             0.75 * log43 / 16) / 4
    second = 0.75 * log2 / 4
    assert losses['loss_mask'].item() == pytest.approx(
        (first + second) / 2, rel=1e-6)
    assert losses['loss_mask'].item() == pytest.approx(0.0888909, rel=1e-6)


def test_mask_losses_equal_the_official_formulas(model, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 12, 10, generator=gen) * 3
    gt = (torch.rand(5, 12, 10, generator=gen) > 0.6).numpy()
    losses = mask_losses(model, monkeypatch, logits, gt)
    targets = torch.from_numpy(gt).float().flatten(1)
    assert losses['loss_dice'].item() == pytest.approx(
        official_dice(logits.flatten(1), targets, 5).item(), rel=1e-6)
    assert losses['loss_mask'].item() == pytest.approx(
        official_focal(logits.flatten(1), targets, 5).item(), rel=1e-6)
    # mmdet's default dice (V-Net, eps 1e-3) is another formula
    from mmdet.models.losses import DiceLoss
    vnet = DiceLoss(use_sigmoid=True)(logits.flatten(1), targets,
                                      avg_factor=5)
    assert abs(vnet.item() - losses['loss_dice'].item()) > 1e-3


def test_no_ground_truth_gives_zero_mask_losses_with_gradient(model):
    empty = QueryMatches(*[torch.zeros(0, dtype=torch.long)] * 4, 0)
    losses = model.mask_loss((torch.zeros(1), ), {}, empty, [], (4, 4))
    assert losses['loss_mask'].item() == 0 == losses['loss_dice'].item()
    losses['loss_dice'].backward()
    assert model.mask_head.out_lay.weight.grad is not None


def test_unpadded_masks_are_refused(model):
    with pytest.raises(ValueError, match=r'\[\(1, 4\)\] pixels for a '
                       r'padded input of \(2, 4\): set data_preprocessor'):
        model.mask_loss((torch.zeros(1), ), {},
                        QueryMatches(*[torch.zeros(1, dtype=torch.long)] * 4,
                                     1),
                        [InstanceData(masks=BitmapMasks(
                            np.zeros((1, 1, 4), np.uint8), 1, 4))], (2, 4))
