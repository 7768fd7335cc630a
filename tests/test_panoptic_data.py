"""The panoptic shapes set and AddStuffInstances, read through mmdet's
CocoPanopticDataset and LoadPanopticAnnotations; the checks of
CheckedCocoPanopticDataset on it."""
import json
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
from helpers.configs import CONFIG_DIR
from helpers.tools import load_tool
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope

from synthetic_panoptic import STUFF, generate_panoptic_shapes_dataset
from synthetic_shapes import SHAPES

from detr_plugin.datasets import DatasetCheckError, check_dataset_config
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


@pytest.fixture(scope='module')
def panoptic_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes_panoptic'))
    generate_panoptic_shapes_dataset(root, num_train=8, num_val=4)
    return root


def demo_config(root, **metainfo):
    """The panoptic demo's stage-2 config (train and val) on ``root``."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'demo',
                                   'detr_r18_shapes-panoptic.py'))
    cfg.data_root = root
    for split in ('train', 'val'):
        dataset = cfg[f'{split}_dataloader'].dataset
        dataset.update(data_root=root, metainfo=dict(dataset.metainfo,
                                                     **metainfo))
    for metric in cfg.val_evaluator:
        metric.ann_file = osp.join(root, 'annotations',
                                   osp.basename(metric.ann_file))
        if 'seg_prefix' in metric:
            metric.seg_prefix = osp.join(root, 'annotations', 'panoptic_val')
    return cfg


def test_checked_panoptic_dataset_loads_what_mmdets_does(panoptic_set,
                                                         tmp_path):
    """The checks change nothing: the data list of mmdet's own panoptic
    dataset, which drops a segment of no pixel (area 0) as ours does, and
    the report counts every segment and the dropped one."""
    init_default_scope('detr_plugin')
    from detr_plugin.registry import DATASETS
    root = str(tmp_path / 'data')
    shutil.copytree(panoptic_set, root)
    path = osp.join(root, 'annotations', 'panoptic_train.json')
    with open(path) as f:
        data = json.load(f)
    data['annotations'][1]['segments_info'][0]['area'] = 0
    with open(path, 'w') as f:
        json.dump(data, f)
    cfg = demo_config(root).train_dataloader.dataset
    ours = DATASETS.build(dict(cfg, serialize_data=False))
    theirs = DATASETS.build(dict(cfg, type='CocoPanopticDataset',
                                 serialize_data=False))
    assert type(ours).__name__ == 'CheckedCocoPanopticDataset'
    # ours adds each image's listed segments with their areas (the check of
    # the PNGs reads them)
    assert [{k: v for k, v in d.items() if k != 'segment_areas'}
            for d in ours.data_list] == theirs.data_list and len(ours) == 8
    assert ours.data_list[0]['segment_areas'] == {
        s['id']: s['area'] for s in data['annotations'][0]['segments_info']}
    segments = [s['category_id'] - 1 for ann in data['annotations']
                for s in ann['segments_info']]
    dropped = data['annotations'][1]['segments_info'][0]
    segments.remove(dropped['category_id'] - 1)
    assert ours.report.boxes_per_class == {
        name: segments.count(i) for i, name in enumerate(SHAPES + STUFF)}
    assert ours.report.dropped == {'area <= 0 (no pixel in the segment PNG)':
                                   [(dropped['id'], 2)]}
    assert ours.report.thing_classes == SHAPES


def test_panoptic_configs_pass_the_check(panoptic_set):
    """Both splits of the demo pass, the val split's instance metric
    judged against the thing classes (its file has no stuff); thing classes
    other than the file's isthing flags say are a warning (only a PQ metric
    without ann_file reads them)."""
    (report, ) = check_dataset_config(
        demo_config(panoptic_set, thing_classes=SHAPES[:2]), 'train')
    assert report.errors == [] and len(report.warnings) == 1
    assert "metainfo.thing_classes is ('circle', 'square'), but the isthing " \
        'flags' in report.warnings[0]
    assert f'Fix: thing_classes={SHAPES}.' in report.warnings[0]
    cfg = demo_config(panoptic_set)
    for split in ('train', 'val'):
        (report, ) = check_dataset_config(cfg, split)
        assert report.errors == [] and report.num_boxes > 0
    assert '  classes: 6 (circle, square, triangle, sky, water, ground), of ' \
        "which things: 3 (the boxes are the segments')" in load_tool(
            'check_dataset').format_report(report).splitlines()


@pytest.mark.parametrize('case', [
    'typo', 'order', 'unnamed', 'stuff_first', 'no_pngs', 'num_things',
    'num_things_unset', 'pipeline_num_things', 'no_seg_map'])
def test_panoptic_data_faults_are_named_before_training(panoptic_set,
                                                        tmp_path, case):
    """What mmdet's panoptic dataset stops on with a bare KeyError (a class
    not in the file), trains on silently (another order, wrong thing /
    stuff split) or finds at its first iteration (a missing segment PNG)."""
    root = panoptic_set
    if case == 'stuff_first':  # the file lists its stuff first
        root = str(tmp_path / 'data')
        shutil.copytree(panoptic_set, root)
        path = osp.join(root, 'annotations', 'panoptic_train.json')
        with open(path) as f:
            data = json.load(f)
        data['categories'] = data['categories'][3:] + data['categories'][:3]
        with open(path, 'w') as f:
            json.dump(data, f)
    metainfo = dict(
        typo=dict(classes=SHAPES + ('sky', 'water', 'grund')),
        order=dict(classes=STUFF + SHAPES),
        unnamed=dict(classes=SHAPES + STUFF[:2], stuff_classes=STUFF[:2]),
        stuff_first=dict(classes=STUFF + SHAPES)).get(case, {})
    cfg = demo_config(root, **metainfo)
    if case == 'no_pngs':
        cfg.train_dataloader.dataset.data_prefix.seg = 'annotations/none/'
    if case == 'num_things':
        cfg.model.num_things_classes = 2
    if case == 'num_things_unset':  # DETRPanoptic's default: all things
        cfg.model.pop('num_things_classes')
    if case == 'pipeline_num_things':  # as COCO's 80 left in a base config
        cfg.train_dataloader.dataset.pipeline[2].num_things = 80
    if case == 'no_seg_map':
        cfg.train_dataloader.dataset.pipeline[1].with_seg = False
    expected = dict(
        typo=["'grund' missing", "'grund' -> 'ground'?", 'KeyError'],
        order=['not in the order', f'classes={SHAPES + STUFF}'],
        unnamed=["do not name the categories 'ground'", 'all 6 category'],
        stuff_first=['lists stuff categories before thing', 'isthing=1'],
        no_pngs=['8 segment maps', 'annotations/none/000001.png',
                 'train_dataloader.dataset.data_prefix.seg'],
        num_things=['model.num_things_classes is 2 but', '3 thing classes',
                    'set model.num_things_classes=3.'],
        num_things_unset=[
            'model.num_things_classes is 6 (unset: bbox_head.num_classes, '
            'every class a thing) but', 'set model.num_things_classes=3.'],
        pipeline_num_things=[
            'train_dataloader.dataset.pipeline[2].num_things is 80 but',
            '3 thing classes', 'num_things=3 there'],
        no_seg_map=['pipeline[2] (AddStuffInstances) reads the segment map',
                    "KeyError: 'gt_seg_map'", 'with_seg=True'])[case]
    with pytest.raises(DatasetCheckError) as info:
        check_dataset_config(cfg, 'train')
    for fragment in expected:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize('folder, expected', [
    ('panoptic_train', 'but val_dataloader.dataset reads the segment maps'),
    ('none', ': folder not found')], ids=['other_split', 'none'])
def test_panoptic_metric_reads_the_datasets_segment_maps(panoptic_set, folder,
                                                         expected):
    """The PQ metric's ground-truth PNGs: another split's (same names) would
    give a wrong PQ silently, a missing folder fail after all inference."""
    cfg = demo_config(panoptic_set)
    cfg.val_evaluator[0].seg_prefix = osp.join(panoptic_set, 'annotations',
                                               folder)
    with pytest.raises(DatasetCheckError, match=rf'val_evaluator\[0\]\.'
                       rf'seg_prefix.*{expected}'):
        check_dataset_config(cfg, 'val')


def test_segments_of_unknown_categories_are_named_with_their_image(
        panoptic_set, tmp_path):
    """Segment ids repeat across images (each PNG numbers its own): the
    warning names a segment with its image's id."""
    root = str(tmp_path / 'data')
    shutil.copytree(panoptic_set, root)
    path = osp.join(root, 'annotations', 'panoptic_train.json')
    with open(path) as f:
        data = json.load(f)
    ann = data['annotations'][1]
    ann['segments_info'][0]['category_id'] = 99
    with open(path, 'w') as f:
        json.dump(data, f)
    (report, ) = check_dataset_config(demo_config(root), 'train')
    segment = ann['segments_info'][0]['id']
    assert report.warnings == [
        f'1 annotations (ids {segment} in image {ann["image_id"]}) of {path} '
        'name a category_id that is not in "categories" (99): they are '
        'ignored. Fix: correct those ids or add the missing categories '
        "(invalid_boxes='error' in train_dataloader.dataset stops on them)."]


