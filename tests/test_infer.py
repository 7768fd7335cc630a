"""tools/infer.py and detr_plugin.apis.DETRInferencer (mmdet's
DetInferencer whose checkpoint must fit): images in, drawn boxes and one
COCO results JSON out."""
import json
import os
import os.path as osp
import shutil
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from helpers.data import SHAPES_CLASSES as CLASSES
from helpers.data import truncate_file
from helpers.detector import IMAGE_SHAPES, write_tiny_detector
from helpers.tools import load_tool
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmdet_reference import REPO_CONFIG_DIR, build_plugin_model

from detr_plugin.apis import DETRInferencer

infer = load_tool('infer')
coco_results, image_ids, list_images = (infer.coco_results, infer.image_ids,
                                        infer.list_images)


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
        result = inferencer.predict(osp.join(images, name))
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
    from_file = inferencer.predict(path).pred_instances
    from_array = inferencer.predict(cv2.imread(path)).pred_instances
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


def test_infer_skips_a_corrupt_image_and_writes_the_rest(detector_files,
                                                         tmp_path, capsys):
    """One corrupt image aborted the run with mmcv's AssertionError and
    every detection made was lost; it is skipped with a warning naming it,
    the rest written, exit status 1; ``--on-error stop`` stops there
    (issue 14, item 7)."""
    config, checkpoint, images = detector_files
    folder = str(tmp_path / 'in')
    shutil.copytree(images, folder)
    bad = osp.join(folder, 'a.jpg')  # the first of the two
    truncate_file(bad)
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match=f'1 of 2 images skipped .*: {bad}'):
        infer.main([config, checkpoint, folder, '--out-dir', str(out),
                    '--score-thr', '0'])
    assert f'skipped {bad}: ' in capsys.readouterr().err
    entries = json.loads((out / 'results.bbox.json').read_text())
    assert len(entries) == 10
    # its position in the sorted list: the skipped a.jpg shifts no id
    assert {(e['file_name'], e['image_id']) for e in entries} == {
        ('b.png', 1)}
    assert os.listdir(out / 'vis') == ['b.png']
    with pytest.raises(Exception, match='a.jpg'):
        infer.main([config, checkpoint, folder, '--out-dir',
                    str(tmp_path / 'stop'), '--on-error', 'stop'])
    assert not (tmp_path / 'stop' / 'results.bbox.json').exists()


def test_drawing_is_bounded_with_its_boxes_scaled(detector_files, tmp_path):
    """A 6000 x 6000 image cost 4.3 GB in the visualizer: it draws on a
    copy at most ``--draw-max-side`` px long, the boxes scaled with it
    (issue 14, item 7)."""
    config, checkpoint, images = detector_files
    path = osp.join(images, 'b.png')  # 128 x 96 (h x w)
    infer.main([config, checkpoint, path, '--out-dir', str(tmp_path),
                '--draw-max-side', '64'])
    assert cv2.imread(str(tmp_path / 'vis' / 'b.png')).shape == (64, 48, 3)
    inferencer = DETRInferencer(config, checkpoint)
    result = inferencer.predict(path)
    with mock.patch.object(inferencer.visualizer, 'add_datasample') as add:
        infer.draw(inferencer, path, result, str(tmp_path / 'x.png'), 0., 64)
    _, image, drawn = add.call_args.args
    assert image.shape == (64, 48, 3)
    assert torch.allclose(drawn.pred_instances.bboxes,
                          result.pred_instances.bboxes * 0.5)
    assert torch.equal(drawn.pred_instances.scores,
                       result.pred_instances.scores)
    assert '--draw-max-side' in infer.__doc__ and '4.3 GB' in infer.__doc__


def test_coco_results_ids_and_boxes():
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 20., 40., 60.], [0., 0., 5., 5.]]),
        scores=torch.tensor([0.9, 0.1]), labels=torch.tensor([79, 0]))
    from detr_plugin.checkpoint import COCO_CATEGORY_IDS, coco_class_names
    coco = coco_class_names(80)
    entries = coco_results(sample, '/x/000000397133.jpg', 397133,
                           COCO_CATEGORY_IDS, coco, score_thr=0.5)
    # COCO's numeric file name is its image id; toothbrush is id 90
    assert entries == [dict(image_id=397133, file_name='000000397133.jpg',
                            category_id=90, category_name='toothbrush',
                            bbox=[10.0, 20.0, 30.0, 40.0], score=0.9)]
    # numeric names repeated in two folders (a recursive glob), or not all
    # numeric: positions, so that no two images share an id
    assert image_ids(['/t/000001.jpg', '/v/000001.jpg', '/v/000002.jpg']) \
        == [0, 1, 2]
    assert image_ids(['/t/7.jpg', '/t/x.jpg']) == [0, 1]
    assert image_ids(['/t/7.jpg', '/t/009.jpg']) == [7, 9]


