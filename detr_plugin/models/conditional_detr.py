"""Conditional DETR (Meng et al. 2021): a spatial query from a reference point.

DETR's cross-attention must learn where to look from content alone, which is
why it trains slowly. Conditional DETR gives every query a reference point
``s`` (2-D, normalized; ``sigmoid(MLP(query embedding))``, section 3.3) and
makes the cross-attention's query the concatenation, per head, of a content
part and a *conditional spatial query* ``p_q = T(f) * PE(s)`` -- the sine
encoding of ``s`` scaled element-wise by ``T``, an MLP of the decoder
embedding ``f`` (identity at the first layer) -- against keys that
concatenate content and the memory's positions (section 3.2, equation 3):
the two dot products (content, spatial) are added by the one attention.
Boxes are predicted relative to ``s`` (the head adds ``inverse_sigmoid(s)``
to the centre, equation 1). Classification is sigmoid focal (section 3.4).

Here: :class:`ConditionalAttention` (self- and cross-attention with separate
content and position projections), :class:`ConditionalDetrTransformerDecoder`
(reference points and the spatial queries) and :class:`ConditionalDETR` (the
detector: DETR whose decoder also returns the references). The encoder, the
layers and the head are DETR's.
"""
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.layers.transformer import coordinate_to_encoding
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS
from .attention import attend_mask, dot_product_attention, split_heads
from .box_precision import sigmoid_references
from .detr import DETR
from .detr_head import MLP
from .transformer_layers import DetrTransformerDecoder


@MODELS.register_module()
class ConditionalAttention(BaseModule):
    """Attention with separate content and position projections.

    Self-attention: ``q = Wqc x + Wqp pos``, ``k = Wkc x + Wkp pos``,
    ``v = Wv x``. Cross-attention: per head, ``q = [Wqc x (+ Wqp pos) ;
    Wqs sine]`` and ``k = [Wkc m (+ Wkp mpos) ; Wkp mpos]``, ``v = Wv m``, so
    each head's logit is a content term plus a spatial term. The query's
    position ``Wqp pos`` is added only at the first decoder layer (or with
    ``keep_query_pos``), where no spatial query exists yet. Parameter names
    are mmdet's ``ConditionalAttention``'s.

    Args:
        embed_dims: width ``D``.
        num_heads: heads ``H``.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout on the output (before the layer's residual).
        cross_attn: the cross-attention form (else self-attention).
        keep_query_pos: add ``Wqp pos`` at every layer, not only the first.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 cross_attn: bool = False,
                 keep_query_pos: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.attn_drop = attn_drop
        self.cross_attn, self.keep_query_pos = cross_attn, keep_query_pos
        for name in ('qcontent_proj', 'qpos_proj', 'kcontent_proj',
                     'kpos_proj', 'v_proj', 'out_proj') + \
                (('qpos_sine_proj', ) if cross_attn else ()):
            setattr(self, name, nn.Linear(embed_dims, embed_dims))
        nn.init.constant_(self.out_proj.bias, 0.)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                ref_sine_embed: Optional[Tensor] = None,
                is_first: bool = False,
                **kwargs) -> Tensor:
        """Attend; see the class docstring for the two forms.

        Args:
            query: ``(B, Lq, D)``.
            key: ``(B, Lk, D)`` (``query`` when None); value: its values
                (``key`` when None).
            query_pos, key_pos: their positions, same shapes.
            attn_mask, key_padding_mask: as ``MultiheadAttention``'s.
            ref_sine_embed: ``(B, Lq, D)``, the scaled sine encoding of the
                reference points (cross-attention).
            is_first: the first decoder layer (cross-attention).

        Returns:
            ``(B, Lq, D)`` after ``out_proj`` and ``proj_drop`` (no
            residual).
        """
        key = query if key is None else key
        value = key if value is None else value
        q, k = self.qcontent_proj(query), self.kcontent_proj(key)
        k_pos = self.kpos_proj(key_pos)
        if not self.cross_attn or is_first or self.keep_query_pos:
            q, k = q + self.qpos_proj(query_pos), k + k_pos
        heads = self.num_heads
        q, k, v = (split_heads(x, heads) for x in (q, k, self.v_proj(value)))
        if self.cross_attn:  # the spatial half of each head
            sine = split_heads(self.qpos_sine_proj(ref_sine_embed), heads)
            q = torch.cat((q, sine), -1)  # (B, H, Lq, 2 D / H)
            k = torch.cat((k, split_heads(k_pos, heads)), -1)
        out, _ = dot_product_attention(
            q, k, v, attend_mask(attn_mask, key_padding_mask, heads,
                                 query.size(0)),
            self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).flatten(2)  # (B, Lq, D)
        return self.proj_drop(self.out_proj(out))


@MODELS.register_module()
class ConditionalDetrTransformerDecoder(DetrTransformerDecoder):
    """DETR's decoder with reference points and conditional spatial queries.

    Layers are ``BaseTransformerLayer`` with two :class:`ConditionalAttention`
    (self, cross); only the first layer's cross-attention keeps
    ``qpos_proj``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dims = self.embed_dims
        self.query_scale = MLP(dims, dims, dims, 2)  # T(f)
        self.ref_point_head = MLP(dims, dims, 2, 2)  # s before its sigmoid
        for layer in self.layers[1:]:
            if not layer.attentions[1].keep_query_pos:
                layer.attentions[1].qpos_proj = None

    def forward(self, query: Tensor, key: Tensor, query_pos: Tensor,
                key_pos: Tensor, key_padding_mask: Optional[Tensor],
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode the queries around their reference points.

        Args:
            query: ``(B, Q, D)`` content queries (zeros at the start).
            key: ``(B, h*w, D)`` memory; key_pos its positions.
            query_pos: ``(B, Q, D)`` the learned query embedding.
            key_padding_mask: ``(B, h*w)`` bool or None.

        Returns:
            ``hidden_states`` ``(L, B, Q, D)`` (after ``post_norm``) and the
            reference points ``(B, Q, 2)``, normalized (cx, cy).
        """
        # (B, Q, 2), float32 under autocast (the head inverts the sigmoid)
        references = sigmoid_references(self.ref_point_head(query_pos))
        sine = coordinate_to_encoding(references, self.embed_dims // 2)
        outputs = []
        for i, layer in enumerate(self.layers):
            scale = 1 if i == 0 else self.query_scale(query)
            query = layer(query, key, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask,
                          ref_sine_embed=sine * scale, is_first=i == 0,
                          **kwargs)
            if self.return_intermediate or i == len(self.layers) - 1:
                outputs.append(self.post_norm(query))
        return torch.stack(outputs), references


@MODELS.register_module()
class ConditionalDETR(DETR):
    """DETR whose decoder predicts around reference points
    (:class:`ConditionalDetrTransformerDecoder`); the head's boxes are
    relative to them and its classifier is sigmoid focal."""

    decoder_type = 'ConditionalDetrTransformerDecoder'

    def forward_decoder(self, query: Tensor, query_pos: Tensor,
                        memory: Tensor, memory_mask: Optional[Tensor],
                        memory_pos: Tensor) -> Dict:
        """``hidden_states`` ``(L, B, Q, D)`` and ``references``, each
        layer's ``(B, Q, 2)`` (the same points)."""
        hidden_states, references = self.decoder(
            query, memory, query_pos, memory_pos, memory_mask)
        return dict(hidden_states=hidden_states,
                    references=[references] * len(hidden_states))
