"""DETR's transformer: one layer class driven by ``operation_order``.

DETR's encoder layer is ``('self_attn', 'norm', 'ffn', 'norm')`` and its
decoder layer ``('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')``
(post-norm, the paper's). Starting the order with ``'norm'`` gives the pre-norm
variant (``('norm', 'self_attn', 'norm', 'ffn')``). Every tensor is batch
first: ``(B, L, D)``.

The layer hands every attention the same keyword inputs -- the sequences,
their positions, the masks and whatever else the caller passes (reference
points, a query's sine embedding, ...) -- and the attention decides what to do
with them: DETR's ``MultiheadAttention`` adds positions to queries and keys,
never to values; Conditional DETR's attention projects them separately. So
one layer class serves every DETR variant; only the attention types differ.
"""
import copy
from typing import List, Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from ..registry import MODELS

ATTENTION_OPS = ('self_attn', 'cross_attn')
KNOWN_OPS = ATTENTION_OPS + ('norm', 'ffn')


def _per_op_cfgs(cfgs: Union[dict, Sequence[dict]], count: int,
                 what: str) -> List[dict]:
    """One config per operation: a dict is shared, a list must match."""
    if isinstance(cfgs, dict):
        return [copy.deepcopy(cfgs) for _ in range(count)]
    if len(cfgs) != count:
        raise ValueError(f'operation_order has {count} {what} operations '
                         f'but {len(cfgs)} configs were given')
    return [copy.deepcopy(cfg) for cfg in cfgs]


