"""D-FINE state dicts -> this package's: the official D-FINE layout (DEIM's
D-FINE checkpoints have the same keys) and transformers'
``DFineForObjectDetection``.

Ours: ``backbone.`` is :class:`~detr_plugin.models.HGNetV2` (the official
names, :mod:`.hgnetv2`), ``neck.`` the :class:`~detr_plugin.models.
DFINEHybridEncoder` (RT-DETR's names of :mod:`.rtdetr` but for the GELAN
blocks ``cv1`` ... ``cv4`` and :class:`SCDown`'s ``cv1``/``cv2``), the
decoder as RT-DETR's plus D-FINE's parts: each layer's gate (``gateway``;
no second norm: the third is ``norms.1``), the LQEs and pre-box MLP
(``bbox_head.lqe_layers`` / ``pre_bbox_head``) and ``W(n)``'s ``up`` and
``reg_scale`` (``decoder.``). The official decoder holds ``up`` and
``reg_scale`` twice (``decoder.`` and ``decoder.decoder.``): the second
copy is dropped, as the anchors, the valid mask and each attention's
``1 / points`` (computed from the config).
"""
import re
from typing import Dict, Optional, Sequence

from torch import Tensor

from .hf import HF_CONVERTERS, HF_RENAMES, merge_qkv
from .hgnetv2 import HF_HGNETV2, OFFICIAL_HGNETV2
from .layouts import _OFFICIAL_LAYER, PrefixRules, _in_layers, rename_keys
from .rtdetr import (_conv_bn, _hf_decoder, _official_decoder,
                     convert_official_checkpoint, num_decoder_layers,
                     with_batch_counts)

# a GELAN block's convs: theirs (official, transformers) -> ours
_GELAN = (('cv1.', 'conv1.', 'cv1.'), ('cv2.0.', 'csp_rep1.', 'cv2.0.'),
          ('cv2.1.', 'conv2.', 'cv2.1.'), ('cv3.0.', 'csp_rep2.', 'cv3.0.'),
          ('cv3.1.', 'conv3.', 'cv3.1.'), ('cv4.', 'conv4.', 'cv4.'))


def _encoder(root: str, input_proj: str, proj_parts: Sequence[str],
             aifi: str, layer: PrefixRules, official: bool) -> PrefixRules:
    """The encoder's rules from their prefixes of the fusion modules, of
    level ``{i}``'s input projection (and its conv / BN names), of AIFI
    encoder ``n``'s layers (``{n}``) and the rules inside a layer."""
    rules = list(_conv_bn(input_proj, 'neck.input_proj.{i}.', proj_parts))
    for n in range(3):
        rules += [(f'{aifi.format(n=n)}{{i}}.{a}',
                   f'neck.encoder.{n}.layers.{{i}}.{b}') for a, b in layer]
    rules += _conv_bn(f'{root}lateral_convs.{{i}}.', 'neck.lateral_convs.{i}.')
    for k in (1, 2):
        theirs = f'0.cv{k}.' if official else f'conv{k}.'
        rules += _conv_bn(f'{root}downsample_convs.{{i}}.{theirs}',
                          f'neck.downsample_convs.{{i}}.cv{k}.')
    for block in ('fpn_blocks.{i}.', 'pan_blocks.{i}.'):
        for official_name, hf_name, ours in _GELAN:
            theirs = root + block + (official_name if official else hf_name)
            ours = 'neck.' + block + ours
            if ours.endswith('.0.'):  # a CSP layer of RepVGG blocks
                for conv in ('conv1.', 'conv2.'):
                    rules += _conv_bn(theirs + conv, ours + conv)
                    rules += [(f'{theirs}bottlenecks.{b}.{conv}{a}.',
                               f'{ours}bottlenecks.{b}.{conv}{c}.')
                              for b in range(3) for a, c in
                              (('conv', 'conv'), ('norm', 'bn'))]
            else:
                rules += _conv_bn(theirs, ours)
    return tuple(rules)


def _fdr_parts(decoder: str, lqe: str, pre: str) -> PrefixRules:
    """W(n)'s scales and the LQE / pre-box MLPs: their prefixes."""
    return ((f'{decoder}up', 'decoder.up'),
            (f'{decoder}reg_scale', 'decoder.reg_scale'),
            (lqe, 'bbox_head.lqe_layers.{i}.'),
            (pre, 'bbox_head.pre_bbox_head.'))


def official_rules(num_layers: int) -> PrefixRules:
    """The official layout's table, for ``num_layers`` decoder layers."""
    layer = _OFFICIAL_LAYER[:-1] + (('cross_attn.', 'attentions.1.'),
                                    ('gateway.', 'gateway.'),
                                    ('norm3.', 'norms.1.'))
    return OFFICIAL_HGNETV2 + _encoder(
        'encoder.', 'encoder.input_proj.{i}.', ('conv', 'norm'),
        'encoder.encoder.{n}.layers.', _OFFICIAL_LAYER, True) + \
        _fdr_parts('decoder.', 'decoder.decoder.lqe_layers.{i}.',
                   'decoder.pre_bbox_head.') + \
        _official_decoder(num_layers, layer)