def test_drawings_of_images_sharing_a_name_do_not_overwrite():
    assert infer.drawing_names(['/d/x/a.jpg', '/d/y/b.jpg']) == \
        ['a.jpg', 'b.jpg']
    assert infer.drawing_names(['/d/x/a.jpg', '/d/y/a.jpg']) == \
        ['x_a.jpg', 'y_a.jpg']


def test_inferencer_refuses_a_checkpoint_of_another_class_count(
        detector_files, tmp_path):
    """init_detector would load it with a warning and predict with a random
    classifier; the inferencer stops, naming the classifier and the fix."""
    from mmengine.runner import CheckpointLoader
    config, checkpoint, _ = detector_files
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = loaded['state_dict']
    for name in ('weight', 'bias'):  # 80 classes + no-object
        old = state_dict[f'bbox_head.fc_cls.{name}']
        state_dict[f'bbox_head.fc_cls.{name}'] = old.new_zeros(
            (81, ) + old.shape[1:])
    misfit = str(tmp_path / 'coco80.pth')
    torch.save(loaded, misfit)
    with pytest.raises(ValueError, match=(
            rf'checkpoint {misfit} does not fit the model of the config: its '
            r'classifier bbox_head\.fc_cls\.weight is \(81, .*80 classes in '
            rf'the checkpoint, {len(CLASSES)} in the config')):
        DETRInferencer(config, misfit)


def test_inferencer_refuses_a_checkpoint_without_the_transformer(
        detector_files, tmp_path):
    """A backbone-only checkpoint: init_detector would warn of missing keys
    and predict with a random transformer; the inferencer stops."""
    from mmengine.runner import CheckpointLoader
    config, checkpoint, _ = detector_files
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    loaded['state_dict'] = {k: v for k, v in loaded['state_dict'].items()
                            if k.startswith('backbone.')}
    partial = str(tmp_path / 'backbone_only.pth')
    torch.save(loaded, partial)
    with pytest.raises(ValueError, match=(
            rf'checkpoint {partial} does not fit the model of the config: it '
            r"lacks \d+ of the model's tensors \(in .*encoder\.layers: \d+")):
        DETRInferencer(config, partial)


def test_inferencer_loads_a_checkpoint_in_mmdet_layout(detector_files,
                                                       tmp_path,
                                                       monkeypatch):
    """Its keys are renamed as tools/test.py's hook renames them: the same
    detections as from the checkpoint in our layout, its classes, and the
    file read once (init_detector loading it too warned of every key
    "missing" before the renaming)."""
    from mmengine.runner import CheckpointLoader

    from detr_plugin.checkpoint import plugin_to_mmdet
    config, checkpoint, images = detector_files
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    loaded['state_dict'] = plugin_to_mmdet(loaded['state_dict'])
    mmdet_layout = str(tmp_path / 'mmdet_layout.pth')
    torch.save(loaded, mmdet_layout)
    path = osp.join(images, 'a.jpg')
    ours = DETRInferencer(config, checkpoint).predict(path).pred_instances
    reads, load = [], CheckpointLoader.load_checkpoint
    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', lambda *a, **k:
                        reads.append(a) or load(*a, **k))
    inferencer = DETRInferencer(config, mmdet_layout)
    assert [a[0] for a in reads] == [mmdet_layout]
    assert tuple(inferencer.classes) == CLASSES
    theirs = inferencer.predict(path).pred_instances
    assert torch.equal(ours.scores, theirs.scores)
    assert torch.equal(ours.bboxes, theirs.bboxes)


@pytest.mark.parametrize('config', ['conditional-detr_r18_shapes.py',
                                    'dino_r18_shapes.py'])
def test_inferencer_loads_a_successor_checkpoint_in_mmdet_layout(
        config, detector_files, tmp_path):
    """mmdet's layout of a successor (its attentions, box branches, norms)
    is renamed as DETR's is: the same detections as from our layout."""
    from detr_plugin.checkpoint import model_variant, plugin_to_mmdet
    config = osp.join(REPO_CONFIG_DIR, 'demo', config)
    torch.manual_seed(0)
    state_dict = build_plugin_model(config).state_dict()
    mmdet_layout = plugin_to_mmdet(state_dict, model_variant(state_dict))
    assert set(mmdet_layout) != set(state_dict)
    image, detections = osp.join(detector_files[2], 'a.jpg'), []
    for name, weights in (('ours', state_dict), ('mmdet', mmdet_layout)):
        path = str(tmp_path / f'{name}.pth')
        torch.save(dict(state_dict=weights, meta=dict(
            dataset_meta=dict(classes=CLASSES))), path)
        detections.append(
            DETRInferencer(config, path).predict(image).pred_instances)
    assert torch.equal(detections[0].scores, detections[1].scores)
    assert torch.equal(detections[0].bboxes, detections[1].bboxes)


