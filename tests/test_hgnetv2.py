"""HGNetV2 against transformers' ``HGNetV2Backbone`` and the official names.

transformers' backbone is built (no download) as its D-FINE conversion
script configures D-FINE S (B0, learnable affines) and L (B4, without),
every weight redrawn (``perturb``), renamed by :data:`HF_HGNETV2` and loaded
into ours: the three maps (strides 8, 16, 32) agree on a non-square input.
The official state dicts' key counts are those of the official D-FINE S and
L models built with ``pretrained=False`` (L's FrozenBatchNorms have no
``num_batches_tracked``).
"""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

transformers = pytest.importorskip('transformers')
from helpers.weights import perturb  # noqa: E402

from detr_plugin.checkpoint.hgnetv2 import (  # noqa: E402
    HF_HGNETV2, OFFICIAL_HGNETV2)
from detr_plugin.checkpoint.layouts import rename_keys  # noqa: E402
from detr_plugin.checkpoint.rtdetr import with_batch_counts  # noqa: E402
from detr_plugin.registry import MODELS  # noqa: E402

# transformers' D-FINE conversion script, S (B0) and L (B4): stem
# channels, each stage's in / mid / out channels and blocks, convs per block,
# learnable affines
HF_CONFIGS = {
    'B0': ([3, 16, 16], [16, 64, 256, 512], [16, 32, 64, 128],
           [64, 256, 512, 1024], [1, 1, 2, 1], 3, True),
    'B4': ([3, 32, 48], [48, 128, 512, 1024], [48, 96, 192, 384],
           [128, 512, 1024, 2048], [1, 1, 3, 1], 6, False),
}


def hf_backbone_config(arch):
    stem, in_, mid, out, blocks, layers, lab = HF_CONFIGS[arch]
    return transformers.HGNetV2Config(
        stem_channels=stem, stage_in_channels=in_, stage_mid_channels=mid,
        stage_out_channels=out, hidden_sizes=out, stage_num_blocks=blocks,
        stage_numb_of_layers=[layers] * 4, use_learnable_affine_block=lab,
        stage_downsample=[False, True, True, True],
        stage_light_block=[False, False, True, True],
        stage_kernel_size=[3, 3, 5, 5], out_indices=[2, 3, 4])


def hf_backbone(arch):
    torch.manual_seed(0)
    return perturb(transformers.HGNetV2Backbone(hf_backbone_config(arch)))


def build(arch, **kwargs):
    return MODELS.build(dict(type='HGNetV2', arch=arch,
                             use_lab=arch == 'B0', **kwargs))


@pytest.mark.parametrize('arch', ['B0', 'B4'])
def test_matches_transformers(arch):
    theirs = hf_backbone(arch)
    state = {'model.backbone.model.' + k: v
             for k, v in theirs.state_dict().items()}
    state = rename_keys(state, HF_HGNETV2, require_match=True)
    ours = build(arch).eval()
    ours.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()})
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x).feature_maps
        got = ours(x)
    assert [t.shape[1:] for t in got] == [
        (c, 64 // s, 96 // s)
        for c, s in zip(HF_CONFIGS[arch][3][1:], (8, 16, 32))]
    for a, b in zip(got, expected):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max()


@pytest.mark.parametrize('arch, frozen_norms, num_keys',
                         [('B0', False, 312), ('B4', True, 400)])
def test_the_official_layout_names_every_key(arch, frozen_norms, num_keys):
    """Ours has the official names: the official layout renames nothing
    and names every key; the official FrozenBatchNorm state (no
    ``num_batches_tracked``) gets its counts back."""
    ours = {'backbone.' + k: v for k, v in build(arch).state_dict().items()}
    official = {k: v for k, v in ours.items()
                if not (frozen_norms and k.endswith('num_batches_tracked'))}
    assert len(official) == num_keys
    assert rename_keys(ours, OFFICIAL_HGNETV2, to_ours=False,
                       require_match=True).keys() == ours.keys()
    assert with_batch_counts(rename_keys(
        official, OFFICIAL_HGNETV2, require_match=True)).keys() == ours.keys()
    lab = 'backbone.stages.2.blocks.1.layers.2.conv2.lab.scale'
    assert (lab in ours) == (arch == 'B0')
    assert 'backbone.stages.2.blocks.1.layers.2.conv1.lab.scale' not in ours
    assert 'backbone.stages.1.downsample.conv.weight' in ours
    assert 'backbone.stages.0.downsample.conv.weight' not in ours
    assert 'backbone.stages.0.blocks.0.aggregation.1.bn.weight' in ours


def trainable(module):
    return all(p.requires_grad for p in module.parameters())


def test_frozen_stages_and_norms():
    """``frozen_stages=1, freeze_norm=True``: the stem and stage 0 learn
    nothing, no BN learns or updates its statistics in training mode; the
    other convs and affines learn. ``norm_eval`` alone keeps the BN weights
    learning; by default everything trains."""
    model = build('B0', frozen_stages=1, freeze_norm=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert not any(m.training or trainable(m) for m in norms)
    assert not any(map(trainable, (model.stem, model.stages[0])))
    assert model.stages[1].blocks[0].layers[0].conv.weight.requires_grad
    assert model.stages[3].blocks[0].layers[0].conv2.lab.scale.requires_grad
    before = [m.running_mean.clone() for m in norms]
    sum(t.sum() for t in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms))
    assert model.stem.stem1.conv.weight.grad is None
    assert model.stages[1].blocks[0].layers[0].conv.weight.grad is not None

    model = build('B0', norm_eval=True).train()
    assert all(trainable(m) and not m.training
               for m in model.modules() if isinstance(m, _BatchNorm))
    model = build('B0').train()
    assert trainable(model) and all(m.training for m in model.modules())
    assert model.out_channels == [256, 512, 1024]
