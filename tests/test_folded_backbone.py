"""The BN-folded, channels-last backbone copies compute what the backbone
computes (outputs and gradients), and are rebuilt where weights change."""
import copy

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from detr_plugin.models.folded_backbone import (FoldedBackboneCache,
                                                can_fold, frozen_prefix)
from detr_plugin.registry import MODELS


def resnet(depth=18, **kwargs):
    cfg = dict(type='ResNet', depth=depth, num_stages=4, out_indices=(3, ),
               frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
               norm_eval=True, style='pytorch', init_cfg=None)
    cfg.update(kwargs)
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
    folded = cache._inference.module
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert actual.is_contiguous(memory_format=torch.channels_last) == \
        channels_last
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_copies_follow_weight_changes_at_the_points_where_they_happen():
    """The detector drops its folded copies at train()/eval() switches
    (mmengine's EMA swap comes right before eval()), at load_state_dict and
    at an explicit refresh; nothing is checked per forward."""
    from mmdet_reference import build_plugin_model
    from helpers.configs import tiny_config
    model = build_plugin_model(tiny_config()).eval()
    backbone, cache = model.backbone, model.folded_backbone
    images = torch.randn(1, 3, 64, 64)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(model.extract_feat(images)[-1],
                                       backbone(images)[-1],
                                       rtol=1e-4, atol=1e-4)
        return cache._inference.module  # the copy that call used

    first = check()
    assert check() is first  # unchanged weights: reused
    model.eval()  # no switch: kept
    assert check() is first
    with torch.no_grad():  # written by hand: the explicit refresh
        backbone.layer4[0].conv1.weight.mul_(1.5)
    model.refresh_folded_backbone()
    second = check()
    assert second is not first
    # a write through .data, as mmengine's EMA swap, then eval()
    model.train()
    backbone.layer4[1].bn2.running_var.data.mul_(2.0)
    model.eval()
    third = check()
    assert third is not second
    state = copy.deepcopy(model.state_dict())
    state['backbone.layer3.0.conv2.weight'] += 0.1
    model.load_state_dict(state)
    assert check() is not third
    # mmengine's own loader (not nn.Module.load_state_dict) too
    from mmengine.runner.checkpoint import load_state_dict
    fourth = check()
    state['backbone.layer3.0.conv2.weight'] += 0.1
    load_state_dict(model, state)
    assert check() is not fourth
    # a repeated train() (mmengine's loop calls it every iteration) keeps
    # the frozen stages' copy
    model.train()
    model.extract_feat(images)
    frozen = cache._frozen.module
    model.train()
    model.extract_feat(images)
    assert cache._frozen.module is frozen is not None


def test_moving_the_model_rebuilds_the_copies():
    """``.to()`` (``.cuda()``, ``.double()``...) converts the weights: the
    copies made of the old ones are dropped and rebuilt from the new ones,
    on their device and in their dtype (a stale float32 copy failed on
    float64 input; issue 27)."""
    from mmdet_reference import build_plugin_model
    from helpers.configs import tiny_config
    model = build_plugin_model(tiny_config()).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.extract_feat(images)
        first = model.folded_backbone._inference.module
        model.to(torch.float64)
        feat = model.extract_feat(images.double())[-1]
        expected = model.backbone(images.double())[-1]
    assert model.folded_backbone._inference.module is not first
    assert feat.dtype == torch.float64
    torch.testing.assert_close(feat, expected, rtol=1e-6, atol=1e-6)


def test_autocast_uses_the_folded_copy_without_a_warning():
    """Under bf16 autocast the copy's check runs in float32 and passes."""
    import warnings
    from mmdet_reference import build_plugin_model
    from helpers.configs import tiny_config
    model = build_plugin_model(tiny_config()).eval()
    images = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a fallback warning would raise
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
            feat = model.extract_feat(images)[-1]
            expected = model.backbone(images)[-1]
    assert model.folded_backbone._inference.module is not None
    assert not model.folded_backbone._inference.failed
    assert feat.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(feat.float(), expected.float(), rtol=0.05,
                               atol=0.05 * float(expected.abs().max()))


def test_training_folds_only_the_frozen_stages():
    """Same features and same gradients for every trainable weight."""
    backbone = resnet(depth=50, out_indices=(2, 3))
    backbone.train()  # frozen_stages=1: stem and layer1 stay in eval mode
    images = torch.randn(2, 3, 96, 128, generator=torch.Generator()
                         .manual_seed(2))
    cache = FoldedBackboneCache()

    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(o.shape, generator=gen)
               for o in backbone(images)]

    def grads(outs):  # of a fixed random projection of the features
        backbone.zero_grad()
        sum((o * w).sum() for o, w in zip(outs, weights)).backward()
        return {n: p.grad.clone() for n, p in backbone.named_parameters()
                if p.requires_grad}

    expected = backbone(images)
    expected_grads = grads(expected)
    actual = cache.train_forward(backbone, images)
    actual_grads = grads(actual)
    assert cache._inference.module is None
    assert not any(isinstance(m, nn.BatchNorm2d)
                   for m in cache._frozen.module.modules())
    for out, ref in zip(actual, expected, strict=True):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert expected_grads.keys() == actual_grads.keys()
    assert not any(n.startswith(('conv1', 'layer1')) for n in actual_grads)
    for name, grad in expected_grads.items():
        # conv weight gradients sum many products in a thread-dependent
        # order: compare relative to the gradient's scale
        torch.testing.assert_close(actual_grads[name], grad, rtol=1e-3,
                                   atol=1e-4 * float(grad.abs().max()),
                                   msg=name)


