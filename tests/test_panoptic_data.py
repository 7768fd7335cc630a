"""The panoptic shapes set and AddStuffInstances, read through mmdet's
CocoPanopticDataset and LoadPanopticAnnotations."""
import json
import os

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.registry import init_default_scope

from detr_plugin.datasets import (SHAPES, STUFF,
                                  generate_panoptic_shapes_dataset)
from detr_plugin.datasets.transforms import AddStuffInstances


def read_all(root):
    return {os.path.relpath(os.path.join(d, n), root):
            open(os.path.join(d, n), 'rb').read()
            for d, _, names in os.walk(root) for n in names}


def test_same_seed_same_bytes(tmp_path):
    for name in 'ab':
        generate_panoptic_shapes_dataset(str(tmp_path / name), num_train=4,
                                         num_val=2, seed=1)
    a, b = read_all(tmp_path / 'a'), read_all(tmp_path / 'b')
    assert a == b and len(a) == 2 * (4 + 2) + 4  # jpg + png, four JSON


def test_the_set_through_mmdets_panoptic_dataset(tmp_path):
    info = generate_panoptic_shapes_dataset(str(tmp_path), num_train=8,
                                            num_val=2)
    assert info['classes'] == SHAPES + STUFF
    init_default_scope('detr_plugin')
    from detr_plugin.registry import DATASETS
    dataset = DATASETS.build(dict(
        type='CocoPanopticDataset', data_root=str(tmp_path),
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/'),
        metainfo=dict(classes=info['classes'], thing_classes=SHAPES,
                      stuff_classes=STUFF),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadPanopticAnnotations'),
                  dict(type='AddStuffInstances', num_things=3),
                  dict(type='PackDetInputs')]))
    with open(tmp_path / 'annotations' / 'panoptic_train.json') as f:
        panoptic = json.load(f)
    assert len(dataset) == 8
    for i, ann in enumerate(panoptic['annotations']):
        gt = dataset[i]['data_samples'].gt_instances
        segments = ann['segments_info']
        # every segment one instance: things first, then the stuff bands
        assert gt.labels.tolist() == [s['category_id'] - 1 for s in segments]
        masks = torch.as_tensor(gt.masks.masks)
        assert masks.sum((1, 2)).tolist() == [s['area'] for s in segments]
        assert masks.sum(0).max() == 1 and masks.sum() == 64 * 64
        for box, segment in zip(gt.bboxes.tensor.tolist(), segments):
            x, y, w, h = segment['bbox']
            assert box == [x, y, x + w, y + h]


def test_add_stuff_instances_keeps_things_and_skips_void():
    seg = np.full((4, 6), 255)  # VOID
    seg[:2] = 4  # stuff label 4 on the top rows
    seg[2:, 3:] = 3  # stuff label 3, bottom right
    seg[3, 0] = 1  # a thing's label: not stuff
    thing_mask = np.zeros((1, 4, 6), np.uint8)
    thing_mask[0, 3, 0] = 1
    results = AddStuffInstances(num_things=3)(dict(
        gt_seg_map=seg,
        gt_bboxes=HorizontalBoxes(torch.tensor([[0., 3., 1., 4.]])),
        gt_bboxes_labels=np.array([1]), gt_ignore_flags=np.array([False]),
        gt_masks=BitmapMasks(thing_mask, 4, 6)))
    assert results['gt_bboxes_labels'].tolist() == [1, 3, 4]
    assert results['gt_bboxes'].tensor.tolist() == [
        [0, 3, 1, 4], [3, 2, 6, 4], [0, 0, 6, 2]]
    assert results['gt_ignore_flags'].tolist() == [False] * 3
    masks = results['gt_masks'].masks
    assert masks.shape == (3, 4, 6)
    assert masks[1].sum() == 6 and masks[2].sum() == 12


@pytest.mark.parametrize('max_objects', [0, 3])
def test_every_image_has_stuff(tmp_path, max_objects):
    generate_panoptic_shapes_dataset(str(tmp_path), num_train=6, num_val=1,
                                     max_objects=max_objects)
    with open(tmp_path / 'annotations' / 'panoptic_train.json') as f:
        for ann in json.load(f)['annotations']:
            stuff = [s for s in ann['segments_info'] if s['category_id'] > 3]
            assert 1 <= len(stuff) <= 3
            assert max_objects or len(stuff) == len(ann['segments_info'])
