"""Whether a checkpoint fits the model it is loaded into, and why not.

mmengine loads with ``strict=False``: a classifier of another shape (COCO's
81 rows into a 1-class head's 2) or layers the file lacks are skipped after a
warning, and a test or an inference runs a random classifier. Here a state
dict is given the model's keys (a DDP ``module.`` prefix dropped, mmdet's
layout of the DETR variant its keys show renamed) and its misfits are named
in one message with the fix (:class:`CheckpointMisfitError`).
"""
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log
from torch import Tensor, nn

from .layouts import mmdet_to_plugin, model_variant

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
    theirs, built = (model_variant(d, strict=False)
                     for d in (state_dict, ours))
    if None not in (theirs, built) and theirs != built:  # in either mode
        raise CheckpointMisfitError(
            f'the checkpoint {path} holds a {theirs} model (its keys show '
            f'it), the config builds a {built}: most of its tensors would '
            'not load. Fix: use the config it was trained with '
            '(configs/README.md lists one per variant); to start only the '
            "backbone from it, init_cfg=dict(type='Pretrained', "
            f"prefix='backbone.', checkpoint='{path}') in model.backbone "
            'instead of load_from.')
    mismatches = shape_mismatches(state_dict, ours)
    # else only the frozen parameters must fit: no step would change them
    frozen = None if refuse_misfit else {
        name for name, p in model.named_parameters() if not p.requires_grad}
    refused = [m for m in mismatches if frozen is None or m[0] in frozen]
    missing = [key for key in missing if frozen is None or key in frozen]
    if refused or missing:
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
