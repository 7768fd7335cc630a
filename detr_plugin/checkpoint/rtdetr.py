"""RT-DETR(v2) state dicts -> this package's: the official rtdetrv2_pytorch
layout and transformers' ``RTDetrV2ForObjectDetection``.

Ours: ``backbone.`` is :class:`~detr_plugin.models.PResNet` (mmdet's ResNet
names: ``stem.{0,3,6}`` convs and ``stem.{1,4,7}`` BNs, ``layer{s+1}.{b}.
conv1/bn1...``, shortcuts ``layer{s+1}.0.downsample.1/.2``), ``neck.`` the
:class:`~detr_plugin.models.HybridEncoder` (mmcv ``ConvModule``s:
``conv``/``bn``; AIFI as ``encoder.{n}.layers.{i}`` of our transformer
layers). Each layout is a table of ``(theirs, ours)`` key prefixes, as in
:mod:`.layouts`, built part by part (:data:`OFFICIAL_BACKBONE`,
:data:`OFFICIAL_NECK`, ...); the detector's full table is their sum
(:func:`official_rules`, :func:`hf_rules`). RT-DETR has three
levels: two FPN/PAN fusions, at most three AIFI encoders.

transformers' names are first brought to 5.x's (:data:`.hf.HF_RENAMES`,
and 4.x's ``encoder.encoder.N`` -> ``encoder.aifi.N``); its split
``q_proj/k_proj/v_proj`` become one ``in_proj`` (:func:`.hf.merge_qkv`).
Frozen BNs (the official R50/R101, transformers' whole backbone) have no
``num_batches_tracked``; ours get a zero one.
"""
import os.path as osp
import re
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor

from .files import safe_load
from .hf import (_DEFORMABLE_DECODER, HF_CONVERTERS, HF_RENAMES, _attention,
                 _layer, merge_qkv)
from .layouts import (_OFFICIAL_LAYER, PrefixRules, _in_layers,
                      coco_class_names, num_classes_of, rename_keys)


def _conv_bn(theirs: str, ours: str, parts: Sequence[str] = ('conv', 'norm'),
             our_parts: Sequence[str] = ('conv', 'bn')) -> PrefixRules:
    """A conv and its BN: ``theirs + parts[j]`` -> ``ours + our_parts[j]``
    (default: their ConvNormLayer -> our ConvModule)."""
    return tuple((f'{theirs}{a}.', f'{ours}{b}.')
                 for a, b in zip(parts, our_parts))


def _presnet(stem: Callable[[int], str], branch: Callable[[int, int], str],
             shortcut: Callable[[int], str],
             parts: Sequence[str]) -> PrefixRules:
    """PResNet's rules from their prefixes of stem conv ``k`` (0..2), of
    conv ``c`` (0..2) of stage ``s``'s block ``{i}``, of stage ``s``'s
    shortcut, and their names of a conv and its BN inside those."""
    rules = []
    for k in range(3):
        rules += _conv_bn(stem(k), 'backbone.stem.', parts,
                          (str(3 * k), str(3 * k + 1)))
    for s in range(4):
        ours = f'backbone.layer{s + 1}.'
        for c in range(3):  # a BasicBlock has the first two
            rules += _conv_bn(branch(s, c), ours + '{i}.', parts,
                              (f'conv{c + 1}', f'bn{c + 1}'))
        rules += _conv_bn(shortcut(s), ours + '0.downsample.', parts,
                          ('1', '2'))
    return tuple(rules)


def _hybrid_encoder(root: str, input_proj: str, proj_parts: Sequence[str],
                    aifi: Callable[[int], str],
                    layer: PrefixRules) -> PrefixRules:
    """HybridEncoder's rules from their prefix of the CCFM modules, of level
    ``{i}``'s input projection and its conv / BN names, of AIFI encoder
    ``n``'s layers, and the rules inside such a layer."""
    rules = list(_conv_bn(input_proj, 'neck.input_proj.{i}.', proj_parts))
    for n in range(3):
        rules += [(f'{aifi(n)}{{i}}.{a}', f'neck.encoder.{n}.layers.{{i}}.{b}')
                  for a, b in layer]
    for name in ('lateral_convs', 'downsample_convs'):
        rules += _conv_bn(f'{root}{name}.{{i}}.', f'neck.{name}.{{i}}.')
    for block in (f'{name}.{j}.' for name in ('fpn_blocks', 'pan_blocks')
                  for j in range(2)):
        for conv in ('conv1.', 'conv2.', 'conv3.'):
            rules += _conv_bn(root + block + conv, 'neck.' + block + conv)
        for conv in ('conv1.', 'conv2.'):
            rules += _conv_bn(f'{root}{block}bottlenecks.{{i}}.{conv}',
                              f'neck.{block}bottlenecks.{{i}}.{conv}')
    return tuple(rules)