def test_backbone_without_batchnorm_is_not_copied():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    cache = FoldedBackboneCache()
    images = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(cache(backbone, images), backbone(images))
    assert cache._inference.module is None


class NormBeforeConv(nn.Module):
    """BN registered after the conv but applied before it: mmcv's
    registration-order pairing would fold it into the wrong side."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.conv(self.bn(x))


@pytest.mark.parametrize('channels', [3, 4], ids=['folds-wrong',
                                                  'cannot-fold'])
def test_a_fold_that_changes_the_output_is_refused(channels):
    """3 channels: the fold runs and computes something else; 4: the BN
    does not fit the conv. Either way the module runs unfolded."""
    module = nn.Sequential(nn.Conv2d(3, channels, 1), NormBeforeConv(
        channels)) if channels == 4 else NormBeforeConv(3)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(0.5)
            m.running_var.fill_(4.0)
    module.eval()
    cache = FoldedBackboneCache()
    images = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match='does not compute what'):
        with torch.no_grad():
            out = cache(module, images)
    torch.testing.assert_close(out, module(images))
    assert cache._inference.failed and cache._inference.module is None


def test_weight_standardized_convs_hooks_and_training_bn_are_not_folded():
    from mmcv.cnn import ConvWS2d
    ws = resnet(depth=18, conv_cfg=dict(type='ConvWS'))
    assert any(isinstance(m, ConvWS2d) for m in ws.modules())
    assert not can_fold(ws) and frozen_prefix(ws) is None
    hooked = resnet(depth=18)
    assert can_fold(hooked)
    hooked.layer3.register_forward_hook(lambda *args: None)
    assert not can_fold(hooked)
    training_bn = resnet(depth=18)
    training_bn.layer2[0].bn1.train()
    assert not can_fold(training_bn)
    images = torch.randn(1, 3, 64, 64)
    for backbone in (ws, hooked):  # run as they are, not copied
        cache = FoldedBackboneCache()
        with torch.no_grad():
            torch.testing.assert_close(cache(backbone, images)[-1],
                                       backbone(images)[-1])
        assert cache._inference.module is None


def test_regnet_trains_without_the_fold():
    """mmdet's RegNet is a ResNet subclass with its own forward."""
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        regnet = MODELS.build(dict(type='RegNet', arch='regnetx_400mf',
                                   out_indices=(3, ), frozen_stages=1))
    regnet.train()
    assert frozen_prefix(regnet) is None
    assert FoldedBackboneCache().train_forward(
        regnet, torch.randn(1, 3, 64, 64)) is None


def test_nothing_is_folded_where_something_trains():
    assert frozen_prefix(resnet(depth=18)) is not None
    unfrozen = resnet(depth=18, frozen_stages=-1)
    unfrozen.train()
    assert frozen_prefix(unfrozen) is None
    outputs_layer1 = resnet(depth=18, out_indices=(0, 3))
    assert frozen_prefix(outputs_layer1) is None
    trained_by_hand = resnet(depth=18)
    trained_by_hand.layer1[0].conv1.weight.requires_grad_(True)
    assert frozen_prefix(trained_by_hand) is None
    assert FoldedBackboneCache().train_forward(
        trained_by_hand, torch.randn(1, 3, 32, 32)) is None


def test_detector_uses_the_folded_copies():
    """Training folds the frozen stages, predict() the whole backbone;
    a gradient-enabled eval forward uses the backbone itself."""
    from helpers.configs import tiny_config

    from mmdet_reference import build_plugin_model
    model = build_plugin_model(tiny_config())
    cache = model.folded_backbone
    images = torch.randn(1, 3, 64, 64)
    model.train()
    model.extract_feat(images)
    assert cache._frozen.module is not None
    assert cache._inference.module is None
    model.eval()
    model.extract_feat(images)  # gradients enabled: the original
    assert cache._inference.module is None
    with torch.no_grad():
        feat = model.extract_feat(images)[-1]
        assert cache._inference.module is not None
        torch.testing.assert_close(feat, model.backbone(images)[-1],
                                   rtol=1e-4, atol=1e-4)
    copied = copy.deepcopy(model)
    assert copied.folded_backbone._inference.module is None
