"""The panoptic post-processing on a constructed case, and its output scored
by mmdet's CocoPanopticMetric: a perfect map is PQ 100, an imperfect one the
PQ counted by hand."""
import json

import cv2
import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoPanopticMetric
from panopticapi.utils import id2rgb

from detr_plugin.models.panoptic_postprocess import (instance_masks,
                                                     masks_in_image,
                                                     panoptic_segmentation)

THING, THING_2, STUFF, STUFF_2, NO_OBJECT = range(5)  # 2 things, 2 stuff


def class_logits(*labels_and_logits):
    """``(Q, 5)``: per query a (label, logit) pair, 0 for the rest."""
    logits = torch.zeros(len(labels_and_logits), 5)
    for q, (label, value) in enumerate(labels_and_logits):
        logits[q, label] = value
    return logits


def constructed_case():
    """Seven queries over an 8 x 8 image (mask logits -10 outside their
    region):

    * q0, q1: confident things of one class, top-left / top-right 4 x 4;
    * q2, q3: confident stuff of one class, rows 4-5 / rows 6-7 cols 0-5,
      and q3 second best (logit 2) on rows 6-7 cols 6-7;
    * q4: confident stuff of another class on those 2 x 2 = 4 pixels only;
    * q5: a thing scoring 0.41 (< 0.85), best everywhere (logit 8);
    * q6: no-object, best everywhere (logit 9).
    """
    cls = class_logits((THING, 10.), (THING, 10.), (STUFF, 10.),
                       (STUFF, 10.), (STUFF_2, 10.), (THING_2, 1.),
                       (NO_OBJECT, 10.))
    masks = torch.full((7, 8, 8), -10.)
    masks[0, :4, :4] = masks[1, :4, 4:] = masks[2, 4:6] = 5.
    masks[3, 6:, :6] = 5.
    masks[3, 6:, 6:] = 2.
    masks[4, 6:, 6:] = 5.
    masks[5], masks[6] = 8., 9.
    return cls, masks


def test_constructed_case():
    cls, masks = constructed_case()
    assert cls.softmax(-1)[5].max() == pytest.approx(np.e / (np.e + 4))
    pan = panoptic_segmentation(cls, masks, (8, 8), num_things=2)
    expected = torch.full((8, 8), STUFF, dtype=torch.int32)
    expected[:4, :4] = THING + 1 * 1000  # two instances of one class
    expected[:4, 4:] = THING + 2 * 1000
    # q2 and q3 merged into one segment (instance 0); q4's 4 pixels are too
    # small, so they go to its runner-up q3; q5 (low score) and q6
    # (no-object) take nothing
    assert torch.equal(pan, expected)


def test_areas_count_at_the_output_size_and_nothing_kept_is_void():
    cls, masks = constructed_case()
    pan = panoptic_segmentation(cls, masks, (16, 16), num_things=2)
    # at 16 x 16 q4's segment has 16 pixels and stays
    assert (pan == STUFF_2).sum() == 16 and (pan[12:, 12:] == STUFF_2).all()
    assert (pan == THING + 1000).sum() == 64
    weak = class_logits(*[(THING, 1.)] * 7)
    assert (panoptic_segmentation(weak, masks, (8, 8), 2) == 4).all()


def test_masks_in_image_and_instance_masks():
    # stride 4 over a 16 x 24 padded input; the image is 12 x 16
    logits = torch.full((2, 4, 6), -5.)
    logits[0, :, :2] = 5.  # the left third: 8 input pixels wide
    image = masks_in_image(logits, (16, 24), (12, 16))
    assert image.shape == (2, 12, 16)
    binary = instance_masks(image, (24, 32))  # the original, 2x
    assert binary.shape == (2, 24, 32) and binary.dtype == torch.bool
    assert binary[0, :, :14].all() and not binary[0, :, 18:].any()
    assert not binary[1].any()
    assert instance_masks(image[:0], (24, 32)).shape == (0, 24, 32)


