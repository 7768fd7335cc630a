"""Check the runner's own datasets before the first iteration.

The datasets check their annotation files as they load them
(``CheckedCocoDataset``); :class:`DataCheckHook` adds, on the process of
rank 0 (the others get its verdict), what loading does not see -- image
files, segment maps, ``num_classes``, the evaluator's file -- and stops the
run with one ``DatasetCheckError`` listing every problem, before training
(the train and val splits) or testing.
"""
from mmengine.hooks import Hook

from ...datasets import check_dataset_config
from ...registry import HOOKS


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Check each split's dataset once, before its first use.

    Args:
        check_files: check the image files (exist, header, whole end, size).
        decode_images: decode every image too (slow on large sets).
    """

    priority = 'VERY_HIGH'

    def __init__(self, check_files: bool = True,
                 decode_images: bool = False) -> None:
        self.check_files, self.decode_images = check_files, decode_images
        self.checked = set()

    def check(self, runner, split: str) -> None:
        if split in self.checked:
            return
        self.checked.add(split)
        loader = getattr(runner, f'{split}_dataloader')
        check_dataset_config(runner.cfg, split, self.check_files,
                             self.decode_images, dataset=loader.dataset)

    def before_train(self, runner) -> None:
        self.check(runner, 'train')
        if runner.cfg.get('val_cfg') and runner.cfg.get('val_dataloader'):
            self.check(runner, 'val')

    def before_val(self, runner) -> None:
        self.check(runner, 'val')

    def before_test(self, runner) -> None:
        self.check(runner, 'test')
