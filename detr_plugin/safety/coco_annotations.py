"""What a COCO annotation file must hold for mmdet's ``CocoDataset``.

The single source of truth for three questions, asked by the checks before
training (:mod:`.config_checks`), by ``tools/check_dataset.py`` and by the
dataset itself (:mod:`.coco_dataset`):

* is the file there, JSON, and COCO-shaped (:func:`load_coco_json`)?
* do the config's class names select its categories, all of them, in the
  file's order (:func:`match_classes`)? mmdet maps labels to the categories
  whose *names* are in ``metainfo['classes']``, in the order of the file's
  ``categories``; a name that is not there silently loses its boxes and
  shifts every later label;
* is a box usable (:func:`check_box`)? Official DETR clamps boxes to the
  image and drops those with no width or height; mmdet silently drops boxes
  under 1 px or wholly outside the image and keeps infinite ones (which
  become NaN in the loss).

Every problem is a :class:`DatasetCheckError` whose message names the config
key, the file, the offending ids and the fix.
"""
import difflib
import json
import math
import os.path as osp
from typing import List, Optional, Sequence, Tuple

# why a box is dropped
MALFORMED = 'malformed bbox (not 4 numbers)'
NON_FINITE = 'NaN or infinite coordinate'
NON_POSITIVE = 'width or height <= 0'
OUTSIDE = 'wholly outside its image'
TOO_SMALL = 'under 1 px wide or high inside its image'


