"""Point a config at a COCO-format folder, and COCO detections from dumps."""
from typing import Dict, List, Sequence


def coco_data_overrides(data_root: str, classes: Sequence[str],
                        train_split: str = 'train',
                        val_split: str = 'val') -> dict:
    """``cfg.merge_from_dict`` overrides that read ``data_root``'s
    ``annotations/instances_{split}.json`` and ``{split}/`` images for the
    train, val and test dataloaders and the val/test ``CocoMetric``."""
    data_root = data_root.rstrip('/') + '/'
    metainfo = dict(classes=tuple(classes))

    def dataset(split):
        return dict(dataset=dict(
            data_root=data_root, metainfo=metainfo,
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/')))

    val_ann = f'{data_root}annotations/instances_{val_split}.json'
    return dict(train_dataloader=dataset(train_split),
                val_dataloader=dataset(val_split),
                test_dataloader=dataset(val_split),
                val_evaluator=dict(ann_file=val_ann),
                test_evaluator=dict(ann_file=val_ann))


def to_coco_detections(results: List[dict],
                       cat_ids: Sequence[int]) -> List[Dict]:
    """COCO result entries from mmdet's dumped predictions.

    Args:
        results: one dict per image as ``tools/test.py --out`` writes them:
            ``img_id`` and ``pred_instances`` with ``bboxes`` ``(N, 4)``
            xyxy in original-image pixels, ``scores`` ``(N,)``, ``labels``
            ``(N,)`` in ``0..K-1``.
        cat_ids: the dataset's category id of each label.

    Returns:
        ``[{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}]``.
    """
    dets = []
    for result in results:
        pred = result['pred_instances']
        for (x1, y1, x2, y2), score, label in zip(
                pred['bboxes'].tolist(), pred['scores'].tolist(),
                pred['labels'].tolist()):
            dets.append(dict(image_id=result['img_id'],
                             category_id=cat_ids[label],
                             bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    return dets
