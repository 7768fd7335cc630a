"""The folded, channels-last inference backbone computes what the trained
backbone computes, and follows every change of its weights."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from detr_plugin.models.inference_backbone import FoldedBackboneCache
from detr_plugin.registry import MODELS


def resnet(depth=18, **kwargs):
    cfg = dict(type='ResNet', depth=depth, num_stages=4, out_indices=(3, ),
               frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
               norm_eval=True, style='pytorch', init_cfg=None, **kwargs)
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        backbone = MODELS.build(cfg)
    gen = torch.Generator().manual_seed(0)
    for module in backbone.modules():  # BN statistics far from 0 / 1
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(
                module.num_features, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(
                module.num_features, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(
                module.num_features, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(
                module.num_features, generator=gen) * 0.1)
    backbone.eval()  # mmdet's ResNet.train() returns None
    return backbone


@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize('kwargs', [
    dict(depth=18), dict(depth=50),
    dict(depth=50, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))
], ids=['r18', 'r50', 'r50-dc5'])
def test_folded_backbone_equals_the_backbone(kwargs, channels_last):
    backbone = resnet(**kwargs)
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator()
                         .manual_seed(1))
    cache = FoldedBackboneCache(channels_last)
    with torch.no_grad():
        expected = backbone(images)[-1]
        actual = cache(backbone, images)[-1]
    folded = cache.folded(backbone)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert actual.is_contiguous(memory_format=torch.channels_last) == \
        channels_last
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_cache_follows_weight_changes():
    backbone = resnet(depth=18)
    images = torch.randn(1, 3, 64, 64)
    cache = FoldedBackboneCache()

    def check():
        with torch.no_grad():
            torch.testing.assert_close(cache(backbone, images)[-1],
                                       backbone(images)[-1],
                                       rtol=1e-4, atol=1e-4)
        return cache.folded(backbone)

    first = check()
    assert cache.folded(backbone) is first  # unchanged weights: reused
    with torch.no_grad():  # an optimizer step: in place, version bumped
        backbone.layer4[0].conv1.weight.mul_(1.5)
    second = check()
    assert second is not first
    # a write through .data (mmengine's EMA swap) bypasses the version
    backbone.layer4[1].bn2.running_var.data.mul_(2.0)
    third = check()
    assert third is not second
    state = copy.deepcopy(backbone.state_dict())
    state['layer3.0.conv2.weight'] += 0.1
    backbone.load_state_dict(state)
    assert check() is not third


def test_detector_folds_only_at_inference():
    """predict() uses the folded copy; training and gradient-enabled
    forwards use the backbone itself."""
    from detr_test_utils import build_plugin_model, tiny_config
    model = build_plugin_model(tiny_config())
    images = torch.randn(1, 3, 64, 64)
    model.train()
    model.extract_feat(images)
    assert model.folded_backbone._folded is None
    model.eval()
    model.extract_feat(images)  # gradients enabled: the original
    assert model.folded_backbone._folded is None
    with torch.no_grad():
        feat = model.extract_feat(images)
        assert model.folded_backbone._folded is not None
        torch.testing.assert_close(feat, model.backbone(images)[-1],
                                   rtol=1e-4, atol=1e-4)
    copied = copy.deepcopy(model)
    assert copied.folded_backbone._folded is None
