"""Bad data is stopped before the first iteration, with a message that names
the config key, the file, the ids and the fix -- or, for unusable boxes,
dropped from what the model sees with one warning.

Every case is a broken copy of a 6-image synthetic shapes set (64 x 64,
3 classes); the checks are :func:`check_dataset_config` (what
``tools/train.py`` runs) and the dataset itself (``CheckedCocoDataset``,
the base config's dataset type).
"""
import json
import os
import os.path as osp
import re
import shutil
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from helpers.configs import (DETR_R50, data_overrides, tiny_config,
                             tiny_train_config)
from helpers.data import (SHAPES_CLASSES, ann_path, broken_copy,
                          edit_annotations, set_image_size, truncate_file,
                          write_rotated_jpeg)
from mmengine.registry import DefaultScope

import detr_plugin  # noqa: F401
from detr_plugin.registry import DATASETS
from detr_plugin.datasets import (CheckedCocoDataset, CheckedLoadImageFromFile,
                                  CorruptImageError, DatasetCheckError,
                                  ImageSizeError, check_dataset_config)
from detr_plugin.datasets.transforms.checked_loading import decode_image
from mmdet_reference import build_plugin_model

TRAIN_PIPELINE = [dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True),
                  dict(type='PackDetInputs')]


def config_for(root, classes=SHAPES_CLASSES, num_classes=None, **dataset):
    """The tiny DETR config training on ``root``."""
    cfg = tiny_config(num_classes=num_classes or len(classes))
    cfg.merge_from_dict(data_overrides(root, classes, **dataset))
    return cfg


def check_fails(cfg, *fragments):
    """``check_dataset_config`` raises one error holding every fragment."""
    with pytest.raises(DatasetCheckError) as info:
        check_dataset_config(cfg, 'train')
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f'{fragment!r} not in:\n{message}'
    return message


def build_dataset(root, classes=SHAPES_CLASSES, **kwargs):
    """The training dataset as the runner builds it."""
    cls = DATASETS.get('CheckedCocoDataset')
    args = dict(data_root=root + '/',
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img='train/'),
                metainfo=dict(classes=tuple(classes)),
                filter_cfg=dict(filter_empty_gt=False),
                pipeline=TRAIN_PIPELINE)
    args.update(kwargs)
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        return cls(**args)


def test_base_config_uses_the_checked_dataset():
    """Every dataset of the base recipe is a CheckedCocoDataset."""
    cfg = Config.fromfile(DETR_R50)
    for split in ('train', 'val', 'test'):
        cls = DATASETS.get(cfg[f'{split}_dataloader'].dataset.type)
        assert issubclass(cls, CheckedCocoDataset), split


def test_checked_dataset_loads_images_with_the_checked_loader(shapes):
    for action, skip in (('error', False), ('skip', True)):
        dataset = build_dataset(shapes, corrupt_images=action)
        assert isinstance(dataset, CheckedCocoDataset)
        loader = dataset.pipeline.transforms[0]
        assert type(loader) is CheckedLoadImageFromFile
        assert loader.skip_corrupt is skip


def test_clean_set_passes_with_its_counts(shapes):
    with open(ann_path(shapes)) as f:
        coco = json.load(f)
    (report, ) = check_dataset_config(config_for(shapes), 'train')
    assert report.errors == [] and report.warnings == []
    assert report.num_images == 6 == report.num_train_images
    assert report.num_boxes == len(coco['annotations'])
    assert report.num_dropped == 0
    assert report.files_checked == 'exist, header and end read'


def test_a_child_config_setting_only_data_root_is_warned(shapes, tmp_path):
    """A child config that assigns ``data_root`` alone keeps its base's
    datasets on the base's files (configs/README.md): the check says so;
    a root given through --cfg-options or restated datasets is not
    warned."""
    config_for(shapes).dump(str(tmp_path / 'base.py'))
    child = tmp_path / 'child.py'
    child.write_text("_base_ = './base.py'\ndata_root = 'data/mine/'\n")
    (report, ) = check_dataset_config(Config.fromfile(str(child)), 'train')
    (warning, ) = report.warnings
    assert warning.startswith(
        "data_root is 'data/mine/', but train_dataloader.dataset reads from "
        f"['{shapes}/']: setting data_root in a child config does not "
        're-point the datasets')
    cfg = Config.fromfile(str(tmp_path / 'base.py'))
    cfg.merge_from_dict(dict(data_root='data/mine/'))  # as --cfg-options
    (report, ) = check_dataset_config(cfg, 'train')
    assert report.warnings == []
    child.write_text(
        "_base_ = './base.py'\n"
        f"train_dataloader = dict(dataset=dict(data_root={shapes + '/'!r}))\n"
        f"data_root = {shapes + '/'!r}\n")
    (report, ) = check_dataset_config(Config.fromfile(str(child)), 'train')
    assert report.warnings == []


