"""Stop the data preprocessor's batch augments from an epoch on.

RT-DETR's multi-scale training resizes each batch to a random size (here
mmdet's ``BatchSyncRandomResize``, a batch augment of the data
preprocessor) and stops it with the other augmentations for the last
epochs. mmdet's ``PipelineSwitchHook`` switches the dataset's pipeline only;
this hook does the same for the batch augments.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...registry import HOOKS


@HOOKS.register_module()
class BatchAugmentSwitchHook(Hook):
    """From epoch ``switch_epoch`` (0-based, as ``PipelineSwitchHook``'s)
    on, the data preprocessor's ``batch_augments`` are dropped (also when a
    run resumes past it)."""

    def __init__(self, switch_epoch: int) -> None:
        self.switch_epoch = switch_epoch

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        preprocessor = model.data_preprocessor
        if runner.epoch >= self.switch_epoch and \
                getattr(preprocessor, 'batch_augments', None) is not None:
            preprocessor.batch_augments = None
            runner.logger.info(f'epoch {runner.epoch}: batch augments off '
                               f'(BatchAugmentSwitchHook)')
