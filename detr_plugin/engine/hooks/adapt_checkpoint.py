"""Fine-tuning from a checkpoint trained on another dataset (``load_from``).

mmengine loads ``load_from`` with ``strict=False``: a classifier of another
shape (COCO's 81 rows into a 1-class head's 2) is skipped with a long "size
mismatch" warning. :class:`AdaptCheckpointHook` gives the checkpoint the
model's own initial classifier instead, with one log line, and renames a
checkpoint of mmdet's DETR (or of a successor) to this package's layout, in
``after_load_checkpoint``: after the file is read, before it is copied in.
``tools/test.py`` makes it refuse a checkpoint that does not fit instead
(mmengine would evaluate a random classifier, or random layers the file
lacks, after a warning), as
``tools/infer.py`` does through :func:`fit_to_model`. A frozen parameter
(``requires_grad=False``, e.g. the detector of a panoptic stage 2) must fit
in either mode: training would never change it.
"""
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from ...checkpoint_converters import mmdet_to_plugin, model_variant
from ...registry import HOOKS

# DETR's classifier, and its successors' one per decoder layer
CLASSIFIER = re.compile(r'bbox_head\.(fc_cls|cls_branches\.\d+)\.')
# every tensor with a row per class: those, and DINO's denoising labels
CLASS_ROWS = re.compile(rf'({CLASSIFIER.pattern[:-2]}|'
                        r'dn_query_generator\.label_embedding)\.')


class CheckpointMisfitError(ValueError):
    """A checkpoint whose tensors do not fit the model of the config (the
    message names the file, the tensors and the fix)."""


def shape_mismatches(state_dict: Dict[str, Tensor], ours: Dict[str, Tensor]
                     ) -> List[Tuple[str, tuple, tuple]]:
    """``(key, checkpoint shape, model shape)`` of each tensor of the model's
    state dict ``ours`` that ``state_dict`` holds in another shape."""
    return [(key, theirs, tuple(ours[key].shape))
            for key, value in state_dict.items() if key in ours
            for theirs in [tuple(getattr(value, 'shape', ()))]
            if theirs != tuple(ours[key].shape)]


def missing_tensors(state_dict: Dict[str, Tensor],
                    ours: Dict[str, Tensor]) -> List[str]:
    """The keys of the model's state dict ``ours`` that ``state_dict`` lacks
    (BN's ``num_batches_tracked`` counters aside: outputs do not use them)."""
    return [key for key in ours if key not in state_dict
            and not key.endswith('num_batches_tracked')]


def fit_to_model(state_dict: Dict[str, Tensor], model: nn.Module,
                 path: str, refuse_misfit: bool = False
                 ) -> List[Tuple[str, tuple, tuple]]:
    """Give the checkpoint's ``state_dict`` (from ``path``; edited in place)
    the keys of ``model``: without a DDP module's ``module.`` prefix
    (mmengine drops it too, after the hook) and, when it lacks some of them,
    renamed (logged) from mmdet's layout of the DETR variant its keys show
    if that leaves fewer missing. Raise :class:`CheckpointMisfitError`
    (:func:`misfit_message`) for tensors of other shapes or missing: all of
    them with ``refuse_misfit``, else the frozen parameters'; return the
    :func:`shape_mismatches`."""
    ours = model.state_dict()
    for key in [k for k in state_dict if k.startswith('module.')]:
        state_dict[key[len('module.'):]] = state_dict.pop(key)
    missing = missing_tensors(state_dict, ours)
    variant = model_variant(state_dict, strict=False) if missing else None
    try:
        renamed = variant and mmdet_to_plugin(state_dict, variant)
    except KeyError:  # clashing names
        renamed = None
    if renamed and len(missing_tensors(renamed, ours)) < len(missing):
        state_dict.clear()
        state_dict.update(renamed)
        missing = missing_tensors(state_dict, ours)
        print_log(f"{path} is in mmdet's {variant} layout: renamed its keys "
                  'to detr_plugin layout.', logger='current')
    mismatches = shape_mismatches(state_dict, ours)
    # else only the frozen parameters must fit: no step would change them
    frozen = None if refuse_misfit else {
        name for name, p in model.named_parameters() if not p.requires_grad}
    refused = [m for m in mismatches if frozen is None or m[0] in frozen]
    missing = [key for key in missing if frozen is None or key in frozen]
    if refused or missing:
        theirs, built = (model_variant(d, strict=False)
                         for d in (state_dict, ours))
        if None not in (theirs, built) and theirs != built:
            raise CheckpointMisfitError(
                f'the checkpoint {path} holds a {theirs} model (its keys show'
                f' it), the config builds a {built}: use the config it was '
                'trained with (configs/README.md lists one per variant).')
        raise CheckpointMisfitError(misfit_message(path, refused, getattr(
            getattr(model, 'bbox_head', None), 'num_classes', None),
            missing) + ('' if frozen is None else ' Those tensors are frozen '
                        '(requires_grad=False, e.g. by freeze_detector=True)'
                        ': training would never change them.'))
    return mismatches


def by_module(keys: Sequence[str]) -> str:
    """``'decoder.layers: 54, backbone.conv1: 1'``: the keys counted by
    their first two names, the 5 most frequent."""
    counts = Counter('.'.join(key.split('.')[:2]) for key in keys)
    return ', '.join(f'{m}: {n}' for m, n in counts.most_common(5))


def misfit_message(path: str, mismatches: List[Tuple[str, tuple, tuple]],
                   num_classes: Optional[int], missing: Sequence[str] = ()
                   ) -> str:
    """Why the checkpoint at ``path`` does not fit the model (a head of
    ``num_classes`` classes): tensors of other shapes, the classifier named
    first, and the ``missing`` ones (:func:`missing_tensors`); the fix."""
    text = f'the checkpoint {path} does not fit the model of the config: '
    head = [m for m in mismatches if CLASSIFIER.match(m[0])]
    if head:
        key, theirs, want = head[0]
        extra = want[0] - (num_classes or want[0])  # DETR's no-object row
        text += (
            f'its classifier {key} is {theirs}, the model\'s {want}: '
            f'{theirs[0] - extra} classes in the checkpoint, {want[0] - extra}'
            ' in the config, so the predictions would be a random '
            'classifier\'s. Fix: use the config it was trained with, '
            f'or set model.bbox_head.num_classes={theirs[0] - extra} and '
            'metainfo.classes to its classes. ')
    others = [m for m in mismatches if m not in head]
    if others:
        text += (f'{len(others)} other tensors differ in shape (e.g. '
                 f'{others[0][0]}: {others[0][1]} in the checkpoint, '
                 f'{others[0][2]} in the model): it is of another model. '
                 'Fix: use the config it was trained with.')
    if missing:
        text = text.rstrip() + (' it' if text.endswith(': ') else ' It') + (
            f' lacks {len(missing)} of the model\'s tensors (in '
            f'{by_module(missing)}; e.g. {missing[0]}), which would keep '
            'their random initial values: it holds another model, or only '
            'a part of one (e.g. a backbone). Fix: use a checkpoint trained '
            'with this config, or the config it was trained with.')
    return text.strip()


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