# ---------------------------------------------------------------- classes
def test_class_name_not_in_file(shapes):
    check_fails(config_for(shapes, ('Circle', 'square', 'triangle')),
                'train_dataloader.dataset.metainfo.classes',
                "1 of 3 classes are not a category name",
                ann_path(shapes), "'Circle' -> 'circle'?",
                "categories are 'circle', 'square', 'triangle'",
                'Fix: set metainfo=dict(classes=(...))')


def test_no_class_in_file(shapes):
    """mmdet's default: the 80 COCO classes on a custom set -> no box."""
    cfg = tiny_config(num_classes=80)
    cfg.merge_from_dict(data_overrides(shapes))
    del cfg.train_dataloader.dataset.metainfo
    check_fails(cfg, 'none of the classes is a category name',
                'load no box at all (AP 0)')
    with pytest.raises(DatasetCheckError, match='none of the classes'):
        build_dataset(shapes, classes=('person', 'car'))


def test_classes_out_of_file_order(shapes):
    check_fails(config_for(shapes, ('square', 'circle', 'triangle')),
                'not in the order of the categories',
                "Fix: classes=('circle', 'square', 'triangle')")
    with pytest.raises(DatasetCheckError, match='not in the order'):
        build_dataset(shapes, classes=('square', 'circle', 'triangle'))


def test_num_classes_differs_from_classes(shapes):
    check_fails(config_for(shapes, num_classes=80),
                'model.bbox_head.num_classes is 80 but '
                'train_dataloader.dataset has 3 classes',
                'Fix: set model.bbox_head.num_classes=3')


# ------------------------------------------------------ annotation files
def _write(text):
    def edit(root):
        with open(ann_path(root), 'w') as f:
            f.write(text)
    return edit


def _edit_json(change):
    def edit(root):
        with open(ann_path(root)) as f:
            data = json.load(f)
        change(data)
        with open(ann_path(root), 'w') as f:
            json.dump(data, f)
    return edit


def _dup_ann_id(data):
    data['annotations'][1]['id'] = data['annotations'][0]['id']


BAD_FILES = {
    'missing': (lambda root: os.remove(ann_path(root)),
                ['annotation file not found', 'data_root + ann_file']),
    'not JSON': (_write('{"images": [{"id": 1,'),
                 ['is not valid JSON', 'regenerate']),
    'a JSON list': (_write('[]'), ['holds a JSON list, not a COCO dict']),
    'no categories': (_edit_json(lambda d: d.pop('categories')),
                      ["not COCO-shaped: no list 'categories'"]),
    'image without file_name': (
        _edit_json(lambda d: d['images'][2].pop('file_name')),
        ['entries of "images" (at positions 2) lack one of',
         "'file_name'"]),
    'duplicate annotation ids': (_edit_json(_dup_ann_id),
                                 ['duplicate annotation ids 1']),
}


@pytest.mark.parametrize('case', list(BAD_FILES))
def test_bad_annotation_file(shapes, tmp_path, case):
    edit, fragments = BAD_FILES[case]
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    edit(root)
    check_fails(config_for(root), 'train_dataloader.dataset.ann_file',
                ann_path(root), *fragments)


# ---------------------------------------------------------------- images
def test_image_folder_missing(shapes, tmp_path):
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    shutil.rmtree(osp.join(root, 'train'))
    check_fails(config_for(root),
                'train_dataloader.dataset.data_prefix.img: image folder '
                'not found', osp.join(root, 'train'))


def test_deleted_image(shapes, tmp_path):
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    os.remove(osp.join(root, 'train', '000002.jpg'))
    check_fails(config_for(root), '1 of the image files listed in',
                'are missing (image ids 2;',
                osp.join(root, 'train', '000002.jpg'),
                'Fix: check data_prefix.img')


