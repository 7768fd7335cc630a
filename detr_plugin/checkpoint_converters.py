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

from .engine.safe_checkpoint import MMENGINE_CHECKPOINT_GLOBALS, safe_load

PrefixRules = Sequence[Tuple[str, str]]

# mmdet 3.x's DETR family. Shared: mmcv's MultiheadAttention wraps
# nn.MultiheadAttention as `.attn`; a ChannelMapper neck is the input
# projection; FFNs are `ffn` (ours `ffns.0`).
_MMDET_COMMON: PrefixRules = (
    ('neck.convs.0.conv.', 'input_proj.'),
    ('encoder.layers.{i}.self_attn.attn.', 'encoder.layers.{i}.attentions.0.'),
    ('encoder.layers.{i}.ffn.', 'encoder.layers.{i}.ffns.0.'),
    ('decoder.layers.{i}.ffn.', 'decoder.layers.{i}.ffns.0.'),
)
# DETR's decoder attentions are mmcv's; the successors' are
# ConditionalAttention modules (no `.attn`).
_MMDET_DETR_DECODER: PrefixRules = (
    ('decoder.layers.{i}.self_attn.attn.', 'decoder.layers.{i}.attentions.0.'),
    ('decoder.layers.{i}.cross_attn.attn.',
     'decoder.layers.{i}.attentions.1.'),
)
_MMDET_CONDITIONAL_DECODER: PrefixRules = (
    ('decoder.layers.{i}.self_attn.', 'decoder.layers.{i}.attentions.0.'),
    ('decoder.layers.{i}.cross_attn.', 'decoder.layers.{i}.attentions.1.'),
)
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
    ('encoder.layers.{i}.self_attn.', 'encoder.layers.{i}.attentions.0.'),
    ('encoder.layers.{i}.ffn.', 'encoder.layers.{i}.ffns.0.'),
    ('decoder.layers.{i}.ffn.', 'decoder.layers.{i}.ffns.0.'),
    ('decoder.layers.{i}.self_attn.attn.', 'decoder.layers.{i}.attentions.0.'),
    ('decoder.layers.{i}.cross_attn.', 'decoder.layers.{i}.attentions.1.'),
    ('bbox_head.reg_branches.{i}.0.', 'bbox_head.reg_branches.{i}.layers.0.'),
    ('bbox_head.reg_branches.{i}.2.', 'bbox_head.reg_branches.{i}.layers.1.'),
    ('bbox_head.reg_branches.{i}.4.', 'bbox_head.reg_branches.{i}.layers.2.'),
)
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
    ('dino', 'dn_query_generator.label_embedding.weight'),
    ('deformable_detr', 'level_embed'),
    ('dab_detr', 'encoder.query_scale.layers.0.weight'),
    ('conditional_detr', 'decoder.ref_point_head.layers.0.weight'),
    ('detr', 'decoder.post_norm.weight'),
)


def model_variant(state_dict: Dict[str, Tensor]) -> str:
    """Which DETR variant a state dict (mmdet's layout or ours) holds.

    Raises:
        KeyError: none of the known variants' keys is there.
    """
    keys = {k[len('module.'):] if k.startswith('module.') else k
            for k in state_dict}
    for variant, key in _VARIANT_KEYS:
        if key in keys:
            return variant
    raise KeyError(
        f'not a checkpoint of a known DETR variant ({", ".join(MMDET_LAYOUTS)}'
        f'): none of {[key for _, key in _VARIANT_KEYS]} is among its '
        f'{len(keys)} keys, e.g. {sorted(keys)[:5]}')


