"""The COCO table that tools/test.py prints is pycocotools' own numbers.

A tiny DETR is trained for a few iterations (tools/train.py) on shapes whose
COCO category ids are NOT 1..K (3, 17, 90), with images without boxes, then
tools/test.py evaluates it and dumps its detections (--out). COCOeval run
here on those detections, with our own label -> category id and xyxy -> xywh
mapping, must print the same 12 numbers; the same mapping applied to the
ground truth itself must give AP 1.0, so a wrong mapping cannot pass.
"""
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch
from helpers.configs import CONFIG_DIR, data_overrides
from helpers.data import to_coco_detections
from helpers.tools import load_tool, run_tool
from mmengine.config import Config
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from synthetic_shapes import generate_shapes_dataset

CATEGORY_IDS = (3, 17, 90)
ITERS = 20
# CocoMetric's maxDets (its proposal_nums): the table prints these.
MAX_DETS = [100, 300, 1000]
TABLE_LINE = re.compile(r'Average (?:Precision|Recall) .*= (-?\d+\.\d+)')


def coco_stats(ann_file: str, detections: list) -> np.ndarray:
    """The 12 numbers of COCOeval's bbox summary, as CocoMetric sets it."""
    coco_gt = COCO(ann_file)
    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), 'bbox')
    coco_eval.params.maxDets = MAX_DETS
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """Train, test with --out; return (dataset info, printed table, dump)."""
    tmp = tmp_path_factory.mktemp('coco_metric')
    # One large object per image: after a few iterations the boxes overlap
    # the objects enough for a non-zero AP. 2 of 8 val images are empty.
    info = generate_shapes_dataset(
        str(tmp / 'data'), num_train=16, num_val=8, image_size=(64, 64),
        category_ids=CATEGORY_IDS, empty_fraction=0.25, max_objects=1,
        size_range=(0.5, 0.8), seed=0)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'demo', 'detr_r18_shapes.py'))
    cfg.merge_from_dict(data_overrides(str(tmp / 'data'), info['classes'],
                                       ('train', 'val', 'test')))
    cfg.merge_from_dict(dict(
        train_dataloader=dict(batch_size=4, num_workers=0,
                              persistent_workers=False),
        val_dataloader=dict(num_workers=0, persistent_workers=False),
        test_dataloader=dict(num_workers=0, persistent_workers=False),
        train_cfg=dict(max_iters=ITERS, val_interval=ITERS + 1),
        default_hooks=dict(checkpoint=dict(interval=ITERS),
                           logger=dict(interval=10)),
        randomness=dict(seed=0)))
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0)]
    config = str(tmp / 'config.py')
    cfg.dump(config)
    work_dir = str(tmp / 'work')
    run_tool(['train.py', config, '--work-dir', work_dir], str(tmp))
    out = str(tmp / 'results.pkl')
    log = run_tool(['test.py', config, osp.join(work_dir, f'iter_{ITERS}.pth'),
                    '--work-dir', work_dir, '--out', out], str(tmp)).out
    printed = [float(v) for v in TABLE_LINE.findall(log)]
    with open(out, 'rb') as f:
        results = pickle.load(f)
    return info, printed, results, dict(config=config, out=out, tmp=tmp)


def test_printed_table_equals_pycocotools_on_the_dump(evaluated):
    info, printed, results, _ = evaluated
    ann_file = info['ann_files']['val']
    assert len(results) == 8
    assert sorted(r['img_id'] for r in results) == list(range(1, 9))
    cat_ids = COCO(ann_file).getCatIds(catNms=list(info['classes']))
    assert cat_ids == list(CATEGORY_IDS)  # the dataset's label order
    detections = to_coco_detections(results, cat_ids)
    # every image has max_per_img = 5 detections (top-k of 5 queries x 3
    # classes)
    assert len(detections) == 8 * 5
    assert {d['category_id'] for d in detections} <= set(CATEGORY_IDS)
    stats = coco_stats(ann_file, detections)
    assert len(printed) == 12
    np.testing.assert_allclose(printed, np.round(stats, 3), atol=1e-9)
    # non-trivial: some detections are right (the equality of zeros proves
    # nothing), yet the model is far from perfect
    assert 0 < stats[1] < 1  # AP at IoU 0.5


def test_same_mapping_on_ground_truth_gives_ap_1(evaluated):
    """Our label/box/image-id mapping is exact: the GT as detections
    scores AP 1 (a category id or a box convention off fails here)."""
    info, _, _, _ = evaluated
    ann_file = info['ann_files']['val']
    coco = COCO(ann_file)
    cat_ids = coco.getCatIds(catNms=list(info['classes']))
    results = []
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        xywh = torch.tensor([a['bbox'] for a in anns]).reshape(-1, 4)
        results.append(dict(img_id=img_id, pred_instances=dict(
            bboxes=torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
            scores=torch.ones(len(anns)),
            labels=torch.tensor([cat_ids.index(a['category_id'])
                                 for a in anns], dtype=torch.long))))
    assert sum(len(r['pred_instances']['labels']) == 0 for r in results) == 2
    stats = coco_stats(ann_file, to_coco_detections(results, cat_ids))
    assert stats[0] == pytest.approx(1.0)
    # a label mapping off by one position does not
    shifted = cat_ids[1:] + cat_ids[:1]
    stats = coco_stats(ann_file, to_coco_detections(results, shifted))
    assert stats[0] < 0.5


class Payload:
    """Runs ``touch PATH`` when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os
        return os.system, (f'touch {self.path}', )


def test_eval_metric_reads_the_dump_safely(evaluated):
    """tools/eval_metric.py evaluates tools/test.py's dump again to the
    printed numbers, and refuses a dump whose pickle would run code (mmdet's
    eval_metric.py runs it; issue 31, item 1)."""
    _, printed, _, files = evaluated
    metrics = load_tool('eval_metric').main([files['config'], files['out']])
    assert metrics['coco/bbox_mAP'] == pytest.approx(printed[0], abs=5e-4)
    assert metrics['coco/bbox_mAP_50'] == pytest.approx(printed[1], abs=5e-4)
    marker = files['tmp'] / 'code_ran'
    evil = str(files['tmp'] / 'evil.pkl')
    with open(evil, 'wb') as f:
        pickle.dump([dict(pred_instances=Payload(marker))], f)
    proc = run_tool(['eval_metric.py', files['config'], evil],
                    str(files['tmp']), check=False)
    assert proc.returncode == 1 and not marker.exists()
    assert proc.out.strip().splitlines()[-1] == (
        f'error: refusing to read {evil}: posix.system is not what a results '
        'dump holds; unpickling it could run arbitrary code.')


def test_amp_gap_reads_a_training_checkpoint(evaluated):
    """``tools/amp_gap.py`` on a checkpoint mmengine's runner wrote (its
    message hub's history buffers included: loaded without running code)
    gives every loss term in float32 and float16 autocast, close."""
    _, _, _, files = evaluated
    checkpoint = osp.join(str(files['tmp']), 'work', f'iter_{ITERS}.pth')
    gaps = load_tool('amp_gap').main([files['config'], checkpoint,
                                      '--dtype', 'float16',
                                      '--num-images', '4'])
    assert {'loss_cls', 'loss_bbox', 'loss_iou'} <= set(gaps)
    for full, mixed, gap in gaps.values():
        assert full > 0 and abs(mixed - full) <= gap * full + 1e-12
        assert gap < 0.05
