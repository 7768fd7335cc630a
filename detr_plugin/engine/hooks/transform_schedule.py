"""Switch a mixing dataset's transforms on and off by epoch.

DEIM's Dense O2O recipe runs Mosaic and MixUp only in a middle stage of
training, the other augmentations in a longer one, and none at the start
and end. mmdet's ``MultiImageMixDataset`` (the wrapper its ``Mosaic`` and
``MixUp`` need) can skip transforms by type (``update_skip_type_keys``),
which mmdet's ``YOLOXModeSwitchHook`` does once; ``PipelineSwitchHook``
replaces a plain dataset's pipeline, which the wrapper's is not. This hook
applies a schedule of skipped types.
"""
from typing import Dict, Sequence

from mmengine.hooks import Hook

from ...registry import HOOKS


@HOOKS.register_module()
class TransformScheduleHook(Hook):
    """From each epoch of ``schedule`` on (0-based, as
    ``PipelineSwitchHook``'s; until the next), the training dataset (a
    ``MultiImageMixDataset``) skips the transforms of the listed types (also
    when a run resumes in the middle)."""

    def __init__(self, schedule: Dict[int, Sequence[str]]) -> None:
        self.schedule = {int(k): list(v) for k, v in schedule.items()}
        self._current = None

    def before_train_epoch(self, runner) -> None:
        started = [e for e in self.schedule if e <= runner.epoch]
        if not started:
            return
        skipped = self.schedule[max(started)]
        if skipped == self._current:
            return
        loader = runner.train_dataloader
        dataset = loader.dataset
        if not hasattr(dataset, 'update_skip_type_keys'):
            raise TypeError(
                f'TransformScheduleHook needs a MultiImageMixDataset as the '
                f'training dataset, not {type(dataset).__name__}')
        dataset.update_skip_type_keys(skipped)
        self._current = skipped
        # workers hold copies of the dataset: restart them, as mmdet's
        # PipelineSwitchHook
        if getattr(loader, 'persistent_workers', False):
            loader._DataLoader__initialized = False
            loader._iterator = None
            loader._DataLoader__initialized = True
        runner.logger.info(f'epoch {runner.epoch}: transforms skipped: '
                           f'{skipped or "none"} (TransformScheduleHook)')