# -------------------------------- images that disagree with their annotation
def test_exif_rotated_image_is_named_by_the_check_and_the_loader(shapes,
                                                                 tmp_path):
    """A JPEG stored 48 x 64 with EXIF orientation 6 decodes to 64 x 48 in
    mmcv, while its annotation (size and boxes) is in stored pixels: the
    check (from the header) and the loader name the image, both sizes and
    the switch that makes mmcv keep the stored pixels (issue 14, item 1)."""
    root = broken_copy(shapes, str(tmp_path / 'exif'),
                       lambda data: set_image_size(data, 2, 48, 64))
    path = osp.join(root, 'train', '000002.jpg')
    write_rotated_jpeg(path, 48, 64, orientation=6)
    fragments = (f'image {path} (img_id 2) decodes to 64 x 48 (h x w) but '
                 'the annotation file gives 48 x 64', 'EXIF orientation 6',
                 "color_type='color_ignore_orientation'")
    check_fails(config_for(root), 'train_dataloader.dataset: 1 images are '
                'not the size the annotation file gives', *fragments)
    results = dict(img_path=path, img_id=2, height=48, width=64)
    with pytest.raises(ImageSizeError) as info:
        CheckedLoadImageFromFile()(dict(results))
    assert all(f in str(info.value) for f in fragments), str(info.value)
    # with the switch named, the image is read as stored and passes
    ignoring = [dict(TRAIN_PIPELINE[0], color_type='color_ignore_orientation'),
                *TRAIN_PIPELINE[1:]]
    (report, ) = check_dataset_config(
        config_for(root, pipeline=ignoring), 'train')
    assert report.errors == [] and report.size_mismatch == []
    loaded = CheckedLoadImageFromFile(
        color_type='color_ignore_orientation')(dict(results))
    assert loaded['img'].shape == (48, 64, 3)
    # annotated as viewers show it (the size mmcv decodes to): fine too
    edit_annotations(root, lambda data: set_image_size(data, 2, 64, 48))
    (report, ) = check_dataset_config(config_for(root), 'train')
    assert report.errors == [] and report.size_mismatch == []


def test_annotated_size_other_than_the_image(shapes, tmp_path):
    """A width/height in the file smaller than the 64 x 64 image would clamp
    its boxes to a sliver: named by default; ``size_mismatch='rescale'``
    resizes the image to the annotated size (issue 14, item 1)."""
    root = broken_copy(shapes, str(tmp_path / 'sized'),
                       lambda data: set_image_size(data, 3, 32, 48))
    path = osp.join(root, 'train', '000003.jpg')
    fragments = (f'image {path} (img_id 3) decodes to 64 x 64 (h x w) but '
                 'the annotation file gives 32 x 48',
                 'write the real width and height into the annotation file',
                 "size_mismatch='rescale' in train_dataloader.dataset")
    check_fails(config_for(root), *fragments)
    with pytest.raises(ImageSizeError, match='decodes to 64 x 64'):
        CheckedLoadImageFromFile()(dict(img_path=path, img_id=3, height=32,
                                        width=48))
    (report, ) = check_dataset_config(
        config_for(root, size_mismatch='rescale'), 'train')
    assert report.errors == [] and report.size_mismatch == [
        (3, (32, 48), (64, 64))]
    assert "(size_mismatch='rescale': they are resized)" in \
        report.warnings[0]
    item = build_dataset(root, size_mismatch='rescale')[2]
    assert item['data_samples'].img_id == 3
    assert tuple(item['inputs'].shape) == (3, 32, 48)
    boxes = item['data_samples'].gt_instances.bboxes.tensor
    assert len(boxes) and (boxes[:, 2] <= 48).all() and \
        (boxes[:, 3] <= 32).all()