class DatasetCheckError(ValueError):
    """A dataset problem that would make training fail or learn nothing."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ids(items: Sequence, limit: int = 5) -> str:
    """``'1, 2, 3'`` or ``'1, 2, 3, ... (7 in all)'``."""
    items = list(items)
    text = ', '.join(str(i) for i in items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit
                   else '')


def load_coco_json(path: str, key: str = 'ann_file',
                   images_only: bool = False) -> dict:
    """The parsed annotation file, checked to be COCO-shaped.

    Args:
        path: local path of the file.
        key: the config key that named it, for the messages.
        images_only: accept a file without ``annotations`` (read as none),
            as COCO's test-dev image lists for test-mode datasets.

    Raises:
        DatasetCheckError: the file is missing, not JSON, or lacks the lists
            and fields mmdet reads: ``images`` (``id``, ``file_name``,
            ``width``, ``height``), ``annotations`` (``id``, ``image_id``,
            ``category_id``; ``bbox`` is checked per box by
            :func:`check_box`) and ``categories`` (``id``, ``name``), with
            unique image and annotation ids.
    """
    if not osp.isfile(path):
        raise DatasetCheckError(
            f'{key}: annotation file not found: {path}. Fix: check '
            'data_root + ann_file (relative ann_file paths are joined to '
            'data_root).')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetCheckError(
            f'{key}: {path} is not valid JSON ({e}). Fix: regenerate or '
            're-download the annotation file.') from None
    fix = (' Fix: convert the annotations to COCO format: '
           'https://cocodataset.org/#format-data (mmdet\'s '
           '"Train with customized datasets" guide).')
    if not isinstance(data, dict):
        raise DatasetCheckError(
            f'{key}: {path} holds a JSON {type(data).__name__}, not a COCO '
            f'dict with "images", "annotations" and "categories".{fix}')
    if images_only and 'annotations' not in data:
        data['annotations'] = []
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetCheckError(
            f'{key}: {path} is not COCO-shaped: no list '
            f'{", ".join(repr(k) for k in missing)} at the top level (it has '
            f'{sorted(data)[:10]}).{fix}')
    required = dict(images=('id', 'file_name', 'width', 'height'),
                    annotations=('id', 'image_id', 'category_id'),
                    categories=('id', 'name'))
    for name, fields in required.items():
        bad = [i for i, item in enumerate(data[name])
               if not isinstance(item, dict)
               or any(f not in item for f in fields)]
        if bad:
            raise DatasetCheckError(
                f'{key}: {path} is not COCO-shaped: {len(bad)} entries of '
                f'"{name}" (at positions {_ids(bad)}) lack one of '
                f'{fields}.{fix}')
    bad_size = [img['id'] for img in data['images']
                if not (_is_number(img['width']) and img['width'] > 0
                        and _is_number(img['height']) and img['height'] > 0)]
    if bad_size:
        raise DatasetCheckError(
            f'{key}: {path}: images with ids {_ids(bad_size)} have no '
            'positive width/height. Fix: write each image\'s size in pixels '
            'into "width" and "height".')
    for name in ('images', 'annotations'):
        ids = [item['id'] for item in data[name]]
        if len(set(ids)) != len(ids):
            seen, dup = set(), []
            for i in ids:
                (dup.append(i) if i in seen else seen.add(i))
            raise DatasetCheckError(
                f'{key}: {path}: duplicate {name[:-1]} ids {_ids(dup)}. Fix: '
                f'give every entry of "{name}" a unique id.')
    return data


def match_classes(classes: Sequence[str], categories: Sequence[dict],
                  ann_file: str, key: str) -> List[int]:
    """The category id of each class, in class order.

    Args:
        classes: the dataset's ``metainfo['classes']``.
        categories: the file's ``categories``.
        ann_file: the file, for the messages.
        key: the config key that sets the classes.

    Raises:
        DatasetCheckError: a class is not a category name (its boxes would
            be silently dropped and the later labels shifted), a name is used
            by two categories, or the classes are not in the file's order
            (label ``i`` would not be ``classes[i]``).
    """
    names = [c['name'] for c in categories]
    file_names = ', '.join(repr(n) for n in names[:20]) + \
        (f', ... ({len(names)} in all)' if len(names) > 20 else '')
    absent = [c for c in classes if c not in names]
    if absent:
        hints = []
        for name in absent[:5]:
            close = difflib.get_close_matches(name, names, n=1)
            if close:
                hints.append(f'{name!r} -> {close[0]!r}?')
        hint = f' Did you mean: {"; ".join(hints)}' if hints else ''
        if len(absent) == len(classes):
            what = 'none of the classes is'
            effect = 'mmdet would load no box at all (AP 0).'
        else:
            what = f'{len(absent)} of {len(classes)} classes are not'
            effect = ('mmdet would load no box of them (AP 0 for them) and '
                      'give the other classes\' boxes wrong labels.')
        raise DatasetCheckError(
            f'{key}: {what} a category name in {ann_file}: '
            f'{_ids([repr(a) for a in absent], 10)} missing; the file\'s '
            f'categories are {file_names}. {effect}' + hint +
            ' Fix: set metainfo=dict(classes=(...)) to the file\'s category '
            'names (case-sensitive), in the file\'s order.')
    chosen = [c for c in categories if c['name'] in set(classes)]
    if len(chosen) != len(classes):
        dup = sorted({c['name'] for c in chosen
                      if names.count(c['name']) > 1})
        raise DatasetCheckError(
            f'{ann_file}: category names {dup} are used by more than one '
            'category id, so a class name selects several categories. Fix: '
            'give every category a unique name.')
    in_file_order = tuple(c['name'] for c in chosen)
    if in_file_order != tuple(classes):
        raise DatasetCheckError(
            f'{key}: the classes are not in the order of the categories in '
            f'{ann_file}: mmdet numbers labels in the file\'s order, so '
            'label i would not be classes[i] (wrong names in predictions, '
            'and wrong AP when the train and val files differ). Fix: '
            f'classes={in_file_order}.')
    return [c['id'] for c in chosen]


def check_box(bbox, width: float, height: float
              ) -> Tuple[Optional[str], Optional[List[float]]]:
    """Whether a COCO ``[x, y, w, h]`` box (pixels) of a ``width x height``
    image is usable, as official DETR decides: clamp it to the image, drop
    it if nothing (or, as mmdet, less than 1 px) is left.

    Returns:
        ``(None, clamped [x, y, w, h])`` for a usable box, else
        ``(reason, None)`` with ``reason`` one of :data:`MALFORMED`,
        :data:`NON_FINITE`, :data:`NON_POSITIVE`, :data:`OUTSIDE`,
        :data:`TOO_SMALL`.
    """
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
            and all(_is_number(v) for v in bbox)):
        return MALFORMED, None
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return NON_FINITE, None
    if w <= 0 or h <= 0:
        return NON_POSITIVE, None
    x1, y1 = max(x, 0.), max(y, 0.)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return OUTSIDE, None
    if x2 - x1 < 1 or y2 - y1 < 1:
        return TOO_SMALL, None
    return None, [x1, y1, x2 - x1, y2 - y1]


class DroppedBoxes:
    """Boxes dropped from one annotation file, for one message.

    ``add`` each; :meth:`message` is the single warning (or error) text:
    how many, why, and a few annotation and image ids.
    """

    def __init__(self) -> None:
        self.by_reason = {}  # reason -> [(ann_id, img_id)]

    def add(self, reason: str, ann_id, img_id) -> None:
        self.by_reason.setdefault(reason, []).append((ann_id, img_id))

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_reason.values())

    def message(self, ann_file: str, total: int, strict: bool,
                key: str = 'the dataset config') -> str:
        """``'dropped 3 of 255 boxes in FILE: 2 width or height <= 0
        (annotation ids 4, 9 in images 1, 3), ...'`` plus the fix."""
        parts = []
        for reason, pairs in self.by_reason.items():
            parts.append(
                f'{len(pairs)} {reason} (annotation ids '
                f'{_ids([a for a, _ in pairs])} in images '
                f'{_ids(sorted({i for _, i in pairs}, key=str))})')
        head = (f'{len(self)} of {total} boxes in {ann_file} are unusable'
                if strict else
                f'dropped {len(self)} of {total} boxes in {ann_file} that '
                'DETR cannot use')
        fix = ("Fix the boxes in the file, or set invalid_boxes='drop' in "
               f'{key} to drop them with a warning.' if strict else
               "Fix the boxes in the file, or set invalid_boxes='error' in "
               f'{key} to stop on them.')
        return f'{head}: {"; ".join(parts)}. {fix}'
