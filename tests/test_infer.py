"""tools/infer.py and detr_plugin.apis.DETRInferencer: images in, drawn
boxes and one COCO results JSON out."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers.data import SHAPES_CLASSES as CLASSES
from helpers.detector import IMAGE_SHAPES, write_tiny_detector
from helpers.tools import load_tool
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from detr_plugin.apis import DETRInferencer, coco_results, list_images

infer = load_tool('infer')


@pytest.fixture(scope='module')
def detector_files(tmp_path_factory):
    return write_tiny_detector(tmp_path_factory.mktemp('tiny_detector'))


def test_list_images_file_folder_glob(detector_files):
    _, _, images = detector_files
    expected = [osp.join(images, 'a.jpg'), osp.join(images, 'b.png')]
    assert list_images(images) == expected  # sorted, notes.txt left out
    assert list_images(expected[1]) == [expected[1]]
    assert list_images(osp.join(images, '*.png')) == [expected[1]]
    with pytest.raises(FileNotFoundError, match='no image'):
        list_images(osp.join(images, '*.gif'))


def test_inferencer_boxes_are_in_original_pixels(detector_files):
    config, checkpoint, images = detector_files
    inferencer = DETRInferencer(config, checkpoint)
    assert tuple(inferencer.classes) == CLASSES
    for name, (h, w) in IMAGE_SHAPES.items():
        result = inferencer(osp.join(images, name))
        pred = result.pred_instances
        assert result.ori_shape == (h, w)
        assert result.img_shape != (h, w)  # the pipeline resized it
        assert pred.bboxes.shape == (10, 4)  # max_per_img = num_queries
        assert (pred.bboxes[:, 0::2] <= w + 1e-3).all()
        assert (pred.bboxes[:, 1::2] <= h + 1e-3).all()
        assert (pred.bboxes >= 0).all()
        assert torch.all(pred.scores[:-1] >= pred.scores[1:])
    # an array in (BGR, as cv2 reads it) gives what the file gives
    path = osp.join(images, 'b.png')
    from_file = inferencer(path).pred_instances
    from_array = inferencer(cv2.imread(path)).pred_instances
    assert torch.allclose(from_file.scores, from_array.scores)
    assert torch.allclose(from_file.bboxes, from_array.bboxes)


def test_infer_tool_writes_drawings_and_coco_json(detector_files, tmp_path):
    config, checkpoint, images = detector_files
    out_json = infer.main([config, checkpoint, images, '--out-dir',
                           str(tmp_path), '--score-thr', '0'])
    for name, (h, w) in IMAGE_SHAPES.items():
        drawn = cv2.imread(str(tmp_path / 'vis' / name))
        assert drawn is not None and drawn.shape == (h, w, 3)
        original = cv2.imread(osp.join(images, name))
        assert np.abs(drawn.astype(int) - original).max() > 50  # boxes
    with open(out_json) as f:
        entries = json.load(f)
    assert out_json == str(tmp_path / 'results.bbox.json')
    # --score-thr 0: every detection, 10 per image
    assert len(entries) == 10 * len(IMAGE_SHAPES)
    assert {e['image_id'] for e in entries} == {0, 1}
    for entry in entries:
        assert set(entry) == {'image_id', 'file_name', 'category_id',
                              'category_name', 'bbox', 'score'}
        # a custom class list: category ids count from 1 in class order
        assert CLASSES[entry['category_id'] - 1] == entry['category_name']
        h, w = IMAGE_SHAPES[entry['file_name']]
        x, y, bw, bh = entry['bbox']
        assert 0 <= x <= x + bw <= w + 0.01 and 0 <= y <= y + bh <= h + 0.01

    # a threshold keeps only what scores at least that (and is drawn)
    threshold = sorted(e['score'] for e in entries)[len(entries) // 2]
    out_json = infer.main([config, checkpoint,
                           osp.join(images, 'a.jpg'), '--out-dir',
                           str(tmp_path / 'thr'), '--score-thr',
                           str(threshold)])
    with open(out_json) as f:
        kept = json.load(f)
    expected = [e for e in entries
                if e['file_name'] == 'a.jpg' and e['score'] >= threshold]
    assert len(kept) == len(expected)
    assert all(e['score'] >= threshold for e in kept)


def test_coco_results_ids_and_boxes():
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 20., 40., 60.], [0., 0., 5., 5.]]),
        scores=torch.tensor([0.9, 0.1]), labels=torch.tensor([79, 0]))
    from detr_plugin.checkpoint_converters import (COCO_CATEGORY_IDS,
                                                   coco_class_names)
    coco = coco_class_names(80)
    entries = coco_results([sample], ['/x/000000397133.jpg'],
                           COCO_CATEGORY_IDS, coco, score_thr=0.5)
    # COCO's numeric file name is its image id; toothbrush is id 90
    assert entries == [dict(image_id=397133, file_name='000000397133.jpg',
                            category_id=90, category_name='toothbrush',
                            bbox=[10.0, 20.0, 30.0, 40.0], score=0.9)]


def test_drawings_of_images_sharing_a_name_do_not_overwrite():
    assert infer.drawing_names(['/d/x/a.jpg', '/d/y/b.jpg']) == \
        ['a.jpg', 'b.jpg']
    assert infer.drawing_names(['/d/x/a.jpg', '/d/y/a.jpg']) == \
        ['x_a.jpg', 'y_a.jpg']
