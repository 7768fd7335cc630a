"""With identical weights, the plugin's DETR R50 computes what mmdet 3.3.0's
DETR R50 computes: raw outputs, every loss term and the detections."""
from functools import partial

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from scipy.optimize import linear_sum_assignment

from detr_plugin.checkpoint import mmdet_to_plugin, plugin_to_mmdet
from mmdet_reference import build_r50_pair
from mmdet_reference import make_batch

# Two padded images of different sizes; box counts 0, 1 and 20 across cases.
CASES = {
    'empty+20': ([(160, 224), (224, 192)], [0, 20]),
    'one+20': ([(224, 160), (192, 224)], [1, 20]),
    'one+empty': ([(192, 256), (256, 224)], [1, 0]),
}


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    theirs, ours = build_r50_pair()
    # Dropout off for the comparison; BN is frozen in both configs.
    return theirs.eval(), ours.eval()


def test_converter_round_trip_is_identity(models):
    theirs, ours = models
    state = theirs.state_dict()
    back = plugin_to_mmdet(mmdet_to_plugin(state))
    assert list(back) == list(state)
    assert set(mmdet_to_plugin(state)) == set(ours.state_dict())


@pytest.mark.parametrize('case', CASES)
def test_raw_outputs_match(models, case):
    theirs, ours = models
    inputs, samples = make_batch(*CASES[case], seed=1)
    with torch.no_grad():
        their_logits, their_boxes = theirs._forward(inputs, samples)
        our_logits, our_boxes = ours._forward(inputs, samples)
    assert our_logits.shape == their_logits.shape == (6, 2, 100, 81)
    assert (our_logits - their_logits).abs().max() < 1e-4
    assert (our_boxes - their_boxes).abs().max() < 1e-4


@pytest.mark.parametrize('case', CASES)
def test_every_loss_term_matches(models, case):
    theirs, ours = models
    inputs, samples = make_batch(*CASES[case], seed=2)
    with torch.no_grad():
        their_losses = theirs.loss(inputs, samples)
        our_losses = ours.loss(inputs, samples)
    expected_keys = {f'{prefix}loss_{kind}'
                     for prefix in ['', 'd0.', 'd1.', 'd2.', 'd3.', 'd4.']
                     for kind in ['cls', 'bbox', 'iou']}
    assert set(their_losses) == expected_keys
    assert set(our_losses) == expected_keys | {'class_error',
                                               'cardinality_error'}
    for key in expected_keys:
        theirs_v, ours_v = float(their_losses[key]), float(our_losses[key])
        assert abs(ours_v - theirs_v) <= 1e-4 * max(abs(theirs_v), 1e-6), \
            (key, ours_v, theirs_v)
    # The case has boxes, so the box losses are real numbers, not zeros.
    assert float(our_losses['loss_bbox']) > 0
    assert float(our_losses['loss_iou']) > 0


@pytest.mark.parametrize('case', CASES)
def test_detections_match(models, case):
    theirs, ours = models
    inputs, samples = make_batch(*CASES[case], seed=3)
    with torch.no_grad():
        their_preds = theirs.predict(inputs, [s.clone() for s in samples])
        our_preds = ours.predict(inputs, [s.clone() for s in samples])
    assert_same_detections(our_preds, their_preds, 100)


def assert_same_detections(our_preds, their_preds, num_per_img,
                           ties_at_cutoff=False):
    """The same detections per image, paired one to one. ``ties_at_cutoff``:
    detections scoring within 1e-5 of the last kept one may be others of the
    same score (a sigmoid head's top-k over query-class pairs of a random
    model has many near-ties there, whose pick float rounding decides)."""
    for their, our in zip(their_preds, our_preds):
        t, o = their.pred_instances, our.pred_instances
        assert len(o) == len(t) == num_per_img
        # the same ranking of scores...
        assert (o.scores - t.scores).abs().max() < 1e-5
        # ...and the same set of detections: a random-weight model gives
        # near-tied scores whose order may swap, so pair detections
        # one-to-one (same label, nearest box and score) before comparing.
        cost = (o.bboxes[:, None] - t.bboxes[None]).abs().amax(-1) + \
            1e3 * (o.scores[:, None] - t.scores[None]).abs() + \
            1e6 * (o.labels[:, None] != t.labels[None])
        rows, cols = linear_sum_assignment(cost.numpy())
        if ties_at_cutoff:
            above = t.scores[cols] > t.scores.min() + 1e-5
            rows, cols = rows[above.numpy()], cols[above.numpy()]
        assert torch.equal(o.labels[rows], t.labels[cols])
        assert (o.bboxes[rows] - t.bboxes[cols]).abs().max() < 1e-3  # pixels
        assert (o.scores[rows] - t.scores[cols]).abs().max() < 1e-5


def flops_by_operator(model, inputs, samples):
    """mmengine's FLOP count per operator, as mmdet's
    tools/analysis_tools/get_flops.py takes it: forward in 'tensor' mode with
    the samples."""
    model.forward = partial(type(model).forward, model, data_samples=samples)
    try:
        return FlopAnalyzer(model, inputs).by_operator()
    finally:
        del model.forward


def test_flop_count_matches(models):
    """mmengine's FLOP counter counts the same for both: traced, our
    attention computes its products as matmuls (the counter has no handle
    for scaled_dot_product_attention, and importing the package no longer
    adds one to mmengine's table), mmdet's as bmm."""
    inputs, samples = make_batch([(128, 160)], [1], seed=4)
    theirs, ours = (flops_by_operator(model, inputs, samples)
                    for model in models)
    assert sum(ours.values()) == sum(theirs.values())
    # per query-key pair, q k^T and weights v over 256 / 8 = 32 dims each,
    # x 8 heads x 6 layers; 4 x 5 encoder tokens and 100 queries
    pairs = 20 * 20 + 100 * 100 + 100 * 20
    assert ours['matmul'] == theirs['bmm'] == pairs * (32 + 32) * 8 * 6
