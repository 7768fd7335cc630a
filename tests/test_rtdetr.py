"""RT-DETRv2 against transformers' ``RTDetrV2ForObjectDetection``.

transformers' model is built from a tiny random config (no download; R18-like
backbone with 16 base channels, width 32, 2 decoder layers, 30 queries, up
to 20 denoising queries, 5 classes), every weight redrawn (``perturb``), and
converted to ours by ``--from hf``'s layout. Both see the same two 64 x 64
images (square: transformers >= 5 computes the AIFI position embedding
differently from the official one on non-square maps) with 3 and 1 boxes, so
the denoising groups have padded slots. The denoising noise is drawn
identically (same seed, same draws in the same order), so every decoder
layer's logits and boxes (denoising queries included), every loss term and
every gradient must agree. transformers has no "look forward twice" (its
refined boxes reach the next layer's box loss detached): the gradients are
compared with ours switched to the same, and the difference it makes is
checked on its own.
"""
import re

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

transformers = pytest.importorskip('transformers')
from helpers.tools import load_tool  # noqa: E402
from helpers.weights import perturb  # noqa: E402

from detr_plugin.checkpoint.rtdetr import (  # noqa: E402
    rtdetr_hf_to_plugin, rtdetr_official_to_plugin, rtdetr_plugin_to_official)
from detr_plugin.registry import MODELS  # noqa: E402

NUM_CLASSES, SIZE, WIDTH = 5, 64, 32
# per image: xyxy pixels (integers: exact after normalization) and labels
BOXES = ([[4, 6, 30, 40], [20, 10, 60, 34], [33, 40, 51, 62]],
         [[10, 12, 50, 58]])
LABELS = ([1, 4, 0], [2])


def hf_model(**kwargs):
    config = transformers.RTDetrV2Config(
        backbone_config=transformers.RTDetrResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64, 128],
            depths=[2, 2, 2, 2], layer_type='basic', out_indices=[2, 3, 4]),
        num_labels=NUM_CLASSES, encoder_in_channels=[32, 64, 128],
        encoder_hidden_dim=WIDTH, encoder_ffn_dim=64,
        encoder_attention_heads=2, hidden_expansion=0.5, d_model=WIDTH,
        decoder_in_channels=[WIDTH] * 3, decoder_ffn_dim=64,
        decoder_attention_heads=2, decoder_layers=2, decoder_n_points=4,
        num_queries=30, num_denoising=20, eval_size=None,
        anchor_image_size=None, **kwargs)
    torch.manual_seed(0)
    model = perturb(transformers.RTDetrV2ForObjectDetection(config))
    with torch.no_grad():  # a constant (1 / points), not a weight
        for name, buffer in model.named_buffers():
            if name.endswith('n_points_scale'):
                buffer.fill_(1 / 4)
    return model


def our_config(num_layers: int = 2, eval_idx: int = -1,
               sampling: str = 'bilinear') -> dict:
    attention = dict(embed_dims=WIDTH, num_heads=2)
    return dict(
        type='RTDETR',
        num_queries=30,
        backbone=dict(
            type='PResNet', depth=18, base_channels=16, stem_channels=16,
            out_indices=(1, 2, 3), norm_eval=True,
            norm_cfg=dict(type='BN', requires_grad=False)),
        neck=dict(type='HybridEncoder', in_channels=[32, 64, 128],
                  hidden_dim=WIDTH, num_heads=2, dim_feedforward=64,
                  expansion=0.5),
        decoder_in_channels=[WIDTH] * 3,
        decoder=dict(
            num_layers=num_layers,
            eval_idx=eval_idx,
            layer_cfg=dict(
                attn_cfgs=[
                    dict(type='MultiheadAttention', attn_drop=0.,
                         proj_drop=0., **attention),
                    dict(type='DeformableAttention', num_levels=3,
                         num_points=4, dropout=0., sampling=sampling,
                         **attention)],
                ffn_cfgs=dict(embed_dims=WIDTH, feedforward_channels=64,
                              ffn_drop=0.),
                operation_order=('self_attn', 'norm', 'cross_attn', 'norm',
                                 'ffn', 'norm'))),
        bbox_head=dict(type='RTDETRHead', num_classes=NUM_CLASSES,
                       embed_dims=WIDTH),
        dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                    group_cfg=dict(dynamic=True, num_dn_queries=20)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0, eps=1e-8),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=30))


def build_ours(state_dict, **kwargs):
    """Ours (``our_config(**kwargs)``) with ``state_dict``."""
    init_default_scope('detr_plugin')
    model = MODELS.build(our_config(**kwargs))
    model.load_state_dict(state_dict)
    return model


