"""tools/convert_checkpoint.py --from hf: Hugging Face transformers' DETR
(sine or learned positions), DETR panoptic, Conditional DETR, DAB-DETR and
Deformable DETR (plain, box refinement, two-stage) become checkpoints that
load strictly into our models and compute what transformers computes.

Each transformers model is built from a small random config (no download, no
timm: transformers' own ResNet-18 with 8 base channels, mmdet's ResNet depth
18 base_channels 8), every weight drawn anew so that no term is trivially
zero; it is saved twice -- ``torch.save(state_dict())`` (transformers 5's
names, tied copies too) and ``save_pretrained`` (``model.safetensors`` with
transformers 4's names, the Hub's, without tied copies; ``config.json``
naming the classes) -- and both files are converted by the tool. Our model
comes from the matching tiny config of ``helpers.configs``; both see two
images of different sizes, padded (``pixel_mask``), and every decoder layer's
logits and boxes (and the panoptic model's mask logits) are compared to 1e-4,
as the mmdet parity tests.

transformers computes the per-layer outputs itself for DAB-DETR and
Deformable DETR (``auxiliary_outputs``, given labels). For DETR and
Conditional DETR its ``auxiliary_loss=True`` changes the forward (each
layer's output goes through the final LayerNorm before the next layer, unlike
the papers' code and ours): those run with ``auxiliary_loss=False`` (the
Hub's configs) and the per-layer outputs are its heads on each layer's
output, captured by hooks.
"""
import json
from collections import namedtuple

import pytest
import torch
import transformers
from helpers.configs import tiny_panoptic_config, tiny_variant_config
from helpers.tools import load_checkpoint, load_tool
from helpers.weights import perturb
from transformers.models.conditional_detr import \
    modeling_conditional_detr as hf_conditional

from detr_plugin.checkpoint import hf_to_plugin
from mmdet_reference import build_plugin_model, make_batch

tool = load_tool('convert_checkpoint')
IMAGES = [(96, 128), (128, 96)]  # padded to 128 x 128
NUM_CLASSES = 3
_SMALL = dict(encoder_layers=2, decoder_layers=2, encoder_attention_heads=8,
              decoder_attention_heads=8, encoder_ffn_dim=64,
              decoder_ffn_dim=64, num_queries=10, num_labels=NUM_CLASSES,
              dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
              use_timm_backbone=False, use_pretrained_backbone=False)
_AUX = dict(auxiliary_loss=True)  # per-layer outputs (no change else)
# transformers' input projections have biases (mmdet's ChannelMapper with
# GroupNorm none, unless bias=True)
_DEFORMABLE = dict(d_model=32, num_feature_levels=4, **_AUX)
_NECK_BIAS = dict(neck=dict(bias=True))
# case: transformers' class, its config's arguments, our config overrides
CASES = {
    'detr': ('DetrForObjectDetection', dict(d_model=32), {}),
    'detr_learned': ('DetrForObjectDetection', dict(
        d_model=32, position_embedding_type='learned'),
        dict(positional_encoding=dict(
            _delete_=True, type='LearnedPositionalEncoding', num_feats=16))),
    'conditional_detr': ('ConditionalDetrForObjectDetection',
                         dict(d_model=32), {}),
    'dab_detr': ('DabDetrForObjectDetection', dict(hidden_size=32, **_AUX),
                 {}),
    'deformable_detr': ('DeformableDetrForObjectDetection', _DEFORMABLE,
                        _NECK_BIAS),
    'deformable_detr_refine': ('DeformableDetrForObjectDetection', dict(
        _DEFORMABLE, with_box_refine=True), _NECK_BIAS),
    'deformable_detr_refine_twostage': (
        'DeformableDetrForObjectDetection', dict(
            _DEFORMABLE, with_box_refine=True, two_stage=True,
            two_stage_num_proposals=10), _NECK_BIAS),
}
Converted = namedtuple('Converted', 'variant theirs ours from_pth from_hub '
                       'hub_file')


def resnet_config(*stages):
    """transformers' ResNet-18 with 8 base channels (mmdet's ResNet depth 18,
    base_channels 8), its outputs the given stages (1-4)."""
    return transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[2, 2, 2, 2],
        layer_type='basic', out_features=[f'stage{s}' for s in stages])


