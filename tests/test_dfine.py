"""D-FINE against transformers' ``DFineForObjectDetection``.

transformers' model is built from a small random config (no download: an
HGNetV2-B0 backbone, width 32, 3 decoder layers with (3, 6, 3) points, 20
queries, up to 10 denoising queries, 5 classes), every weight redrawn
(``perturb``; the constants ``up``, ``reg_scale`` and ``1 / points`` put
back), and converted to ours by ``--from hf``'s layout. Both see
:mod:`test_rtdetr`'s two 64 x 64 images with 3 and 1 boxes.

Forward: every layer's logits (LQE included), boxes and corner
distributions, the pre boxes and the initial references agree, in training
(the denoising noise drawn identically) and at inference, and so do the
gradients of one random function of all of them.

Losses: transformers' D-FINE loss is not the official one (it matches each
layer alone where the official criterion boxes every layer with the union of
all matches, and it pairs the pre output with layer 0's distributions), so
the loss terms are compared term by term with transformers' loss functions
(VFL, L1/GIoU, FGL, DDF of ``DFineLoss``) given the official matches: each
output's own matching (transformers' matcher) for VFL, the union for the
rest. The union itself and the denoising DDF (whose balance the official
code takes from the matching queries) are checked against small reference
implementations here. The full official criterion is compared once, by
``tools/parity_dfine_official.py`` (docs/family.md).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

transformers = pytest.importorskip('transformers')
from helpers.weights import perturb  # noqa: E402
from test_hgnetv2 import HF_CONFIGS, hf_backbone_config  # noqa: E402
from test_rtdetr import NUM_CLASSES, inputs  # noqa: E402

from detr_plugin.checkpoint.dfine import (  # noqa: E402
    dfine_hf_to_plugin, dfine_official_to_plugin, dfine_plugin_to_official)
from detr_plugin.models.dfine import (  # noqa: E402
    MatchabilityAwareLoss, union_of_matches)
from detr_plugin.models.hungarian_assigner import QueryMatches  # noqa: E402
from detr_plugin.registry import MODELS  # noqa: E402

WIDTH, LAYERS, QUERIES = 32, 3, 20
POINTS = (3, 6, 3)


def hf_model():
    config = transformers.DFineConfig(
        backbone_config=hf_backbone_config('B0'), num_labels=NUM_CLASSES,
        encoder_in_channels=HF_CONFIGS['B0'][3][1:], encoder_hidden_dim=WIDTH,
        encoder_ffn_dim=64, encoder_attention_heads=2, d_model=WIDTH,
        decoder_in_channels=[WIDTH] * 3, decoder_ffn_dim=64,
        decoder_layers=LAYERS, decoder_attention_heads=2,
        num_queries=QUERIES, num_denoising=10, decoder_n_points=list(POINTS),
        depth_mult=0.34, hidden_expansion=0.5,
        freeze_backbone_batch_norms=False, eval_size=None,
        anchor_image_size=None)
    torch.manual_seed(0)
    model = perturb(transformers.DFineForObjectDetection(config))
    scale = torch.tensor([1. / p for p in POINTS for _ in range(p)])
    with torch.no_grad():  # constants, not weights
        for name, tensor in [*model.named_buffers(),
                             *model.named_parameters()]:
            if name.endswith('num_points_scale'):
                tensor.copy_(scale)
            elif name.endswith('decoder.up'):
                tensor.fill_(0.5)
            elif name.endswith('decoder.reg_scale'):
                tensor.fill_(4.)
    return model


def our_config(loss_cls=None) -> dict:
    attention = dict(embed_dims=WIDTH, num_heads=2)
    head = dict(type='DFINEHead', num_classes=NUM_CLASSES, embed_dims=WIDTH)
    if loss_cls:
        head['loss_cls'] = loss_cls
    return dict(
        type='DFINE', num_queries=QUERIES,
        backbone=dict(type='HGNetV2', arch='B0', use_lab=True),
        neck=dict(type='DFINEHybridEncoder', in_channels=[256, 512, 1024],
                  hidden_dim=WIDTH, num_heads=2, dim_feedforward=64,
                  expansion=0.5, depth_mult=0.34),
        decoder_in_channels=[WIDTH] * 3,
        decoder=dict(num_layers=LAYERS, layer_cfg=dict(
            attn_cfgs=[
                dict(type='MultiheadAttention', **attention),
                dict(type='DFINEDeformableAttention', num_points=POINTS,
                     **attention)],
            ffn_cfgs=dict(embed_dims=WIDTH, feedforward_channels=64,
                          ffn_drop=0.))),
        bbox_head=head,
        dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                    group_cfg=dict(dynamic=True, num_dn_queries=10)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0, eps=1e-8),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=QUERIES))


def build_ours(state_dict, **kwargs):
    init_default_scope('detr_plugin')
    model = MODELS.build(our_config(**kwargs))
    model.load_state_dict(state_dict)
    return model


@pytest.fixture(scope='module')
def models():
    hf = hf_model()
    return hf, build_ours(dfine_hf_to_plugin(hf.state_dict()))


def our_outputs(ours, images, samples):
    """Our decoder's outputs and every layer's logits (pre: layer 0's
    classifier without LQE), the denoising noise drawn with seed 7 and the
    noised sizes left signed (transformers does not take their absolute
    value: :func:`test_noised_sizes_are_positive`)."""
    generator = ours.dn_query_generator
    generator.absolute_sizes = False
    try:
        torch.manual_seed(7)
        out = ours.forward_transformer(ours.extract_feat(images), samples)
    finally:
        del generator.absolute_sizes
    out['logits'] = ours.bbox_head.classify_layers(out['hidden_states'],
                                                   out['corners'])
    out['pre_logits'] = ours.bbox_head.cls_branches[0](
        out['hidden_states'][0])
    return out


def test_every_layer_matches_transformers_in_training(models):
    hf, ours = models
    hf.train(), ours.train()
    images, samples, labels = inputs()
    torch.manual_seed(7)
    theirs = hf(pixel_values=images, labels=labels)
    out = our_outputs(ours, images, samples)
    # 10 // 3 = 3 groups of 3 positives and 3 negatives, then 20 queries
    assert out['dn_meta'] == dict(num_denoising_queries=18,
                                  num_denoising_groups=3)
    close = dict(rtol=0, atol=1e-4)
    torch.testing.assert_close(
        out['logits'], theirs.intermediate_logits[:, 1:].transpose(0, 1),
        **close)
    torch.testing.assert_close(out['pre_logits'],
                               theirs.intermediate_logits[:, 0], **close)
    torch.testing.assert_close(
        out['boxes'],
        theirs.intermediate_reference_points[:, 1:].transpose(0, 1), **close)
    torch.testing.assert_close(
        out['pre_boxes'], theirs.intermediate_reference_points[:, 0], **close)
    torch.testing.assert_close(
        out['corners'],
        theirs.intermediate_predicted_corners.transpose(0, 1), **close)
    torch.testing.assert_close(out['initial_boxes'],
                               theirs.initial_reference_points[:, 0], **close)
    torch.testing.assert_close(out['enc_outputs_class'],
                               theirs.enc_topk_logits, **close)
    torch.testing.assert_close(out['enc_outputs_coord'],
                               theirs.enc_topk_bboxes, **close)


def test_gradients_match_transformers(models):
    """The gradients of one random linear function of every layer's logits,
    boxes and corners (and the pre outputs): the same graph backwards,
    including which inputs are detached."""
    hf, ours = models
    hf.train(), ours.train()
    images, samples, labels = inputs()
    hf.zero_grad(), ours.zero_grad()
    torch.manual_seed(7)
    theirs = hf(pixel_values=images, labels=labels)
    out = our_outputs(ours, images, samples)
    gen = torch.Generator().manual_seed(1)

    def weights(tensor):
        return torch.randn(tensor.shape, generator=gen)

    ours_terms = (out['logits'], out['pre_logits'], out['boxes'],
                  out['pre_boxes'], out['corners'])
    their_terms = (theirs.intermediate_logits[:, 1:].transpose(0, 1),
                   theirs.intermediate_logits[:, 0],
                   theirs.intermediate_reference_points[:, 1:].transpose(
                       0, 1), theirs.intermediate_reference_points[:, 0],
                   theirs.intermediate_predicted_corners.transpose(0, 1))
    for mine, other in zip(ours_terms, their_terms):
        w = weights(mine)
        (mine * w).sum().backward(retain_graph=True)
        (other * w).sum().backward(retain_graph=True)
    theirs_grads = dfine_hf_to_plugin(
        {name: p.grad for name, p in hf.named_parameters()
         if p.grad is not None})
    ours_grads = {name: p.grad for name, p in ours.named_parameters()
                  if p.grad is not None}
    assert set(ours_grads) == {k for k in theirs_grads
                               if not k.endswith('num_batches_tracked')}
    assert len(ours_grads) > 300
    for name, grad in ours_grads.items():
        if name.startswith('backbone.'):
            # sums over every pixel through train-mode BatchNorms: the
            # affines' and biases' gradients (1e-5 to 2e-2) cancel to
            # float noise; ours alone moves them by up to 1.6e-3 between
            # 1 and 2 threads
            torch.testing.assert_close(grad, theirs_grads[name], rtol=1e-3,
                                       atol=3e-3, msg=name)
            continue
        # relative to the tensor's largest gradient, at least 5e-2: biases
        # before a train-mode norm have a zero gradient whose float noise
        # is up to 1e-5 on either side
        scale = theirs_grads[name].abs().max().clamp(min=5e-2)
        torch.testing.assert_close(grad / scale, theirs_grads[name] / scale,
                                   rtol=0, atol=2e-4, msg=name)


def reference_union(indices):
    """The official matching union, by counting: per image, each query's
    most frequent box (ties: the lowest box index)."""
    union = []
    for pairs in zip(*indices):
        counts = {}
        for queries, boxes in pairs:
            for q, g in zip(queries.tolist(), boxes.tolist()):
                counts[q, g] = counts.get((q, g), 0) + 1
        best = {}
        for (q, g), n in sorted(counts.items()):
            if q not in best or n > counts[q, best[q]]:
                best[q] = g
        queries = sorted(best)
        union.append((torch.tensor(queries, dtype=torch.long),
                      torch.tensor([best[q] for q in queries],
                                   dtype=torch.long)))
    return union


def test_union_of_matches():
    """Per query its most frequent box over the outputs, ties to the lower
    box; a box may keep several queries."""
    # (output, image, query, box)
    pairs = [(0, 0, 3, 0), (1, 0, 3, 1), (2, 0, 3, 1), (0, 0, 5, 1),
             (1, 0, 7, 0), (2, 0, 7, 2), (0, 1, 3, 0), (1, 1, 3, 0)]
    matches = QueryMatches(*torch.tensor(pairs).T, 0)
    union = union_of_matches(matches)
    got = sorted(zip(union.batch_idx.tolist(), union.query_idx.tolist(),
                     union.gt_idx.tolist()))
    assert got == [(0, 3, 1), (0, 5, 1), (0, 7, 0), (1, 3, 0)]
    assert union.num_per_layer == 4


def hf_indices(criterion, logits, boxes, labels):
    return criterion.matcher(dict(logits=logits, pred_boxes=boxes), labels)


def test_every_loss_term_matches_transformers_loss_functions(models):
    hf, ours = models
    hf.train(), ours.train()
    images, samples, labels = inputs()
    out = our_outputs(ours, images, samples)
    head = ours.bbox_head
    losses = head.loss(**{k: v for k, v in out.items()
                          if k not in ('logits', 'pre_logits')},
                       batch_data_samples=samples)
    criterion = transformers.loss.loss_d_fine.DFineLoss(hf.config)
    w = criterion.weight_dict
    num_dn, groups = 18, 3
    match = slice(num_dn, None)
    names = [f'd{i}.' for i in range(LAYERS - 1)] + ['', 'pre_', 'enc_']
    logits = list(out['logits'][:, :, match]) + [
        out['pre_logits'][:, match], out['enc_outputs_class']]
    boxes = list(out['boxes'][:, :, match]) + [
        out['pre_boxes'][:, match], out['enc_outputs_coord']]
    own = [hf_indices(criterion, lg.detach(), bx.detach(), labels)
           for lg, bx in zip(logits, boxes)]
    union = reference_union(own)
    num_gts, num_union = 4., float(sum(len(q) for q, _ in union))
    expected = {}
    last = dict(pred_corners=out['corners'][-1, :, match],
                logits=out['logits'][-1, :, match])
    for i, (name, lg, bx) in enumerate(zip(names, logits, boxes)):
        output = dict(logits=lg, pred_boxes=bx)
        expected[f'{name}loss_cls'] = w['loss_vfl'] * \
            criterion.loss_labels_vfl(output, labels, own[i],
                                      num_gts)['loss_vfl']
        box = criterion.loss_boxes(output, labels, union, num_union)
        expected[f'{name}loss_bbox'] = w['loss_bbox'] * box['loss_bbox']
        expected[f'{name}loss_iou'] = w['loss_giou'] * box['loss_giou']
        if i < LAYERS:
            local = criterion.loss_local(dict(
                output, pred_corners=out['corners'][i, :, match],
                ref_points=out['initial_boxes'][:, match],
                teacher_corners=last['pred_corners'],
                teacher_logits=last['logits']), labels, union, num_union)
            expected[f'{name}loss_fgl'] = w['loss_fgl'] * local['loss_fgl']
            if i < LAYERS - 1:
                expected[f'{name}loss_ddf'] = w['loss_ddf'] * \
                    local['loss_ddf']
    # denoising: group k's positive j of an image is its box j
    positives = [(torch.tensor([k * 6 + j for k in range(groups)
                                for j in range(len(t['boxes']))]),
                  torch.arange(len(t['boxes'])).repeat(groups))
                 for t in labels]
    dn = slice(None, num_dn)
    dn_names = [f'd{i}.' for i in range(LAYERS - 1)] + ['', 'pre_']
    dn_logits = list(out['logits'][:, :, dn]) + [out['pre_logits'][:, dn]]
    dn_boxes = list(out['boxes'][:, :, dn]) + [out['pre_boxes'][:, dn]]
    for i, (name, lg, bx) in enumerate(zip(dn_names, dn_logits, dn_boxes)):
        output = dict(logits=lg, pred_boxes=bx)
        key = f'{name}dn_loss_'
        expected[key + 'cls'] = w['loss_vfl'] * criterion.loss_labels_vfl(
            output, labels, positives, num_gts * groups)['loss_vfl']
        box = criterion.loss_boxes(output, labels, positives,
                                   num_gts * groups)
        expected[key + 'bbox'] = w['loss_bbox'] * box['loss_bbox']
        expected[key + 'iou'] = w['loss_giou'] * box['loss_giou']
        if i < LAYERS:
            local = criterion.loss_local(dict(
                output, pred_corners=out['corners'][i, :, dn],
                ref_points=out['initial_boxes'][:, dn],
                teacher_corners=out['corners'][-1, :, dn],
                teacher_logits=out['logits'][-1, :, dn]), labels, positives,
                num_gts * groups)
            expected[key + 'fgl'] = w['loss_fgl'] * local['loss_fgl']
    # the denoising DDF: balanced by the matching queries' counts
    matched = sum(len(q) for q, _ in union) * 4
    balance = (matched**0.5, (2 * QUERIES * 4 - matched)**0.5)
    for i in range(LAYERS - 1):
        expected[f'd{i}.dn_loss_ddf'] = w['loss_ddf'] * reference_ddf(
            out['corners'][i, :, dn], out['corners'][-1, :, dn],
            out['logits'][-1, :, dn], out['boxes'][i, :, dn], labels,
            positives, balance)
    assert set(losses) == set(expected) | {'class_error'}
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-4,
                                   atol=1e-6, msg=name)


def reference_ddf(corners, teacher, teacher_logits, boxes, labels, indices,
                  balance, temperature=5.):
    """DDF as the official criterion computes it, its balance given."""
    bins = corners.size(-1) // 4
    weight = teacher_logits.sigmoid().max(-1)[0].clone()
    matched = torch.zeros_like(weight, dtype=torch.bool)
    for b, (queries, gts) in enumerate(indices):
        gt = labels[b]['boxes'][gts]
        pred = boxes[b, queries]

        def xyxy(x):
            return torch.cat((x[:, :2] - x[:, 2:] / 2,
                              x[:, :2] + x[:, 2:] / 2), 1)

        a, g = xyxy(pred), xyxy(gt)
        inter = (torch.min(a[:, 2:], g[:, 2:]) -
                 torch.max(a[:, :2], g[:, :2])).clamp(min=0).prod(1)
        union = (a[:, 2:] - a[:, :2]).prod(1) + (g[:, 2:] -
                                                 g[:, :2]).prod(1) - inter
        weight[b, queries] = inter / union
        matched[b, queries] = True
    kl = F.kl_div(F.log_softmax(corners.reshape(-1, bins) / temperature, 1),
                  F.softmax(teacher.reshape(-1, bins) / temperature, 1),
                  reduction='none').sum(-1)
    kl = kl * weight.repeat_interleave(4).reshape(-1) * temperature**2
    mask = matched.repeat_interleave(4).reshape(-1)
    pos, neg = balance
    return (kl[mask].mean() * pos + kl[~mask].mean() * neg) / (pos + neg)


def test_detections_match_transformers():
    hf = hf_model()
    ours = build_ours(dfine_hf_to_plugin(hf.state_dict()))
    hf.eval(), ours.eval()
    images, samples, _ = inputs()
    with torch.no_grad():
        theirs = hf(pixel_values=images)
        results = [s.pred_instances for s in ours.predict(images, samples)]
    probs = theirs.logits.sigmoid().flatten(1)
    scores, index = probs.topk(QUERIES, 1)
    for img, result in enumerate(results):
        torch.testing.assert_close(result.scores, scores[img], rtol=0,
                                   atol=1e-5)
        assert result.labels.tolist() == (index[img] % NUM_CLASSES).tolist()
        cxcywh = theirs.pred_boxes[img, index[img] // NUM_CLASSES]
        xyxy = torch.cat((cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                          cxcywh[:, :2] + cxcywh[:, 2:] / 2), 1) * 64
        torch.testing.assert_close(result.bboxes, xyxy.clamp(0, 64),
                                   rtol=0, atol=1e-3)


def test_noised_sizes_are_positive(models):
    """D-FINE's denoising boxes have positive sizes where RT-DETR's noise
    crossed a box's corners (a negative width or height); the rest is
    equal."""
    _, ours = models
    _, samples, _ = inputs()
    generator = ours.dn_query_generator
    torch.manual_seed(7)
    boxes = generator(samples)[1].sigmoid()
    generator.absolute_sizes = False
    try:
        torch.manual_seed(7)
        signed = generator(samples)[1].sigmoid()
    finally:
        del generator.absolute_sizes
    torch.testing.assert_close(boxes[..., :2], signed[..., :2])
    crossed = signed[..., 2:] < 1e-4  # negative: clipped to ~0 (or padding)
    assert (boxes[..., 2:][crossed] > 1e-3).any()
    torch.testing.assert_close(boxes[..., 2:][~crossed],
                               signed[..., 2:][~crossed])


def test_matchability_aware_loss():
    """MAL: a match of IoU q has target q^1.5 and weight 1, the rest
    target 0 and weight p^1.5."""
    loss = MatchabilityAwareLoss(gamma=1.5)
    logits = torch.tensor([[0.3, -1.2]])
    scores = torch.tensor([[0.64, 0.]])
    got = loss(logits, scores, torch.tensor([[True, False]]))
    p = torch.sigmoid(torch.tensor(-1.2))
    expected = torch.tensor([[
        -(0.512 * math.log(torch.sigmoid(torch.tensor(0.3))) +
          0.488 * math.log(1 - torch.sigmoid(torch.tensor(0.3)))),
        -p**1.5 * math.log(1 - p)]])
    torch.testing.assert_close(got, expected)


def test_the_official_layout_round_trips(models):
    """ours -> the official names (plus what the official model keeps that
    ours computes) -> ours."""
    _, ours = models
    state = ours.state_dict()
    official = dfine_plugin_to_official(state)
    for key in ('decoder.decoder.layers.2.gateway.gate.weight',
                'decoder.decoder.lqe_layers.1.reg_conf.layers.1.bias',
                'decoder.pre_bbox_head.layers.2.weight', 'decoder.up',
                'decoder.reg_scale', 'decoder.dec_bbox_head.2.layers.2.bias',
                'encoder.fpn_blocks.0.cv2.0.bottlenecks.0.conv1.norm.weight',
                'encoder.downsample_convs.1.0.cv2.conv.weight',
                'backbone.stem.stem2a.lab.scale'):
        assert key in official, key
    official['decoder.anchors'] = torch.zeros(1, 84, 4)
    official['decoder.decoder.up'] = official['decoder.up']
    for i in range(LAYERS):
        official[f'decoder.decoder.layers.{i}.cross_attn.num_points_scale'] \
            = torch.full((12, ), 0.25)
    back = dfine_official_to_plugin(official)
    assert back.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(back[key], value), key


def test_convert_checkpoint_reads_the_official_and_transformers_files(
        models, tmp_path):
    """``--from dfine``: an official training checkpoint (EMA weights beside
    the model's, the buffers the official model keeps); ``--from hf``:
    transformers' state dict, told from its keys (not RT-DETR's)."""
    from helpers.tools import load_tool
    hf, ours = models
    state = ours.state_dict()
    official = dfine_plugin_to_official(state)
    official['decoder.decoder.reg_scale'] = official['decoder.reg_scale']
    stale = {k: torch.zeros_like(v) for k, v in official.items()}
    torch.save(dict(last_epoch=5, model=stale,
                    ema=dict(module=official, updates=9)),
               tmp_path / 'official.pth')
    torch.save(hf.state_dict(), tmp_path / 'pytorch_model.bin')
    tool = load_tool('convert_checkpoint')
    for source, src, expected in (
            ('dfine', 'official.pth', state),
            ('hf', 'pytorch_model.bin', build_ours(dfine_hf_to_plugin(
                hf.state_dict())).state_dict())):
        dst = str(tmp_path / f'{source}_ours.pth')
        tool.main(['--from', source, str(tmp_path / src), dst])
        converted = torch.load(dst, weights_only=True)
        assert converted['state_dict'].keys() == expected.keys(), source
        for key, value in expected.items():
            assert torch.equal(converted['state_dict'][key], value), key
    assert converted['meta']['variant'] == 'dfine'
    meta = torch.load(tmp_path / 'dfine_ours.pth', weights_only=True)['meta']
    assert meta['weights'] == 'ema' and meta['num_classes'] == NUM_CLASSES
    assert 'config' not in meta  # a size of none of S/M/L/X


@pytest.mark.parametrize('size,stem,width,layers,name', [
    ('s', (16, 16), 256, 3, 'hgnetv2-s_8xb4-132e'),
    ('m', (24, 32), 256, 4, 'hgnetv2-m_8xb4-132e'),
    ('l', (32, 48), 256, 6, 'hgnetv2-l_8xb4-80e'),
    ('x', (32, 64), 384, 6, 'hgnetv2-x_8xb4-80e')])
def test_the_config_is_told_from_the_weights(size, stem, width, layers,
                                             name):
    from detr_plugin.checkpoint import dfine_config
    state = {'backbone.stem.stem1.conv.weight': torch.zeros(stem[0], 3),
             'backbone.stem.stem4.conv.weight': torch.zeros(stem[1], 3),
             'neck.input_proj.0.bn.weight': torch.zeros(width)}
    state.update({f'decoder.layers.{i}.norms.0.weight': torch.zeros(1)
                  for i in range(layers)})
    assert dfine_config(state) == f'dfine_{name}_coco.py'
    deim = dfine_config(state, deim=True)
    assert deim.startswith(f'deim_dfine_hgnetv2-{size}_8xb4-')


def test_a_loss_without_use_sigmoid_takes_its_class_default():
    """``loss_cls=dict(type='MatchabilityAwareLoss')`` (no ``use_sigmoid``,
    as a ``_delete_``'d config dict): the head is sigmoid, C rows."""
    init_default_scope('detr_plugin')
    head = MODELS.build(dict(type='DFINEHead', num_classes=NUM_CLASSES,
                             embed_dims=WIDTH, num_pred_layer=2,
                             share_pred_layer=False, as_two_stage=True,
                             loss_cls=dict(type='MatchabilityAwareLoss')))
    assert head.use_sigmoid and head.cls_branches[0].out_features == \
        NUM_CLASSES
    softmax = MODELS.build(dict(type='DETRHead', num_classes=NUM_CLASSES,
                                embed_dims=WIDTH))  # CrossEntropyLoss's
    assert not softmax.use_sigmoid
