"""Bad data and faults: checks before training, guards during it.

* :func:`check_dataset_config` (:mod:`.config_checks`): before the first
  iteration, one :class:`DatasetCheckError` naming the config key, file,
  ids and fix for each problem that would make a run fail or learn nothing;
  ``tools/check_dataset.py`` prints the full :class:`DatasetReport`.
* :class:`CheckedCocoDataset` (:mod:`.coco_dataset`; its checks are
  :class:`CocoDatasetChecksMixin`): inside the dataset, stops on classes that
  are not the file's, clamps boxes to their image and drops unusable ones
  with one warning (or an error with ``invalid_boxes='error'``).
* :class:`CheckedLoadImageFromFile` (:mod:`.image_files`), which
  ``CheckedCocoDataset`` puts in place of ``LoadImageFromFile``: a corrupt or
  truncated image raises :class:`CorruptImageError` naming it, or is skipped
  (``corrupt_images='skip'`` on the dataset).
* :class:`NonFiniteLossHook` (:mod:`.nonfinite_loss`): never steps on a NaN
  gradient; stops naming the iteration and loss term, or skips and counts.
* :class:`AtomicCheckpointHook` (:mod:`.atomic_checkpoint`): checkpoints and
  ``last_checkpoint`` written atomically; ``--resume`` picks the newest
  complete checkpoint.
"""
from .atomic_checkpoint import (AtomicCheckpointHook, AtomicLocalBackend,
                                atomic_write, find_resumable_checkpoint,
                                is_complete_checkpoint)
from .coco_annotations import DatasetCheckError, check_box
from .coco_dataset import CheckedCocoDataset, CocoDatasetChecksMixin
from .config_checks import audit_split, check_dataset_config
from .dataset_report import DatasetReport
from .image_files import CheckedLoadImageFromFile, CorruptImageError
from .nonfinite_loss import NonFiniteLossError, NonFiniteLossHook

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write',
    'find_resumable_checkpoint', 'is_complete_checkpoint',
    'DatasetCheckError', 'check_box', 'CheckedCocoDataset',
    'CocoDatasetChecksMixin',
    'audit_split', 'check_dataset_config', 'DatasetReport',
    'CorruptImageError', 'CheckedLoadImageFromFile', 'NonFiniteLossError',
    'NonFiniteLossHook'
]
