"""Edge inputs inside the model: images without boxes, batches without boxes,
more boxes than queries."""
import pytest
import torch
import torch.nn.functional as F
from helpers.configs import tiny_config

from mmdet_reference import build_plugin_model
from mmdet_reference import make_batch


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return build_plugin_model(tiny_config(num_classes=3))


def _losses_and_grads(model, num_gts, shapes=((64, 64), (48, 64))):
    model.zero_grad()
    inputs, samples = make_batch(shapes, num_gts, num_classes=3)
    losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return losses, grads, inputs, samples


def test_batch_without_any_box(model):
    losses, grads, inputs, samples = _losses_and_grads(model, [0, 0])
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert float(losses['loss_bbox']) == 0 and float(losses['loss_iou']) == 0
    # every query's target is no-object: the loss is plain cross-entropy
    with torch.no_grad():
        logits, _ = model._forward(inputs, samples)
    expected = F.cross_entropy(logits[-1].reshape(-1, 4),
                               torch.full((20, ), 3))
    assert float(losses['loss_cls']) == pytest.approx(float(expected),
                                                      rel=1e-5)
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert float(losses['class_error']) == 100  # no matched query (official)


def test_image_without_boxes_beside_one_with_boxes(model):
    losses, grads, _, _ = _losses_and_grads(model, [0, 3])
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert float(losses['loss_bbox']) > 0
    assert all(torch.isfinite(g).all() for g in grads)


def test_more_boxes_than_queries(model):
    with pytest.warns(UserWarning, match='13 ground-truth boxes'):
        losses, grads, _, _ = _losses_and_grads(model, [13, 2])
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert all(torch.isfinite(g).all() for g in grads)
    assert 0 <= float(losses['class_error']) <= 100


def test_predictions_keep_at_most_the_queries(model):
    model.eval()
    inputs, samples = make_batch([(64, 64), (48, 64)], [1, 1], num_classes=3)
    model.bbox_head.test_cfg = dict(max_per_img=100)  # > 10 queries
    preds = model.predict(inputs, samples)
    assert [len(p.pred_instances) for p in preds] == [10, 10]
    model.bbox_head.test_cfg = dict(max_per_img=10, score_thr=0.5)
    preds = model.predict(inputs, samples)
    for p in preds:
        assert (p.pred_instances.scores >= 0.5).all()
    model.train()
