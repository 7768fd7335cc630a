"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` that checks what it loads.

The one implementation of reading and validating COCO annotations; the check
before the first iteration (:mod:`.dataset_check`) reads its report, so the
file is read once.
"""
from dataclasses import dataclass, field
from functools import partial
from difflib import get_close_matches
from typing import Dict, List, Optional, Tuple

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from ..registry import DATASETS
from .coco_annotations import (COCO_FIELDS, DatasetCheckError, check_box,
                               ids_text, load_coco_json, match_classes)
from .transforms import CheckedLoadImageFromFile

ACTIONS = dict(invalid_boxes=('drop', 'error'),
               corrupt_images=('error', 'skip'),
               size_mismatch=('error', 'rescale'))
LOADERS = ('LoadImageFromFile', 'CheckedLoadImageFromFile')


@dataclass
class DatasetReport:
    """What loading a dataset (config key ``key``) found in its file.

    ``parsed``: the file and classes are usable (the counts are filled);
    ``boxes_per_class``: usable boxes, crowd ones too; ``dropped``:
    ``{reason: [(annotation id, image id)]}``; ``box_sizes``: ``(w, h)`` of
    the usable boxes in pixels; ``num_train_images``: left by ``filter_cfg``.
    The check adds ``missing_files``, ``corrupt_files`` (``[(img_id, path or
    reason)]``) and ``size_mismatch`` (``[(img_id, (h, w) in the file,
    (h, w) decoded)]``).
    """
    key: str
    ann_file: str = ''
    img_dir: str = ''
    seg_dir: str = ''  # a panoptic set's segment maps
    skipped: str = ''
    parsed: bool = False
    classes: Tuple[str, ...] = ()
    thing_classes: Tuple[str, ...] = ()  # a panoptic set's
    num_images: int = 0
    num_train_images: Optional[int] = None
    boxes_per_class: Dict[str, int] = field(default_factory=dict)
    num_crowd: int = 0
    num_other_category: int = 0
    num_clamped: int = 0
    images_without_boxes: List = field(default_factory=list)
    dropped: Dict[str, List] = field(default_factory=dict)
    box_sizes: List = field(default_factory=list)
    files_checked: str = 'no'
    missing_files: List = field(default_factory=list)
    corrupt_files: List = field(default_factory=list)
    size_mismatch: List = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    @property
    def num_boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    @property
    def num_dropped(self) -> int:
        return sum(map(len, self.dropped.values()))

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print_log(text, logger='current', level=30)

    def dropped_message(self, strict: bool) -> str:
        """The one message about the dropped boxes: how many, why, which."""
        count = (f'{self.num_dropped} of {self.num_boxes + self.num_dropped} '
                 f'boxes in {self.ann_file}')
        why = '; '.join(
            f'{len(pairs)} {reason} (annotation ids '
            f'{ids_text(a for a, _ in pairs)} in images '
            f'{ids_text(sorted({i for _, i in pairs}, key=str))})'
            for reason, pairs in self.dropped.items())
        where = self.key or 'the dataset config'
        if strict:
            return (f'{count} are unusable: {why}. Fix the boxes in the file, '
                    f"or set invalid_boxes='drop' in {where} to drop them "
                    'with a warning.')
        return (f'dropped {count} that DETR cannot use: {why}. Fix the boxes '
                f"in the file, or set invalid_boxes='error' in {where} to "
                'stop on them.')


def _coco_api(api: type, data: dict, local_path: str) -> COCO:
    """mmdet's ``COCO`` (or ``COCOPanoptic``) ``api`` over an annotation
    dict already read (pycocotools only reads files): ``COCOAPI`` for mmdet's
    ``load_data_list``."""
    coco = api()
    coco.dataset = data
    coco.createIndex()
    # mmdet's aliases, made in COCO.__init__ before createIndex replaced them
    coco.img_ann_map, coco.cat_img_map = coco.imgToAnns, coco.catToImgs
    return coco


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with DETR's data checks.

    Loading stops on a file that is not COCO-shaped or classes that are not
    its categories in its order, clamps boxes to their image and drops the
    unusable ones, stops on a training set without images, logs what
    ``filter_cfg`` removed and why (mmdet's filter drops images without
    boxes silently, though DETR learns "no object" from them), and counts
    all in ``self.report`` (a :class:`DatasetReport`). ``LoadImageFromFile``
    in its pipeline becomes :class:`.transforms.CheckedLoadImageFromFile`.

    Args:
        invalid_boxes: ``'drop'`` (default, as official DETR): drop unusable
            boxes with one warning; ``'error'``: raise naming them.
        corrupt_images: ``'error'`` (default): a corrupt image file stops the
            run naming it; ``'skip'``: skip it with a warning (training only:
            mmengine fetches another image).
        size_mismatch: an image whose decoded size is not its annotation's:
            ``'error'`` (default) names it; ``'rescale'`` resizes it to the
            annotation's size (boxes drawn on a resized copy).
        config_key: the dataset's key in the config (its messages name it;
            the tools set it).
    """

    FIELDS = COCO_FIELDS  # what the file's entries must hold

    def __init__(self, *args, invalid_boxes: str = 'drop',
                 corrupt_images: str = 'error', size_mismatch: str = 'error',
                 config_key: str = '', **kwargs) -> None:
        self.invalid_boxes, self.corrupt_images = invalid_boxes, corrupt_images
        self.size_mismatch, self.config_key = size_mismatch, config_key
        for name, choices in ACTIONS.items():
            if getattr(self, name) not in choices:
                close = get_close_matches(str(getattr(self, name)), choices, 1)
                raise DatasetCheckError(
                    f'{config_key or "the dataset"}.{name}='
                    f'{getattr(self, name)!r}: choose one of {choices}' + (
                        f' (did you mean {close[0]!r}?)' if close else '') +
                    '.')
        kwargs['pipeline'] = [
            dict(t, type=LOADERS[1], skip_corrupt=t.get(
                'skip_corrupt', corrupt_images == 'skip'),
                 size_mismatch=t.get('size_mismatch', size_mismatch))
            if isinstance(t, dict) and t.get('type') in LOADERS else t
            for t in kwargs.get('pipeline') or []]
        super().__init__(*args, **kwargs)

    def full_init(self) -> None:
        """mmdet's, then its image loader learns the config key (for the
        fixes it names)."""
        super().full_init()
        for t in self.pipeline.transforms:
            if isinstance(t, CheckedLoadImageFromFile):
                t.config_key = self.report.key or (
                    'a test-mode dataset' if self.test_mode else '')

    def _get_unserialized_subset(self, indices) -> List[dict]:
        """mmengine's subset of ``indices``; an empty one is an error
        (mmengine would fail serializing it, naming no key)."""
        subset = super()._get_unserialized_subset(indices)
        if not subset:
            raise DatasetCheckError(
                f'{self.config_key or "the dataset"}.indices={indices!r} '
                'keeps none of its images. Fix: indices=None for all, N > 0 '
                'for the first N, or a list of positions.')
        return subset

    def load_data_list(self) -> List[dict]:
        """Read and check the file, then mmdet's parsing of what was read
        (through :meth:`parse_data_info`)."""
        prefix = f'{self.config_key}.' if self.config_key else ''
        classes = tuple(self.metainfo['classes'])
        self.report = report = DatasetReport(
            self.config_key, self.ann_file, self.data_prefix.get('img', ''),
            self.data_prefix.get('seg') or '', classes=classes,
            boxes_per_class=dict.fromkeys(classes, 0))
        with get_local_path(self.ann_file, self.backend_args) as path:
            data = load_coco_json(path, f'{prefix}ann_file', self.test_mode,
                                  self.FIELDS)
        self.check_classes(data['categories'], f'{prefix}metainfo')
        report.parsed, report.num_images = True, len(data['images'])
        records = self.annotation_records(data)
        for ref, name in (('image_id', 'images'),
                          ('category_id', 'categories')):
            known = {item['id'] for item in data[name]}
            stray = [ann for ann in records if ann[ref] not in known]
            if not stray:
                continue
            text = (f'{len(stray)} annotations (ids '
                    f'{ids_text(map(self.record_name, stray))}) of '
                    f'{self.ann_file} name a {ref} that is not in "{name}" '
                    f'({ids_text(sorted({a[ref] for a in stray}, key=str))}'
                    '): they are ignored. Fix: correct those ids or add '
                    f'the missing {name}')
            if self.invalid_boxes == 'error':
                raise DatasetCheckError(f'{text}.')
            report.warn(f"{text} (invalid_boxes='error' in "
                        f"{self.config_key or 'the dataset'} stops on them).")
        self.COCOAPI = partial(_coco_api, type(self).COCOAPI, data)
        try:
            data_list = super().load_data_list()
        finally:
            del self.COCOAPI
        if report.dropped and self.invalid_boxes == 'drop':
            report.warn(report.dropped_message(strict=False))
        return data_list

    @staticmethod
    def record_name(record: dict):
        """How messages name an annotation of :meth:`annotation_records`.
        """
        return record['id']

    def check_classes(self, categories: List[dict], key: str) -> None:
        """The classes (config key ``key``: the ``metainfo``) are category
        names of the file, in its order (:func:`match_classes`)."""
        match_classes(self.report.classes, categories, self.ann_file,
                      f'{key}.classes')

    def annotation_records(self, data: dict) -> List[dict]:
        """The file's annotations with ``id``, ``image_id`` and
        ``category_id`` (a detection file's as they are)."""
        return data['annotations']

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """mmdet's parsing of one image after :func:`check_box` on each box
        of the classes (clamped ones kept, unusable ones dropped), counted
        in ``self.report``."""
        img, report = raw_data_info['raw_img_info'], self.report
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann['category_id'] not in self.cat2label:
                report.num_other_category += 1  # mmdet skips them
                continue
            if ann.get('ignore', False):  # mmdet skips them
                continue
            reason, box = check_box(ann.get('bbox'), img['width'],
                                    img['height'])
            if reason is not None:
                report.dropped.setdefault(reason, []).append(
                    (ann['id'], img['img_id']))
                continue
            area = ann.get('area')
            if not (isinstance(area, (int, float)) and area > 0):
                area = box[2] * box[3]  # mmdet drops area <= 0 silently
            kept.append(dict(ann, bbox=box, area=area))
            label = self.cat2label[ann['category_id']]
            report.boxes_per_class[report.classes[label]] += 1
            report.num_crowd += bool(ann.get('iscrowd', False))
            report.num_clamped += (box[2] < ann['bbox'][2] - 1
                                   or box[3] < ann['bbox'][3] - 1)
            report.box_sizes.append(box[2:])
        if not kept:
            report.images_without_boxes.append(img['img_id'])
        return super().parse_data_info(
            dict(raw_data_info, raw_ann_info=kept))

    def filter_data(self) -> List[dict]:
        """mmdet's filter (logged); errors for unusable boxes with
        ``invalid_boxes='error'``, a file without images and a training set
        left without images."""
        report = self.report
        where = f'{self.config_key}: ' if self.config_key else ''
        if report.dropped and self.invalid_boxes == 'error':
            raise DatasetCheckError(report.dropped_message(strict=True))
        if not self.data_list:
            raise DatasetCheckError(
                f'{where}{self.ann_file} lists no image. Fix: point '
                'ann_file at the annotations of this split.')
        kept = super().filter_data()
        if self.test_mode:
            return kept
        report.num_train_images = len(kept)
        if self.filter_cfg:
            self.log_filter(kept)
        if not kept:
            raise DatasetCheckError(
                f'{where}no training image is left after filter_cfg='
                f'{dict(self.filter_cfg)} (of {len(self.data_list)}) in '
                f'{self.ann_file}. Fix: check the classes and boxes (python '
                'tools/check_dataset.py CONFIG), or relax filter_cfg '
                '(filter_empty_gt=False, a smaller min_size).')
        return kept

    def log_filter(self, kept: List[dict]) -> None:
        """One log line: how many images ``filter_cfg`` kept and removed,
        and why."""
        kept_ids = {info['img_id'] for info in kept}
        removed = [d for d in self.data_list if d['img_id'] not in kept_ids]
        min_size = self.filter_cfg.get('min_size', 0)
        small = sum(min(d['width'], d['height']) < min_size for d in removed)
        print_log(
            f'{type(self).__name__} ({self.ann_file}): kept {len(kept)} of '
            f'{len(self.data_list)} images; filtered out '
            f'{len(removed) - small} without boxes of the used classes '
            f'(filter_empty_gt={self.filter_cfg.get("filter_empty_gt")}) '
            f'and {small} smaller than min_size={min_size} px',
            logger='current')