def inputs():
    images = torch.rand(2, 3, SIZE, SIZE,
                        generator=torch.Generator().manual_seed(3))
    samples, labels = [], []
    for boxes, classes in zip(BOXES, LABELS):
        boxes = torch.tensor(boxes, dtype=torch.float32)
        sample = DetDataSample(metainfo=dict(
            img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
            batch_input_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
            scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=boxes,
                                           labels=torch.tensor(classes))
        samples.append(sample)
        cxcywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2,
                            boxes[:, 2:] - boxes[:, :2]), 1) / SIZE
        labels.append(dict(class_labels=torch.tensor(classes),
                           boxes=cxcywh))
    return images, samples, labels


@pytest.fixture(scope='module')
def models():
    hf = hf_model()
    return hf, build_ours(rtdetr_hf_to_plugin(hf.state_dict()))


def hf_loss_name(ours: str, num_layers: int) -> str:
    """Our loss names -> transformers' (``d{i}.`` = layer i, ``enc_``: the
    proposals, which transformers appends to the layers' as ``_aux_{L-1}``;
    ``dn_``: the denoising queries)."""
    match = re.fullmatch(r'(?:d(\d)\.)?(enc_|dn_)?loss_(cls|bbox|iou)', ours)
    layer, kind, term = match.groups()
    name = dict(cls='loss_vfl', bbox='loss_bbox', iou='loss_giou')[term]
    layer = num_layers - 1 if layer is None else int(layer)
    if kind == 'enc_':
        return f'{name}_aux_{num_layers - 1}'
    if kind == 'dn_':
        return f'{name}_dn_{layer}'
    return name if layer == num_layers - 1 else f'{name}_aux_{layer}'


def test_every_layer_and_loss_match_transformers(models):
    hf, ours = models
    hf.train(), ours.train()
    images, samples, labels = inputs()
    torch.manual_seed(7)
    theirs = hf(pixel_values=images, labels=labels)
    torch.manual_seed(7)
    head_inputs = ours.forward_transformer(ours.extract_feat(images), samples)
    logits, boxes = ours.bbox_head(head_inputs['hidden_states'],
                                   head_inputs['references'])
    # denoising queries first: 20 // 3 = 6 groups of 3 positives and 3
    # negatives (the second image's: 1 and 2 padded slots each)
    assert head_inputs['dn_meta'] == dict(num_denoising_queries=36,
                                          num_denoising_groups=6)
    assert logits.shape == (2, 2, 36 + 30, NUM_CLASSES)
    torch.testing.assert_close(
        logits, theirs.intermediate_logits.transpose(0, 1),
        rtol=0, atol=1e-4)
    torch.testing.assert_close(
        boxes, theirs.intermediate_reference_points.transpose(0, 1),
        rtol=0, atol=1e-4)
    torch.manual_seed(7)
    losses = ours.loss(images, samples)
    compared = 0
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        expected = theirs.loss_dict[hf_loss_name(name, 2)]
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-6,
                                   msg=name)
        compared += 1
    assert compared == len(theirs.loss_dict) == 3 * (2 + 1 + 2)


def test_gradients_match_transformers(models):
    hf, ours = models
    hf.train(), ours.train()
    images, samples, labels = inputs()
    hf.zero_grad(), ours.zero_grad()
    torch.manual_seed(7)
    hf(pixel_values=images, labels=labels).loss.backward()
    ours.decoder.look_forward_twice = False  # as transformers'
    try:
        torch.manual_seed(7)
        losses = ours.loss(images, samples)
    finally:
        del ours.decoder.look_forward_twice
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    theirs = rtdetr_hf_to_plugin({name: param.grad for name, param
                                  in hf.named_parameters()
                                  if param.grad is not None})
    ours_grads = {name: param.grad for name, param in ours.named_parameters()
                  if param.grad is not None}
    assert set(ours_grads) == set(theirs) - {
        k for k in theirs if k.endswith('num_batches_tracked')}
    for name, grad in ours_grads.items():
        # relative to the tensor's largest gradient, at least 1e-2 (the
        # largest are 1-7; three biases before a norm have a zero gradient,
        # whose float noise is 1e-7-1e-6 on either side)
        scale = theirs[name].abs().max().clamp(min=1e-2)
        torch.testing.assert_close(grad / scale, theirs[name] / scale,
                                   rtol=0, atol=2e-4, msg=name)


