"""Fine-tuning from a checkpoint trained on another dataset (``load_from``).

:class:`AdaptCheckpointHook` gives a checkpoint whose classifier has another
class count the model's own initial classifier, with one log line, and
renames one of mmdet's DETR (or a successor) to this package's layout, in
``after_load_checkpoint``: after the file is read, before it is copied in
(:mod:`detr_plugin.checkpoint.fit`). ``tools/test.py`` makes it refuse a
checkpoint that does not fit instead, as ``tools/infer.py`` does. A frozen
parameter (``requires_grad=False``, e.g. the detector of a panoptic stage 2)
must fit in either mode: training would never change it.
"""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...checkpoint import (CLASS_ROWS, by_module, fit_to_model,
                           missing_tensors, model_variant, use_safe_loading)
from ...registry import HOOKS


@HOOKS.register_module()
class AdaptCheckpointHook(Hook):
    """Adapt a loaded checkpoint to the model before it is copied in.

    Args:
        classifier: module path of the classifier that keeps the model's
            own initial weights when the checkpoint's class count differs;
            None: every tensor with a row per class (:data:`CLASS_ROWS`:
            DETR's ``bbox_head.fc_cls``, its successors'
            ``bbox_head.cls_branches.*``, DINO's
            ``dn_query_generator.label_embedding``).
        on_mismatch: ``'reset'`` (fine-tuning: that classifier is reset,
            unless frozen; other tensors of other shapes, or missing, keep
            the model's initial values too, with one warning naming them);
            ``'error'`` (testing, ``tools/test.py``): any tensor of another
            shape, or one the checkpoint lacks, stops the run, naming the
            classifier first and the fix.
    """

    priority = 'VERY_HIGH'

    def __init__(self, classifier: Optional[str] = None,
                 on_mismatch: str = 'reset'):
        use_safe_loading()  # before the runner loads load_from
        if on_mismatch not in ('reset', 'error'):
            raise ValueError(f"on_mismatch must be 'reset' or 'error', got "
                             f'{on_mismatch!r}')
        self.classifier, self.on_mismatch = classifier, on_mismatch

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False):
            return  # a run continued: AtomicCheckpointHook refuses a misfit
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        # edited in place: the checkpoint's 'state_dict', or the checkpoint
        state_dict, ours = checkpoint.get('state_dict', checkpoint), \
            model.state_dict()
        mismatches = fit_to_model(state_dict, model,
                                  runner.cfg.get('load_from'),
                                  refuse_misfit=self.on_mismatch == 'error')
        replaced = [(key, theirs, want) for key, theirs, want in mismatches
                    if (CLASS_ROWS.match(key) if self.classifier is None
                        else key.startswith(self.classifier + '.'))]
        # the rest keeps its initial values too: mmengine would say so per
        # tensor ("size mismatch", "missing keys"); one warning says it here
        reset = [key for key, _, _ in replaced]
        kept = [key for key, _, _ in mismatches if key not in reset] + \
            missing_tensors(state_dict, ours)
        variants = [model_variant(d, strict=False) for d in (state_dict, ours)]
        for key in reset + kept:
            state_dict[key] = ours[key].detach().clone()
        modules = sorted({key.rsplit('.', 1)[0] for key, _, _ in replaced})
        if replaced:
            runner.logger.warning(
                'Checkpoint classifier has another class count (' + '; '.join(
                    f'{key}: {theirs} -> {want}'
                    for key, theirs, want in replaced) + '): ' +
                ', '.join(modules) + (' is' if len(modules) == 1 else ' are')
                + ' re-initialized' + ('.' if kept else ', every other '
                                       'weight loads from the checkpoint.'))
        if kept:
            runner.logger.warning(
                f'{len(kept)} of the model\'s tensors are missing from the '
                f'checkpoint {runner.cfg.get("load_from")} or have other '
                f'shapes there (in {by_module(kept)}; e.g. {kept[0]}): they '
                'keep their initial values' + (
                    ' (it holds a {} model, the config builds a {})'.format(
                        *variants) if None not in variants and
                    len(set(variants)) == 2 else '') + '.')
