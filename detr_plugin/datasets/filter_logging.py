"""mmdet's ``CocoDataset`` that logs how many images its filter removed.

With ``filter_cfg=dict(filter_empty_gt=True)`` mmdet silently drops every
training image without a box, although DETR learns its no-object class from
them. :class:`FilterLogMixin` makes any mmdet detection dataset log, when it
is built, how many images its ``filter_cfg`` kept and removed, and why;
``type='LoggingCocoDataset'`` is mmdet's ``CocoDataset`` with it.
"""
from typing import List

from mmdet.datasets import CocoDataset
from mmengine.logging import print_log

from ..registry import DATASETS


class FilterLogMixin:
    """Logs the effect of ``filter_cfg`` (put before the dataset class)."""

    filter_log = ''

    def filter_data(self) -> List[dict]:
        """The dataset's filter, then one log line (kept in ``filter_log``):
        kept / removed and why."""
        kept = super().filter_data()
        if self.test_mode or self.filter_cfg is None:
            return kept
        kept_ids = {data_info['img_id'] for data_info in kept}
        removed = [d for d in self.data_list if d['img_id'] not in kept_ids]
        min_size = self.filter_cfg.get('min_size', 0)
        too_small = sum(min(d['width'], d['height']) < min_size
                        for d in removed)
        self.filter_log = (
            f'{type(self).__name__} ({self.ann_file}): kept {len(kept)} of '
            f'{len(self.data_list)} images; filtered out '
            f'{len(removed) - too_small} without boxes of the used classes '
            f'(filter_empty_gt='
            f'{self.filter_cfg.get("filter_empty_gt", False)}) and '
            f'{too_small} smaller than min_size={min_size} px')
        print_log(self.filter_log, logger='current')
        return kept


@DATASETS.register_module()
class LoggingCocoDataset(FilterLogMixin, CocoDataset):
    """mmdet's ``CocoDataset`` that logs what its ``filter_cfg`` removed."""
