"""mmdet's ``CocoDataset`` with DETR's data checks: ``CheckedCocoDataset``.

:class:`CocoDatasetChecksMixin` goes before mmdet's ``CocoDataset`` in a
subclass's bases (:class:`CheckedCocoDataset`, registered in the
``detr_plugin`` scope, is one), so the data the model sees is the checked
data:

* the classes must all be category names of the annotation file, in its
  order (:func:`.coco_annotations.match_classes`), or loading stops;
* every box goes through :func:`.coco_annotations.check_box`: boxes that
  stick out of their image are clamped to it, and NaN/infinite, zero- or
  negative-size, sub-pixel and wholly-outside boxes are dropped with one
  warning per annotation file that counts them by reason and names a few
  annotation and image ids (``invalid_boxes='error'``: an error instead);
* a training set with no image left after mmdet's ``filter_cfg`` stops;
* ``LoadImageFromFile`` in its pipeline becomes
  :class:`.image_files.CheckedLoadImageFromFile` (same arguments), which
  names a corrupt or truncated image file (``corrupt_images='error'``) or
  skips it with a warning (``corrupt_images='skip'``).
"""
from typing import List, Union

from mmdet.datasets import CocoDataset
from mmengine.logging import print_log

from ..engine.filter_logging import FilterLogMixin
from ..registry import DATASETS
from .coco_annotations import (DatasetCheckError, DroppedBoxes, check_box,
                               load_coco_json, match_classes)

INVALID_BOX_ACTIONS = ('drop', 'error')
CORRUPT_IMAGE_ACTIONS = ('error', 'skip')
CHECKED_LOADER = 'CheckedLoadImageFromFile'


def _checked_pipeline(pipeline, skip_corrupt: bool):
    """``pipeline`` with each ``LoadImageFromFile`` config replaced by
    :data:`CHECKED_LOADER` (``skip_corrupt`` unless the entry sets it)."""
    checked = []
    for transform in pipeline or []:
        if isinstance(transform, dict) and transform.get('type') in (
                'LoadImageFromFile', CHECKED_LOADER):
            transform = dict(transform, type=CHECKED_LOADER)
            transform.setdefault('skip_corrupt', skip_corrupt)
        checked.append(transform)
    return checked


class CocoDatasetChecksMixin:
    """Checks for a ``CocoDataset`` subclass (put this class first).

    Args:
        invalid_boxes: ``'drop'`` (default, official DETR's behaviour):
            drop unusable boxes with one warning; ``'error'``: raise
            :class:`DatasetCheckError` naming them.
        corrupt_images: ``'error'`` (default): a corrupt or truncated image
            file stops the run naming it; ``'skip'``: it is skipped with a
            warning and the count (training only: mmengine refetches another
            image; a test-mode dataset cannot skip).
        *args, **kwargs: mmdet's ``CocoDataset`` arguments.
    """

    def __init__(self, *args, invalid_boxes: str = 'drop',
                 corrupt_images: str = 'error', **kwargs) -> None:
        if invalid_boxes not in INVALID_BOX_ACTIONS:
            raise ValueError(f'invalid_boxes must be one of '
                             f'{INVALID_BOX_ACTIONS}, got {invalid_boxes!r}')
        if corrupt_images not in CORRUPT_IMAGE_ACTIONS:
            raise ValueError(f'corrupt_images must be one of '
                             f'{CORRUPT_IMAGE_ACTIONS}, got '
                             f'{corrupt_images!r}')
        self.invalid_boxes = invalid_boxes
        self.corrupt_images = corrupt_images
        kwargs['pipeline'] = _checked_pipeline(
            kwargs.get('pipeline', []), corrupt_images == 'skip')
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """mmdet's loading, then the class check and the dropped-box
        message."""
        self._dropped = DroppedBoxes()
        self._num_boxes = 0
        self._categories = None  # the file's, read while mmdet parses
        data_list = super().load_data_list()
        if self._categories is None:  # no image: read them from the file
            self._categories = load_coco_json(self.ann_file)['categories']
        match_classes(tuple(self.metainfo['classes']), self._categories,
                      self.ann_file, 'metainfo.classes')
        if len(self._dropped):
            text = self._dropped.message(
                self.ann_file, self._num_boxes,
                strict=self.invalid_boxes == 'error')
            if self.invalid_boxes == 'error':
                raise DatasetCheckError(text)
            print_log(text, logger='current', level=30)
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """mmdet's parsing of one image after :func:`check_box` on each of
        its annotations (clamped boxes kept, unusable ones recorded and
        dropped)."""
        if self._categories is None:
            self._categories = self.coco.dataset['categories']
        img = raw_data_info['raw_img_info']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                kept.append(ann)
                continue
            self._num_boxes += 1
            reason, box = check_box(ann.get('bbox'), img['width'],
                                    img['height'])
            if reason is not None:
                self._dropped.add(reason, ann.get('id'), img['img_id'])
                continue
            area = ann.get('area')
            if not (isinstance(area, (int, float)) and area > 0):
                area = box[2] * box[3]  # mmdet drops area <= 0 silently
            kept.append(dict(ann, bbox=box, area=area))
        return super().parse_data_info(
            dict(raw_data_info, raw_ann_info=kept))

    def filter_data(self) -> List[dict]:
        """mmdet's filter; a training set left empty by it is an error."""
        kept = super().filter_data()
        if not self.test_mode and len(self.data_list) and not kept:
            raise DatasetCheckError(
                f'no training image of {self.ann_file} is left after '
                f'filter_cfg={self.filter_cfg} (of {len(self.data_list)}). '
                'Fix: check the classes and boxes (python '
                'tools/check_dataset.py CONFIG), or relax filter_cfg '
                '(filter_empty_gt=False, a smaller min_size).')
        if not self.test_mode and not self.data_list:
            raise DatasetCheckError(
                f'{self.ann_file} lists no image. Fix: point ann_file at the '
                'training annotations.')
        return kept


@DATASETS.register_module()
class CheckedCocoDataset(CocoDatasetChecksMixin, FilterLogMixin, CocoDataset):
    """mmdet's ``CocoDataset`` with :class:`CocoDatasetChecksMixin` (classes,
    boxes, empty sets, corrupt images) and the runner's filter log."""