def break_segment_map(root, case):
    """Edit the panoptic set at ``root`` as ``case`` says; returns the image
    id whose PNG and JSON disagree."""
    import cv2
    png_dir = osp.join(root, 'annotations', 'panoptic_train')
    path = osp.join(root, 'annotations', 'panoptic_train.json')
    with open(path) as f:
        data = json.load(f)
    ann = data['annotations'][1]
    png = osp.join(png_dir, ann['file_name'])
    if case == 'unlisted':  # a segment left out of segments_info
        ann['segments_info'].pop(0)
    elif case == 'empty_info':  # a painted PNG, nothing listed
        ann['segments_info'] = []
    elif case == 'swapped':  # two images' PNGs exchanged
        other = osp.join(png_dir, data['annotations'][2]['file_name'])
        os.rename(png, png + '.tmp')
        os.rename(other, png)
        os.rename(png + '.tmp', other)
    elif case == 'lossy':  # colours off by one, as a lossy save leaves them
        image = cv2.imread(png)
        image[..., 0] = np.clip(image[..., 0].astype(int) + 1, 0, 255)
        cv2.imwrite(png, image)
    elif case == 'size':  # another size than the image's
        cv2.imwrite(png, cv2.resize(cv2.imread(png), (64, 32),
                                    interpolation=cv2.INTER_NEAREST))
    with open(path, 'w') as f:
        json.dump(data, f)
    return ann['image_id']


