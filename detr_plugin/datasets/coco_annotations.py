"""What a COCO annotation file must hold for mmdet's ``CocoDataset``; each
problem is a :class:`DatasetCheckError` naming config key, file, ids and fix.
"""
import difflib
import json
import math
import os.path as osp
from collections import Counter
from typing import List, Optional, Sequence, Tuple

COCO_FIELDS = dict(images=('id', 'file_name', 'width', 'height'),
                   annotations=('id', 'image_id', 'category_id'),
                   categories=('id', 'name'))
# COCO panoptic: one annotation per image, its segments in segments_info
PANOPTIC_FIELDS = dict(COCO_FIELDS,
                       annotations=('image_id', 'file_name', 'segments_info'),
                       categories=('id', 'name', 'isthing'))
TO_COCO = (' Fix: convert the annotations to COCO format: '
           'https://cocodataset.org/#format-data (mmdet\'s "Train with '
           'customized datasets" guide).')
_NUMBERS = (int, float)  # what JSON numbers load as (not bool)


class DatasetCheckError(ValueError):
    """A dataset problem that would make training fail or learn nothing."""


def ids_text(items: Sequence, limit: int = 5) -> str:
    """``'1, 2, 3'`` or ``'1, 2, 3, ... (7 in all)'``."""
    items = list(items)
    return ', '.join(map(str, items[:limit])) + (
        f', ... ({len(items)} in all)' if len(items) > limit else '')


def load_coco_json(path: str, key: str = 'ann_file',
                   images_only: bool = False, fields: dict = COCO_FIELDS
                   ) -> dict:
    """The annotation file at the local ``path`` (config key ``key``), with
    ``fields`` (:data:`COCO_FIELDS` or :data:`PANOPTIC_FIELDS`), positive
    image sizes and unique image and annotation ids; ``images_only``: no
    ``annotations`` (COCO's test-dev) means none."""
    if not osp.isfile(path):
        raise DatasetCheckError(
            f'{key}: annotation file not found: {path}. Fix: check data_root '
            '+ ann_file (relative ann_file paths are joined to data_root).')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetCheckError(
            f'{key}: {path} is not valid JSON ({e}). Fix: regenerate or '
            're-download the annotation file.') from None
    if not isinstance(data, dict):
        raise DatasetCheckError(
            f'{key}: {path} holds a JSON {type(data).__name__}, not a COCO '
            f'dict with "images", "annotations" and "categories".{TO_COCO}')
    if images_only:
        data.setdefault('annotations', [])
    missing = [repr(k) for k in fields
               if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetCheckError(
            f'{key}: {path} is not COCO-shaped: no list {", ".join(missing)} '
            f'at the top level (it has {sorted(data)[:10]}).{TO_COCO}')
    for name, needed in fields.items():
        bad = [i for i, item in enumerate(data[name]) if not (
            isinstance(item, dict) and all(f in item for f in needed))]
        if bad:
            raise DatasetCheckError(
                f'{key}: {path} is not COCO-shaped: {len(bad)} entries of '
                f'"{name}" (at positions {ids_text(bad)}) lack one of '
                f'{needed}.{TO_COCO}')
    bad = [img['id'] for img in data['images']
           if not all(type(img[k]) in _NUMBERS and img[k] > 0
                      for k in ('width', 'height'))]
    if bad:
        raise DatasetCheckError(
            f'{key}: {path}: images with ids {ids_text(bad)} have no positive'
            ' width/height. Fix: write each image\'s size in pixels into '
            '"width" and "height".')
    for name in [n for n in ('images', 'annotations') if 'id' in fields[n]]:
        dup = [i for i, n in Counter(x['id'] for x in data[name]).items()
               if n > 1]
        if dup:
            raise DatasetCheckError(
                f'{key}: {path}: duplicate {name[:-1]} ids {ids_text(dup)}. '
                f'Fix: give every entry of "{name}" a unique id.')
    return data


def match_classes(classes: Sequence[str], categories: Sequence[dict],
                  ann_file: str, key: str, effect: str = '') -> List[int]:
    """The category id of each class (config key ``key``) in ``ann_file``,
    whose categories must name each class once, in the classes' order;
    ``effect``: what mmdet would do with a class not in the file (default:
    a detection dataset's)."""
    names = [c['name'] for c in categories]
    absent = [c for c in classes if c not in names]
    if absent:
        hints = [f'{a!r} -> {close[0]!r}?' for a in absent[:5]
                 for close in [difflib.get_close_matches(a, names, n=1)]
                 if close]
        what, default = (
            ('none of the classes is', 'load no box at all (AP 0).')
            if len(absent) == len(classes) else
            (f'{len(absent)} of {len(classes)} classes are not', 'load no '
             "box of them (AP 0 for them) and give the other classes' boxes "
             'wrong labels.'))
        raise DatasetCheckError(
            f'{key}: {what} a category name in {ann_file}: '
            f'{ids_text(map(repr, absent), 10)} missing; the file\'s '
            f'categories are {ids_text(map(repr, names), 20)}. mmdet would '
            f'{effect or default}' + (f' Did you mean: {"; ".join(hints)}'
                                      if hints else '') +
            ' Fix: set metainfo=dict(classes=(...))'
            " to the file's category names (case-sensitive), in its order.")
    chosen = [c for c in categories if c['name'] in set(classes)]
    if len(chosen) != len(classes):
        dup = sorted({n for n, count in Counter(names).items() if count > 1
                      and n in classes})
        raise DatasetCheckError(
            f'{ann_file}: category names {dup} are used by more than one '
            'category id, so a class name selects several categories. Fix: '
            'give every category a unique name.')
    in_file_order = tuple(c['name'] for c in chosen)
    if in_file_order != tuple(classes):
        raise DatasetCheckError(
            f'{key}: the classes are not in the order of the categories in '
            f"{ann_file}: mmdet numbers labels in the file's order, so label "
            'i would not be classes[i] (wrong names in predictions, wrong AP '
            f'when the train and val files differ). Fix: '
            f'classes={in_file_order}.')
    return [c['id'] for c in chosen]


def check_box(bbox, width: float, height: float
              ) -> Tuple[Optional[str], Optional[List[float]]]:
    """``(None, [x, y, w, h] clamped to the image)`` for a usable COCO box
    (pixels) of a ``width x height`` image, or ``(why it is dropped,
    None)``: as official DETR, clamp, and drop what is left of less than
    1 px (as mmdet)."""
    # written out: called for each box of a file (860k in COCO's train)
    x = y = w = h = None
    if type(bbox) in (list, tuple) and len(bbox) == 4:
        x, y, w, h = bbox
    if not (type(x) in _NUMBERS and type(y) in _NUMBERS
            and type(w) in _NUMBERS and type(h) in _NUMBERS):
        return 'malformed bbox (not 4 numbers)', None
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(w)
            and math.isfinite(h)):
        return 'NaN or infinite coordinate', None
    if w <= 0 or h <= 0:
        return 'width or height <= 0', None
    x1, y1 = max(float(x), 0.), max(float(y), 0.)
    x2, y2 = min(float(x + w), float(width)), min(float(y + h), float(height))
    if x2 <= x1 or y2 <= y1:
        return 'wholly outside its image', None
    if x2 - x1 < 1 or y2 - y1 < 1:
        return 'under 1 px wide or high inside its image', None
    return None, [x1, y1, x2 - x1, y2 - y1]
