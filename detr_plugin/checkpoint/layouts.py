"""Convert DETR state dicts between other layouts and this package's.

Two layouts are known: mmdet 3.x's (:data:`MMDET_LAYOUTS`: DETR and its
successors, told apart by their keys, :func:`model_variant`) and the
official facebookresearch/detr release (:data:`OFFICIAL_RULES`). Each layout
is a table of key-prefix pairs ``(theirs, ours)``; ``{i}`` stands for a layer
index. The same table renames in both directions, so a round trip is the
identity by construction. In the mmdet table, keys that match no rule (the
backbone, the norms, ``query_embedding``, ``bbox_head.fc_cls``) keep their
names; the official table names every key of its layout.

Beyond renaming, the official layout differs in two things that
:func:`official_to_plugin` / :func:`plugin_to_official` handle:

* its backbone uses FrozenBatchNorm, which has no ``num_batches_tracked``
  buffer; mmdet's ResNet (a plain ``BatchNorm2d``) has one;
* its classifier has 92 rows: COCO category ids 0..90 (ids that COCO does
  not use are "N/A" rows) plus no-object at 91. An 80-class head keeps the
  rows of the 80 used ids, in the order of mmdet's ``CocoDataset`` classes
  (sorted ids), then the no-object row.

The panoptic release (``detr-r50-panoptic-00ce5173.pth``) holds that model
under ``detr.`` and the mask head beside it (``bbox_attention.``,
``mask_head.``: :class:`~detr_plugin.models.DETRPanoptic` uses the same
names), with 251 classifier rows (category ids 0..249, no-object at 250). A
133-class head keeps the rows of COCO panoptic's 80 thing and 53 stuff ids in
mmdet's ``CocoPanopticDataset`` order (sorted ids), then no-object. The
layout is told by the ``detr.`` prefix.

:func:`convert_checkpoint` converts files (``tools/convert_checkpoint.py``).
It reads them with ``torch.load(weights_only=True)`` and an allow-list of
exactly the globals each layout pickles; anything else is refused.
"""
import argparse
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .files import (MMENGINE_CHECKPOINT_GLOBALS, UnsafeCheckpointError,
                    safe_load)

PrefixRules = Sequence[Tuple[str, str]]


def _in_layers(stack: str, pairs: PrefixRules,
               their_root: str = '') -> PrefixRules:
    """Rules for every layer ``{i}`` of ``stack`` (encoder or decoder) from
    ``(theirs, ours)`` prefixes inside a layer, their stack under
    ``their_root``."""
    return tuple((f'{their_root}{stack}.layers.{{i}}.{theirs}',
                  f'{stack}.layers.{{i}}.{ours}') for theirs, ours in pairs)


# mmdet 3.x's DETR family. Shared: mmcv's MultiheadAttention wraps
# nn.MultiheadAttention as `.attn`; a ChannelMapper neck is the input
# projection; FFNs are `ffn` (ours `ffns.0`).
_FFN = (('ffn.', 'ffns.0.'), )
_MMDET_COMMON: PrefixRules = (
    (('neck.convs.0.conv.', 'input_proj.'), ) +
    _in_layers('encoder', (('self_attn.attn.', 'attentions.0.'), ) + _FFN) +
    _in_layers('decoder', _FFN))
# DETR's decoder attentions are mmcv's; the successors' are
# ConditionalAttention modules (no `.attn`).
_MMDET_DETR_DECODER = _in_layers('decoder', (
    ('self_attn.attn.', 'attentions.0.'),
    ('cross_attn.attn.', 'attentions.1.')))
_MMDET_CONDITIONAL_DECODER = _in_layers('decoder', (
    ('self_attn.', 'attentions.0.'), ('cross_attn.', 'attentions.1.')))