@pytest.mark.parametrize('case, expected', [
    ('unlisted', r'ids \d+ are not in segments_info \(\d+ px\)'),
    ('empty_info', r'ids [\d, ]+ are not in segments_info'),
    ('swapped', r'.*(are not in segments_info|have no pixel in it|px for '
                r'an area of)'),
    ('lossy', r'ids [\d, .]+ are not in segments_info.*segments [\d, .]+ of '
              r'segments_info have no pixel in it'),
    ('size', r'32 x 64 px \(h x w\), the image 64 x 64')])
def test_segment_maps_that_disagree_with_their_json_are_named(
        panoptic_set, tmp_path, case, expected):
    """Each PNG is read once and compared with the file: ids it holds that
    the file does not list, listed segments it lacks, areas, its size
    (issue 31: training gave those images no masks, silently; a wrong size
    failed at the first batch naming no file)."""
    root = str(tmp_path / 'data')
    shutil.copytree(panoptic_set, root)
    image_id = break_segment_map(root, case)
    with pytest.raises(DatasetCheckError) as info:
        check_dataset_config(demo_config(root), 'train')
    message = str(info.value)
    assert re.search(
        rf'segment maps disagree with the segments_info of \S+ \(image ids '
        rf'[\d, ]*{image_id}[\d, ]*\); the first: \S+\.png: {expected}',
        message), message
    assert 'lossless, one colour per segment id' in message