@MODELS.register_module()
class BaseTransformerLayer(BaseModule):
    """A transformer layer whose sub-layers follow ``operation_order``.

    Each attention and FFN adds its output to a residual; the residual is the
    sub-layer's input in post-norm order, and the input before the preceding
    ``'norm'`` in pre-norm order.

    Args:
        attn_cfgs: config(s) of the attentions, one per ``self_attn`` /
            ``cross_attn`` in order (a dict is used for all); default type
            ``MultiheadAttention``.
        ffn_cfgs: config(s) of the FFNs; default type mmcv's ``FFN``, built
            without its own residual (this layer adds it).
        operation_order: sequence of ``'self_attn'``, ``'cross_attn'``,
            ``'norm'`` and ``'ffn'``.
        norm_cfg: config of every norm (default LayerNorm).
    """

    def __init__(self,
                 attn_cfgs: Union[dict, Sequence[dict]],
                 ffn_cfgs: Union[dict, Sequence[dict]],
                 operation_order: Sequence[str],
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        unknown = set(operation_order) - set(KNOWN_OPS)
        if unknown:
            raise ValueError(f'unknown operations {sorted(unknown)} in '
                             f'operation_order; known: {KNOWN_OPS}')
        self.operation_order = tuple(operation_order)
        self.pre_norm = self.operation_order[0] == 'norm'
        num_attn = sum(op in ATTENTION_OPS for op in operation_order)
        num_ffn = self.operation_order.count('ffn')
        self.attentions = ModuleList()
        for cfg in _per_op_cfgs(attn_cfgs, num_attn, 'attention'):
            cfg.setdefault('type', 'MultiheadAttention')
            self.attentions.append(MODELS.build(cfg))
        self.embed_dims = self.attentions[0].embed_dims
        self.ffns = ModuleList()
        for cfg in _per_op_cfgs(ffn_cfgs, num_ffn, 'ffn'):
            cfg.setdefault('type', 'FFN')
            cfg['add_identity'] = False
            self.ffns.append(MODELS.build(cfg))
        self.norms = ModuleList([
            build_norm_layer(norm_cfg, self.embed_dims)[1]
            for _ in range(self.operation_order.count('norm'))
        ])

    @staticmethod
    def config_dict_types() -> dict:
        """The type each untyped config dict of ``__init__`` is built as
        (read by the tools' config check)."""
        return dict(attn_cfgs='MultiheadAttention', ffn_cfgs='FFN')

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None,
                query_key_padding_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Run the operations in order.

        Args:
            query: ``(B, Lq, D)``, the sequence this layer transforms.
            key: ``(B, Lk, D)``, the keys of ``cross_attn`` (the memory).
            value: ``(B, Lk, D)``, its values; ``key`` when None.
            query_pos: ``(B, Lq, D)`` or ``(1, Lq, D)``, positions of query
                (both sides of ``self_attn``, the query of ``cross_attn``).
            key_pos: ``(B, Lk, D)``, positions of key.
            self_attn_mask, cross_attn_mask: bool ``(Lq, Lq)`` /
                ``(Lq, Lk)`` (or per image and head), True = may not attend.
            query_key_padding_mask: ``(B, Lq)`` bool, True = padded; masks
                the keys of ``self_attn`` (the encoder's padding).
            key_padding_mask: ``(B, Lk)`` bool; masks the keys of
                ``cross_attn``.
            **kwargs: passed to every attention (e.g. reference points).

        Returns:
            ``(B, Lq, D)``.
        """
        attn_idx = norm_idx = ffn_idx = 0
        residual = query
        for op in self.operation_order:
            if op == 'norm':
                query = self.norms[norm_idx](query)
                norm_idx += 1
                continue
            if op == 'self_attn':
                out = self.attentions[attn_idx](
                    query, query, query, query_pos=query_pos,
                    key_pos=query_pos, attn_mask=self_attn_mask,
                    key_padding_mask=query_key_padding_mask, **kwargs)
                attn_idx += 1
            elif op == 'cross_attn':
                out = self.attentions[attn_idx](
                    query, key, value, query_pos=query_pos, key_pos=key_pos,
                    attn_mask=cross_attn_mask,
                    key_padding_mask=key_padding_mask, **kwargs)
                attn_idx += 1
            else:  # 'ffn'
                out = self.ffns[ffn_idx](query)
                ffn_idx += 1
            query = (residual if self.pre_norm else query) + out
            residual = query
        return query


def _layer_cfg_type() -> dict:
    """The encoders' and decoders' ``config_dict_types``."""
    return dict(layer_cfg='BaseTransformerLayer')


def _build_layers(num_layers: int, layer_cfg: dict) -> ModuleList:
    layer_cfg = dict(layer_cfg)
    layer_cfg.setdefault('type', 'BaseTransformerLayer')
    return ModuleList(
        [MODELS.build(copy.deepcopy(layer_cfg)) for _ in range(num_layers)])


@MODELS.register_module()
class DetrTransformerEncoder(BaseModule):
    """DETR's encoder: ``num_layers`` self-attention layers over the image.

    Args:
        num_layers: number of layers.
        layer_cfg: config of every layer (``BaseTransformerLayer``).
        post_norm_cfg: optional final norm (needed by pre-norm orders).
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 post_norm_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.layers = _build_layers(num_layers, layer_cfg)
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = None if post_norm_cfg is None else \
            build_norm_layer(post_norm_cfg, self.embed_dims)[1]

    config_dict_types = staticmethod(_layer_cfg_type)

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """Encode the flattened feature map.

        Args:
            query: ``(B, h*w, D)`` projected backbone features.
            query_pos: ``(B, h*w, D)`` positional encoding.
            key_padding_mask: ``(B, h*w)`` bool, True = padded; or None.
            **kwargs: passed to every layer.

        Returns:
            ``(B, h*w, D)``, the memory.
        """
        for layer in self.layers:
            query = layer(query, query_pos=query_pos,
                          query_key_padding_mask=key_padding_mask, **kwargs)
        return query if self.post_norm is None else self.post_norm(query)


@MODELS.register_module()
class DetrTransformerDecoder(BaseModule):
    """DETR's decoder: object queries attend to themselves and the memory.

    Args:
        num_layers: number of layers.
        layer_cfg: config of every layer (``BaseTransformerLayer``).
        post_norm_cfg: the final norm shared by every layer's output (None:
            none, as Deformable DETR).
        return_intermediate: return every layer's output (for the auxiliary
            losses) or only the last one.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 post_norm_cfg: Optional[dict] = dict(type='LN'),
                 return_intermediate: bool = True,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.layers = _build_layers(num_layers, layer_cfg)
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = nn.Identity() if post_norm_cfg is None else \
            build_norm_layer(post_norm_cfg, self.embed_dims)[1]
        self.return_intermediate = return_intermediate

    config_dict_types = staticmethod(_layer_cfg_type)

    def forward(self, query: Tensor, key: Tensor, query_pos: Tensor,
                key_pos: Tensor, key_padding_mask: Optional[Tensor],
                **kwargs) -> Tensor:
        """Decode the object queries.

        Args:
            query: ``(B, Q, D)``, zeros at the first layer in DETR.
            key: ``(B, h*w, D)`` encoder output (the memory).
            query_pos: ``(B, Q, D)`` or ``(1, Q, D)``, the learned query
                embedding.
            key_pos: ``(B, h*w, D)`` positional encoding of the memory.
            key_padding_mask: ``(B, h*w)`` bool, True = padded; or None.
            **kwargs: passed to every layer.

        Returns:
            ``(num_layers, B, Q, D)`` with ``return_intermediate`` (every
            layer's output after the shared ``post_norm``), else
            ``(1, B, Q, D)``.
        """
        outputs = []
        for layer in self.layers:
            query = layer(query, key, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask, **kwargs)
            if self.return_intermediate:
                outputs.append(self.post_norm(query))
        if not self.return_intermediate:
            outputs.append(self.post_norm(query))
        return torch.stack(outputs)
