"""RT-DETR's backbone (PResNet) and hybrid encoder compute what transformers'
RTDetrV2 computes, with its weights converted by the RT-DETR layouts
(the whole detector's: tests/test_rtdetr.py compares the rest).

transformers' model is built from a tiny random config (no download) and
every weight redrawn (``perturb``): an R18-like one (BasicBlocks, mmdet's
ResNet depth 18 with 16 base and stem channels; CSP expansion 0.5, so the
CSP layers have a ``conv3``) and an R50-like one (BottleNecks of depths
3, 4, 6, 3, 8 base channels; expansion 1: no ``conv3``). Only its backbone and
encoder are compared (``model.backbone``, ``encoder_input_proj`` -- the
official ``encoder.input_proj`` -- and ``model.encoder``). Both see the same
square images: transformers >= 5 computes the AIFI position embedding
y-major, which equals the official (x-major) one on square maps only; ours is
pinned to the official formula on a non-square map separately.
"""
import copy
import math
import re
from collections import namedtuple

import pytest
import torch

transformers = pytest.importorskip('transformers')
from mmdet.models.backbones import ResNetV1d  # noqa: E402
from helpers.weights import perturb  # noqa: E402

from detr_plugin.checkpoint.rtdetr import (  # noqa: E402
    rtdetr_hf_to_plugin, rtdetr_official_to_plugin, rtdetr_plugin_to_official)
from detr_plugin.models import HybridEncoder, PResNet  # noqa: E402
from detr_plugin.models.hybrid_encoder import (  # noqa: E402
    RepVGGBlock, sincos_position_embedding)

# case: transformers' ResNet config, our PResNet's arguments, CSP expansion
CASES = {
    'r18': (dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128],
                 depths=[2, 2, 2, 2], layer_type='basic'),
            dict(depth=18, base_channels=16, stem_channels=16), 0.5),
    'r50': (dict(embedding_size=16, hidden_sizes=[32, 64, 128, 256],
                 depths=[3, 4, 6, 3], layer_type='bottleneck'),
            dict(depth=50, base_channels=8, stem_channels=16), 1.0),
}
IMAGES = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
Pair = namedtuple('Pair', 'hf backbone neck hf_state ours_state')


def _part(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}


@pytest.fixture(scope='module', params=sorted(CASES))
def pair(request):
    resnet, ours, expansion = CASES[request.param]
    in_channels = resnet['hidden_sizes'][1:]
    config = transformers.RTDetrV2Config(
        backbone_config=transformers.RTDetrResNetConfig(
            out_indices=[2, 3, 4], **resnet),
        encoder_in_channels=in_channels, encoder_hidden_dim=32,
        encoder_ffn_dim=64, encoder_attention_heads=2,
        hidden_expansion=expansion, d_model=32, decoder_in_channels=[32] * 3,
        decoder_ffn_dim=64, decoder_attention_heads=2, decoder_layers=2,
        num_labels=3, num_queries=10, num_denoising=0, eval_size=None,
        anchor_image_size=None)
    torch.manual_seed(0)
    hf = perturb(transformers.RTDetrV2ForObjectDetection(config))
    hf_state = hf.state_dict()
    state = rtdetr_hf_to_plugin(hf_state)
    backbone = PResNet(out_indices=(1, 2, 3), norm_eval=True,
                       norm_cfg=dict(type='BN', requires_grad=False), **ours)
    neck = HybridEncoder(in_channels, hidden_dim=32, num_heads=2,
                         dim_feedforward=64, expansion=expansion)
    backbone.load_state_dict(_part(state, 'backbone.'))
    neck.load_state_dict(_part(state, 'neck.'))
    return Pair(hf, backbone, neck, hf_state, state)