# DETR's box branch is an FFN plus `fc_reg`; DAB-DETR's an MLP `fc_reg`.
_MMDET_FFN_BOX_BRANCH: PrefixRules = (
    ('bbox_head.reg_ffn.layers.0.0.', 'bbox_head.reg_mlp.layers.0.'),
    ('bbox_head.reg_ffn.layers.1.', 'bbox_head.reg_mlp.layers.1.'),
    ('bbox_head.fc_reg.', 'bbox_head.reg_mlp.layers.2.'),
)
# Deformable DETR and DINO: mmcv's deformable attentions (no `.attn`), the
# real ChannelMapper neck (same keys), a box branch per layer that is an
# nn.Sequential (Linear, ReLU, Linear, ReLU, Linear; ours an MLP).
_MMDET_DEFORMABLE: PrefixRules = (
    _in_layers('encoder', (('self_attn.', 'attentions.0.'), ) + _FFN) +
    _in_layers('decoder', (('self_attn.attn.', 'attentions.0.'),
                           ('cross_attn.', 'attentions.1.')) + _FFN) +
    tuple((f'bbox_head.reg_branches.{{i}}.{2 * j}.',
           f'bbox_head.reg_branches.{{i}}.layers.{j}.') for j in range(3)))
MMDET_LAYOUTS: Dict[str, PrefixRules] = dict(
    detr=_MMDET_COMMON + _MMDET_DETR_DECODER + _MMDET_FFN_BOX_BRANCH,
    conditional_detr=_MMDET_COMMON + _MMDET_CONDITIONAL_DECODER +
    _MMDET_FFN_BOX_BRANCH,
    dab_detr=_MMDET_COMMON + _MMDET_CONDITIONAL_DECODER +
    (('bbox_head.fc_reg.', 'bbox_head.reg_mlp.'), ),
    deformable_detr=_MMDET_DEFORMABLE,
    dino=_MMDET_DEFORMABLE + (('decoder.norm.', 'decoder.post_norm.'), ),
)
MMDET_RULES = MMDET_LAYOUTS['detr']
# A key that only the variant's layout has (mmdet's and ours alike), the
# most specific first.
_VARIANT_KEYS = (
    ('dfine', 'bbox_head.lqe_layers.0.reg_conf.layers.0.weight'),  # ours
    ('rtdetr', 'decoder.query_pos_head.layers.0.weight'),  # ours only
    ('dino', 'dn_query_generator.label_embedding.weight'),
    ('deformable_detr', 'level_embed'),
    ('dab_detr', 'encoder.query_scale.layers.0.weight'),
    ('conditional_detr', 'decoder.ref_point_head.layers.0.weight'),
    ('detr', 'decoder.post_norm.weight'),
)


def model_variant(state_dict: Dict[str, Tensor],
                  strict: bool = True) -> Optional[str]:
    """Which DETR variant a state dict (mmdet's layout or ours) holds
    (``None`` for none, unless ``strict``).

    Raises:
        KeyError: with ``strict``, when none of the known variants' keys is
            there.
    """
    keys = {k[len('module.'):] if k.startswith('module.') else k
            for k in state_dict}
    for variant, key in _VARIANT_KEYS:
        if key in keys:
            return variant
    if not strict:
        return None
    raise KeyError(
        f'not a checkpoint of a known DETR variant ({", ".join(MMDET_LAYOUTS)}'
        f'): none of {[key for _, key in _VARIANT_KEYS]} is among its '
        f'{len(keys)} keys, e.g. {sorted(keys)[:5]}')


# facebookresearch/detr (detr-r50-e632da11.pth & co.): torchvision's ResNet
# under `backbone.0.body`, nn.TransformerEncoder/DecoderLayer-like layers
# (`linear1`/`linear2`, `norm1..3` in the order the layer applies them).
_OFFICIAL_LAYER: PrefixRules = (
    ('self_attn.', 'attentions.0.'), ('linear1.', 'ffns.0.layers.0.0.'),
    ('linear2.', 'ffns.0.layers.1.'), ('norm1.', 'norms.0.'),
    ('norm2.', 'norms.1.'))
OFFICIAL_RULES: PrefixRules = (
    ('backbone.0.body.', 'backbone.'),
    ('input_proj.', 'input_proj.'),
    ('query_embed.', 'query_embedding.'),
    *_in_layers('encoder', _OFFICIAL_LAYER, their_root='transformer.'),
    *_in_layers('decoder', _OFFICIAL_LAYER + (
        ('multihead_attn.', 'attentions.1.'), ('norm3.', 'norms.2.')),
        their_root='transformer.'),
    ('transformer.decoder.norm.', 'decoder.post_norm.'),
    ('class_embed.', 'bbox_head.fc_cls.'),
    ('bbox_embed.layers.', 'bbox_head.reg_mlp.layers.'),
)
# The panoptic release: the detector under `detr.`, the mask head as ours.
OFFICIAL_PANOPTIC_RULES: PrefixRules = tuple(
    ('detr.' + theirs, ours) for theirs, ours in OFFICIAL_RULES) + (
        ('bbox_attention.', 'bbox_attention.'), ('mask_head.', 'mask_head.'))

