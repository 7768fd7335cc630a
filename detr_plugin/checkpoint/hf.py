"""Hugging Face transformers' DETR family -> this package's state dicts.

``DetrForObjectDetection`` (-> ``DETR``), ``DetrForSegmentation`` (->
``DETRPanoptic``), ``ConditionalDetrForObjectDetection``,
``DabDetrForObjectDetection`` and ``DeformableDetrForObjectDetection`` (plain,
``with_box_refine``, ``two_stage``), told apart by their keys
(:func:`hf_variant`), in transformers 4's names (the Hub's files; 5's
``save_pretrained`` still writes them) or 5's (its modules':
``state_dict()``), all brought to 5's first (:data:`HF_RENAMES`). The
backbone is timm's ResNet (torchvision's names, as mmdet's ResNet: the Hub's
releases) or transformers' ``ResNetBackbone``.

Beyond renaming: split ``q_proj`` / ``k_proj`` / ``v_proj`` become one
``in_proj_weight`` / ``in_proj_bias`` (rows q, k, v); the frozen BatchNorms
get a zero ``num_batches_tracked``; of tied copies (DAB-DETR's box MLP is also
``model.decoder.bbox_embed``; Deformable DETR's heads per layer, also under
``model.decoder.`` when refining) a file may hold one: layer 0's head stands
in for a layer's left out. DETR's classifier has ``num_labels + 1`` rows
(no-object last, as ours), its successors' ``num_labels``. Deformable DETR's
input projections (our ``ChannelMapper`` neck) have biases: its config needs
``neck=dict(bias=True)`` (mmdet's ``bias='auto'`` has none beside GroupNorm).
"""
import json
import os.path as osp
import re
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from .files import safe_load
from .layouts import PrefixRules, _in_layers, num_classes_of, rename_keys

# -> transformers 5's DETR names: from 4's (its conversion_mapping.py) and
# from DAB-DETR's (decoder attentions and norms in sub-modules, PReLU FFNs)
HF_RENAMES = tuple((re.compile(pattern), new) for pattern, new in (
    (r'backbone\.conv_encoder\.', 'backbone.'),
    (r'backbone\.position_embedding\.', 'position_embedding.'),
    (r'\.out_proj\.', '.o_proj.'),
    (r'(layers\.\d+)\.(fc[12]|activation_fn)\.', r'\1.mlp.\2.'),
    (r'\.sa_([qk])(content|pos)_proj\.', r'.self_attn.\1_\2_proj.'),
    (r'\.ca_([qk])(content|pos_sine|pos)_proj\.',
     r'.encoder_attn.\1_\2_proj.'),
    (r'\.sa_v_proj\.', '.self_attn.v_proj.'),
    (r'\.ca_v_proj\.', '.encoder_attn.v_proj.'),
    (r'\.(self|cross)_attn\.\1_attn(_layer_norm)\.', r'.\1_attn\2.'),
    (r'\.(self|cross)_attn\.\1_attn\.output_proj\.', r'.\1_attn.o_proj.'),
    (r'\.(self|cross)_attn\.\1_attn_([qkv])(?:uery|ey|alue)_(\w*?)proj\.',
     r'.\1_attn.\2_\3proj.'),
    (r'\.cross_attn(_layer_norm)?\.', r'.encoder_attn\1.'),
    (r'\.mlp\.final_layer_norm\.', '.final_layer_norm.'),
))
# The backbone, and transformers' ResNet names in it (timm's are mmdet's).
_BACKBONE = re.compile(r'^(detr\.)?model\.backbone\.model\.')
_HF_RESNET = re.compile(
    r'^(?:embedder\.embedder|encoder\.stages\.(\d+)\.layers\.(\d+)\.'
    r'(?:layer\.(\d+)|shortcut))\.(convolution|normalization)\.')


def _resnet_name(match: re.Match) -> str:
    stage, block, conv, kind = match.groups()
    norm = kind == 'normalization'
    if stage is None:  # the stem
        return 'bn1.' if norm else 'conv1.'
    layer = f'layer{int(stage) + 1}.{block}.'
    if conv is None:  # the shortcut
        return f'{layer}downsample.{int(norm)}.'
    return f'{layer}{"bn" if norm else "conv"}{int(conv) + 1}.'


# Inside a layer: norms in the order the layer applies them; the FFN's
# activation has weights when it is a PReLU (DAB-DETR).
_FFN = (('mlp.fc1.', 'ffns.0.layers.0.0.'), ('mlp.fc2.', 'ffns.0.layers.1.'),
        ('mlp.activation_fn.', 'ffns.0.layers.0.1.'))


