"""HGNetV2 backbone state dicts -> this package's
:class:`~detr_plugin.models.HGNetV2` (under ``backbone.``).

Ours has the official D-FINE names, so :data:`OFFICIAL_HGNETV2` renames
nothing: it names the prefix of every conv an HGNetV2 can have, so that
``rename_keys(..., require_match=True)`` refuses keys outside them.
transformers' ``HGNetV2Backbone`` (``DFineForObjectDetection``'s
``model.backbone.model.``) calls the stem ``embedder`` and the stages
``encoder.stages``, a conv ``convolution`` and its BN ``normalization``:
:data:`HF_HGNETV2`. The official L/X backbones and transformers'
(``freeze_backbone_batch_norms``) hold FrozenBatchNorms, without
``num_batches_tracked``: add a zero one with
:func:`.rtdetr.with_batch_counts`.
"""
from typing import Sequence

from .layouts import PrefixRules
from .rtdetr import _conv_bn

_OURS = ('conv', 'bn', 'lab')
MAX_LAYERS = 6  # the most convs of an HG block (B4-B6)


def hgnetv2_rules(stem: str, stages: str, parts: Sequence[str] = _OURS,
                  ours: str = 'backbone.') -> PrefixRules:
    """Every conv's rules, from their prefixes of the stem's convs
    (``stem1`` ... ``stem4``) and of the stage list, and their names of a
    conv, its norm and its affine; the block index is ``{i}``."""
    rules = []
    for name in ('stem1', 'stem2a', 'stem2b', 'stem3', 'stem4'):
        rules += _conv_bn(f'{stem}{name}.', f'{ours}stem.{name}.', parts,
                          _OURS)
    convs = ['aggregation.0.', 'aggregation.1.'] + [
        f'layers.{k}.{light}' for k in range(MAX_LAYERS)
        for light in ('', 'conv1.', 'conv2.')]
    for s in range(4):
        rules += _conv_bn(f'{stages}{s}.downsample.',
                          f'{ours}stages.{s}.downsample.', parts, _OURS)
        for conv in convs:
            rules += _conv_bn(f'{stages}{s}.blocks.{{i}}.{conv}',
                              f'{ours}stages.{s}.blocks.{{i}}.{conv}', parts,
                              _OURS)
    return tuple(rules)


OFFICIAL_HGNETV2 = hgnetv2_rules('backbone.stem.', 'backbone.stages.')
HF_HGNETV2 = hgnetv2_rules('model.backbone.model.embedder.',
                           'model.backbone.model.encoder.stages.',
                           ('convolution', 'normalization', 'lab'))