def test_look_forward_twice_gives_the_previous_box_head_a_gradient(models):
    """The last layer's box loss reaches layer 0's box MLP only through the
    refined (not detached) reference: with look-forward-twice, and not
    without."""
    _, ours = models
    ours.train()
    images, samples, _ = inputs()
    grads = []
    for lft in (True, False):
        ours.zero_grad()
        ours.decoder.look_forward_twice = lft
        try:
            torch.manual_seed(7)
            ours.loss(images, samples)['loss_bbox'].backward()
        finally:
            del ours.decoder.look_forward_twice
        grads.append(ours.bbox_head.reg_branches[0].layers[-1].weight.grad)
    assert grads[0].abs().max() > 1e-6
    assert grads[1] is None or grads[1].abs().max() == 0


def test_detections_match_transformers():
    # new models: training forwards moved the encoder's BatchNorm statistics
    # (by a different count of forwards on either side)
    hf = hf_model()
    ours = build_ours(rtdetr_hf_to_plugin(hf.state_dict()))
    hf.eval(), ours.eval()
    images, samples, _ = inputs()
    with torch.no_grad():
        theirs = hf(pixel_values=images)
        results = [s.pred_instances for s in ours.predict(images, samples)]
    probs = theirs.logits.sigmoid().flatten(1)
    scores, index = probs.topk(30, 1)
    for img, result in enumerate(results):
        torch.testing.assert_close(result.scores, scores[img], rtol=0,
                                   atol=1e-5)
        assert result.labels.tolist() == (index[img] % NUM_CLASSES).tolist()
        cxcywh = theirs.pred_boxes[img, index[img] // NUM_CLASSES]
        xyxy = torch.cat((cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                          cxcywh[:, :2] + cxcywh[:, 2:] / 2), 1) * SIZE
        torch.testing.assert_close(result.bboxes, xyxy.clamp(0, SIZE),
                                   rtol=0, atol=1e-3)


def test_discrete_sampling_matches_transformers():
    """RT-DETRv2's ``discrete`` sampling (one cell per point, no
    ``grid_sample``): every layer's outputs as transformers'
    ``decoder_method='discrete'``; the sampling offsets do not train."""
    hf = hf_model(decoder_method='discrete')
    ours = build_ours(rtdetr_hf_to_plugin(hf.state_dict()),
                      sampling='discrete')
    hf.eval(), ours.eval()
    images, samples, _ = inputs()
    with torch.no_grad():
        theirs = hf(pixel_values=images)
        head_inputs = ours.forward_transformer(ours.extract_feat(images),
                                               samples)
        logits, boxes = ours.bbox_head(head_inputs['hidden_states'],
                                       head_inputs['references'])
    torch.testing.assert_close(logits[-1], theirs.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes[-1], theirs.pred_boxes, rtol=0,
                               atol=1e-4)
    bilinear = build_ours(ours.state_dict()).eval()
    with torch.no_grad():
        other = bilinear.forward_transformer(bilinear.extract_feat(images),
                                             samples)
    assert not torch.allclose(other['hidden_states'],
                              head_inputs['hidden_states'], atol=1e-3)
    offsets = ours.decoder.layers[0].attentions[1].sampling_offsets
    assert not offsets.weight.requires_grad


def test_eval_idx_stops_the_decoder_early(models):
    """With ``eval_idx=0`` inference runs one decoder layer and detects with
    its branches: the first layer's predictions of the full decoder."""
    hf, full = models
    early = build_ours(full.state_dict(), eval_idx=0)
    full.eval(), early.eval()
    images, samples, _ = inputs()
    with torch.no_grad():
        everything = full.forward_transformer(full.extract_feat(images),
                                              samples)
        first = early.forward_transformer(early.extract_feat(images), samples)
        assert len(first['hidden_states']) == 1
        expected = full.bbox_head(everything['hidden_states'][:1],
                                  everything['references'][:1])
        torch.testing.assert_close(
            early.bbox_head(first['hidden_states'], first['references']),
            expected)


def test_the_official_layout_round_trips(models):
    """ours -> the official rtdetrv2_pytorch names (with the buffers the
    official model keeps: anchors, valid mask, 1 / points) -> ours."""
    _, ours = models
    state = ours.state_dict()
    official = rtdetr_plugin_to_official(state)
    assert 'decoder.decoder.layers.1.cross_attn.sampling_offsets.weight' in \
        official
    assert 'decoder.enc_score_head.weight' in official
    assert 'decoder.dec_bbox_head.1.layers.2.bias' in official
    assert 'decoder.denoising_class_embed.weight' in official
    official['decoder.anchors'] = torch.zeros(1, 84, 4)
    official['decoder.valid_mask'] = torch.ones(1, 84, 1, dtype=torch.bool)
    for i in range(2):
        official[f'decoder.decoder.layers.{i}.cross_attn.num_points_scale'] \
            = torch.full((12, ), 0.25)
    back = rtdetr_official_to_plugin(official)
    assert back.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def test_convert_checkpoint_reads_the_official_and_transformers_files(
        models, tmp_path):
    """``--from rtdetr``: an official training checkpoint (EMA weights
    beside the model's); ``--from hf``: transformers' state dict, told from
    its keys. Both give our weights, and the official one names the config
    its size fits."""
    hf, ours = models
    state = ours.state_dict()
    official = rtdetr_plugin_to_official(state)
    official['decoder.anchors'] = torch.zeros(1, 84, 4)
    stale = {k: torch.zeros_like(v) for k, v in official.items()}
    torch.save(dict(date='2024-07-24', last_epoch=5, model=stale,
                    ema=dict(module=official, updates=9)),
               tmp_path / 'official.pth')
    torch.save(hf.state_dict(), tmp_path / 'pytorch_model.bin')
    tool = load_tool('convert_checkpoint')
    # (the fixture's training forwards moved our BatchNorm statistics apart
    # from transformers')
    for source, src, expected in (
            ('rtdetr', 'official.pth', state),
            ('hf', 'pytorch_model.bin', build_ours(rtdetr_hf_to_plugin(
                hf.state_dict())).state_dict())):
        dst = str(tmp_path / f'{source}_ours.pth')
        tool.main(['--from', source, str(tmp_path / src), dst])
        converted = torch.load(dst, weights_only=True)
        assert converted['state_dict'].keys() == expected.keys(), source
        for key, value in expected.items():
            assert torch.equal(converted['state_dict'][key], value), key
    assert converted['meta']['variant'] == 'rtdetrv2'
    meta = torch.load(tmp_path / 'rtdetr_ours.pth', weights_only=True)['meta']
    assert meta['weights'] == 'ema' and meta['num_classes'] == NUM_CLASSES
    assert meta['config'] == 'rtdetrv2_r18vd_4xb4-120e_coco.py'
    with pytest.raises(KeyError, match='neither'):
        torch.save(dict(date='x'), tmp_path / 'empty.pth')
        tool.main(['--from', 'rtdetr', str(tmp_path / 'empty.pth'),
                   str(tmp_path / 'x.pth')])


def test_inference_runs_the_neck_bn_folded_and_repvgg_fused(models):
    """At inference the hybrid encoder runs through a copy with its
    BatchNorms folded and its RepVGG blocks fused (the backbone's fold,
    extended): the same maps as the neck itself."""
    _, ours = models
    ours.eval()
    images, _, _ = inputs()
    with torch.no_grad():
        expected = ours.neck(ours.backbone(images))
        folded = ours.extract_feat(images)
    copy = ours.folded_backbone._neck.module
    assert copy is not None and copy.fpn_blocks[0].bottlenecks[0].fused \
        is not None
    assert ours.neck.fpn_blocks[0].bottlenecks[0].fused is None
    for a, b in zip(folded, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    ours.train()
    assert ours.folded_backbone._neck.module is None  # dropped on train()


def test_a_dino_checkpoint_is_refused_by_name_and_other_classes_reset(
        models, tmp_path):
    """``load_from`` a DINO checkpoint into RT-DETR: the variant is named
    (both hold denoising embeddings); an RT-DETR checkpoint of another class
    count fits but for its class rows (C + 1 in the denoising embedding),
    which are re-initialized with a zero padding row."""
    from detr_plugin.checkpoint import CheckpointMisfitError, fit_to_model
    from helpers.configs import tiny_variant_config
    from mmdet_reference import build_plugin_model
    _, ours = models
    dino = build_plugin_model(tiny_variant_config('dino')).state_dict()
    with pytest.raises(CheckpointMisfitError,
                       match=r'holds a dino model \(its keys show it\), '
                             'the config builds a rtdetr'):
        fit_to_model(dino, ours, 'dino.pth')
    other = build_ours(ours.state_dict())
    state = {k: v.clone() for k, v in other.state_dict().items()}
    for key in [k for k in state if k.startswith(
            ('bbox_head.cls_branches.', 'dn_query_generator.'))]:
        state[key] = torch.cat((state[key], state[key][:2]))  # 2 more rows
    mismatches = fit_to_model(state, ours, 'other_classes.pth')
    assert {k for k, _, _ in mismatches} == {
        k for k in state if k.startswith(('bbox_head.cls_branches.',
                                          'dn_query_generator.'))}
    # what AdaptCheckpointHook puts in their place, a new model's initial
    # values, has the zero padding row
    init_default_scope('detr_plugin')
    fresh = MODELS.build(our_config())
    fresh.init_weights()
    embedding = fresh.dn_query_generator.label_embedding.weight
    assert not embedding[-1].any() and embedding[:-1].abs().sum() > 0
