"""Convert DETR state dicts between mmdet 3.x's layout and this package's.

Each layout is a table of key-prefix pairs ``(theirs, ours)``; ``{i}`` stands
for a layer index. The same table renames in both directions, so a round trip
is the identity by construction. Keys that match no rule (the backbone, the
norms, ``query_embedding``, ``bbox_head.fc_cls``) keep their names.
"""
import re
from typing import Dict, List, Sequence, Tuple

from torch import Tensor

PrefixRules = Sequence[Tuple[str, str]]

# mmdet 3.x DETR (mmcv MultiheadAttention wraps nn.MultiheadAttention as
# `.attn`; a ChannelMapper neck is the input projection; the box MLP is an
# FFN plus `fc_reg`).
MMDET_RULES: PrefixRules = (
    ('neck.convs.0.conv.', 'input_proj.'),
    ('encoder.layers.{i}.self_attn.attn.', 'encoder.layers.{i}.attentions.0.'),
    ('decoder.layers.{i}.self_attn.attn.', 'decoder.layers.{i}.attentions.0.'),
    ('decoder.layers.{i}.cross_attn.attn.',
     'decoder.layers.{i}.attentions.1.'),
    ('encoder.layers.{i}.ffn.', 'encoder.layers.{i}.ffns.0.'),
    ('decoder.layers.{i}.ffn.', 'decoder.layers.{i}.ffns.0.'),
    ('bbox_head.reg_ffn.layers.0.0.', 'bbox_head.reg_mlp.layers.0.'),
    ('bbox_head.reg_ffn.layers.1.', 'bbox_head.reg_mlp.layers.1.'),
    ('bbox_head.fc_reg.', 'bbox_head.reg_mlp.layers.2.'),
)


def _compile(rules: PrefixRules, to_ours: bool) -> List[Tuple[re.Pattern,
                                                               str]]:
    compiled = []
    for theirs, ours in rules:
        src, dst = (theirs, ours) if to_ours else (ours, theirs)
        pattern = re.escape(src).replace(re.escape('{i}'), r'(?P<i>\d+)')
        compiled.append((re.compile('^' + pattern), dst))
    return compiled


def rename_keys(state_dict: Dict[str, Tensor], rules: PrefixRules,
                to_ours: bool = True) -> Dict[str, Tensor]:
    """Rename every key by the first rule whose prefix matches it.

    Args:
        state_dict: the source weights.
        rules: ``(theirs, ours)`` prefix pairs.
        to_ours: rename theirs -> ours, or ours -> theirs.
    """
    compiled = _compile(rules, to_ours)
    renamed = {}
    for key, value in state_dict.items():
        new_key = key
        for pattern, dst in compiled:
            match = pattern.match(key)
            if match:
                prefix = dst.replace('{i}', match.groupdict().get('i') or '')
                new_key = prefix + key[match.end():]
                break
        if new_key in renamed:
            raise KeyError(f'two source keys map to {new_key!r}')
        renamed[new_key] = value
    return renamed


def mmdet_to_plugin(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """mmdet 3.x DETR state dict -> this package's DETR state dict."""
    return rename_keys(state_dict, MMDET_RULES, to_ours=True)


def plugin_to_mmdet(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """This package's DETR state dict -> mmdet 3.x's."""
    return rename_keys(state_dict, MMDET_RULES, to_ours=False)