# rtdetrv2_pytorch: PResNet (ConvNormLayer `conv`/`norm`; the first stage's
# shortcut is a plain ConvNormLayer, the others' follow an AvgPool `pool`),
# HybridEncoder (AIFI layers as nn.TransformerEncoderLayer: DETR's names).
OFFICIAL_BACKBONE = _presnet(
    lambda k: f'backbone.conv1.conv1_{k + 1}.',
    lambda s, c: f'backbone.res_layers.{s}.blocks.{{i}}.branch2{"abc"[c]}.',
    lambda s: f'backbone.res_layers.{s}.blocks.0.short.' + 'conv.' * (s > 0),
    ('conv', 'norm'))
OFFICIAL_NECK = _hybrid_encoder(
    'encoder.', 'encoder.input_proj.{i}.', ('conv', 'norm'),
    lambda n: f'encoder.encoder.{n}.layers.', _OFFICIAL_LAYER)

# transformers 5.x: RTDetrResNet (`convolution`/`normalization`; the
# shortcut's AvgPool at index 0 but in the first stage), the encoder's input
# projections outside it, the CCFM with the official names.
_HF_RESNET = 'model.backbone.model.'
HF_BACKBONE = _presnet(
    lambda k: f'{_HF_RESNET}embedder.embedder.{k}.',
    lambda s, c: f'{_HF_RESNET}encoder.stages.{s}.layers.{{i}}.layer.{c}.',
    lambda s: f'{_HF_RESNET}encoder.stages.{s}.layers.0.shortcut.' +
    '1.' * (s > 0), ('convolution', 'normalization'))
HF_NECK = _hybrid_encoder(
    'model.encoder.', 'model.encoder_input_proj.{i}.', ('0', '1'),
    lambda n: f'model.encoder.aifi.{n}.layers.',
    _layer(_attention('self_attn', 0), 'self_attn'))


def official_rules(num_layers: int) -> PrefixRules:
    """The official layout's table, for ``num_layers`` decoder layers."""
    return OFFICIAL_BACKBONE + OFFICIAL_NECK + _official_decoder(num_layers)


def hf_rules(num_layers: int) -> PrefixRules:
    """transformers 5.x's table, for ``num_layers`` decoder layers."""
    return HF_BACKBONE + HF_NECK + _hf_decoder(num_layers)


# transformers 4.x's AIFI encoders (the Hub's files) -> 5.x's
_HF4_AIFI = (re.compile(r'^model\.encoder\.encoder\.(\d+)\.layers\.'),
             r'model.encoder.aifi.\1.layers.')


def _decoder(root: str, input_proj: str, proj_parts: Sequence[str],
             layers: PrefixRules, heads: Dict[str, str],
             num_layers: int) -> PrefixRules:
    """The decoder's rules: their prefix of the decoder module (``root``)
    and of level ``{i}``'s input projection, the rules of its layers, and
    their names of the queries' position MLP, the denoising embedding, the
    proposals' projection / norm / classifier / box MLP and each layer's
    classifier / box MLP (``{i}``), whose proposal heads are our last
    branches, after the ``num_layers`` layers'."""
    ours = dict(query_pos='decoder.query_pos_head.',
                dn_embed='dn_query_generator.label_embedding.',
                proj='memory_trans_fc.', norm='memory_trans_norm.',
                enc_cls=f'bbox_head.cls_branches.{num_layers}.',
                enc_reg=f'bbox_head.reg_branches.{num_layers}.',
                cls='bbox_head.cls_branches.{i}.',
                reg='bbox_head.reg_branches.{i}.')
    return _conv_bn(input_proj, 'input_proj.{i}.', proj_parts) + \
        layers + tuple((root + heads[name], ours[name]) for name in ours)