def _layer(attentions: PrefixRules, *norms: str) -> PrefixRules:
    norms += ('final', )
    return attentions + _FFN + tuple((f'{name}_layer_norm.', f'norms.{j}.')
                                     for j, name in enumerate(norms))


def _attention(theirs: str, index: int, names=('in_proj_', )
               ) -> PrefixRules:
    """Rules of an attention (a plain one's q/k/v merged by
    :func:`merge_qkv`); ``names`` theirs, or ``(theirs, ours)``."""
    pairs = [(n, n) if isinstance(n, str) else n for n in names]
    return tuple((f'{theirs}.{a}', f'attentions.{index}.{b}')
                 for a, b in pairs + [('o_proj.', 'out_proj.')])


# mmdet's ConditionalAttention's names
_CONDITIONAL = [(f'{a}_{b}proj.', f'{a}{b}proj.') for a in 'qk'
                for b in ('content_', 'pos_')] + [
                    'v_proj.', ('q_pos_sine_proj.', 'qpos_sine_proj.')]
_DEFORMABLE = [f'{name}.' for name in (
    'sampling_offsets', 'attention_weights', 'value_proj', 'output_proj')]
_ENCODER = _in_layers('encoder', _layer(_attention('self_attn', 0),
                                        'self_attn'), 'model.')
_DETR = (
    ('model.input_projection.', 'input_proj.'),
    ('model.query_position_embeddings.', 'query_embedding.'),
    ('model.decoder.layernorm.', 'decoder.post_norm.'),
    ('model.position_embedding.row_embeddings.',
     'positional_encoding.row_embed.'),
    ('model.position_embedding.column_embeddings.',
     'positional_encoding.col_embed.'),
    ('class_labels_classifier.', 'bbox_head.fc_cls.'),
    ('bbox_predictor.layers.', 'bbox_head.reg_mlp.layers.'),
) + _ENCODER
_CONDITIONAL_DECODER = _in_layers('decoder', _layer(
    _attention('self_attn', 0, _CONDITIONAL) +
    _attention('encoder_attn', 1, _CONDITIONAL), 'self_attn', 'encoder_attn'),
    'model.') + tuple((f'model.decoder.{name}.', f'decoder.{name}.') for name
                      in ('query_scale', 'ref_point_head', 'ref_anchor_head'))
# Deformable DETR's decoder layers (also RT-DETR's)
_DEFORMABLE_DECODER = _in_layers('decoder', _layer(
    _attention('self_attn', 0) + _attention('encoder_attn', 1, _DEFORMABLE),
    'self_attn', 'encoder_attn'), 'model.')
_DETR_DECODER = _in_layers('decoder', _layer(
    _attention('self_attn', 0) + _attention('encoder_attn', 1), 'self_attn',
    'encoder_attn'), 'model.')
# the panoptic model's mask head: transformers 5's names -> ours (the
# official ones, which transformers 4 kept)
_MASK_HEAD: PrefixRules = (
    ('bbox_attention.q_proj.', 'bbox_attention.q_linear.'),
    ('bbox_attention.k_proj.', 'bbox_attention.k_linear.'),
    *[(f'mask_head.conv{i}.{a}.', f'mask_head.{b}{i}.')
      for i in (1, 2) for a, b in (('conv', 'lay'), ('norm', 'gn'))],
    *[(f'mask_head.fpn_stages.{s}.{a}.', f'mask_head.{b}')
      for s in range(3) for a, b in (
          ('fpn_adapter', f'adapter{s + 1}.'), ('refine.conv', f'lay{s + 3}.'),
          ('refine.norm', f'gn{s + 3}.'))],
    ('mask_head.output_conv.', 'mask_head.out_lay.'),
    ('bbox_attention.', 'bbox_attention.'), ('mask_head.', 'mask_head.'))