def build_hf(variant):
    name, kwargs, _ = CASES[variant]
    stages = (2, 3, 4) if variant.startswith('deformable') else (4, )
    config = getattr(transformers, name.replace('ForObjectDetection',
                                                'Config'))(
        backbone_config=resnet_config(*stages), **_SMALL, **kwargs)
    torch.manual_seed(0)
    return perturb(getattr(transformers, name)(config))


def convert(src, dst, *args):
    tool.main(['--from', 'hf', str(src), str(dst), *args])
    return load_checkpoint(str(dst))


def pixel_mask(samples, inputs):
    mask = torch.zeros(inputs.shape[0], *inputs.shape[-2:], dtype=torch.long)
    for i, sample in enumerate(samples):
        height, width = sample.img_shape
        mask[i, :height, :width] = 1
    return mask


def hf_layer_outputs(model, variant, inputs, mask):
    """transformers' logits and boxes of every decoder layer ``(L, B, Q,
    .)`` and its last layer's as its forward returns them."""
    if variant == 'dab_detr' or variant.startswith('deformable'):
        labels = [dict(class_labels=torch.tensor([0]),
                       boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]))] * 2
        out = model(pixel_values=inputs, pixel_mask=mask, labels=labels)
        layers = out.auxiliary_outputs + [
            dict(logits=out.logits, pred_boxes=out.pred_boxes)]
        return (torch.stack([x['logits'] for x in layers]),
                torch.stack([x['pred_boxes'] for x in layers]), out)
    detr = getattr(model, 'detr', model)  # the panoptic model's detector
    captured = []
    hooks = [layer.register_forward_hook(
        lambda module, args, output: captured.append(output))
        for layer in detr.model.decoder.layers]
    try:
        out = model(pixel_values=inputs, pixel_mask=mask)
    finally:
        for hook in hooks:
            hook.remove()
    hidden = detr.model.decoder.layernorm(torch.stack([
        h[0] if isinstance(h, tuple) else h for h in captured]))
    logits = detr.class_labels_classifier(hidden)
    boxes = detr.bbox_predictor(hidden)
    if variant == 'conditional_detr':
        references = detr.model.decoder.ref_point_head(
            detr.model.query_position_embeddings.weight).sigmoid()
        boxes[..., :2] += hf_conditional.inverse_sigmoid(references)
    return logits, boxes.sigmoid(), out


@pytest.fixture(scope='module', params=list(CASES) + ['detr_panoptic'])
def converted(request, tmp_path_factory):
    """A case's transformers model, ours with the converted weights of its
    ``state_dict()`` and the converted checkpoints of both its files."""
    case = request.param
    folder = tmp_path_factory.mktemp(case)
    if case == 'detr_panoptic':  # 128-d, 1 + 1 layers, 8 heads, 5 classes
        config = transformers.DetrConfig(
            backbone_config=resnet_config(1, 2, 3, 4), **dict(
                _SMALL, encoder_layers=1, decoder_layers=1, num_queries=6,
                d_model=128, encoder_ffn_dim=256, decoder_ffn_dim=256,
                num_labels=5))
        torch.manual_seed(0)
        theirs = perturb(transformers.DetrForSegmentation(config))
        heads = dict(attn_cfgs=dict(num_heads=8))
        cfg = tiny_panoptic_config(
            encoder=dict(layer_cfg=heads), decoder=dict(layer_cfg=heads),
            mask_head=dict(num_heads=8))
    else:
        theirs = build_hf(case)
        cfg = tiny_variant_config(case.replace('_learned', ''), NUM_CLASSES)
        cfg.merge_from_dict(dict(model=CASES[case][2]))
    pth = folder / 'pytorch_model.pth'
    torch.save(theirs.state_dict(), pth)
    theirs.save_pretrained(folder / 'hub')
    hub_file = folder / 'hub' / 'model.safetensors'
    from_pth = convert(pth, folder / 'from_pth.pth')
    ours = build_plugin_model(cfg).eval()
    ours.load_state_dict(from_pth['state_dict'], strict=True)
    return Converted(case.replace('_learned', ''), theirs, ours, from_pth,
                     convert(hub_file, folder / 'from_hub.pth'), hub_file)