_OFFICIAL_DECODER_LAYER = _OFFICIAL_LAYER + (
    ('cross_attn.', 'attentions.1.'), ('norm3.', 'norms.2.'))


def _official_decoder(num_layers: int,
                      layer: PrefixRules = _OFFICIAL_DECODER_LAYER
                      ) -> PrefixRules:
    """The official decoder's rules; ``layer``: those inside a layer."""
    return _decoder(
        'decoder.', 'decoder.input_proj.{i}.', ('conv', 'norm'),
        _in_layers('decoder', layer, their_root='decoder.'),
        dict(query_pos='query_pos_head.', dn_embed='denoising_class_embed.',
             proj='enc_output.proj.', norm='enc_output.norm.',
             enc_cls='enc_score_head.', enc_reg='enc_bbox_head.',
             cls='dec_score_head.{i}.', reg='dec_bbox_head.{i}.'),
        num_layers)


def _hf_decoder(num_layers: int,
                layers: PrefixRules = _DEFORMABLE_DECODER) -> PrefixRules:
    """transformers' decoder's rules; ``layers``: those of its layers."""
    return _decoder(
        'model.', 'model.decoder_input_proj.{i}.', ('0', '1'), layers,
        dict(query_pos='decoder.query_pos_head.',
             dn_embed='denoising_class_embed.', proj='enc_output.0.',
             norm='enc_output.1.', enc_cls='enc_score_head.',
             enc_reg='enc_bbox_head.', cls='decoder.class_embed.{i}.',
             reg='decoder.bbox_embed.{i}.'),
        num_layers)


# what the layouts hold that ours computes (the official anchors and their
# validity at 640 x 640, each cross-attention's 1 / points per level) or
# holds once (transformers' heads, tied to model.decoder's)
_NOT_WEIGHTS = re.compile(
    r'^(decoder\.(anchors|valid_mask)$|.*\.(num_points_scale|n_points_scale)$'
    r'|(class|bbox)_embed\.\d+\.)')


def num_decoder_layers(state_dict: Dict[str, Tensor]) -> int:
    """Decoder layers of an official or transformers state dict (its layer
    indices after ``decoder.layers.``)."""
    layers = {int(m.group(1)) for m in map(
        re.compile(r'(?:^|\.)decoder\.layers\.(\d+)\.').search, state_dict)
        if m}
    if not layers:
        raise KeyError('no decoder.layers.N keys: not an RT-DETR state dict')
    return max(layers) + 1


