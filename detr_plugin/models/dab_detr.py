"""DAB-DETR (Liu et al. 2022): queries are dynamic anchor boxes.

Each query's position is a 4-D anchor ``(x, y, w, h)`` (learned, normalized;
section 4.1) instead of a learned vector. Every decoder layer derives the
query's positional embedding from the anchor -- ``MLP(PE(x, y, w, h))`` for
self-attention, and for Conditional DETR's cross-attention the sine encoding
of ``(x, y)`` scaled by an MLP of the content (section 4.2) and, per axis, by
``w_ref / w`` and ``h_ref / h`` (width/height-modulated attention, section
4.3, ``w_ref, h_ref`` predicted from the content) -- and then refines the
anchor with the box head: ``anchor' = sigmoid(head(f) + inverse_sigmoid(
anchor))``, passed on detached (section 4.4). The head predicts every layer's
boxes relative to the anchor that layer started from. The encoder scales its
positions by an MLP of the content at each layer.

Here: :class:`DabDetrTransformerEncoder`, :class:`DabDetrTransformerDecoder`
(the anchor update loop) and :class:`DABDETR` (anchors as queries, the head's
box MLP lent to the decoder). Attention, layers and head are Conditional
DETR's and DETR's; the classifier is sigmoid focal.
"""
from typing import Dict, Optional, Tuple

import torch
from mmdet.models.layers.transformer import coordinate_to_encoding
from torch import Tensor, nn

from ..registry import MODELS
from .conditional_detr import ConditionalDetrTransformerDecoder
from .detr import DETR
from .box_precision import sigmoid_references
from .detr_head import MLP, refine
from .transformer_layers import DetrTransformerEncoder


@MODELS.register_module()
class DabDetrTransformerEncoder(DetrTransformerEncoder):
    """DETR's encoder whose positions are scaled, at each layer, by an MLP
    of the layer's input (``query_scale``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.query_scale = MLP(self.embed_dims, self.embed_dims,
                               self.embed_dims, 2)

    def forward(self, query: Tensor, query_pos: Tensor,
                key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """``(B, h*w, D)`` features, positions and ``(B, h*w)`` padding ->
        the memory ``(B, h*w, D)``."""
        for layer in self.layers:
            query = layer(query, query_pos=query_pos * self.query_scale(query),
                          query_key_padding_mask=key_padding_mask, **kwargs)
        return query if self.post_norm is None else self.post_norm(query)


@MODELS.register_module()
class DabDetrTransformerDecoder(ConditionalDetrTransformerDecoder):
    """Conditional DETR's decoder driven by 4-D anchors, refined per layer.

    Args:
        with_modulated_hw_attn: scale the cross-attention's x (y) encoding by
            the predicted reference width (height) over the anchor's.
        *args, **kwargs: ``DetrTransformerDecoder``'s.
    """

    def __init__(self, *args, with_modulated_hw_attn: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        dims = self.embed_dims
        self.ref_point_head = MLP(2 * dims, dims, dims, 2)  # PE(anchor) -> pos
        self.with_modulated_hw_attn = with_modulated_hw_attn
        if with_modulated_hw_attn:
            self.ref_anchor_head = MLP(dims, dims, 2, 2)  # (w_ref, h_ref)

    def forward(self, query: Tensor, key: Tensor, query_pos: Tensor,
                key_pos: Tensor, key_padding_mask: Optional[Tensor],
                reg_branches: nn.Module, **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode and refine the anchors layer by layer.

        Args:
            query: ``(B, Q, D)`` content queries (zeros at the start).
            key: ``(B, h*w, D)`` memory; key_pos its positions.
            query_pos: ``(B, Q, 4)`` the anchors before their sigmoid.
            key_padding_mask: ``(B, h*w)`` bool or None.
            reg_branches: the head's box MLP, ``D -> 4`` (box deltas before
                the sigmoid).

        Returns:
            ``hidden_states`` ``(L, B, Q, D)`` (after ``post_norm``) and the
            anchor each layer started from, ``(B, Q, 4)`` normalized (cx,
            cy, w, h) each.
        """
        half = self.embed_dims // 2
        anchors = sigmoid_references(query_pos)
        outputs, layer_anchors = [], [anchors]
        for i, layer in enumerate(self.layers):
            sine = coordinate_to_encoding(anchors, half)  # (B, Q, 2 D)
            scale = 1 if i == 0 else self.query_scale(query)
            pos_y, pos_x = (sine[..., :self.embed_dims] * scale).split(
                half, -1)
            if self.with_modulated_hw_attn:
                ref_wh = self.ref_anchor_head(query).sigmoid()  # (B, Q, 2)
                pos_y = pos_y * (ref_wh[..., 1] / anchors[..., 3])[..., None]
                pos_x = pos_x * (ref_wh[..., 0] / anchors[..., 2])[..., None]
            query = layer(query, key, query_pos=self.ref_point_head(sine),
                          key_pos=key_pos, key_padding_mask=key_padding_mask,
                          ref_sine_embed=torch.cat((pos_y, pos_x), -1),
                          is_first=i == 0, **kwargs)
            # the head's loss sees the refined anchor with its gradient; the
            # next layer starts from it detached
            refined = refine(reg_branches(query), anchors)
            layer_anchors.append(refined)
            anchors = refined.detach()
            if self.return_intermediate or i == len(self.layers) - 1:
                outputs.append(self.post_norm(query))
        layer_anchors = layer_anchors[:-1]  # the anchor each layer started at
        if not self.return_intermediate:
            layer_anchors = layer_anchors[-1:]
        return torch.stack(outputs), layer_anchors


@MODELS.register_module()
class DABDETR(DETR):
    """DETR whose queries are learned anchor boxes
    (:class:`DabDetrTransformerDecoder`); the head's box MLP refines them
    inside the decoder and predicts boxes relative to them."""

    encoder_type = 'DabDetrTransformerEncoder'
    decoder_type = 'DabDetrTransformerDecoder'

    @property
    def query_embedding_dims(self) -> int:
        """A query is an anchor box: 4 numbers."""
        return 4

    def init_weights(self) -> None:
        """DETR's, and the box MLP's last layer at zero: refinement starts
        from the anchors (as mmdet's DAB-DETR head)."""
        super().init_weights()
        last = self.bbox_head.reg_mlp.layers[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def pre_decoder(self, memory: Tensor, **kwargs) -> Tuple[Dict, Dict]:
        """Content queries zeros ``(B, Q, D)``; positions the anchors before
        their sigmoid, ``(B, Q, 4)``."""
        batch = memory.size(0)
        anchors = self.query_embedding.weight[None].expand(batch, -1, -1)
        query = memory.new_zeros(batch, self.num_queries, self.embed_dims)
        return dict(query=query, query_pos=anchors, memory=memory), {}

    def forward_decoder(self, query: Tensor, query_pos: Tensor,
                        memory: Tensor, memory_mask: Optional[Tensor],
                        memory_pos: Tensor) -> Dict:
        """``hidden_states`` ``(L, B, Q, D)`` and ``references`` (each
        layer's anchor ``(B, Q, 4)``)."""
        hidden_states, references = self.decoder(
            query, memory, query_pos, memory_pos, memory_mask,
            reg_branches=self.bbox_head.reg_mlp)
        return dict(hidden_states=hidden_states, references=references)
