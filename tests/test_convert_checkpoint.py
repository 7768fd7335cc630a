"""tools/convert_checkpoint.py: official facebookresearch/detr and mmdet 3.x
checkpoints become checkpoints that load strictly into this package's DETR."""
import argparse
import os
import pickle

import pytest
import torch
from helpers.configs import (CONFIG_DIR, DETR_R50, tiny_config,
                             tiny_panoptic_config)
from helpers.tools import load_tool
from mmengine.logging import HistoryBuffer
from mmengine.runner import load_checkpoint

from detr_plugin.checkpoint.layouts import (COCO_CATEGORY_IDS,
                                            COCO_PANOPTIC_STUFF_IDS,
                                            official_to_plugin,
                                            plugin_to_mmdet,
                                            plugin_to_official)
from mmdet_reference import build_plugin_model

tool = load_tool('convert_checkpoint')


def official_r50_layout(num_layers=6, dims=256, ffn=2048, queries=100):
    """Key -> shape of the official ``detr-r50-e632da11.pth`` ``model``:
    torchvision's ResNet-50 (FrozenBatchNorm: no num_batches_tracked) and
    the transformer, written out from the architecture."""
    shapes = {}

    def bn(prefix, channels):
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            shapes[f'{prefix}.{name}'] = (channels, )

    body = 'backbone.0.body'
    shapes[f'{body}.conv1.weight'] = (64, 3, 7, 7)
    bn(f'{body}.bn1', 64)
    in_ch = 64
    for stage, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            pre = f'{body}.layer{stage}.{block}'
            shapes[f'{pre}.conv1.weight'] = (planes, in_ch, 1, 1)
            bn(f'{pre}.bn1', planes)
            shapes[f'{pre}.conv2.weight'] = (planes, planes, 3, 3)
            bn(f'{pre}.bn2', planes)
            shapes[f'{pre}.conv3.weight'] = (4 * planes, planes, 1, 1)
            bn(f'{pre}.bn3', 4 * planes)
            if block == 0:
                shapes[f'{pre}.downsample.0.weight'] = (4 * planes, in_ch,
                                                        1, 1)
                bn(f'{pre}.downsample.1', 4 * planes)
            in_ch = 4 * planes

    def attention(prefix):
        shapes[f'{prefix}.in_proj_weight'] = (3 * dims, dims)
        shapes[f'{prefix}.in_proj_bias'] = (3 * dims, )
        shapes[f'{prefix}.out_proj.weight'] = (dims, dims)
        shapes[f'{prefix}.out_proj.bias'] = (dims, )

    def linear(prefix, d_out, d_in):
        shapes[f'{prefix}.weight'] = (d_out, d_in)
        shapes[f'{prefix}.bias'] = (d_out, )

    def layer_norm(prefix):
        shapes[f'{prefix}.weight'] = shapes[f'{prefix}.bias'] = (dims, )

    for kind, norms in (('encoder', 2), ('decoder', 3)):
        for i in range(num_layers):
            pre = f'transformer.{kind}.layers.{i}'
            attention(f'{pre}.self_attn')
            if kind == 'decoder':
                attention(f'{pre}.multihead_attn')
            linear(f'{pre}.linear1', ffn, dims)
            linear(f'{pre}.linear2', dims, ffn)
            for n in range(1, norms + 1):
                layer_norm(f'{pre}.norm{n}')
    layer_norm('transformer.decoder.norm')
    shapes['input_proj.weight'] = (dims, 2048, 1, 1)
    shapes['input_proj.bias'] = (dims, )
    shapes['query_embed.weight'] = (queries, dims)
    linear('class_embed', 92, dims)
    linear('bbox_embed.layers.0', dims, dims)
    linear('bbox_embed.layers.1', dims, dims)
    linear('bbox_embed.layers.2', 4, dims)
    return shapes


def official_file(path, model_state, args=None, zip_format=True):
    """Write a release-style file: model, optimizer, lr_scheduler, epoch,
    args (a pickled argparse.Namespace, as the official main.py saves)."""
    checkpoint = dict(
        model=model_state,
        optimizer=dict(state={}, param_groups=[dict(lr=1e-4, params=[0])]),
        lr_scheduler=dict(step_size=200, gamma=0.1, last_epoch=500,
                          base_lrs=[1e-4], _last_lr=[1e-5]),
        epoch=499,
        args=args if args is not None else argparse.Namespace(
            lr=1e-4, backbone='resnet50', dilation=False, num_queries=100,
            dataset_file='coco', device='cuda', frozen_weights=None))
    torch.save(checkpoint, path,
               _use_new_zipfile_serialization=zip_format)
    return path