# The 80 COCO category ids that have annotations, sorted: the order of
# mmdet's CocoDataset classes ('person' = 1 ... 'toothbrush' = 90).
COCO_CATEGORY_IDS: Tuple[int, ...] = tuple(
    i for i in range(1, 91)
    if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
# COCO panoptic's 53 stuff category ids, sorted: after the 80 thing ids, the
# order of mmdet's CocoPanopticDataset classes ('banner' = 92 ... 'rug-merged'
# = 200).
COCO_PANOPTIC_STUFF_IDS: Tuple[int, ...] = (
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138,
    141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171,
    175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189, 190, 191, 192,
    193, 194, 195, 196, 197, 198, 199, 200)
COCO_PANOPTIC_IDS = COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS
# Per official release: its rules, its classifier's rows (category ids
# 0..rows-2, then no-object; the panoptic num_classes = 250 is "any value
# above the largest id") and the classes of a converted head by default.
_OFFICIAL_LAYOUTS = dict(
    detection=(OFFICIAL_RULES, 92, len(COCO_CATEGORY_IDS)),
    panoptic=(OFFICIAL_PANOPTIC_RULES, 251, len(COCO_PANOPTIC_IDS)))
CLASSIFIER = 'bbox_head.fc_cls.'  # the official classifier, renamed


def rename_keys(state_dict: Dict[str, Tensor], rules: PrefixRules,
                to_ours: bool = True,
                require_match: bool = False) -> Dict[str, Tensor]:
    """Rename every key by the first rule whose prefix matches it.

    Args:
        state_dict: the source weights.
        rules: ``(theirs, ours)`` prefix pairs.
        to_ours: rename theirs -> ours, or ours -> theirs.
        require_match: raise ``KeyError`` naming the keys that no rule
            matches, instead of keeping their names.
    """
    compiled = []
    for rule in rules:
        src, dst = rule if to_ours else rule[::-1]
        # the layer index `{i}`: a group of the pattern, written back by sub
        pattern = re.escape(src).replace(re.escape('{i}'), r'(?P<i>\d+)')
        compiled.append((re.compile('^' + pattern),
                         dst.replace('{i}', r'\g<i>')))
    renamed, unmatched = {}, []
    for key, value in state_dict.items():
        for pattern, dst in compiled:
            new_key, found = pattern.subn(dst, key, count=1)
            if found:
                break
        else:
            new_key = key
            unmatched.append(key)
        if new_key in renamed:
            raise KeyError(f'two source keys map to {new_key!r}')
        renamed[new_key] = value
    if require_match and unmatched:
        raise KeyError(f'{len(unmatched)} keys match no rule of the layout, '
                       f'e.g. {unmatched[:5]}')
    return renamed


def mmdet_to_plugin(state_dict: Dict[str, Tensor],
                    variant: Optional[str] = None) -> Dict[str, Tensor]:
    """mmdet 3.x state dict -> this package's, by the layout of ``variant``
    (a key of :data:`MMDET_LAYOUTS`; by default the one its keys show)."""
    return rename_keys(state_dict,
                       MMDET_LAYOUTS[variant or model_variant(state_dict)])


def plugin_to_mmdet(state_dict: Dict[str, Tensor],
                    variant: Optional[str] = None) -> Dict[str, Tensor]:
    """The inverse of :func:`mmdet_to_plugin`."""
    return rename_keys(state_dict,
                       MMDET_LAYOUTS[variant or model_variant(state_dict)],
                       to_ours=False)


def official_class_rows(num_classes: int, num_rows: int = 92) -> List[int]:
    """Rows of the official ``num_rows``-row classifier (92, or 251 for
    the panoptic release) that make a ``num_classes`` head, in the head's
    class order, the no-object row last: mmdet's 80 COCO classes, its 133
    COCO panoptic classes (251 rows) or ``num_rows - 1`` (every row: class
    index = COCO category id, the unused ids classes never predicted)."""
    rows = {len(COCO_CATEGORY_IDS): COCO_CATEGORY_IDS,
            num_rows - 1: range(num_rows - 1)}
    if num_rows == _OFFICIAL_LAYOUTS['panoptic'][1]:
        rows[len(COCO_PANOPTIC_IDS)] = COCO_PANOPTIC_IDS
    if num_classes in rows:
        return list(rows[num_classes]) + [num_rows - 1]
    raise ValueError(
        f'the official {num_rows}-row classifier maps to '
        f'{" or ".join(map(str, sorted(rows)))} classes, not {num_classes}; '
        f'to fine-tune on another class count convert with '
        f'{len(COCO_CATEGORY_IDS)} and load it with load_from: '
        f'AdaptCheckpointHook drops the classifier of the wrong shape')


def official_to_plugin(state_dict: Dict[str, Tensor],
                       num_classes: Optional[int] = None
                       ) -> Dict[str, Tensor]:
    """Official facebookresearch/detr ``model`` state dict (detection or,
    with keys under ``detr.``, panoptic) -> this package's.

    Every key must match a rule; the classifier keeps the rows of
    :func:`official_class_rows` (default: 80 classes, 133 when panoptic).
    """
    panoptic = any(key.startswith('detr.') for key in state_dict)
    rules, num_rows, default_classes = _OFFICIAL_LAYOUTS[
        'panoptic' if panoptic else 'detection']
    ours = rename_keys(state_dict, rules, require_match=True)
    rows = torch.tensor(official_class_rows(num_classes or default_classes,
                                            num_rows))
    for key in (CLASSIFIER + 'weight', CLASSIFIER + 'bias'):
        if ours[key].shape[0] != num_rows:
            raise ValueError(f'{key} has {ours[key].shape[0]} rows; the '
                             f'official COCO{" panoptic" * panoptic} '
                             f'classifier has {num_rows}')
        ours[key] = ours[key][rows].clone()
    converted = {}
    for key, value in ours.items():
        converted[key] = value
        if key.startswith('backbone.') and key.endswith('.running_var'):
            converted[key[:-len('running_var')] + 'num_batches_tracked'] = \
                torch.tensor(0)
    return converted


def plugin_to_official(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """This package's state dict -> the official layout (panoptic when it
    has a mask head).

    The inverse of :func:`official_to_plugin`; the rows of unused category
    ids get zero weights and a bias of -1e4 (never predicted).
    """
    rules, num_rows, _ = _OFFICIAL_LAYOUTS[
        'panoptic' if any(k.startswith('mask_head.') for k in state_dict)
        else 'detection']
    state_dict = {k: v for k, v in state_dict.items()
                  if not k.endswith('num_batches_tracked')}
    num_classes = state_dict[CLASSIFIER + 'bias'].shape[0] - 1
    rows = torch.tensor(official_class_rows(num_classes, num_rows))
    for name, fill in (('weight', 0.), ('bias', -1e4)):
        value = state_dict[CLASSIFIER + name]
        full = value.new_full((num_rows, ) + value.shape[1:], fill)
        full[rows] = value
        state_dict[CLASSIFIER + name] = full
    return rename_keys(state_dict, rules, to_ours=False, require_match=True)


def coco_class_names(num_classes: int) -> List[str]:
    """Class names of a head converted from the official classifier: mmdet's
    80 COCO classes or 133 COCO panoptic classes, or for 91 (250) the name
    of every category id ('N/A' for the unused ones)."""
    from mmdet.datasets import CocoPanopticDataset
    names = list(CocoPanopticDataset.METAINFO['classes'])
    if num_classes in (len(COCO_CATEGORY_IDS), len(COCO_PANOPTIC_IDS)):
        return names[:num_classes]
    by_id = dict(zip(COCO_PANOPTIC_IDS, names))
    return [by_id.get(i, 'N/A') for i in range(num_classes)]


# What the official release pickles besides tensors and builtin containers:
# `args`, the training script's argparse.Namespace. Nothing else is allowed.
OFFICIAL_CHECKPOINT_GLOBALS = (argparse.Namespace, )


def num_classes_of(state_dict: Dict[str, Tensor],
                   variant: Optional[str] = None) -> int:
    """Classes of a converted state dict's head: DETR's softmax classifier
    has a no-object row, its successors' sigmoid classifiers have none."""
    key = 'bbox_head.fc_cls.bias' if 'bbox_head.fc_cls.bias' in state_dict \
        else 'bbox_head.cls_branches.0.bias'  # one classifier per layer
    rows = state_dict[key].shape[0]
    return rows - ((variant or model_variant(state_dict)) == 'detr')


def convert_checkpoint(src: str, dst: str, source: str,
                       num_classes: Optional[int] = None,
                       variant: Optional[str] = None) -> dict:
    """Convert the checkpoint file ``src`` to this package's layout at ``dst``.

    Args:
        src: an official release file (``source='official'``: ``model``,
            ``optimizer``, ``lr_scheduler``, ``epoch``, ``args``) or an mmdet
            3.x checkpoint (``source='mmdet'``: ``state_dict``, ``meta``,
            and the ``message_hub`` types of :mod:`.files`), read without
            unpickling code.
        dst: where to write ``{'state_dict': ..., 'meta': ...}``, a file
            mmengine's ``load_from`` / ``load_checkpoint`` loads (with
            ``weights_only=True``) and whose keys equal the model's.
        num_classes: the head's classes: for the official layout 80
            (default) or 91, for its panoptic release 133 (default), 80 or
            250; for mmdet, checked against the classifier when given.
        variant: mmdet's layout of this DETR variant (a key of
            :data:`MMDET_LAYOUTS`); told from the keys when None.

    Returns:
        The written checkpoint dict.
    """
    meta = dict(converted_from=source, source_file=osp.basename(src))
    if source == 'official':
        checkpoint = safe_load(src, 'an official DETR checkpoint',
                               OFFICIAL_CHECKPOINT_GLOBALS)
        if not isinstance(checkpoint, dict) or 'model' not in checkpoint:
            raise KeyError(f'{src} has no "model" entry: not an official '
                           f'DETR checkpoint')
        state_dict = official_to_plugin(checkpoint['model'], num_classes)
        num_classes = num_classes_of(state_dict, 'detr')
        meta['dataset_meta'] = dict(classes=coco_class_names(num_classes))
        if isinstance(checkpoint.get('epoch'), int):
            meta['epoch'] = checkpoint['epoch']
    elif source == 'mmdet':
        try:
            checkpoint = safe_load(src, 'an mmdet checkpoint',
                                   MMENGINE_CHECKPOINT_GLOBALS)
        except UnsafeCheckpointError:
            official = safe_load(src, allowed=OFFICIAL_CHECKPOINT_GLOBALS)
            if 'model' not in (official or {}):
                raise
            raise ValueError(
                f'{src} is an official facebookresearch/detr release (its '
                '"model" and argparse "args"), not an mmdet checkpoint: '
                'convert it with --from official') from None
        if not isinstance(checkpoint, dict):
            raise KeyError(f'{src} holds a {type(checkpoint).__name__}, not '
                           f'a checkpoint dict')
        source_dict = checkpoint.get('state_dict', checkpoint)
        # keys of no known variant: as the user says
        found = model_variant(source_dict, strict=variant is None) or variant
        if variant not in (None, found):
            raise ValueError(f"{src} holds mmdet's {found}, not {variant} "
                             f'(its keys show it): convert it with --model '
                             f'{found}, or without --model')
        variant = found
        state_dict = mmdet_to_plugin(source_dict, variant)
        found = num_classes_of(state_dict, variant)
        if num_classes is not None and found != num_classes:
            raise ValueError(f'the mmdet {variant} classifier has {found} '
                             f'classes, not {num_classes}')
        meta['variant'] = variant
        source_meta = checkpoint.get('meta') or {}
        for key in ('dataset_meta', 'epoch', 'iter', 'mmdet_version'):
            if key in source_meta:
                meta[key] = source_meta[key]
    else:
        raise ValueError(f'unknown source layout {source!r}; '
                         f'known: official, mmdet')
    converted = dict(state_dict=state_dict, meta=meta)
    torch.save(converted, dst)
    return converted