# facebookresearch/detr (detr-r50-e632da11.pth & co.): torchvision's ResNet
# under `backbone.0.body`, nn.TransformerEncoder/DecoderLayer-like layers
# (`linear1`/`linear2`, `norm1..3` in the order the layer applies them).
OFFICIAL_RULES: PrefixRules = (
    ('backbone.0.body.', 'backbone.'),
    ('input_proj.', 'input_proj.'),
    ('query_embed.', 'query_embedding.'),
    ('transformer.encoder.layers.{i}.self_attn.',
     'encoder.layers.{i}.attentions.0.'),
    ('transformer.encoder.layers.{i}.linear1.',
     'encoder.layers.{i}.ffns.0.layers.0.0.'),
    ('transformer.encoder.layers.{i}.linear2.',
     'encoder.layers.{i}.ffns.0.layers.1.'),
    ('transformer.encoder.layers.{i}.norm1.', 'encoder.layers.{i}.norms.0.'),
    ('transformer.encoder.layers.{i}.norm2.', 'encoder.layers.{i}.norms.1.'),
    ('transformer.decoder.layers.{i}.self_attn.',
     'decoder.layers.{i}.attentions.0.'),
    ('transformer.decoder.layers.{i}.multihead_attn.',
     'decoder.layers.{i}.attentions.1.'),
    ('transformer.decoder.layers.{i}.linear1.',
     'decoder.layers.{i}.ffns.0.layers.0.0.'),
    ('transformer.decoder.layers.{i}.linear2.',
     'decoder.layers.{i}.ffns.0.layers.1.'),
    ('transformer.decoder.layers.{i}.norm1.', 'decoder.layers.{i}.norms.0.'),
    ('transformer.decoder.layers.{i}.norm2.', 'decoder.layers.{i}.norms.1.'),
    ('transformer.decoder.layers.{i}.norm3.', 'decoder.layers.{i}.norms.2.'),
    ('transformer.decoder.norm.', 'decoder.post_norm.'),
    ('class_embed.', 'bbox_head.fc_cls.'),
    ('bbox_embed.layers.', 'bbox_head.reg_mlp.layers.'),
)

# The 80 COCO category ids that have annotations, sorted: the order of
# mmdet's CocoDataset classes ('person' = 1 ... 'toothbrush' = 90). Ids 0,
# 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 are unused.
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21,
    22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42,
    43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90)
# COCO panoptic's 53 stuff category ids, sorted: after the 80 thing ids, the
# order of mmdet's CocoPanopticDataset classes ('banner' = 92 ... 'rug-merged'
# = 200).
COCO_PANOPTIC_STUFF_IDS: Tuple[int, ...] = (
    92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138,
    141, 144, 145, 147, 148, 149, 151, 154, 155, 156, 159, 161, 166, 168, 171,
    175, 176, 177, 178, 180, 181, 184, 185, 186, 187, 188, 189, 190, 191, 192,
    193, 194, 195, 196, 197, 198, 199, 200)
# Rows of the official classifier: category ids 0..90, then no-object.
OFFICIAL_NUM_ROWS = 92
# The panoptic release: the detector under `detr.`, the mask head as ours;
# 251 rows (its num_classes = 250, "any value above the largest id").
OFFICIAL_PANOPTIC_RULES: PrefixRules = tuple(
    ('detr.' + theirs, ours) for theirs, ours in OFFICIAL_RULES) + (
        ('bbox_attention.', 'bbox_attention.'),
        ('mask_head.', 'mask_head.'))
OFFICIAL_PANOPTIC_NUM_ROWS = 251
OFFICIAL_CLASSIFIER = 'bbox_head.fc_cls.'  # its name after renaming
BACKBONE_PREFIX = 'backbone.'


def _compile(rules: PrefixRules, to_ours: bool) -> List[Tuple[re.Pattern,
                                                               str]]:
    compiled = []
    for theirs, ours in rules:
        src, dst = (theirs, ours) if to_ours else (ours, theirs)
        pattern = re.escape(src).replace(re.escape('{i}'), r'(?P<i>\d+)')
        compiled.append((re.compile('^' + pattern), dst))
    return compiled


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
    compiled = _compile(rules, to_ours)
    renamed = {}
    unmatched = []
    for key, value in state_dict.items():
        new_key = key
        for pattern, dst in compiled:
            match = pattern.match(key)
            if match:
                prefix = dst.replace('{i}', match.groupdict().get('i') or '')
                new_key = prefix + key[match.end():]
                break
        else:
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
    """mmdet 3.x state dict -> this package's, for the ``variant`` (a key of
    :data:`MMDET_LAYOUTS`) its keys show (:func:`model_variant`) unless
    given."""
    return rename_keys(state_dict,
                       MMDET_LAYOUTS[variant or model_variant(state_dict)],
                       to_ours=True)


