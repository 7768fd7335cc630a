"""With identical weights, our Conditional DETR, DAB-DETR, Deformable DETR
(plain, refine, refine + two-stage) and DINO R50 compute what mmdet 3.3.0's
compute: every decoder layer's logits and boxes, every loss term, the
gradients and the detections.

Losses are compared in training mode with dropout off (two-stage proposals
and DINO's denoising queries exist only in training). DINO's denoising noise
is drawn identically by seeding torch's generator before each model's pass:
our query generator draws its random numbers in mmdet's order.

Both models come from their own configs (mmdet's in its wheel, ours in
configs/); mmdet's weights are copied into ours by the converter, after every
all-zero weight (biases, DAB-DETR's last box layer) got small random values so
that no term of the computation is trivially zero.
"""
import pytest
import torch
from mmdet.structures import DetDataSample

from detr_plugin.checkpoint import (mmdet_to_plugin, model_variant,
                                    plugin_to_mmdet)
from mmdet_reference import (build_r50_pair, layer_references,
                             same_proposal_ranking,
                             train_without_dropout)
from mmdet_reference import make_batch
from test_parity_mmdet import CASES, assert_same_detections, flops_by_operator

# variant: detections per image (test_cfg.max_per_img), the references the
# head takes (2-D points for every layer, DAB's 4-D anchor per layer, or one
# per layer) and its loss terms beyond every decoder layer's
VARIANTS = {
    'conditional_detr': (100, 'points', ()),
    'dab_detr': (300, 'anchors', ()),
    'deformable_detr': (100, 'per_layer_points', ()),
    'deformable_detr_refine': (100, 'per_layer_boxes', ()),
    'deformable_detr_refine_twostage': (
        100, 'per_layer_boxes', ('enc_loss_cls', 'enc_loss_bbox',
                                 'enc_loss_iou')),
    'dino': (300, 'per_layer_boxes', (
        'enc_loss_cls', 'enc_loss_bbox', 'enc_loss_iou',
        *(f'{prefix}dn_loss_{kind}'
          for prefix in ['', 'd0.', 'd1.', 'd2.', 'd3.', 'd4.']
          for kind in ['cls', 'bbox', 'iou']))),
}
LOSS_KEYS = {f'{prefix}loss_{kind}'
             for prefix in ['', 'd0.', 'd1.', 'd2.', 'd3.', 'd4.']
             for kind in ['cls', 'bbox', 'iou']}


def head_references(kind, gen):
    """References of the kind a variant's head takes, batch 2, 300
    queries, 6 layers, inside (0.1, 0.9)."""
    def rand(*shape):
        return torch.rand(*shape, generator=gen) * 0.8 + 0.1
    if kind == 'points':
        return rand(2, 300, 2)
    if kind == 'anchors':
        return rand(6, 2, 300, 4)
    return [rand(2, 300, 2 if kind == 'per_layer_points' else 4)
            for _ in range(6)]


@pytest.fixture(scope='module', params=list(VARIANTS))
def models(request):
    torch.manual_seed(0)
    theirs, ours = build_r50_pair(request.param, fill_zeros=True)
    # Dropout off for the comparison; BN is frozen in both configs.
    return request.param, theirs.eval(), ours.eval()


def test_converter_tells_the_variant_and_round_trips(models):
    variant, theirs, ours = models
    state = theirs.state_dict()
    layout = variant.split('_refine')[0]  # refine/two-stage: same keys
    assert model_variant(state) == layout == model_variant(
        ours.state_dict())
    back = plugin_to_mmdet(mmdet_to_plugin(state))
    assert list(back) == list(state)
    assert set(mmdet_to_plugin(state)) == set(ours.state_dict())


@pytest.mark.parametrize('case', CASES)
def test_raw_outputs_match(models, case):
    _, theirs, ours = models
    inputs, samples = make_batch(*CASES[case], seed=1)
    with torch.no_grad(), same_proposal_ranking(theirs, ours):
        their_logits, their_boxes = theirs._forward(inputs, samples)
        our_logits, our_boxes = ours._forward(inputs, samples)
    # sigmoid classifiers: 80 classes, no no-object column
    assert our_logits.shape == their_logits.shape == (6, 2, ours.num_queries,
                                                      80)
    for layer in range(6):
        assert (our_logits[layer] - their_logits[layer]).abs().max() < 1e-4
        assert (our_boxes[layer] - their_boxes[layer]).abs().max() < 1e-4
    # the layers refine: their boxes differ (DAB-DETR's anchors move)
    assert (our_boxes[0] - our_boxes[-1]).abs().max() > 1e-3


@pytest.mark.parametrize('case', CASES)
def test_every_loss_term_matches(models, case):
    variant, theirs, ours = models
    keys = LOSS_KEYS | set(VARIANTS[variant][2])
    inputs, samples = make_batch(*CASES[case], seed=2)
    # training mode: two-stage proposals are scored only there
    train_without_dropout(theirs), train_without_dropout(ours)
    with torch.no_grad(), same_proposal_ranking(theirs, ours):
        torch.manual_seed(7)  # the same denoising noise (DINO)
        their_losses = theirs.loss(inputs, samples)
        torch.manual_seed(7)
        our_losses = ours.loss(inputs, samples)
    theirs.eval(), ours.eval()
    assert set(their_losses) == keys
    # a sigmoid head has no no-object class: no cardinality_error
    assert set(our_losses) == keys | {'class_error'}
    for key in keys:
        theirs_v, ours_v = float(their_losses[key]), float(our_losses[key])
        assert abs(ours_v - theirs_v) <= 1e-4 * max(abs(theirs_v), 1e-6), \
            (key, ours_v, theirs_v)
    assert float(our_losses['loss_bbox']) > 0
    assert float(our_losses['loss_iou']) > 0


