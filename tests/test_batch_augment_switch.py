"""BatchAugmentSwitchHook: RT-DETR's random batch size stops with the other
augmentations, as the official multi-scale training does."""
import glob
import os.path as osp
from types import SimpleNamespace

from helpers.configs import CONFIG_DIR
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmengine.config import Config
from mmengine.logging import MMLogger

from detr_plugin.engine.hooks import BatchAugmentSwitchHook


def runner_at(epoch, preprocessor):
    return SimpleNamespace(model=SimpleNamespace(
        data_preprocessor=preprocessor), epoch=epoch,
        logger=MMLogger.get_current_instance())


def test_batch_augments_stop_at_the_switch_epoch_and_after_a_resume():
    hook = BatchAugmentSwitchHook(switch_epoch=3)
    for epoch, kept in ((0, True), (2, True), (3, False), (7, False)):
        preprocessor = DetDataPreprocessor(batch_augments=[dict(
            type='BatchSyncRandomResize', random_size_range=(480, 800))])
        hook.before_train_epoch(runner_at(epoch, preprocessor))
        assert (preprocessor.batch_augments is not None) == kept, epoch


def test_every_multi_scale_rtdetr_config_stops_it_with_the_pipeline():
    for path in glob.glob(osp.join(CONFIG_DIR, 'rtdetr', '*.py')):
        cfg = Config.fromfile(path)
        hooks = {h['type']: h for h in cfg.custom_hooks}
        assert hooks['BatchAugmentSwitchHook']['switch_epoch'] == \
            hooks['PipelineSwitchHook']['switch_epoch'], path