def _weights(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return {k: v for k, v in state_dict.items() if not _NOT_WEIGHTS.match(k)}


def with_batch_counts(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """``state_dict`` with a zero ``num_batches_tracked`` beside every BN's
    ``running_var`` that has none."""
    out = dict(state_dict)
    for key in state_dict:
        if key.endswith('.running_var'):
            out.setdefault(key[:-len('running_var')] + 'num_batches_tracked',
                           torch.tensor(0))
    return out


def rtdetr_official_to_plugin(state_dict: Dict[str, Tensor]
                              ) -> Dict[str, Tensor]:
    """An official model state dict (a checkpoint's ``['ema']['module']``
    or ``['model']``) -> ours; ``KeyError`` for keys no rule names."""
    rules = official_rules(num_decoder_layers(state_dict))
    return with_batch_counts(rename_keys(_weights(state_dict), rules,
                                         require_match=True))


def rtdetr_plugin_to_official(state_dict: Dict[str, Tensor]
                              ) -> Dict[str, Tensor]:
    """The inverse of :func:`rtdetr_official_to_plugin` (the official
    FrozenBatchNorm drops ``num_batches_tracked`` when it loads)."""
    return rename_keys(state_dict,
                       official_rules(num_decoder_layers(state_dict)),
                       to_ours=False, require_match=True)


def rtdetr_hf_to_plugin(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A transformers ``RTDetrV2ForObjectDetection`` state dict (4.x's or
    5.x's names) -> ours; ``KeyError`` for keys no rule names."""
    renamed = {}
    for key, value in state_dict.items():
        for pattern, new in HF_RENAMES + (_HF4_AIFI, ):
            key = pattern.sub(new, key)
        renamed[key] = value
    if not any(k.startswith('model.decoder.class_embed.') for k in renamed):
        # a file that kept the heads' top-level copies only
        renamed = {re.sub(r'^(class|bbox)_embed\.', r'model.decoder.\1_embed.',
                          k): v for k, v in renamed.items()}
    rules = hf_rules(num_decoder_layers(renamed))
    return with_batch_counts(rename_keys(merge_qkv(_weights(renamed)), rules,
                                         require_match=True))


# transformers' RT-DETR (v2) state dicts, told by their denoising embedding
HF_CONVERTERS['rtdetrv2'] = ('denoising_class_embed.weight',
                             rtdetr_hf_to_plugin)


def rtdetr_config(state_dict: Dict[str, Tensor]) -> str:
    """The config of ``configs/rtdetr/`` whose model a converted state dict
    fits, told by its backbone depth and CSP width (R50vd-m's ``eval_idx``
    is not in the weights: R50vd with expansion 0.5 is taken for it)."""
    blocks = 1 + max(int(k.split('.')[2]) for k in state_dict
                     if k.startswith('backbone.layer3.'))
    bottleneck = 'backbone.layer1.0.conv3.weight' in state_dict
    depth = {(2, False): 18, (6, False): 34, (6, True): 50,
             (23, True): 101}.get((blocks, bottleneck))
    narrow = 'neck.fpn_blocks.0.conv3.conv.weight' in state_dict
    if depth is None:
        raise KeyError(f'a ResNet-vd of {blocks} blocks in stage 3 '
                       f'({"bottleneck" if bottleneck else "basic"}) is none '
                       f'of RT-DETRv2\'s R18/R34/R50/R101')
    return {18: 'rtdetrv2_r18vd_4xb4-120e_coco.py',
            34: 'rtdetrv2_r34vd_4xb4-120e_coco.py',
            50: 'rtdetrv2_r50vd-m_4xb4-84e_coco.py' if narrow else
            'rtdetrv2_r50vd_4xb4-72e_coco.py',
            101: 'rtdetrv2_r101vd_4xb4-72e_coco.py'}[depth]


def convert_official_checkpoint(src: str, dst: str, source: str,
                                to_plugin: Callable, config: Callable,
                                num_classes: Optional[int] = None) -> dict:
    """Convert an official checkpoint file ``src`` of the RT-DETR family
    (its EMA weights ``['ema']['module']`` when it has them, else
    ``['model']``; read without unpickling code) to ``dst`` with
    ``to_plugin``; ``num_classes`` is checked when given; ``config(state
    dict)`` names the config its size fits (None: none). Its COCO classes
    are contiguous in category-id order, as mmdet's."""
    checkpoint = safe_load(src, f'an official {source} checkpoint', ())
    ema = checkpoint.get('ema') if isinstance(checkpoint, dict) else None
    weights = ema.get('module') if isinstance(ema, dict) else \
        (checkpoint or {}).get('model')
    if not isinstance(weights, dict):
        raise KeyError(f'{src} has neither ["ema"]["module"] nor ["model"]: '
                       f'not an official {source} checkpoint')
    state_dict = to_plugin(weights)
    found = num_classes_of(state_dict, 'rtdetr')
    if num_classes is not None and found != num_classes:
        raise ValueError(f'{src}: its classifier has {found} classes, not '
                         f'{num_classes}')
    meta = dict(converted_from=source, source_file=osp.basename(src),
                weights='ema' if ema else 'model', num_classes=found)
    name = config(state_dict)
    if name:
        meta['config'] = name
    if found == 80:
        meta['dataset_meta'] = dict(classes=coco_class_names(80))
    converted = dict(state_dict=state_dict, meta=meta)
    torch.save(converted, dst)
    return converted


def convert_rtdetr_checkpoint(src: str, dst: str,
                              num_classes: Optional[int] = None) -> dict:
    """An official rtdetrv2_pytorch checkpoint file ``src`` -> ``dst``
    (:func:`convert_official_checkpoint`)."""
    return convert_official_checkpoint(src, dst, 'rtdetr',
                                       rtdetr_official_to_plugin,
                                       rtdetr_config, num_classes)
