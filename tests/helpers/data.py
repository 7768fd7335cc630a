"""Data sets of the tests: the synthetic shapes set and broken copies of it,
and COCO detections from dumped predictions."""
import json
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Sequence

SHAPES_CLASSES = ('circle', 'square', 'triangle')


def make_shapes(root: str, **kwargs) -> str:
    """The synthetic shapes set (64 x 64, 3 classes) at ``root``; by default
    6 training images, all with boxes (``empty_fraction=0``), and 2 val
    images. ``kwargs``: ``generate_shapes_dataset`` arguments."""
    from synthetic_shapes import generate_shapes_dataset
    generate_shapes_dataset(root, **dict(dict(
        num_train=6, num_val=2, image_size=(64, 64), empty_fraction=0.),
        **kwargs))
    return root


def ann_path(root: str, split: str = 'train') -> str:
    return osp.join(root, 'annotations', f'instances_{split}.json')


def broken_copy(src: str, dst: str,
                edit_json: Optional[Callable[[dict], None]] = None,
                split: str = 'train') -> str:
    """Copy the set at ``src`` to ``dst`` and let ``edit_json`` change the
    parsed ``annotations/instances_{split}.json`` in place."""
    shutil.copytree(src, dst)
    if edit_json is not None:
        edit_annotations(dst, edit_json, split)
    return dst


def edit_annotations(root: str, edit: Callable[[dict], None],
                     split: str = 'train') -> None:
    """Let ``edit`` change ``root``'s parsed ``instances_{split}.json``."""
    path = ann_path(root, split)
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)  # NaN / Infinity written as JSON5 literals


def set_image_size(data: dict, img_id: int, height: int, width: int) -> None:
    """Give image ``img_id`` of a parsed COCO file this size, its boxes
    clamped into it."""
    (img, ) = [i for i in data['images'] if i['id'] == img_id]
    img.update(height=height, width=width)
    for ann in data['annotations']:
        if ann['image_id'] == img_id:
            x, y, w, h = ann['bbox']
            x, y = min(x, width - 2), min(y, height - 2)
            ann['bbox'] = [x, y, min(w, width - x), min(h, height - y)]


def write_rotated_jpeg(path: str, height: int, width: int,
                       orientation: int = 6) -> None:
    """A ``height x width`` JPEG (stored pixels) with this EXIF orientation
    (6: a phone held upright; viewers and mmcv turn it 90 degrees)."""
    import numpy as np
    from PIL import Image
    exif = Image.Exif()
    exif[274] = orientation
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path, exif=exif)


def truncate_file(path: str, keep: float = 0.6) -> None:
    """Cut the file to ``keep`` of its bytes (a partly copied download)."""
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


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