def hf_rules(num_layers: int) -> PrefixRules:
    """transformers 5.x's table, for ``num_layers`` decoder layers."""
    attention = (('self_attn.o_proj.', 'attentions.0.out_proj.'),
                 ('self_attn.', 'attentions.0.'),
                 ('self_attn_layer_norm.', 'norms.0.'))
    mlp = tuple((f'mlp.{name}.', ours) for names, ours in (
        (('layers.0', 'fc1'), 'ffns.0.layers.0.0.'),
        (('layers.1', 'fc2'), 'ffns.0.layers.1.')) for name in names)
    aifi = attention + mlp + (('final_layer_norm.', 'norms.1.'), )
    layer = attention + mlp + (('encoder_attn.', 'attentions.1.'),
                               ('gateway.', 'gateway.'),
                               ('final_layer_norm.', 'norms.1.'))
    return HF_HGNETV2 + _encoder(
        'model.encoder.', 'model.encoder_input_proj.{i}.', ('0', '1'),
        'model.encoder.aifi.{n}.layers.', aifi, False) + \
        _fdr_parts('model.decoder.', 'model.decoder.lqe_layers.{i}.',
                   'model.decoder.pre_bbox_head.') + \
        _hf_decoder(num_layers, _in_layers('decoder', layer, 'model.'))


# what the layouts hold that ours computes or holds once
_NOT_WEIGHTS = re.compile(
    r'^(decoder\.(anchors|valid_mask|decoder\.(up|reg_scale))$'
    r'|.*\.num_points_scale$|(class|bbox)_embed\.\d+\.)')


def _weights(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    return {k: v for k, v in state_dict.items() if not _NOT_WEIGHTS.match(k)}


def dfine_official_to_plugin(state_dict: Dict[str, Tensor]
                             ) -> Dict[str, Tensor]:
    """An official D-FINE / DEIM model state dict -> ours; ``KeyError`` for
    keys no rule names."""
    rules = official_rules(num_decoder_layers(state_dict))
    return with_batch_counts(rename_keys(_weights(state_dict), rules,
                                         require_match=True))


def dfine_plugin_to_official(state_dict: Dict[str, Tensor]
                             ) -> Dict[str, Tensor]:
    """The inverse of :func:`dfine_official_to_plugin`, without the
    buffers the official model computes."""
    return rename_keys(state_dict,
                       official_rules(num_decoder_layers(state_dict)),
                       to_ours=False, require_match=True)


def dfine_hf_to_plugin(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """A transformers ``DFineForObjectDetection`` state dict (4.x's or
    5.x's names) -> ours."""
    renamed = {}
    for key, value in state_dict.items():
        for pattern, new in HF_RENAMES:
            key = pattern.sub(new, key)
        renamed[re.sub(r'^model\.encoder\.encoder\.(\d+)\.',
                       r'model.encoder.aifi.\1.', key)] = value
    rules = hf_rules(num_decoder_layers(renamed))
    return with_batch_counts(rename_keys(merge_qkv(_weights(renamed)), rules,
                                         require_match=True))


# transformers' D-FINE, told by its LQE layers, before RT-DETR (whose
# denoising embedding it has too)
HF_CONVERTERS['dfine'] = ('decoder.lqe_layers.0.reg_conf.layers.0.weight',
                          dfine_hf_to_plugin)
HF_CONVERTERS['rtdetrv2'] = HF_CONVERTERS.pop('rtdetrv2')

# (backbone arch, width, decoder layers) -> size; the configs of each
_SIZES = {('B0', 256, 3): 's', ('B2', 256, 4): 'm', ('B4', 256, 6): 'l',
          ('B5', 384, 6): 'x'}
_EPOCHS = dict(dfine=dict(s=132, m=132, l=80, x=80),
               deim_dfine=dict(s=132, m=102, l=58, x=58))
_STEMS = {(16, 16): 'B0', (24, 32): 'B2', (32, 48): 'B4', (32, 64): 'B5'}


def dfine_config(state_dict: Dict[str, Tensor],
                 deim: bool = False) -> Optional[str]:
    """The config of ``configs/dfine/`` (``configs/deim/`` with ``deim``)
    whose model a converted state dict fits, told by its stem, encoder
    width and decoder layers; None for none of S/M/L/X."""
    stem = state_dict['backbone.stem.stem1.conv.weight'].shape[0], \
        state_dict['backbone.stem.stem4.conv.weight'].shape[0]
    width = state_dict['neck.input_proj.0.bn.weight'].shape[0]
    key = (_STEMS.get(stem), width, num_decoder_layers(state_dict))
    if key not in _SIZES:
        return None
    size, family = _SIZES[key], 'deim_dfine' if deim else 'dfine'
    return f'{family}_hgnetv2-{size}_8xb4-{_EPOCHS[family][size]}e_coco.py'


def convert_dfine_checkpoint(src: str, dst: str, deim: bool = False,
                             num_classes: Optional[int] = None) -> dict:
    """An official D-FINE (``deim``: DEIM-D-FINE) checkpoint file ``src`` ->
    ``dst`` (:func:`.rtdetr.convert_official_checkpoint`)."""
    return convert_official_checkpoint(
        src, dst, 'deim' if deim else 'dfine', dfine_official_to_plugin,
        lambda state_dict: dfine_config(state_dict, deim), num_classes)
