"""The synthetic shapes set: deterministic, valid COCO, with empty images."""
import json
import os
import os.path as osp
from collections import Counter

import pytest

from synthetic_shapes import SHAPES, generate_shapes_dataset

SMALL = dict(num_train=12, num_val=5, image_size=(64, 80), empty_fraction=0.25,
             max_objects=4)


def _files(root):
    """Relative path -> bytes of every file under ``root``."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    generate_shapes_dataset(str(tmp_path / 'a'), seed=3, **SMALL)
    generate_shapes_dataset(str(tmp_path / 'b'), seed=3, **SMALL)
    generate_shapes_dataset(str(tmp_path / 'c'), seed=4, **SMALL)
    a, b, c = (_files(tmp_path / x) for x in 'abc')
    assert len(a) == 12 + 5 + 2
    assert a == b
    assert a.keys() == c.keys() and a != c


@pytest.mark.parametrize('category_ids', [None, (3, 17, 90)])
def test_coco_json_is_valid(tmp_path, category_ids):
    info = generate_shapes_dataset(str(tmp_path), seed=0,
                                   category_ids=category_ids, **SMALL)
    ids = category_ids or (1, 2, 3)
    assert info['category_ids'] == ids and info['classes'] == SHAPES
    for split, num_images in (('train', 12), ('val', 5)):
        with open(info['ann_files'][split]) as f:
            coco = json.load(f)
        assert [c['id'] for c in coco['categories']] == list(ids)
        assert [c['name'] for c in coco['categories']] == list(SHAPES)
        images = {img['id']: img for img in coco['images']}
        assert len(images) == num_images
        for img in images.values():
            assert (img['height'], img['width']) == (64, 80)
            assert osp.isfile(tmp_path / split / img['file_name'])
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        for ann in coco['annotations']:
            x, y, w, h = ann['bbox']
            assert ann['image_id'] in images and ann['iscrowd'] == 0
            assert ann['category_id'] in ids
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= 80 and y + h <= 64
            assert 0 < ann['area'] <= w * h
        per_image = Counter(a['image_id'] for a in coco['annotations'])
        num_empty = num_images - len(per_image)
        assert num_empty == round(0.25 * num_images) >= 1
        assert max(per_image.values()) <= 4
    # with 12 train images of up to 4 objects every class shows up
    with open(info['ann_files']['train']) as f:
        counts = Counter(a['category_id']
                         for a in json.load(f)['annotations'])
    assert set(counts) == set(ids)


def test_mmdet_coco_dataset_reads_it_with_empty_images(tmp_path):
    """Labels are 0..K-1 in category order; empty images are kept."""
    from mmdet.datasets import CocoDataset
    info = generate_shapes_dataset(str(tmp_path), seed=0,
                                   category_ids=(90, 3, 17), **SMALL)
    dataset = CocoDataset(
        data_root=str(tmp_path), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        metainfo=dict(classes=info['classes']),
        filter_cfg=dict(filter_empty_gt=False), pipeline=[])
    assert len(dataset) == 12
    assert dataset.cat_ids == [90, 3, 17]
    with open(info['ann_files']['train']) as f:
        coco = json.load(f)
    want = Counter(a['category_id'] for a in coco['annotations'])
    got = Counter(dataset.cat_ids[inst['bbox_label']]
                  for i in range(len(dataset))
                  for inst in dataset.get_data_info(i)['instances'])
    assert got == want
    assert sum(not dataset.get_data_info(i)['instances']
               for i in range(len(dataset))) == 3


def test_the_generator_tool_writes_a_set_and_refuses_impossible_ones(
        tmp_path, capsys):
    """tools/generate_demo_data.py: a negative count wrote an empty split
    (exit 0), a share above 1 was taken, and --max-objects 0, an inverted
    --size-range or a zero --image-size failed inside numpy
    ("low >= high")."""
    from helpers.tools import load_tool
    tool = load_tool('generate_demo_data')
    out = tmp_path / 'shapes'
    tool.main(['--out', str(out), '--num-train', '2', '--num-val', '1',
               '--image-size', '32', '32'])
    assert len(list((out / 'train').iterdir())) == 2
    capsys.readouterr()
    for wrong, rule in (
            (['--num-train', '-3'], '--num-train takes 1 or more images'),
            (['--empty-fraction', '1.5'], '--empty-fraction takes a share'),
            (['--max-objects', '0'], '--max-objects takes 1 or more'),
            (['--size-range', '0.6', '0.3'], '0 < MIN <= MAX <= 1'),
            (['--image-size', '0', '64'], '--image-size takes 16 px'),
            (['--num-classes', '4'], '--num-classes takes 1 to 3')):
        with pytest.raises(SystemExit) as exit_info:
            tool.parse_args(['--out', str(out)] + wrong)
        assert exit_info.value.code == 2
        assert rule in capsys.readouterr().err
    assert tool.parse_args(['--panoptic', '--max-objects', '0']).max_objects \
        == 0
