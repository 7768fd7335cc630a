"""The batched assigner (all layers and images in one pass) gives exactly the
per-image scipy solutions, and mmdet's assigner's solutions."""
import warnings

import pytest
import torch
from mmdet.models.task_modules.assigners import \
    HungarianAssigner as MMDetAssigner
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from detr_plugin.models import BatchedTargets, HungarianAssigner
from mmdet_reference import random_boxes

NUM_CLASSES = 5
IMG_SHAPES = [(60, 80), (100, 50), (64, 64), (90, 120)]


def make_case(num_gts, num_layers=3, num_queries=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batch = len(num_gts)
    logits = torch.randn(num_layers, batch, num_queries, NUM_CLASSES + 1,
                         generator=gen)
    boxes = torch.rand(num_layers, batch, num_queries, 4, generator=gen)
    boxes[..., 2:] = boxes[..., 2:] * 0.5 + 0.05
    gts = [InstanceData(bboxes=random_boxes(n, *IMG_SHAPES[i], gen),
                        labels=torch.randint(0, NUM_CLASSES, (n, ),
                                             generator=gen))
           for i, n in enumerate(num_gts)]
    metas = [dict(img_shape=IMG_SHAPES[i]) for i in range(batch)]
    return logits, boxes, gts, metas


def reference_cost(logits, boxes, gt, img_shape):
    """DETR's cost for one layer of one image, written out directly."""
    h, w = img_shape
    factor = torch.tensor([w, h, w, h], dtype=torch.float32)
    cls = -logits.softmax(-1)[:, gt.labels]
    gt_norm = gt.bboxes / factor
    gt_cxcywh = torch.cat([(gt_norm[:, :2] + gt_norm[:, 2:]) / 2,
                           gt_norm[:, 2:] - gt_norm[:, :2]], dim=1)
    l1 = (boxes[:, None, :] - gt_cxcywh[None]).abs().sum(-1)
    giou = bbox_overlaps(bbox_cxcywh_to_xyxy(boxes) * factor, gt.bboxes,
                         mode='giou')
    return (cls + 5 * l1 - 2 * giou).numpy()


def as_pairs(matches):
    return {tuple(p) for p in torch.stack(
        [matches.layer_idx, matches.batch_idx, matches.query_idx,
         matches.gt_idx], dim=1).tolist()}


@pytest.mark.parametrize('mode', ['batched', 'thread-pool', 'chunked'])
@pytest.mark.parametrize('num_gts', [[0, 3, 12, 7], [1, 0, 0, 5], [2]])
def test_batched_equals_per_image_scipy(num_gts, mode, monkeypatch):
    """Also with the thread pool that solves large matrices and with the
    costs computed in chunks of images (both forced here on small ones)."""
    from detr_plugin.models import hungarian_assigner
    threaded = mode == 'thread-pool'
    if mode == 'chunked':  # one image per chunk
        monkeypatch.setattr(hungarian_assigner, 'COST_CHUNK_ENTRIES', 1)
    if threaded:
        monkeypatch.setattr(hungarian_assigner, 'PARALLEL_MIN_ENTRIES', 0)
        monkeypatch.setattr(hungarian_assigner.torch, 'get_num_threads',
                            lambda: 2)
        pool = hungarian_assigner.ThreadPoolExecutor
        used = []
        monkeypatch.setattr(hungarian_assigner, 'ThreadPoolExecutor',
                            lambda n: used.append(n) or pool(n))
    logits, boxes, gts, metas = make_case(num_gts)
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    matches = HungarianAssigner().assign(logits, boxes, targets)
    expected = set()
    for layer in range(logits.shape[0]):
        for img, gt in enumerate(gts):
            if len(gt) == 0:
                continue
            rows, cols = linear_sum_assignment(reference_cost(
                logits[layer, img], boxes[layer, img], gt, metas[img]
                ['img_shape']))
            expected |= {(layer, img, r, c) for r, c in zip(rows, cols)}
    assert as_pairs(matches) == expected
    assert matches.num_per_layer == sum(min(12, n) for n in num_gts)
    # sorted by layer, as the head's loss relies on
    assert torch.all(matches.layer_idx[1:] >= matches.layer_idx[:-1])
    if threaded:
        assert used == [2]


def test_equals_mmdet_assigner():
    num_gts = [4, 0, 9, 2]
    logits, boxes, gts, metas = make_case(num_gts, seed=5)
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    matches = HungarianAssigner().assign(logits, boxes, targets)
    with DefaultScope.overwrite_default_scope('mmdet'):
        theirs = MMDetAssigner(match_costs=[
            dict(type='ClassificationCost', weight=1.),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])
    expected = set()
    for layer in range(3):
        for img, gt in enumerate(gts):
            h, w = metas[img]['img_shape']
            factor = torch.tensor([w, h, w, h], dtype=torch.float32)
            pred = InstanceData(
                scores=logits[layer, img],
                bboxes=bbox_cxcywh_to_xyxy(boxes[layer, img]) * factor)
            result = theirs.assign(pred, gt, img_meta=metas[img])
            for query in torch.nonzero(result.gt_inds > 0).flatten().tolist():
                expected.add((layer, img, query,
                              int(result.gt_inds[query]) - 1))
    assert as_pairs(matches) == expected


def test_no_boxes_anywhere_gives_no_matches():
    logits, boxes, gts, metas = make_case([0, 0])
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    matches = HungarianAssigner().assign(logits, boxes, targets)
    assert matches.num_per_layer == 0 and matches.layer_idx.numel() == 0


def test_more_boxes_than_queries_matches_every_query_and_warns_once():
    logits, boxes, gts, metas = make_case([15, 3], num_queries=12)
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    assigner = HungarianAssigner()
    with pytest.warns(UserWarning, match='15 ground-truth boxes but .* 12'):
        matches = assigner.assign(logits, boxes, targets)
    pairs = as_pairs(matches)
    for layer in range(3):
        image0 = [p for p in pairs if p[0] == layer and p[1] == 0]
        assert sorted(p[2] for p in image0) == list(range(12))  # all queries
        assert len({p[3] for p in image0}) == 12  # distinct boxes
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a second call does not warn again
        assigner.assign(logits, boxes, targets)


def test_nan_prediction_names_the_image():
    """A NaN box outside fp16 autocast is divergence: the matcher stops,
    naming the image by the metainfo it was given (path and id) and the
    decoder layer (issue 14, item 10). Under fp16 autocast it is an
    overflow that the loss scaler will skip: the pairs are matched on
    finite stand-ins (issue 27)."""
    logits, boxes, gts, metas = make_case([2, 2])
    boxes[1, 1, 3, 0] = float('nan')
    for img_id, meta in zip((11, 12), metas):
        meta.update(img_id=img_id, img_path=f'x/{img_id}.jpg')
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    with pytest.raises(FloatingPointError, match=(
            r'for image x/12\.jpg \(img_id 12\) \(1 of the batch\) at '
            r'decoder layer 1: .* Fix: lower the learning rate')):
        HungarianAssigner().assign(logits, boxes, targets)
    with torch.autocast('cpu', dtype=torch.float16):
        matches = HungarianAssigner().assign(logits, boxes, targets)
    assert matches.num_per_layer == 4


def test_focal_cost_equals_mmdets_per_image():
    """The successors' sigmoid focal cost, batched over images and layers,
    equals mmdet's FocalLossCost of each image."""
    from mmdet.models.task_modules.assigners import \
        FocalLossCost as MMDetFocalLossCost

    from detr_plugin.models import FocalLossCost
    logits, boxes, gts, metas = make_case([0, 3, 12, 7], num_queries=9)
    logits = logits[..., :NUM_CLASSES]  # sigmoid: no no-object column
    targets = BatchedTargets.from_instances(gts, metas, torch.device('cpu'))
    ours = FocalLossCost(weight=2., eps=1e-8)
    theirs = MMDetFocalLossCost(weight=2., eps=1e-8)
    cost = ours(logits.transpose(0, 1).flatten(1, 2), None, targets)
    for img, gt in enumerate(gts):
        for layer in range(logits.size(0)):
            expected = theirs(InstanceData(scores=logits[layer, img]), gt)
            got = cost[img, layer * 9:(layer + 1) * 9, :len(gt)]
            assert torch.allclose(got, expected, atol=1e-6)