HF_RULES: Dict[str, PrefixRules] = dict(
    detr=_DETR + _DETR_DECODER,
    detr_panoptic=tuple(('detr.' + a, b) for a, b in _DETR + _DETR_DECODER)
    + _MASK_HEAD,
    conditional_detr=_DETR + _CONDITIONAL_DECODER,
    dab_detr=(('model.query_refpoint_embeddings.', 'query_embedding.'),
              ('model.encoder.query_scale.', 'encoder.query_scale.'),
              ('class_embed.', 'bbox_head.fc_cls.'),
              ('model.decoder.bbox_embed.', 'bbox_head.reg_mlp.')) + _DETR +
    _CONDITIONAL_DECODER,
    deformable_detr=(
        ('model.level_embed', 'level_embed'),
        ('model.query_position_embeddings.', 'query_embedding.'),
        ('model.reference_points.', 'reference_points_fc.'),
        ('model.enc_output.', 'memory_trans_fc.'),
        ('model.enc_output_norm.', 'memory_trans_norm.'),
        ('model.pos_trans.', 'pos_trans_fc.'),
        ('model.pos_trans_norm.', 'pos_trans_norm.'),
        ('class_embed.{i}.', 'bbox_head.cls_branches.{i}.'),
        ('bbox_embed.{i}.', 'bbox_head.reg_branches.{i}.'),
    ) + _in_layers('encoder', _layer(_attention(
        'self_attn', 0, _DEFORMABLE), 'self_attn'), 'model.') +
    _DEFORMABLE_DECODER,
)
# A key only the variant has, the most specific first.
_VARIANT_KEYS = (
    ('detr_panoptic', 'detr.model.decoder.layernorm.weight'),
    ('dab_detr', 'model.query_refpoint_embeddings.weight'),
    ('deformable_detr', 'model.level_embed'),
    ('conditional_detr', 'model.decoder.ref_point_head.layers.0.weight'),
    ('detr', 'model.decoder.layernorm.weight'),
)


def hf_variant(state_dict: Dict[str, Tensor]) -> str:
    """The layout of a transformers state dict (a key of :data:`HF_RULES`),
    Deformable DETR's with ``_refine`` / ``_twostage`` as its keys show;
    ``KeyError`` when it is none of them."""
    keys = set(state_dict)
    found = [variant for variant, key in _VARIANT_KEYS if key in keys]
    if not found:
        raise KeyError(
            f'not a transformers state dict of DETR (detection or '
            f'segmentation), Conditional DETR, DAB-DETR or Deformable DETR: '
            f'none of {[k for _, k in _VARIANT_KEYS]} is among its '
            f'{len(keys)} keys, e.g. {sorted(keys)[:5]}')
    if found[0] != 'deformable_detr':
        return found[0]
    return 'deformable_detr' + '_refine' * any(
        k.startswith('model.decoder.bbox_embed.') for k in keys) + \
        '_twostage' * ('model.enc_output.weight' in keys)