def test_a_config_that_only_trains_is_named_not_a_none_error():
    """A panoptic box stage has no test split: infer.py, vis_attention.py
    and export_onnx.py (the inferencer) failed inside init_detector with
    "'NoneType' object has no attribute 'dataset'", test.py with
    mmengine's "self._test_loop should not be None"."""
    config = osp.join(REPO_CONFIG_DIR, 'demo',
                      'detr_r18_shapes-panoptic-boxes.py')
    with pytest.raises(ValueError, match=r'panoptic-boxes\.py has no '
                       'test_dataloader .* Use the config of a stage that '
                       'tests'):
        DETRInferencer(config)
    with pytest.raises(SystemExit, match=r'panoptic-boxes\.py has no '
                       'test_dataloader / test_evaluator'):
        load_tool('test').main([config, 'x.pth'])


def test_a_checkpoint_of_another_variant_is_named(detector_files):
    """A DETR checkpoint given with Conditional DETR's config was refused
    with advice about class counts (DETR's no-object row counted as a
    class) or missing layers; it is named as the other variant it is."""
    _, checkpoint, _ = detector_files
    with pytest.raises(ValueError, match=r'holds a detr model \(its keys '
                       r'show it\), the config builds a conditional_detr'):
        DETRInferencer(osp.join(REPO_CONFIG_DIR, 'demo',
                                'conditional-detr_r18_shapes.py'), checkpoint)


def test_infer_holds_no_images_results_while_it_goes_on(detector_files,
                                                        tmp_path,
                                                        monkeypatch):
    """Each image's results (a panoptic model's full-size masks and map)
    are written and dropped before the next image is read: when the model
    predicts image k, no earlier image's result is alive (issue 31: 1.72 GB
    for 20 images of 2000 x 2000, growing with every image)."""
    import gc
    import weakref
    config, checkpoint, images = detector_files
    folder = tmp_path / 'in'
    folder.mkdir()
    for i in range(5):
        shutil.copy(osp.join(images, 'b.png'), folder / f'{i}.png')
    refs, alive, predict = [], [], DETRInferencer.predict

    def tracking(self, image):
        gc.collect()
        alive.append(sum(ref() is not None for ref in refs))
        result = predict(self, image)
        refs.append(weakref.ref(result))
        return result
    monkeypatch.setattr(DETRInferencer, 'predict', tracking)
    infer.main([config, checkpoint, str(folder), '--out-dir',
                str(tmp_path / 'out'), '--score-thr', '0'])
    assert alive == [0] * 5
    entries = json.loads((tmp_path / 'out' / 'results.bbox.json').read_text())
    assert len(entries) == 5 * 10


def test_infer_names_its_input_mistakes_in_one_line(detector_files, tmp_path):
    """A glob matching nothing, a file as --out-dir, a config without a
    test pipeline: one error line each (issue 31, item 5)."""
    config, checkpoint, images = detector_files
    (tmp_path / 'file').write_text('x')
    boxes_only = osp.join(REPO_CONFIG_DIR, 'demo',
                          'detr_r18_shapes-panoptic-boxes.py')
    for args, message in (
            ([config, checkpoint, osp.join(images, '*.gif')],
             r"^error: INPUT: no image \(.*\) found at '.*\*\.gif'$"),
            ([config, checkpoint, images, '--out-dir',
              str(tmp_path / 'file')],
             r'^error: --out-dir .*/file is a file: give a folder\.$'),
            ([boxes_only, checkpoint, images, '--out-dir', str(tmp_path)],
             r'^error: .*panoptic-boxes\.py has no test_dataloader')):
        with pytest.raises(SystemExit, match=message):
            infer.main(args)


def test_an_extremely_thin_image_is_named(detector_files, tmp_path, capsys):
    """A 3 x 4000 image stopped in OpenCV's resize (``inv_scale_x > 0``);
    it is skipped naming the file and the reason."""
    config, checkpoint, _ = detector_files
    path = str(tmp_path / 'thin.png')
    cv2.imwrite(path, np.zeros((3, 4000, 3), np.uint8))
    with pytest.raises(SystemExit, match='1 of 1 images skipped'):
        infer.main([config, checkpoint, path, '--out-dir',
                    str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert f'skipped {path}: ' in err and 'OpenCV' not in err, err