# ------------------------------------------- PQ with CocoPanopticMetric
CLASSES = ('square', 'sky', 'ground')  # labels 0, 1, 2; category ids 1-3


def ground_truth(tmp_path):
    """A 10 x 10 image: sky rows 0-4, ground rows 5-9 around squares A
    (rows 6-8, cols 1-3) and B (rows 6-8, cols 6-8); COCO panoptic files."""
    ids = np.zeros((10, 10), np.uint32)
    ids[:5], ids[5:] = 1, 2
    ids[6:9, 1:4], ids[6:9, 6:9] = 3, 4
    seg_dir = tmp_path / 'panoptic_val'
    seg_dir.mkdir()
    cv2.imwrite(str(seg_dir / '000001.png'), id2rgb(ids)[..., ::-1])
    segments = [dict(id=i, category_id=c, iscrowd=0, bbox=[0, 0, 10, 10],
                     area=int((ids == i).sum()))
                for i, c in ((1, 2), (2, 3), (3, 1), (4, 1))]
    ann_file = tmp_path / 'panoptic_val.json'
    ann_file.write_text(json.dumps(dict(
        images=[dict(id=1, file_name='000001.jpg', height=10, width=10)],
        annotations=[dict(image_id=1, file_name='000001.png',
                          segments_info=segments)],
        categories=[dict(id=i + 1, name=n, isthing=int(i == 0),
                         supercategory='x') for i, n in enumerate(CLASSES)])))
    return str(ann_file), str(seg_dir) + '/'


def panoptic_quality(tmp_path, pan):
    """mmdet's CocoPanopticMetric on one prediction in our format."""
    ann_file, seg_prefix = ground_truth(tmp_path)
    metric = CocoPanopticMetric(ann_file=ann_file, seg_prefix=seg_prefix,
                                nproc=1)
    metric.dataset_meta = dict(classes=CLASSES, thing_classes=CLASSES[:1],
                               stuff_classes=CLASSES[1:])
    metric.process({}, [dict(
        img_id=1, img_path='val/000001.jpg', ori_shape=(10, 10),
        pred_panoptic_seg=dict(sem_seg=torch.as_tensor(pan)[None]))])
    return metric.compute_metrics(metric.results)


def test_pq_of_a_perfect_prediction_is_100(tmp_path):
    pan = np.full((10, 10), 2)  # ground
    pan[:5] = 1  # sky
    pan[6:9, 1:4], pan[6:9, 6:9] = 0 + 1000, 0 + 2000  # squares A, B
    result = panoptic_quality(tmp_path, pan)
    assert result['PQ'] == result['SQ'] == result['RQ'] == 100
    assert result['PQ_th'] == result['PQ_st'] == 100


def test_pq_of_an_imperfect_prediction_equals_the_hand_count(tmp_path):
    # sky one row too low (rows 0-5); square A exact; B missed (ground)
    pan = np.full((10, 10), 2)
    pan[:6] = 1
    pan[6:9, 1:4] = 1000
    result = panoptic_quality(tmp_path, pan)
    # square: A matched (IoU 1), B a false negative: 1 / (1 + 0.5 * 1)
    # sky: IoU 50 / 60; ground: predicted 31 px, true 32 px, 22 in common:
    # IoU 22 / (31 + 32 - 22) = 22 / 41; each stuff class one true positive
    square, sky, ground = 1 / 1.5, 50 / 60, 22 / 41
    assert result['PQ'] == pytest.approx(100 * (square + sky + ground) / 3)
    assert result['PQ_th'] == pytest.approx(100 * square)
    assert result['SQ_th'] == pytest.approx(100.)
    assert result['RQ_th'] == pytest.approx(100 * 2 / 3)
    assert result['PQ_st'] == pytest.approx(100 * (sky + ground) / 2)
    assert result['RQ_st'] == pytest.approx(100.)