@pytest.mark.parametrize('train', [False, True], ids=['eval', 'train'])
def test_backbone_and_encoder_compute_what_transformers_computes(pair, train):
    """Train mode: the encoder's BNs use batch statistics; the backbone's are
    frozen in both (transformers' FrozenBatchNorm2d, our norm_eval)."""
    for model in (pair.hf, pair.backbone, pair.neck):
        model.train(train)
    with torch.no_grad():
        theirs = [f for f, _ in pair.hf.model.backbone(
            IMAGES, torch.ones(2, *IMAGES.shape[-2:], dtype=torch.long))]
        ours = pair.backbone(IMAGES)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        projected = [proj(f) for proj, f in zip(
            pair.hf.model.encoder_input_proj, theirs)]
        theirs = pair.hf.model.encoder(projected).last_hidden_state
        ours = pair.neck(ours)
    assert [o.shape for o in ours] == [(2, 32, 64 // s, 64 // s)
                                       for s in (8, 16, 32)]
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_transformers_4_names_convert_alike(pair):
    """The Hub's files: AIFI under ``encoder.encoder.N``, ``out_proj``,
    ``fc1``/``fc2`` without ``mlp.``."""
    hub = {re.sub(r'\.mlp\.', '.', re.sub(r'\.o_proj\.', '.out_proj.', re.sub(
        r'encoder\.aifi\.', 'encoder.encoder.', k))): v
        for k, v in pair.hf_state.items()}
    assert any('.encoder.encoder.0.layers.0.fc1.' in k for k in hub)
    converted = rtdetr_hf_to_plugin(hub)
    assert converted.keys() == pair.ours_state.keys()
    assert all(torch.equal(v, pair.ours_state[k])
               for k, v in converted.items())
    with pytest.raises(KeyError, match='match no rule'):
        rtdetr_hf_to_plugin({**hub, 'model.encoder.extra.weight': None})


# official name -> transformers' (its conversion script's table)
OFFICIAL_AND_HF = {
    'backbone.conv1.conv1_2.norm.running_var':
    'model.backbone.model.embedder.embedder.1.normalization.running_var',
    'backbone.res_layers.0.blocks.0.short.conv.weight':
    'model.backbone.model.encoder.stages.0.layers.0.shortcut.convolution'
    '.weight',
    'backbone.res_layers.2.blocks.0.short.conv.norm.bias':
    'model.backbone.model.encoder.stages.2.layers.0.shortcut.1.normalization'
    '.bias',
    'backbone.res_layers.3.blocks.1.branch2b.conv.weight':
    'model.backbone.model.encoder.stages.3.layers.1.layer.1.convolution'
    '.weight',
    'encoder.input_proj.1.norm.weight': 'model.encoder_input_proj.1.1.weight',
    'encoder.encoder.0.layers.0.self_attn.out_proj.weight':
    'model.encoder.aifi.0.layers.0.self_attn.o_proj.weight',
    'encoder.encoder.0.layers.0.linear1.bias':
    'model.encoder.aifi.0.layers.0.mlp.fc1.bias',
    'encoder.encoder.0.layers.0.norm2.weight':
    'model.encoder.aifi.0.layers.0.final_layer_norm.weight',
    'encoder.lateral_convs.1.norm.running_mean':
    'model.encoder.lateral_convs.1.norm.running_mean',
    'encoder.pan_blocks.0.bottlenecks.2.conv1.conv.weight':
    'model.encoder.pan_blocks.0.bottlenecks.2.conv1.conv.weight',
    'encoder.downsample_convs.1.conv.weight':
    'model.encoder.downsample_convs.1.conv.weight',
}


def test_official_layout_round_trips_and_matches_transformers(pair):
    official = rtdetr_plugin_to_official(pair.ours_state)
    assert {k.split('.')[0] for k in official} == {'backbone', 'encoder',
                                                   'decoder'}
    for name, hf_name in OFFICIAL_AND_HF.items():
        assert official[name] is pair.hf_state[hf_name], name
    q, k, v = (pair.hf_state[f'model.encoder.aifi.0.layers.0.self_attn.'
                             f'{p}_proj.weight'] for p in 'qkv')
    assert torch.equal(
        official['encoder.encoder.0.layers.0.self_attn.in_proj_weight'],
        torch.cat([q, k, v]))
    # the official FrozenBatchNorm has no num_batches_tracked: a zero one
    frozen = {k: v for k, v in official.items()
              if not k.endswith('num_batches_tracked')}
    assert rtdetr_official_to_plugin(frozen).keys() == pair.ours_state.keys()
    back = rtdetr_official_to_plugin(official)
    assert back.keys() == pair.ours_state.keys()
    assert all(back[k] is v for k, v in pair.ours_state.items())


def test_presnet_is_resnetv1d_but_for_the_basic_first_projection():
    """R18/R34: a 1x1 conv + BN shortcut in block 0 of the first stage
    (stride 1, same channels), keyed as mmdet keys R50's; R50: unchanged."""
    projection = {'layer1.0.downsample.1.weight'} | {
        f'layer1.0.downsample.2.{name}' for name in (
            'weight', 'bias', 'running_mean', 'running_var',
            'num_batches_tracked')}
    for depth, extra in ((18, projection), (34, projection), (50, set())):
        ours = PResNet(depth=depth, base_channels=8).state_dict()
        mmdet = ResNetV1d(depth=depth, base_channels=8).state_dict()
        assert set(ours) == set(mmdet) | extra
    assert ours['layer1.0.downsample.1.weight'].shape == (32, 8, 1, 1)


def test_init_keeps_pytorch_defaults():
    """As the official code (no ConvModule Kaiming re-draw)."""
    neck = HybridEncoder((8, 16, 32), hidden_dim=16, num_heads=2)
    before = copy.deepcopy(neck.state_dict())
    neck.init_weights()
    assert all(torch.equal(v, before[k]) for k, v in neck.state_dict().items())


def test_position_embedding_is_the_official_one_on_a_non_square_map():
    """Official: ``k = x * h + y`` over the grid, features at ``k = y * w +
    x``; so on a 2 x 3 map (h = 2) the feature at (y, x) = (1, 1), k = 4,
    gets the rows of a = 4 // 2 = 2, b = 4 % 2 = 0. D = 8: frequencies 1 and
    10000^(-1/2) = 0.01."""
    pe = sincos_position_embedding(2, 3, 8)
    assert pe.shape == (1, 6, 8) and pe.dtype == torch.float32
    expected = [math.sin(2), math.sin(.02), math.cos(2), math.cos(.02),
                0., 0., 1., 1.]
    torch.testing.assert_close(pe[0, 4], torch.tensor(expected))
    # square: [sin y | cos y | sin x | cos x] at k = y * w + x
    y, x = 2, 1
    expected = [math.sin(y), math.sin(y / 100), math.cos(y),
                math.cos(y / 100), math.sin(x), math.sin(x / 100),
                math.cos(x), math.cos(x / 100)]
    torch.testing.assert_close(sincos_position_embedding(3, 3, 8)[0, 7],
                               torch.tensor(expected))


def test_fused_repvgg_computes_the_same(pair):
    block = perturb(RepVGGBlock(8))
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        torch.testing.assert_close(block(x), expected)
    assert [k for k in block.state_dict()] == ['fused.weight', 'fused.bias']
    neck = copy.deepcopy(pair.neck).eval()
    feats = [torch.randn(1, c, 12 // 2**i, 12 // 2**i)
             for i, c in enumerate(neck.in_channels)]
    with torch.no_grad():
        expected = neck(feats)
        neck.fuse()
        for a, b in zip(neck(feats), expected, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