def test_both_files_convert_alike_and_load_strictly(converted):
    theirs, from_pth, from_hub = (converted.theirs, converted.from_pth,
                                  converted.from_hub)
    num_classes = theirs.config.num_labels
    assert from_pth['meta'] == dict(
        converted_from='hf', source_file='pytorch_model.pth',
        variant=converted.variant, num_classes=num_classes)
    # save_pretrained's config.json names the classes
    assert from_hub['meta']['dataset_meta']['classes'] == [
        theirs.config.id2label[i] for i in range(num_classes)]
    assert from_pth['state_dict'].keys() == \
        converted.ours.state_dict().keys()
    for key, value in from_pth['state_dict'].items():
        assert torch.equal(value, from_hub['state_dict'][key]), key


def test_every_layer_computes_what_transformers_computes(converted):
    theirs, ours = converted.theirs, converted.ours
    inputs, samples = make_batch(IMAGES, [0, 0], seed=1)
    with torch.no_grad():
        logits, boxes, out = hf_layer_outputs(
            theirs, converted.variant, inputs, pixel_mask(samples, inputs))
        our = ours._forward(inputs, samples)
    num_layers = len(ours.decoder.layers)
    assert logits.shape == our[0].shape == (
        num_layers, 2, ours.num_queries,
        theirs.config.num_labels + converted.variant.startswith('detr'))
    # our per-layer view of transformers' outputs holds its own last layer
    assert torch.allclose(logits[-1], out.logits, atol=1e-6)
    assert torch.allclose(boxes[-1], out.pred_boxes, atol=1e-6)
    assert (our[0] - logits).abs().max() < 1e-4
    assert (our[1] - boxes).abs().max() < 1e-4
    if converted.variant == 'detr_panoptic':
        assert our[2].shape == out.pred_masks.shape
        assert (our[2] - out.pred_masks).abs().max() < 1e-4
    # nothing trivially equal: the queries' and the layers' boxes differ
    assert (our[1][-1] - our[1][-1, :, :1]).abs().max() > 1e-3
    if num_layers > 1:
        assert (our[1][0] - our[1][-1]).abs().max() > 1e-3


def test_hub_names_and_timm_backbones(converted):
    """``save_pretrained`` writes transformers 4's names (the Hub's files;
    converted alike above) but DAB-DETR's, which never changed; the Hub's
    DETR releases have timm's ResNet (torchvision's names, mmdet's)."""
    from safetensors.torch import load_file
    variant, from_pth = converted.variant, converted.from_pth
    hub = load_file(converted.hub_file)
    assert bool(hub.keys() - converted.theirs.state_dict().keys()) == (
        variant != 'dab_detr')
    timm = {k: v for k, v in hub.items() if '.backbone.' not in k}
    prefix = 'detr.' * (variant == 'detr_panoptic') + \
        'model.backbone.conv_encoder.model.'
    timm.update({prefix + k[len('backbone.'):]: v
                 for k, v in from_pth['state_dict'].items()
                 if k.startswith('backbone.')})
    found, ours = hf_to_plugin(timm)
    assert found == variant
    assert ours.keys() == from_pth['state_dict'].keys()
    for key, value in ours.items():
        assert torch.equal(value, from_pth['state_dict'][key]), key


def test_unknown_and_unrepresentable_state_dicts(tmp_path):
    with pytest.raises(KeyError, match='not a transformers state dict'):
        hf_to_plugin({'backbone.conv1.weight': torch.zeros(1)})
    theirs = build_hf('deformable_detr')
    state = dict(theirs.state_dict())
    state['class_embed.1.bias'] = state['class_embed.1.bias'] + 1
    with pytest.raises(ValueError, match='shares one head'):
        hf_to_plugin(state)
    torch.save(theirs.state_dict(), tmp_path / 'model.pth')
    with pytest.raises(ValueError, match='3 classes, not 80'):
        convert(tmp_path / 'model.pth', tmp_path / 'out.pth',
                '--num-classes', '80')
    (tmp_path / 'config.json').write_text(json.dumps(
        dict(id2label={'0': 'a'})))
    with pytest.raises(ValueError, match='names 1 classes'):
        convert(tmp_path / 'model.pth', tmp_path / 'out.pth')
