"""What a dataset config will feed the model: counts, sizes and problems.

:func:`audit_coco_dataset` reads one ``CocoDataset`` config (its annotation
file and, optionally, its image files) the way mmdet's ``CocoDataset`` plus
:class:`.coco_dataset.CocoDatasetChecksMixin` will, without building it,
and returns a :class:`DatasetReport`: the numbers ``tools/check_dataset.py``
prints, and the ``errors`` (training would fail, or learn nothing) and
``warnings`` that :func:`.config_checks.check_dataset_config` acts on.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from .coco_annotations import (DatasetCheckError, DroppedBoxes, _ids,
                               check_box, load_coco_json, match_classes)
from .image_files import CorruptImageError, decode_image

# COCO's area ranges (pixels^2) for AP_s / AP_m / AP_l
AREA_RANGES = (('small', 0, 32**2), ('medium', 32**2, 96**2),
               ('large', 96**2, float('inf')))


@dataclass
class DatasetReport:
    """One dataset config, audited. Counts are of the annotation file.

    Attributes:
        key: the config key of the dataset, e.g. ``train_dataloader.dataset``.
        parsed: whether the annotation file and its classes were usable (if
            not, ``errors`` says why and the counts are empty).
        ann_file, img_dir: resolved paths (``data_root`` joined).
        classes: ``metainfo['classes']`` (or the dataset type's default).
        num_images: images listed in the file.
        num_train_images: images left after ``filter_cfg`` (``None`` for a
            test-mode dataset, which mmdet does not filter).
        boxes_per_class: usable boxes of each class (crowd boxes included).
        num_crowd: boxes with ``iscrowd=1`` (mmdet marks them ignored).
        num_other_category: boxes of categories not among the classes
            (mmdet skips them).
        images_without_boxes: ids of images with no usable box of the
            classes.
        dropped: the unusable boxes (:class:`DroppedBoxes`).
        num_clamped: usable boxes that stuck out of their image by more
            than 1 px (clamped, as official DETR does).
        box_sizes: ``(N, 2)`` width, height of the usable boxes, pixels.
        missing_files, corrupt_files: ``[(img_id, path or reason)]``.
        size_mismatch: ``[(img_id, (h, w) in the file, (h, w) decoded)]``.
        dropped_message: the dataset's one message about ``dropped``.
        errors, warnings: messages; an error means training would fail.
            ``warnings`` leaves out ``dropped_message`` (the dataset itself
            logs it when it drops the boxes).
        skipped: why the dataset was not audited (not a COCO dataset).
    """
    key: str
    parsed: bool = False
    ann_file: str = ''
    img_dir: str = ''
    classes: Tuple[str, ...] = ()
    num_images: int = 0
    num_train_images: Optional[int] = None
    boxes_per_class: Dict[str, int] = field(default_factory=dict)
    num_crowd: int = 0
    num_other_category: int = 0
    images_without_boxes: List = field(default_factory=list)
    dropped: DroppedBoxes = field(default_factory=DroppedBoxes)
    num_clamped: int = 0
    box_sizes: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 2)))
    files_checked: str = 'no'
    missing_files: List = field(default_factory=list)
    corrupt_files: List = field(default_factory=list)
    size_mismatch: List = field(default_factory=list)
    dropped_message: str = ''
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    skipped: str = ''

    @property
    def num_boxes(self) -> int:
        """Usable boxes of the classes."""
        return sum(self.boxes_per_class.values())

    def format(self) -> str:
        """The report as ``tools/check_dataset.py`` prints it."""
        lines = [f'== {self.key}']
        if self.skipped:
            return '\n'.join(lines + [f'  not checked: {self.skipped}'])
        lines += [f'  annotation file: {self.ann_file}',
                  f'  image folder:    {self.img_dir}']
        if not self.parsed:
            return '\n'.join(lines + self._problem_lines())
        lines += [
            f'  classes: {len(self.classes)} '
            f'({", ".join(self.classes[:10])}'
            f'{", ..." if len(self.classes) > 10 else ""})',
            f'  images: {self.num_images}',
            f'  images without boxes: {len(self.images_without_boxes)}'
            + (f' (ids {_ids(self.images_without_boxes)})'
               if self.images_without_boxes else '')]
        if self.num_train_images is not None:
            lines.append(f'  images used for training after filter_cfg: '
                         f'{self.num_train_images}')
        lines.append(f'  boxes: {self.num_boxes}'
                     + (f' ({self.num_crowd} crowd)' if self.num_crowd
                        else ''))
        lines.append('  boxes per class:')
        width = max([len(c) for c in self.classes] + [5])
        for name in self.classes:
            lines.append(f'    {name:<{width}} {self.boxes_per_class[name]}')
        if self.num_other_category:
            lines.append(f'  boxes of other categories (not used): '
                         f'{self.num_other_category}')
        lines.append(f'  dropped boxes: {len(self.dropped)}'
                     + ''.join(f'; {len(v)} {k}'
                               for k, v in self.dropped.by_reason.items()))
        lines.append(f'  boxes clamped to their image: {self.num_clamped}')
        lines += self._size_lines()
        lines.append(f'  image files checked: {self.files_checked}; missing '
                     f'{len(self.missing_files)}, unreadable '
                     f'{len(self.corrupt_files)}, size differs from the '
                     f'file {len(self.size_mismatch)}')
        return '\n'.join(lines + self._problem_lines())

    def _size_lines(self) -> List[str]:
        if not len(self.box_sizes):
            return []
        w, h = self.box_sizes[:, 0], self.box_sizes[:, 1]
        side = np.sqrt(w * h)
        q = np.percentile(side, [0, 5, 50, 95, 100])
        areas = w * h
        buckets = ', '.join(
            f'{name} {int(((areas >= lo) & (areas < hi)).sum())}'
            for name, lo, hi in AREA_RANGES)
        aspect = np.percentile(w / h, [5, 50, 95])
        return [
            '  box size sqrt(w*h) px: min {:.1f}, 5% {:.1f}, median {:.1f}, '
            '95% {:.1f}, max {:.1f}'.format(*q),
            f'  box area (COCO ranges): {buckets}',
            '  box aspect w/h: 5% {:.2f}, median {:.2f}, 95% {:.2f}'.format(
                *aspect)]

    @property
    def all_warnings(self) -> List[str]:
        """``warnings`` and, when it is not an error, the dropped-box
        message."""
        if self.dropped_message and self.dropped_message not in self.errors:
            return [self.dropped_message] + self.warnings
        return list(self.warnings)

    def _problem_lines(self) -> List[str]:
        return [f'  ERROR: {e}' for e in self.errors] + \
            [f'  warning: {w}' for w in self.all_warnings]


def _skips_corrupt(ds_cfg) -> bool:
    """Whether the dataset (``corrupt_images='skip'``) or its pipeline's
    image loader (``skip_corrupt`` / ``ignore_empty``) skips unreadable
    files."""
    if ds_cfg.get('corrupt_images') == 'skip':
        return True
    for t in ds_cfg.get('pipeline') or []:
        if isinstance(t, dict) and str(t.get('type', '')).endswith(
                'LoadImageFromFile'):
            return bool(t.get('skip_corrupt') or t.get('ignore_empty'))
    return False


def _join(root: Optional[str], path: str) -> str:
    """mmengine's ``BaseDataset._join_prefix`` for local paths."""
    if path and root and not osp.isabs(path) and '://' not in path:
        return osp.join(root, path)
    return path


def audit_coco_dataset(ds_cfg: dict, key: str, classes: Tuple[str, ...],
                       test_mode: bool, check_files: bool = True,
                       decode_images: bool = False) -> DatasetReport:
    """Audit one ``CocoDataset`` config without building it.

    Args:
        ds_cfg: the dataset config (``ann_file``, ``data_root``,
            ``data_prefix``, ``filter_cfg``, ``pipeline``, ...).
        key: its config key, for the messages.
        classes: its classes (``metainfo`` or the type's default).
        test_mode: whether mmdet skips ``filter_cfg`` for it.
        check_files: look for every image file (a ``stat`` each).
        decode_images: also read and decode every image (slow on large
            sets): corrupt files and sizes differing from the file's.

    Returns:
        The report; problems are in ``errors`` / ``warnings``, never raised.
    """
    report = DatasetReport(key=key, classes=tuple(classes))
    data_root = ds_cfg.get('data_root')
    report.ann_file = _join(data_root, ds_cfg.get('ann_file', ''))
    prefix = dict(ds_cfg.get('data_prefix') or {})
    report.img_dir = _join(data_root, prefix.get('img', ''))
    if '://' in report.ann_file:
        report.skipped = f'remote annotation file {report.ann_file}'
        return report
    if ds_cfg.get('backend_args'):
        report.skipped = ('files read through backend_args '
                          f'{ds_cfg["backend_args"]}')
        return report
    try:
        coco = load_coco_json(report.ann_file, f'{key}.ann_file',
                              images_only=test_mode)
        cat_ids = match_classes(
            classes, coco['categories'], report.ann_file,
            f'{key}.metainfo.classes')
    except DatasetCheckError as e:
        report.errors.append(str(e))
        return report
    report.parsed = True
    strict = ds_cfg.get('invalid_boxes', 'drop') == 'error'
    label_of = {cat_id: name for cat_id, name in zip(cat_ids, classes)}
    images = {img['id']: img for img in coco['images']}
    report.num_images = len(images)
    report.boxes_per_class = {name: 0 for name in classes}
    boxed_images, annotated_images, sizes = set(), set(), []
    orphans = []
    for ann in coco['annotations']:
        img = images.get(ann['image_id'])
        if img is None:
            orphans.append(ann['id'])
            continue
        if ann['category_id'] not in label_of:
            report.num_other_category += 1
            continue
        annotated_images.add(img['id'])  # mmdet's filter_empty_gt sees it
        if ann.get('ignore', False):
            continue
        reason, box = check_box(ann.get('bbox'), img['width'], img['height'])
        if reason is not None:
            report.dropped.add(reason, ann['id'], img['id'])
            continue
        bbox = ann['bbox']
        if box[2] < bbox[2] - 1 or box[3] < bbox[3] - 1:
            report.num_clamped += 1
        report.boxes_per_class[label_of[ann['category_id']]] += 1
        report.num_crowd += bool(ann.get('iscrowd', False))
        boxed_images.add(img['id'])
        sizes.append(box[2:])
    report.box_sizes = np.array(sizes, dtype=float).reshape(-1, 2)
    report.images_without_boxes = [i for i in images if i not in boxed_images]
    if orphans:
        report.warnings.append(
            f'{len(orphans)} annotations (ids {_ids(orphans)}) of '
            f'{report.ann_file} name an image_id that is not in "images"; '
            'mmdet ignores them.')
    if len(report.dropped):
        report.dropped_message = report.dropped.message(
            report.ann_file, report.num_boxes + len(report.dropped), strict,
            key)
        if strict:
            report.errors.append(report.dropped_message)

    if not test_mode:
        filter_cfg = ds_cfg.get('filter_cfg') or {}
        min_size = filter_cfg.get('min_size', 0)
        report.num_train_images = sum(
            (not filter_cfg.get('filter_empty_gt', False)
             or i in annotated_images)
            and min(img['width'], img['height']) >= min_size
            for i, img in images.items())
        if not images:
            report.errors.append(
                f'{key}: {report.ann_file} lists no image. Fix: point '
                'ann_file at the training annotations.')
        elif report.num_train_images == 0:
            report.errors.append(
                f'{key}: no training image is left after '
                f'filter_cfg={dict(filter_cfg)} (of {len(images)}). Fix: '
                'check the classes and boxes, or relax filter_cfg '
                '(filter_empty_gt=False, a smaller min_size).')
        elif report.num_boxes == 0:
            report.errors.append(
                f'{key}: {report.ann_file} has no usable box of the classes '
                f'{tuple(classes)}: DETR would learn only "no object". Fix: '
                'check metainfo.classes and the boxes.')

    if check_files and images:
        _check_image_files(report, images.values(), decode_images,
                           _skips_corrupt(ds_cfg))
    return report


def _check_image_files(report: DatasetReport, images, decode: bool,
                       skip_corrupt: bool) -> None:
    """Fill the file fields of ``report``: missing, corrupt, wrong size."""
    if '://' in report.img_dir:
        report.files_checked = f'no (remote folder {report.img_dir})'
        return
    if not osp.isdir(report.img_dir or '.'):
        report.files_checked = 'no'
        report.errors.append(
            f'{report.key}.data_prefix.img: image folder not found: '
            f'{report.img_dir}. Fix: check data_root + data_prefix.img.')
        return
    for img in images:
        path = osp.join(report.img_dir, img['file_name'])
        if not osp.isfile(path):
            report.missing_files.append((img['id'], path))
            continue
        if not decode:
            continue
        with open(path, 'rb') as f:
            data = f.read()
        try:
            shape = decode_image(data, path).shape[:2]
        except CorruptImageError as e:
            report.corrupt_files.append((img['id'], str(e)))
            continue
        if tuple(shape) != (img['height'], img['width']):
            report.size_mismatch.append(
                (img['id'], (img['height'], img['width']), tuple(shape)))
    report.files_checked = 'exist and decode' if decode else 'exist'
    if report.missing_files:
        ids = [i for i, _ in report.missing_files]
        report.errors.append(
            f'{report.key}: {len(ids)} of the image files listed in '
            f'{report.ann_file} are missing (image ids {_ids(ids)}; e.g. '
            f'{report.missing_files[0][1]}). Fix: check data_prefix.img, or '
            'remove those images from the annotation file.')
    if report.corrupt_files:
        ids = [i for i, _ in report.corrupt_files]
        text = (f'{report.key}: {len(ids)} image files are unreadable '
                f'(image ids {_ids(ids)}; {report.corrupt_files[0][1]}).')
        if skip_corrupt:
            report.warnings.append(text + ' Training skips them '
                                   "(corrupt_images='skip').")
        else:
            report.errors.append(
                text + ' Fix: replace or delete them, or skip them while '
                "training with corrupt_images='skip' in "
                f'{report.key} (a CheckedCocoDataset).')
    if report.size_mismatch:
        img_id, declared, actual = report.size_mismatch[0]
        report.warnings.append(
            f'{report.key}: {len(report.size_mismatch)} images decode to a '
            'size other than their width/height in the annotation file '
            f'(e.g. image {img_id}: {declared} declared, {actual} decoded, '
            'as (h, w)); their boxes may be misplaced (an EXIF rotation?).')