def plugin_to_mmdet(state_dict: Dict[str, Tensor],
                    variant: Optional[str] = None) -> Dict[str, Tensor]:
    """This package's state dict -> mmdet 3.x's (see
    :func:`mmdet_to_plugin`)."""
    return rename_keys(state_dict,
                       MMDET_LAYOUTS[variant or model_variant(state_dict)],
                       to_ours=False)


def official_class_rows(num_classes: int,
                        num_rows: int = OFFICIAL_NUM_ROWS) -> List[int]:
    """Rows of the official ``num_rows``-row classifier (92, or 251 for
    the panoptic release) that make a ``num_classes`` head, in the head's
    class order, the no-object row last.

    Args:
        num_classes: 80 (mmdet's COCO classes: the used category ids,
            sorted), 133 with the panoptic release (mmdet's COCO panoptic
            classes: 80 thing and 53 stuff ids, sorted) or ``num_rows - 1``
            (every row: class index = COCO category id, the unused ids kept
            as classes that are never predicted).
    """
    rows = dict([(len(COCO_CATEGORY_IDS), COCO_CATEGORY_IDS),
                 (num_rows - 1, tuple(range(num_rows - 1)))])
    if num_rows == OFFICIAL_PANOPTIC_NUM_ROWS:
        rows[len(COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS)] = \
            COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS
    if num_classes in rows:
        return list(rows[num_classes]) + [num_rows - 1]
    raise ValueError(
        f'the official {num_rows}-row classifier maps to '
        f'{" or ".join(map(str, sorted(rows)))} classes, not {num_classes}; '
        f'to fine-tune on another class count convert with '
        f'{len(COCO_CATEGORY_IDS)} and load it with load_from: '
        f'AdaptCheckpointHook drops the classifier of the wrong shape')


def _official_layout(panoptic: bool) -> Tuple[PrefixRules, int, int]:
    """Rules, classifier rows and default class count of the detection or
    the panoptic release."""
    if panoptic:
        return OFFICIAL_PANOPTIC_RULES, OFFICIAL_PANOPTIC_NUM_ROWS, len(
            COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS)
    return OFFICIAL_RULES, OFFICIAL_NUM_ROWS, len(COCO_CATEGORY_IDS)


def official_to_plugin(state_dict: Dict[str, Tensor],
                       num_classes: Optional[int] = None
                       ) -> Dict[str, Tensor]:
    """Official facebookresearch/detr ``model`` state dict (detection or,
    with keys under ``detr.``, panoptic) -> this package's.

    Renames by :data:`OFFICIAL_RULES` / :data:`OFFICIAL_PANOPTIC_RULES`
    (every key must match one), adds a zero ``num_batches_tracked`` to every
    backbone BatchNorm and keeps the classifier rows of
    :func:`official_class_rows` (default: 80 classes, 133 when panoptic).
    """
    panoptic = any(key.startswith('detr.') for key in state_dict)
    rules, num_rows, default_classes = _official_layout(panoptic)
    ours = rename_keys(state_dict, rules, to_ours=True, require_match=True)
    rows = torch.tensor(official_class_rows(num_classes or default_classes,
                                            num_rows))
    for name in ('weight', 'bias'):
        key = OFFICIAL_CLASSIFIER + name
        if ours[key].shape[0] != num_rows:
            raise ValueError(f'{key} has {ours[key].shape[0]} rows; the '
                             f'official COCO{" panoptic" * panoptic} '
                             f'classifier has {num_rows}')
        ours[key] = ours[key][rows].clone()
    converted = {}
    for key, value in ours.items():
        converted[key] = value
        if key.startswith(BACKBONE_PREFIX) and key.endswith('.running_var'):
            converted[key[:-len('running_var')] + 'num_batches_tracked'] = \
                torch.tensor(0, dtype=torch.long)
    return converted


