"""Fine-tuning from a checkpoint trained on another dataset (``load_from``).

mmengine loads ``load_from`` with ``strict=False``: a classifier of another
shape (COCO's 81 rows into a 1-class head's 2) is skipped with a long "size
mismatch" warning. :class:`AdaptCheckpointHook` gives the checkpoint the
model's own initial classifier instead, with one log line, and renames a
checkpoint of mmdet's DETR to this package's layout, in
``after_load_checkpoint``: after the file is read, before it is copied in.
"""
from typing import Dict, List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from ...checkpoint_converters import mmdet_to_plugin
from ...registry import HOOKS

# A key only mmdet's DETR layout has (our input projection is `input_proj`).
MMDET_LAYOUT_KEY = 'neck.convs.0.conv.weight'


def reset_mismatched_classifier(state_dict: Dict[str, Tensor],
                                model: nn.Module,
                                classifier: str = 'bbox_head.fc_cls'
                                ) -> List[str]:
    """Replace (in place) ``classifier``'s weights in ``state_dict`` (keys
    optionally prefixed ``module.``) whose shape differs from the model's by
    the model's; one ``'key: checkpoint shape -> model shape'`` per key."""
    ours = model.state_dict()
    replaced = []
    for key in list(state_dict):
        name = key[len('module.'):] if key.startswith('module.') else key
        if not name.startswith(classifier + '.') or name not in ours:
            continue
        theirs, want = tuple(state_dict[key].shape), tuple(ours[name].shape)
        if theirs != want:
            state_dict[key] = ours[name].detach().clone()
            replaced.append(f'{name}: {theirs} -> {want}')
    return replaced


@HOOKS.register_module()
class AdaptCheckpointHook(Hook):
    """Adapt a loaded checkpoint to the model before it is copied in;
    ``classifier`` (module path) keeps the model's own initial weights when
    the checkpoint's class count differs."""

    priority = 'VERY_HIGH'

    def __init__(self, classifier: str = 'bbox_head.fc_cls'):
        self.classifier = classifier

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        key = 'state_dict' if 'state_dict' in checkpoint else None
        state_dict = checkpoint[key] if key else checkpoint
        if MMDET_LAYOUT_KEY in state_dict and \
                MMDET_LAYOUT_KEY not in model.state_dict():
            state_dict = mmdet_to_plugin(state_dict)
            runner.logger.info('Checkpoint in mmdet DETR layout: renamed its '
                               'keys to detr_plugin layout.')
            if key:
                checkpoint[key] = state_dict
            else:
                checkpoint.clear()
                checkpoint.update(state_dict)
        replaced = reset_mismatched_classifier(state_dict, model,
                                               self.classifier)
        if replaced:
            runner.logger.warning(
                'Checkpoint classifier has another class count ('
                + '; '.join(replaced) + f'): {self.classifier} is '
                're-initialized, every other weight loads from the '
                'checkpoint.')