def test_corrupt_val_image_is_named_with_its_split(shapes, tmp_path):
    """The check before training reads every split's image headers and
    ends: a truncated val image is named with the val key, and the fix
    offers no skipping (evaluation cannot skip); so does the loader's
    (issue 14, item 8)."""
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    path = osp.join(root, 'val', '000001.jpg')
    truncate_file(path)
    cfg = config_for(root)
    cfg.val_dataloader, cfg.val_evaluator = cfg.test_dataloader, \
        cfg.test_evaluator
    cfg.merge_from_dict(data_overrides(root, splits=('val', )))
    with pytest.raises(DatasetCheckError) as info:
        check_dataset_config(cfg, 'val')
    message = str(info.value)
    assert 'val_dataloader.dataset: 1 image files are unreadable (image ' \
        f'ids 1; corrupt image file {path}' in message
    assert 'val_dataloader.dataset cannot skip images' in message
    assert 'corrupt_images' not in message
    dataset = build_dataset(  # built by hand: no config key, test mode
        root, test_mode=True, ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'))
    with pytest.raises(CorruptImageError, match=r'\(img_id 1\)\. Replace or '
                       r'delete .*\(a test-mode dataset cannot skip'):
        dataset[0]


# ----------------------------------------------------------------- boxes
BROKEN_BOXES = {  # annotation id -> bbox
    1: [10, 10, 0, 12],  # zero width
    2: [float('nan'), 5, 10, 10],
    3: [100, 100, 10, 10],  # wholly outside the 64 x 64 image
    4: [5, 5, float('inf'), 10],
    5: [20, 20, 10, -3],  # negative height
}
STICKING_OUT = 6  # annotation id whose box is moved half out of its image


def break_boxes(data):
    for ann in data['annotations']:
        if ann['id'] in BROKEN_BOXES:
            ann['bbox'] = BROKEN_BOXES[ann['id']]
        if ann['id'] == STICKING_OUT:
            ann['bbox'] = [50., 40., 30., 20.]  # x to 80 > 64


@pytest.fixture(scope='module')
def broken_boxes(shapes, tmp_path_factory):
    return broken_copy(shapes, str(tmp_path_factory.mktemp('boxes') / 's'),
                       break_boxes)


def test_invalid_boxes_are_counted_not_fatal(broken_boxes):
    (report, ) = check_dataset_config(config_for(broken_boxes), 'train')
    assert report.errors == []
    assert report.num_dropped == 5
    reasons = {k: [a for a, _ in v]
               for k, v in report.dropped.items()}
    assert reasons == {'width or height <= 0': [1, 5],
                       'NaN or infinite coordinate': [2, 4],
                       'wholly outside its image': [3]}
    assert report.num_clamped == 1


def test_invalid_boxes_dropped_from_training_data_with_one_warning(
        broken_boxes):
    with open(ann_path(broken_boxes)) as f:
        coco = json.load(f)
    with mock.patch('detr_plugin.datasets.checked_coco.print_log') as log:
        dataset = build_dataset(broken_boxes)
    warnings = [c for c in log.call_args_list if c.kwargs.get('level') == 30]
    assert len(warnings) == 1
    text = warnings[0].args[0]
    assert re.search(r'dropped 5 of \d+ boxes in .*instances_train\.json',
                     text), text
    assert '2 width or height <= 0 (annotation ids 1, 5' in text
    assert '2 NaN or infinite coordinate (annotation ids 2, 4' in text
    assert "invalid_boxes='error'" in text
    kept = sum(len(dataset.get_data_info(i)['instances'])
               for i in range(len(dataset)))
    assert kept == len(coco['annotations']) - 5

    # what the model sees: finite, positive boxes inside the image ...
    samples = [dataset[i] for i in range(len(dataset))]
    for sample in samples:
        boxes = sample['data_samples'].gt_instances.bboxes.tensor
        h, w = sample['data_samples'].img_shape
        assert torch.isfinite(boxes).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes >= 0).all() and (boxes[:, 2] <= w).all() and \
            (boxes[:, 3] <= h).all()
    # ... and DETR's losses on them are finite (no GIoU assertion, no NaN)
    model = build_plugin_model(tiny_config(num_classes=3))
    data = model.data_preprocessor(pseudo_collate(samples), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_invalid_boxes_error_when_strict(broken_boxes):
    check_fails(config_for(broken_boxes, invalid_boxes='error'),
                '5 of', 'boxes in', 'are unusable',
                'annotation ids 1, 5', "set invalid_boxes='drop' in "
                'train_dataloader.dataset')
    with pytest.raises(DatasetCheckError, match='annotation ids 2, 4'):
        build_dataset(broken_boxes, invalid_boxes='error')


def _unknown_categories(data):
    data['annotations'][0]['category_id'] = 7
    data['annotations'][2]['category_id'] = 9


def test_annotations_of_unknown_categories_warn_or_stop(shapes, tmp_path):
    """mmdet ignores annotations whose category_id is not in "categories";
    a warning names them (check_dataset said 'OK: 0 warning(s)'), the
    strict setting stops on them (issue 14, item 4)."""
    root = broken_copy(shapes, str(tmp_path / 'cats'), _unknown_categories)
    with open(ann_path(root)) as f:
        anns = json.load(f)['annotations']
    named = (f'2 annotations (ids {anns[0]["id"]}, {anns[2]["id"]}) of '
             f'{ann_path(root)} name a category_id that is not in '
             '"categories" (7, 9): they are ignored. Fix: correct those '
             'ids or add the missing categories')
    (report, ) = check_dataset_config(config_for(root), 'train')
    assert report.errors == [] and report.warnings == [
        f"{named} (invalid_boxes='error' in train_dataloader.dataset stops "
        'on them).']
    check_fails(config_for(root, invalid_boxes='error'), named)


def test_no_training_image_after_filter(shapes):
    check_fails(config_for(shapes, filter_cfg=dict(min_size=100)),
                'no training image is left after filter_cfg',
                "'min_size': 100", '(of 6)')
    with pytest.raises(DatasetCheckError, match='no training image'):
        build_dataset(shapes, filter_cfg=dict(min_size=100))


def test_no_usable_box(shapes, tmp_path):
    def nan_boxes(data):
        for ann in data['annotations']:
            ann['bbox'] = [float('nan')] * 4
    root = broken_copy(shapes, str(tmp_path / 'broken'), nan_boxes)
    check_fails(config_for(root), 'has no usable box of the classes',
                'learn only "no object"')


# ---------------------------------------------------- corrupt image files
def _jpeg_with_thumbnail(img):
    """A JPEG with an APP1 segment holding a complete small JPEG (as an
    EXIF thumbnail does): its end-of-image marker must not count."""
    main = cv2.imencode('.jpg', img)[1].tobytes()
    thumb = cv2.imencode('.jpg', img[::8, ::8])[1].tobytes()
    app1 = b'\xff\xe1' + (len(thumb) + 2).to_bytes(2, 'big') + thumb
    return main[:2] + app1 + main[2:]


def test_decode_image_finds_truncation():
    """OpenCV >= 5 decodes a truncated JPEG or PNG to None (OpenCV 4 did not:
    grey rows); an EXIF thumbnail's end marker and trailing bytes are fine."""
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (16, 16, 3), np.uint8), (96, 64))
    files = {
        'baseline': cv2.imencode('.jpg', img)[1].tobytes(),
        'progressive': cv2.imencode(
            '.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
        'thumbnail': _jpeg_with_thumbnail(img),
        'png': cv2.imencode('.png', img)[1].tobytes(),
    }
    for name, data in files.items():
        for whole in (data, data + b'trailing bytes'):
            assert decode_image(whole, name).shape == (64, 96, 3), name
        for keep in (0.5, 0.95):
            with pytest.raises(CorruptImageError, match=f'{name}: .*trunc'):
                decode_image(data[:int(len(data) * keep)], name)
        with pytest.raises(CorruptImageError, match=name):
            decode_image(data[:-2], name)
    with pytest.raises(CorruptImageError, match='x.jpg: the file is empty'):
        decode_image(b'', 'x.jpg')


def test_load_image_names_or_skips_a_truncated_file(shapes, tmp_path):
    root = broken_copy(shapes, str(tmp_path / 'broken'))
    path = osp.join(root, 'train', '000004.jpg')
    truncate_file(path)
    results = dict(img_path=path, img_id=4)
    with pytest.raises(CorruptImageError) as info:
        CheckedLoadImageFromFile()(dict(results))
    message = str(info.value)
    assert f'corrupt image file {path}' in message
    assert '(img_id 4)' in message
    assert "corrupt_images='skip' on the CheckedCocoDataset" in message
    loader = CheckedLoadImageFromFile(skip_corrupt=True)
    assert loader(dict(results)) is None
    assert loader(dict(results)) is None
    assert loader.num_skipped == 2
    good = CheckedLoadImageFromFile()(dict(
        img_path=osp.join(root, 'train', '000001.jpg'), img_id=1))
    assert good['img'].shape == (64, 64, 3) == good['ori_shape'] + (3, )
    with pytest.raises(FileNotFoundError, match='000099.jpg'):
        CheckedLoadImageFromFile()(dict(
            img_path=osp.join(root, 'train', '000099.jpg'), img_id=99))


def test_balloon_images_are_not_flagged(balloon_root):
    for split in ('train', 'val'):
        folder = osp.join(balloon_root, split)
        for name in sorted(os.listdir(folder)):
            if name.endswith('.jpg'):
                with open(osp.join(folder, name), 'rb') as f:
                    decode_image(f.read(), name)  # raises if corrupt


# ------------------------------------------- what the checks leave alone
def test_image_list_without_annotations_passes_in_test_mode(shapes, tmp_path):
    """COCO test-dev's image_info_test-dev2017.json has no "annotations":
    fine for a test-mode set (a format_only submission), not for training.
    """
    root = broken_copy(shapes, str(tmp_path / 'testdev'),
                       edit_json=lambda d: d.pop('annotations'))
    cfg = config_for(root)
    check_fails(cfg, "not COCO-shaped: no list 'annotations'")
    cfg.test_dataloader.dataset.update(
        data_overrides(root)['train_dataloader']['dataset'],
        test_mode=True)
    cfg.test_evaluator = dict(type='CocoMetric', format_only=True,
                              ann_file=ann_path(root), metric='bbox',
                              outfile_prefix=str(tmp_path / 'submit'))
    (report, ) = check_dataset_config(cfg, 'test')
    assert report.errors == [] and report.num_boxes == 0


@pytest.mark.parametrize('dataset', [
    dict(type='LVISV1Dataset'), dict(type='Objects365V2Dataset'),
    dict(backend_args=dict(backend='petrel'))
], ids=['LVIS', 'Objects365', 'backend_args'])
def test_other_layouts_and_storage_are_skipped(shapes, tmp_path, dataset):
    """Datasets that parse their own layout, or read through a file
    backend, are not judged by the COCO-file checks (which would refuse
    runs mmdet can do); the report says why."""
    cfg = config_for(str(tmp_path / 'not_here'))
    cfg.train_dataloader.dataset.update(dataset)
    (report, ) = check_dataset_config(cfg, 'train')
    assert report.skipped and report.errors == []


def test_training_reads_each_annotation_file_once(shapes, tmp_path):
    """Issue 30: the check built every dataset a second time and handed its
    annotations to the runner's through a module-level cache. Now the
    runner's own dataset loads (and checks) its file, DataCheckHook checks
    that dataset before the first iteration: one read of the file."""
    from mmengine.runner import Runner

    from detr_plugin.datasets import checked_coco
    cfg = tiny_train_config(shapes, max_iters=1, work_dir=str(tmp_path))
    cfg.default_hooks.data_check = dict(type='DataCheckHook')
    with mock.patch.object(checked_coco, 'load_coco_json',
                           wraps=checked_coco.load_coco_json) as reads, \
            mock.patch('detr_plugin.engine.hooks.data_check.'
                       'check_dataset_config',
                       wraps=check_dataset_config) as checks:
        Runner.from_cfg(cfg).train()
    assert reads.call_count == 1
    (call, ) = checks.call_args_list
    assert call.args[1] == 'train' and \
        type(call.kwargs['dataset']).__name__ == 'CheckedCocoDataset'


def test_the_filter_is_logged(shapes, tmp_path):
    """With ``filter_empty_gt`` the dataset says how many images its filter
    kept and removed, and why: two images emptied of boxes, one smaller
    than min_size (docs/training.md)."""
    root = broken_copy(shapes, str(tmp_path / 'shapes'))
    edit_annotations(root, lambda data: data.update(annotations=[
        a for a in data['annotations'] if a['image_id'] not in (1, 2)]))
    edit_annotations(root, lambda data: set_image_size(data, 3, 20, 64))
    with DefaultScope.overwrite_default_scope('detr_plugin'), \
            mock.patch('detr_plugin.datasets.checked_coco.print_log') as log:
        dataset = CheckedCocoDataset(
            data_root=root + '/', ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            metainfo=dict(classes=SHAPES_CLASSES),
            filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=[])
    assert len(dataset) == 3
    assert log.call_args.args[0] == (
        f'CheckedCocoDataset ({ann_path(root)}): kept 3 of 6 images; '
        'filtered out 2 without boxes of the used classes '
        '(filter_empty_gt=True) and 1 smaller than min_size=32 px')