def plugin_to_official(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """This package's state dict -> the official layout (panoptic when it
    has a mask head).

    The inverse of :func:`official_to_plugin`: drops ``num_batches_tracked``
    and spreads the classifier over the official rows; the rows of unused
    category ids get zero weights and a bias of -1e4 (never predicted).
    """
    rules, num_rows, _ = _official_layout(
        any(key.startswith('mask_head.') for key in state_dict))
    state_dict = {k: v for k, v in state_dict.items()
                  if not k.endswith('num_batches_tracked')}
    num_classes = state_dict[OFFICIAL_CLASSIFIER + 'bias'].shape[0] - 1
    rows = torch.tensor(official_class_rows(num_classes, num_rows))
    for name, fill in (('weight', 0.), ('bias', -1e4)):
        key = OFFICIAL_CLASSIFIER + name
        value = state_dict[key]
        full = value.new_full((num_rows, ) + value.shape[1:], fill)
        full[rows] = value
        state_dict[key] = full
    return rename_keys(state_dict, rules, to_ours=False, require_match=True)


def coco_class_names(num_classes: int) -> List[str]:
    """Class names of a head converted from the official classifier: mmdet's
    80 COCO classes or 133 COCO panoptic classes, or for 91 (250) the name
    of every category id ('N/A' for the unused ones)."""
    from mmdet.datasets import CocoPanopticDataset
    names = list(CocoPanopticDataset.METAINFO['classes'])
    ids = COCO_CATEGORY_IDS + COCO_PANOPTIC_STUFF_IDS
    if num_classes in (len(COCO_CATEGORY_IDS), len(ids)):
        return names[:num_classes]
    by_id = dict(zip(ids, names))
    return [by_id.get(i, 'N/A') for i in range(num_classes)]


# What the official release pickles besides tensors and builtin containers:
# `args`, the training script's argparse.Namespace. Nothing else is allowed.
OFFICIAL_CHECKPOINT_GLOBALS = (argparse.Namespace, )


def load_official_checkpoint(path: str) -> dict:
    """Read a facebookresearch/detr release file (``model``, ``optimizer``,
    ``lr_scheduler``, ``epoch``, ``args``) without unpickling code."""
    checkpoint = safe_load(path, 'an official DETR checkpoint',
                           OFFICIAL_CHECKPOINT_GLOBALS)
    if not isinstance(checkpoint, dict) or 'model' not in checkpoint:
        raise KeyError(f'{path} has no "model" entry: not an official DETR '
                       f'checkpoint')
    return checkpoint


def load_mmdet_checkpoint(path: str) -> dict:
    """Read an mmdet 3.x / mmengine checkpoint (``state_dict``, ``meta``, and
    the ``message_hub`` types of :mod:`detr_plugin.engine.safe_checkpoint`).
    """
    checkpoint = safe_load(path, 'an mmdet checkpoint',
                           MMENGINE_CHECKPOINT_GLOBALS)
    if not isinstance(checkpoint, dict):
        raise KeyError(f'{path} holds a {type(checkpoint).__name__}, not a '
                       f'checkpoint dict')
    return checkpoint


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
        src: an official release file (``source='official'``) or an mmdet
            3.x checkpoint (``source='mmdet'``).
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
        checkpoint = load_official_checkpoint(src)
        state_dict = official_to_plugin(checkpoint['model'], num_classes)
        num_classes = num_classes_of(state_dict, 'detr')
        meta['dataset_meta'] = dict(classes=coco_class_names(num_classes))
        if isinstance(checkpoint.get('epoch'), int):
            meta['epoch'] = checkpoint['epoch']
    elif source == 'mmdet':
        checkpoint = load_mmdet_checkpoint(src)
        source_dict = checkpoint.get('state_dict', checkpoint)
        variant = variant or model_variant(source_dict)
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