def merge_qkv(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """``X.q_proj``, ``X.k_proj``, ``X.v_proj`` (all three) -> one
    ``X.in_proj_weight`` / ``X.in_proj_bias``, rows q, k, v."""
    out = dict(state_dict)
    for key in state_dict:
        match = re.fullmatch(r'(.*)\.q_proj\.(weight|bias)', key)
        parts = match and [f'{match[1]}.{p}_proj.{match[2]}' for p in 'qkv']
        if parts and all(p in state_dict for p in parts):
            out[f'{match[1]}.in_proj_{match[2]}'] = torch.cat(
                [out.pop(p) for p in parts])
    return out


def _per_layer_heads(state_dict: Dict[str, Tensor], num_pred: int,
                     shared: bool) -> Dict[str, Tensor]:
    """Deformable DETR's heads as ``class_embed.{i}`` / ``bbox_embed.{i}``
    for each of ``num_pred`` layers: its own, the decoder's copy, or (tied,
    left out of the file) layer 0's. ``shared``: ours is one module."""
    heads = re.compile(r'(model\.decoder\.)?(class|bbox)_embed\.')
    out = {k: v for k, v in state_dict.items() if not heads.match(k)}
    for kind in ('class_embed', 'bbox_embed'):
        for i in range(num_pred):
            for src in (f'{kind}.{i}.', f'model.decoder.{kind}.{i}.',
                        f'{kind}.0.', f'model.decoder.{kind}.0.'):
                part = {k[len(src):]: v for k, v in state_dict.items()
                        if k.startswith(src)}
                if part:
                    break
            else:
                raise KeyError(f'no {kind} for decoder layer {i}, nor 0')
            if shared and i and not all(torch.equal(
                    v, out[f'{kind}.0.{k}']) for k, v in part.items()):
                raise ValueError(
                    f'{kind}.{i} differs from {kind}.0, but without box '
                    f'refinement our Deformable DETR shares one head')
            out.update({f'{kind}.{i}.{k}': v for k, v in part.items()})
    return out


def _input_proj_rules(state_dict: Dict[str, Tensor]) -> PrefixRules:
    """Deformable DETR's ``model.input_proj.{l}`` (conv, GroupNorm) -> the
    neck's: 1x1 convs of backbone maps, then the extra 3x3 ones."""
    levels = sorted(int(m[1]) for m in (
        re.fullmatch(r'model\.input_proj\.(\d+)\.0\.weight', k)
        for k in state_dict) if m)
    num_backbone = sum(state_dict[f'model.input_proj.{level}.0.weight']
                       .shape[-1] == 1 for level in levels)
    rules = []
    for level in levels:
        ours = f'neck.convs.{level}.' if level < num_backbone else \
            f'neck.extra_convs.{level - num_backbone}.'
        rules += [(f'model.input_proj.{level}.0.', ours + 'conv.'),
                  (f'model.input_proj.{level}.1.', ours + 'gn.')]
    return tuple(rules)


# Converters of other transformers models, registered by their modules
# (:mod:`.rtdetr`): variant -> (a key suffix only it has, its function).
HF_CONVERTERS: Dict[str, Tuple[str, Callable]] = {}


def hf_to_plugin(state_dict: Dict[str, Tensor]
                 ) -> Tuple[str, Dict[str, Tensor]]:
    """A transformers model's state dict -> ``(variant, ours)``, the
    variant :func:`hf_variant`'s (or one of :data:`HF_CONVERTERS`);
    ``KeyError`` for an unknown model or keys no rule of its layout
    names."""
    for variant, (key, convert) in HF_CONVERTERS.items():
        if any(k.endswith(key) for k in state_dict):
            return variant, convert(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        for pattern, new in HF_RENAMES:
            key = pattern.sub(new, key)
        match = _BACKBONE.match(key)
        if match:
            key = 'backbone.' + _HF_RESNET.sub(_resnet_name, key[match.end():])
        renamed[key] = value
    variant = hf_variant(renamed)
    layout = re.sub('_refine|_twostage', '', variant)
    state = merge_qkv(renamed)
    rules = HF_RULES[layout]
    if 'bbox_predictor.layers.0.weight' in state:  # DAB-DETR's tied copy
        state = {k: v for k, v in state.items()
                 if not k.startswith('model.decoder.bbox_embed.')}
    if layout == 'deformable_detr':
        num_layers = len({k.split('.')[3] for k in state
                          if k.startswith('model.decoder.layers.')})
        state = _per_layer_heads(
            state, num_layers + variant.endswith('_twostage'),
            shared='_refine' not in variant)
        rules = _input_proj_rules(state) + rules
    ours = rename_keys(state, (('backbone.', 'backbone.'), ) + rules,
                       require_match=True)
    for key in [k for k in ours if re.match(r'backbone\..*running_var$', k)]:
        ours.setdefault(key[:-len('running_var')] + 'num_batches_tracked',
                        torch.tensor(0))
    return variant, ours


def load_hf_state_dict(path: str) -> Dict[str, Tensor]:
    """A ``model.safetensors`` file, or a ``pytorch_model.bin`` / ``.pth``
    state dict read with ``weights_only`` (no code runs)."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file  # transformers' dependency
        return load_file(path)
    state_dict = safe_load(path, 'a transformers state dict', ())
    if isinstance(state_dict, dict):
        return state_dict
    raise KeyError(f'{path} holds a {type(state_dict).__name__}, not a '
                   f'state dict')


def convert_hf_checkpoint(src: str, dst: str,
                          num_classes: Optional[int] = None) -> dict:
    """Convert the transformers state dict file ``src`` to ``dst``
    (``{'state_dict', 'meta'}``, as :func:`.layouts.convert_checkpoint`);
    ``num_classes`` is checked against the classifier when given, and the
    class names come from a ``config.json`` beside ``src``."""
    variant, state_dict = hf_to_plugin(load_hf_state_dict(src))
    found = num_classes_of(state_dict)
    if num_classes is not None and found != num_classes:
        raise ValueError(f'the transformers {variant} classifier has {found} '
                         f'classes, not {num_classes}')
    meta = dict(converted_from='hf', source_file=osp.basename(src),
                variant=variant, num_classes=found)
    config = osp.join(osp.dirname(osp.abspath(src)), 'config.json')
    if osp.isfile(config):  # transformers' config: the class names
        with open(config) as file:
            id2label = json.load(file).get('id2label') or {}
        if id2label and len(id2label) != found:
            raise ValueError(f'{config} names {len(id2label)} classes, the '
                             f'checkpoint beside it has {found}')
        if id2label:
            meta['dataset_meta'] = dict(classes=[
                id2label[key] for key in sorted(id2label, key=int)])
    converted = dict(state_dict=state_dict, meta=meta)
    torch.save(converted, dst)
    return converted