def randomized(cfg):
    """A model of ``cfg`` with random values everywhere, norms and BN
    statistics included."""
    torch.manual_seed(0)
    model = build_plugin_model(cfg)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
    return model


@pytest.fixture(scope='module')
def tiny80():
    return randomized(tiny_config(num_classes=80))


def test_coco_ids_are_the_80_used_ids_in_mmdet_class_order():
    from mmdet.datasets import CocoDataset
    assert len(COCO_CATEGORY_IDS) == 80 == len(
        CocoDataset.METAINFO['classes'])
    assert list(COCO_CATEGORY_IDS) == sorted(set(COCO_CATEGORY_IDS))
    unused = set(range(91)) - set(COCO_CATEGORY_IDS)
    assert unused == {0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def test_official_r50_layout_maps_onto_our_r50_keys_and_shapes():
    layout = official_r50_layout()
    assert not any('num_batches_tracked' in k for k in layout)
    state = {k: torch.zeros(s) for k, s in layout.items()}
    converted = official_to_plugin(state, num_classes=80)
    ours = build_plugin_model(DETR_R50).state_dict()
    assert set(converted) == set(ours)
    for key, value in ours.items():
        assert converted[key].shape == value.shape, key
    # the backbone's BNs got the buffer FrozenBatchNorm lacks
    assert converted['backbone.layer4.2.bn3.num_batches_tracked'].dtype == \
        torch.long


def test_official_to_plugin_loads_strictly_with_spot_checks(tmp_path, tiny80):
    official = plugin_to_official(tiny80.state_dict())
    assert official['class_embed.weight'].shape[0] == 92
    assert not any('num_batches_tracked' in k for k in official)
    official['class_embed.weight'] = torch.randn(92, 32)  # every row distinct
    official['class_embed.bias'] = torch.randn(92)
    src = official_file(str(tmp_path / 'detr-official.pth'), official)
    dst = str(tmp_path / 'out' / 'converted.pth')
    tool.main(['--from', 'official', src, dst])

    model = build_plugin_model(tiny_config(num_classes=80))
    checkpoint = load_checkpoint(model, dst, strict=True)  # weights_only
    assert checkpoint['meta']['dataset_meta']['classes'][79] == 'toothbrush'
    assert checkpoint['meta']['converted_from'] == 'official'
    ours = model.state_dict()
    assert torch.equal(
        ours['encoder.layers.1.ffns.0.layers.0.0.weight'],
        official['transformer.encoder.layers.1.linear1.weight'])
    assert torch.equal(
        ours['decoder.layers.1.attentions.1.in_proj_weight'],
        official['transformer.decoder.layers.1.multihead_attn.in_proj_weight'])
    assert torch.equal(ours['decoder.layers.0.norms.2.bias'],
                       official['transformer.decoder.layers.0.norm3.bias'])
    assert torch.equal(ours['decoder.post_norm.weight'],
                       official['transformer.decoder.norm.weight'])
    assert torch.equal(ours['query_embedding.weight'],
                       official['query_embed.weight'])
    assert torch.equal(ours['bbox_head.reg_mlp.layers.2.weight'],
                       official['bbox_embed.layers.2.weight'])
    # classifier rows: person (id 1) -> 0, toothbrush (id 90) -> 79,
    # no-object (row 91) -> 80, the last
    fc_w, fc_b = ours['bbox_head.fc_cls.weight'], ours['bbox_head.fc_cls.bias']
    assert fc_w.shape == (81, 32)
    assert torch.equal(fc_w[0], official['class_embed.weight'][1])
    assert torch.equal(fc_w[79], official['class_embed.weight'][90])
    assert torch.equal(fc_w[80], official['class_embed.weight'][91])
    assert torch.equal(fc_b[79], official['class_embed.bias'][90])
    assert torch.equal(ours['backbone.bn1.num_batches_tracked'],
                       torch.tensor(0))


def test_official_legacy_file_and_91_classes(tmp_path, tiny80):
    """The 2020 release predates torch's zip format; 91 classes keep all
    rows (class index = COCO category id)."""
    official = plugin_to_official(tiny80.state_dict())
    src = official_file(str(tmp_path / 'legacy.pth'), official,
                        zip_format=False)
    dst = str(tmp_path / 'converted91.pth')
    tool.main(['--from', 'official', src, dst, '--num-classes', '91'])
    model = build_plugin_model(tiny_config(num_classes=91))
    checkpoint = load_checkpoint(model, dst, strict=True)
    assert torch.equal(model.bbox_head.fc_cls.weight.detach(),
                       official['class_embed.weight'])
    classes = checkpoint['meta']['dataset_meta']['classes']
    assert len(classes) == 91 and classes[90] == 'toothbrush' and \
        classes[12] == 'N/A'


def test_round_trip_plugin_official_plugin_is_identity(tiny80):
    state = tiny80.state_dict()
    back = official_to_plugin(plugin_to_official(state), num_classes=80)
    assert list(back) == list(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def test_mmdet_checkpoint_converts_and_keeps_meta(tmp_path, tiny80):
    history = HistoryBuffer()
    history.update(0.5)
    src = str(tmp_path / 'mmdet.pth')
    torch.save(dict(
        meta=dict(dataset_meta=dict(classes=['a'] * 80), epoch=12),
        state_dict=plugin_to_mmdet(tiny80.state_dict()),
        message_hub=dict(log_scalars={'train/loss': history})), src)
    dst = str(tmp_path / 'from_mmdet.pth')
    tool.main(['--from', 'mmdet', src, dst, '--num-classes', '80'])
    model = build_plugin_model(tiny_config(num_classes=80))
    checkpoint = load_checkpoint(model, dst, strict=True)
    assert checkpoint['meta']['epoch'] == 12
    assert checkpoint['meta']['dataset_meta']['classes'] == ['a'] * 80
    for key, value in tiny80.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(ValueError, match='80 classes, not 3'):
        tool.main(['--from', 'mmdet', src, dst, '--num-classes', '3'])
    # a variant other than the keys': it wrote a wrongly renamed file
    with pytest.raises(ValueError, match="holds mmdet's detr, not dino .* "
                       'with --model detr, or without --model'):
        tool.main(['--from', 'mmdet', src, dst, '--model', 'dino'])


class Payload:
    """What a malicious checkpoint pickles: a call to os.system."""

    def __reduce__(self):
        return os.system, ('echo this must never run',)


def test_unexpected_pickled_global_is_refused(tmp_path, tiny80):
    official = plugin_to_official(tiny80.state_dict())
    src = official_file(str(tmp_path / 'evil.pth'), official, args=Payload())
    # the message names the file, the refused global and the allow-list
    with pytest.raises(pickle.UnpicklingError, match=(
            r'refusing to load .*evil\.pth.*pickles (posix|nt)\.system, '
            r'which is not on the allow-list \(argparse\.Namespace\)')):
        tool.main(['--from', 'official', src, str(tmp_path / 'x.pth')])
    assert not (tmp_path / 'x.pth').exists()


def test_unknown_official_keys_and_class_counts_are_errors(tiny80):
    official = plugin_to_official(tiny80.state_dict())
    with pytest.raises(KeyError, match='match no rule'):
        official_to_plugin(dict(official, **{
            'bbox_attention.q_linear.weight': torch.zeros(1)}))
    with pytest.raises(ValueError, match='not 3'):
        official_to_plugin(official, num_classes=3)


# ------------------------------------------------ the panoptic release
def official_panoptic_layout():
    """Key -> shape of the official ``detr-r50-panoptic-00ce5173.pth``
    ``model``: the R50 DETR under ``detr.`` with 251 classifier rows, and the
    mask head of ``models/segmentation.py``, ``MHAttentionMap(256, 256, 8)``
    and ``MaskHeadSmallConv(256 + 8, [1024, 512, 256], 256)`` (inter_dims
    264, 128, 64, 32, 16), written out."""
    shapes = {'detr.' + k: v for k, v in official_r50_layout().items()}
    shapes['detr.class_embed.weight'] = (251, 256)
    shapes['detr.class_embed.bias'] = (251, )
    for name in ('q_linear', 'k_linear'):
        shapes[f'bbox_attention.{name}.weight'] = (256, 256)
        shapes[f'bbox_attention.{name}.bias'] = (256, )
    convs = dict(lay1=(264, 264, 3), lay2=(128, 264, 3), lay3=(64, 128, 3),
                 lay4=(32, 64, 3), lay5=(16, 32, 3), out_lay=(1, 16, 3),
                 adapter1=(128, 1024, 1), adapter2=(64, 512, 1),
                 adapter3=(32, 256, 1))
    for name, (d_out, d_in, k) in convs.items():
        shapes[f'mask_head.{name}.weight'] = (d_out, d_in, k, k)
        shapes[f'mask_head.{name}.bias'] = (d_out, )
        if name.startswith('lay'):
            shapes[f'mask_head.gn{name[3:]}.weight'] = (d_out, )
            shapes[f'mask_head.gn{name[3:]}.bias'] = (d_out, )
    return shapes


@pytest.fixture(scope='module')
def tiny_panoptic133():
    return randomized(tiny_panoptic_config(num_things=80, num_stuff=53))


def test_official_panoptic_layout_maps_onto_our_r50_panoptic_model():
    state = {k: torch.zeros(s) for k, s in official_panoptic_layout().items()}
    converted = official_to_plugin(state)  # 133 classes by default
    ours = build_plugin_model(
        f'{CONFIG_DIR}/detr_panoptic/detr_r50_8xb2-panoptic-25e_coco.py'
    ).state_dict()
    assert set(converted) == set(ours)
    for key, value in ours.items():
        assert converted[key].shape == value.shape, key


def test_official_panoptic_file_converts_and_round_trips(
        tmp_path, tiny_panoptic133):
    state = tiny_panoptic133.state_dict()
    official = plugin_to_official(state)
    assert official['detr.class_embed.weight'].shape[0] == 251
    assert 'mask_head.lay5.weight' in official and \
        'detr.transformer.decoder.norm.weight' in official
    back = official_to_plugin(official)
    assert list(back) == list(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key

    official['detr.class_embed.weight'] = torch.randn(251, 128)
    src = official_file(str(tmp_path / 'detr-r50-panoptic.pth'), official)
    dst = str(tmp_path / 'converted.pth')
    tool.main(['--from', 'official', src, dst])
    model = build_plugin_model(tiny_panoptic_config(num_things=80,
                                                    num_stuff=53))
    checkpoint = load_checkpoint(model, dst, strict=True)
    classes = checkpoint['meta']['dataset_meta']['classes']
    assert len(classes) == 133 and classes[80] == 'banner' and \
        classes[132] == 'rug-merged'
    ours = model.state_dict()
    for key in ('mask_head.adapter3.weight', 'mask_head.gn2.bias',
                'bbox_attention.k_linear.weight'):
        assert torch.equal(ours[key], official[key])
    assert torch.equal(ours['decoder.post_norm.bias'],
                       official['detr.transformer.decoder.norm.bias'])
    # rows: person (id 1) -> 0, banner (id 92) -> 80, rug-merged (id 200)
    # -> 132, no-object (row 250) -> 133
    fc_w, rows = ours['bbox_head.fc_cls.weight'], \
        official['detr.class_embed.weight']
    assert COCO_PANOPTIC_STUFF_IDS[0] == 92
    for label, row in ((0, 1), (80, 92), (132, 200), (133, 250)):
        assert torch.equal(fc_w[label], rows[row])


def test_the_tool_ends_an_unconvertible_checkpoint_with_its_message(
        tmp_path):
    """Its KeyError / ValueError (a file of no known variant, another
    variant than --model) ended in a traceback."""
    from helpers.tools import run_tool
    src = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=dict(weight=torch.zeros(1))), src)
    proc = run_tool(['convert_checkpoint.py', '--from', 'mmdet', src,
                     str(tmp_path / 'out.pth')], str(tmp_path), check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.out
    assert proc.out.strip().splitlines()[-1].startswith(
        'error: not a checkpoint of a known DETR variant'), proc.out


def test_the_tool_names_a_folder_output_and_an_official_file_as_mmdet(
        tmp_path, tiny80):
    """A folder as DST, and an official release given as ``--from mmdet``
    (it was refused as a file that "could run arbitrary code"): one line
    each, the second naming the right flag (issue 31, item 5)."""
    from helpers.tools import run_tool
    src = official_file(str(tmp_path / 'official.pth'),
                        plugin_to_official(tiny80.state_dict()))
    for args, message in (
            (['--from', 'official', src, str(tmp_path)],
             f'error: DST {tmp_path} is a folder: give the path of the .pth '
             'file to write.'),
            (['--from', 'mmdet', src, str(tmp_path / 'out.pth')],
             f'error: {src} is an official facebookresearch/detr release '
             '(its "model" and argparse "args"), not an mmdet checkpoint: '
             'convert it with --from official')):
        proc = run_tool(['convert_checkpoint.py', *args], str(tmp_path),
                        check=False)
        assert proc.returncode == 1 and 'Traceback' not in proc.out
        assert proc.out.strip().splitlines()[-1] == message, proc.out