# Float32 rounding moves the gradients of the multi-scale encoder (bilinear
# sampling and ReLUs switch on ulp-sized changes) and of what feeds it: a
# 1e-6 relative change of DINO's input image moved our own encoder's
# gradients by up to 0.8 % (tools: /tmp scripts, 2026-12-01). So those get
# a 2 % tolerance, the rest 0.1 % of each tensor's largest gradient.
NOISY_GRADIENTS = ('backbone.', 'neck.', 'encoder.')


def test_gradients_match(models):
    """The same gradient for every weight, e.g. DAB-DETR's refined anchors
    and DINO's look-forward-twice boxes pass gradient to the head's loss but
    not into the next layer. (Float rounding differs where a gradient is
    zero in theory, e.g. attention key biases: the tolerance has a floor at
    1e-5 of the largest gradient.)"""
    _, theirs, ours = models
    inputs, samples = make_batch(*CASES['one+20'], seed=4)
    with same_proposal_ranking(theirs, ours):
        for model in (theirs, ours):
            train_without_dropout(model).zero_grad()
            torch.manual_seed(7)  # the same denoising noise (DINO)
            losses = model.loss(inputs, samples)
            sum(v for k, v in losses.items() if 'loss' in k).backward()
            model.eval()
    their_grads = mmdet_to_plugin(
        {k: p.grad for k, p in theirs.named_parameters()
         if p.grad is not None})
    our_grads = {k: p.grad for k, p in ours.named_parameters()
                 if p.grad is not None}
    assert set(our_grads) == set(their_grads)
    floor = 1e-5 * max(float(g.abs().max()) for g in their_grads.values())
    for key, grad in our_grads.items():
        scale = float(their_grads[key].abs().max())
        rtol = 2e-2 if key.startswith(NOISY_GRADIENTS) else 1e-3
        assert (grad - their_grads[key]).abs().max() <= \
            rtol * scale + floor, key


@pytest.mark.parametrize('case', CASES)
def test_detections_match(models, case):
    """A random model scores its queries almost alike, so which of the
    near-tied (query, class) pairs make the top-k is float rounding's
    choice: the scores and labels must agree; the boxes are compared in
    :func:`test_head_decodes_the_same_detections`."""
    variant, theirs, ours = models
    inputs, samples = make_batch(*CASES[case], seed=3)
    with torch.no_grad(), same_proposal_ranking(theirs, ours):
        their_preds = theirs.predict(inputs, [s.clone() for s in samples])
        our_preds = ours.predict(inputs, [s.clone() for s in samples])
    for their, our in zip(their_preds, our_preds):
        t, o = their.pred_instances, our.pred_instances
        assert len(o) == len(t) == VARIANTS[variant][0]
        assert (o.scores - t.scores).abs().max() < 1e-5
        assert sorted(o.labels.tolist()) == sorted(t.labels.tolist())


def test_head_decodes_the_same_detections(models):
    """Given the same decoder outputs and references with distinct scores
    per query, the heads return the same boxes, labels and scores."""
    variant, theirs, ours = models
    _, samples = make_batch(*CASES['one+20'], seed=5)
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(6, 2, 300, 256, generator=gen)
    refs = head_references(VARIANTS[variant][1], gen)
    with torch.no_grad():
        their_preds = theirs.bbox_head.predict(hidden, refs, samples)
        our_preds = ours.bbox_head.predict(
            hidden, samples, references=layer_references(refs, 6))
    wrap = [DetDataSample(pred_instances=p) for p in our_preds]
    their_wrap = [DetDataSample(pred_instances=p) for p in their_preds]
    assert_same_detections(wrap, their_wrap, VARIANTS[variant][0],
                           ties_at_cutoff=True)


def test_flop_count_matches(models):
    """mmengine's FLOP counter (mmdet's get_flops.py) counts what mmdet's
    model computes, less, with box refinement, the last decoder layer's box
    MLP, which mmdet runs and whose refined boxes no layer uses: ours skips
    it."""
    variant, theirs, ours = models
    # 1,700 tokens over 4 levels: DINO's mmdet model takes the top 900
    inputs, samples = make_batch([(256, 320)], [1], seed=4)
    their_flops, our_flops = (flops_by_operator(model, inputs, samples)
                              for model in (theirs, ours))
    queries = ours.num_queries
    box_mlp = queries * (256 * 256 + 256 * 256 + 256 * 4)  # linear FLOPs
    skipped = box_mlp if getattr(ours, 'with_box_refine', False) else 0
    assert sum(our_flops.values()) == sum(their_flops.values()) - skipped
    assert our_flops['matmul'] == their_flops['bmm']
