"""``CheckedCocoPanopticDataset``: mmdet's ``CocoPanopticDataset`` with the
checks of :class:`.CheckedCocoDataset`.

mmdet's panoptic dataset labels every segment by its category: a class name
that is not in the file stops it with a bare ``KeyError`` of a category id
while it loads, and classes in another order than the file's label every
segment wrongly without a word. Here the file is read and checked once as a
detection file is (each segment's box as an annotation's) and, beyond that,
the classes must name every category, things first (``thing_classes`` and
``stuff_classes`` other than the file's ``isthing`` flags give a warning);
the check before training also finds missing segment PNGs and a wrong
``num_things`` (:func:`.dataset_check.check_panoptic_pipeline`).
"""
from typing import List

from mmdet.datasets import CocoPanopticDataset

from ..registry import DATASETS
from .checked_coco import CheckedCocoDataset
from .coco_annotations import (PANOPTIC_FIELDS, TO_COCO, DatasetCheckError,
                               ids_text, match_classes)


@DATASETS.register_module()
class CheckedCocoPanopticDataset(CheckedCocoDataset, CocoPanopticDataset):
    """mmdet's ``CocoPanopticDataset`` with DETR's data checks (the
    arguments of :class:`.CheckedCocoDataset`; ``invalid_boxes`` applies to
    the segments' boxes)."""

    FIELDS = PANOPTIC_FIELDS

    def annotation_records(self, data: dict) -> List[dict]:
        """Each segment, given its image's ``image_id`` in place (as
        mmdet's ``COCOPanoptic`` index does next: no copy per segment)."""
        bad = [ann['image_id'] for ann in data['annotations'] if not (
            isinstance(ann['segments_info'], list) and all(
                isinstance(s, dict) and 'id' in s and 'category_id' in s
                for s in ann['segments_info']))]
        if bad:
            raise DatasetCheckError(
                f'{self.ann_file} is not COCO-panoptic-shaped: the '
                f'segments_info of images {ids_text(bad)} is not a list of '
                f'segments with "id" and "category_id".{TO_COCO}')
        records = []
        for ann in data['annotations']:
            for segment in ann['segments_info']:
                segment['image_id'] = ann['image_id']
                records.append(segment)
        return records

    @staticmethod
    def record_name(record: dict) -> str:
        """A segment by its id and its image's: segment ids repeat across
        images."""
        return f'{record["id"]} in image {record["image_id"]}'

    def check_classes(self, categories: List[dict], key: str) -> None:
        """As a detection file's (:func:`match_classes`), and: every
        category named (mmdet labels every segment), the thing categories
        (``isthing``) first (DETRPanoptic and ``AddStuffInstances`` take
        labels below the number of things for things); a warning when
        ``thing_classes`` / ``stuff_classes`` differ from the file's."""
        match_classes(self.report.classes, categories, self.ann_file,
                      f'{key}.classes', effect='stop on the first segment '
                      'of a category that is not a class (KeyError).')
        names = [c['name'] for c in categories]
        classes = self.report.classes
        unnamed = [n for n in names if n not in classes]
        if unnamed:
            raise DatasetCheckError(
                f'{key}.classes do not name the categories '
                f'{ids_text(map(repr, unnamed), 10)} of {self.ann_file}: '
                "mmdet's panoptic dataset labels every segment and stops on "
                "the first of theirs (KeyError). Fix: classes=(...) with all "
                f"{len(names)} category names, in the file's order.")
        things = tuple(c['name'] for c in categories if c['isthing'])
        self.report.thing_classes = things
        if classes[:len(things)] != things:
            raise DatasetCheckError(
                f'{self.ann_file} lists stuff categories before thing '
                f'categories ({ids_text(map(repr, names), 10)}; things: '
                f'{things}): DETRPanoptic and AddStuffInstances take the '
                'labels below the number of things for things. Fix: list '
                'the categories with isthing=1 first in the file.')
        for name, expected in (('thing_classes', things),
                               ('stuff_classes', classes[len(things):])):
            given = self.metainfo.get(name)
            if given is not None and tuple(given) != expected:
                self.report.warn(
                    f'{key}.{name} is {tuple(given)}, but the isthing flags '
                    f'of {self.ann_file} make it {expected}: a '
                    'CocoPanopticMetric without ann_file would count '
                    'segments as the wrong kind (with one, it reads the '
                    f"file's flags). Fix: {name}={expected}.")

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Check and count the image's own segments only (mmdet's index
        hands over every image's segments that share their ids: segment ids
        are per image; its parsing then leaves them out); a segment of no
        pixel (``area <= 0``: not in the PNG) is dropped, as mmdet drops
        it, and counted."""
        img_id = raw_data_info['raw_img_info']['img_id']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            if ann['image_id'] != img_id:
                continue
            area = ann.get('area')
            if isinstance(area, (int, float)) and area > 0:
                kept.append(ann)
            else:
                self.report.dropped.setdefault(
                    'area <= 0 (no pixel in the segment PNG)', []).append(
                        (ann['id'], img_id))
        info = super().parse_data_info(dict(raw_data_info, raw_ann_info=kept))
        # every segment the file lists for the image, with its area: the
        # check of the PNGs compares them (mmdet leaves some out)
        info['segment_areas'] = {
            ann['id']: ann.get('area') for ann in raw_data_info['raw_ann_info']
            if ann['image_id'] == img_id}
        return info
