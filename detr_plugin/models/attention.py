"""Multi-head attention on ``F.scaled_dot_product_attention`` (torch).

The parameters are laid out as in ``torch.nn.MultiheadAttention``
(``in_proj_weight`` ``(3D, D)``, ``in_proj_bias`` ``(3D,)``, ``out_proj``), so
weights of the official DETR and of mmdet/mmcv load unchanged. mmcv's wrapper
calls ``nn.MultiheadAttention`` with ``need_weights=True``, which never reaches
the fused kernels; here the fused path is the default and the explicit path
runs when the weights are asked for or when dropout trains on a CPU
(:func:`dot_product_attention` says why).

Every attention of this package takes the same keyword inputs from its layer
(``query_pos``, ``key_pos``, ``attn_mask``, ``key_padding_mask`` and whatever a
variant adds, e.g. reference points) and decides itself where positions go:
this one adds them to queries and keys, never to values (DETR, section A.3).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS


def _with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, L, D)`` -> ``(B, H, L, D / H)``."""
    return x.view(*x.shape[:2], num_heads, -1).transpose(1, 2)


def attend_mask(attn_mask: Optional[Tensor],
                key_padding_mask: Optional[Tensor], num_heads: int,
                batch: int) -> Optional[Tensor]:
    """The bool mask ``scaled_dot_product_attention`` takes (True = attend),
    broadcastable to ``(B, H, Lq, Lk)``, from ``nn.MultiheadAttention``'s
    masks (True = masked); None when neither is given.

    Args:
        attn_mask: ``(Lq, Lk)`` or ``(B * H, Lq, Lk)`` bool, or None.
        key_padding_mask: ``(B, Lk)`` bool, or None.
    """
    attend = None
    if attn_mask is not None:
        attend = ~attn_mask if attn_mask.dim() == 2 else \
            ~attn_mask.view(batch, num_heads, *attn_mask.shape[-2:])
    if key_padding_mask is not None:
        keys = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Lk)
        attend = keys if attend is None else attend & keys
    return attend


def dot_product_attention(q: Tensor, k: Tensor, v: Tensor,
                          attend: Optional[Tensor] = None,
                          dropout_p: float = 0.,
                          keep_weights: bool = False
                          ) -> Tuple[Tensor, Optional[Tensor]]:
    """``softmax(q k^T / sqrt(d)) v`` per head, with dropout on the weights.

    Args:
        q: ``(B, H, Lq, d)``; k: ``(B, H, Lk, d)``; v: ``(B, H, Lk, dv)``.
        attend: bool, True = attend, broadcastable to ``(B, H, Lq, Lk)``
            (:func:`attend_mask`); or None.
        dropout_p: dropout probability on the weights (0 in eval mode).
        keep_weights: also return the weights.

    Returns:
        ``(B, H, Lq, dv)``, and the weights ``(B, H, Lq, Lk)`` (detached) when
        ``keep_weights``, else None.

    ``scaled_dot_product_attention`` unless the weights are wanted, the
    pass is traced (mmengine's FLOP counter, behind mmdet's
    ``get_flops.py``, has no handle for that op and would skip it; the
    explicit path traces to the ``matmul`` it counts, as mmdet's attention
    does to ``bmm``) or it would drop out on a CPU: there it has no fused
    kernel and takes its
    math path, which scales q and k separately and guards every row of
    weights against a fully masked one (``_safe_softmax``: ``isneginf``,
    ``all``, ``where`` over ``(B, H, Lq, Lk)``); that made DETR's transformer
    training pass slower than mmdet's explicit one on an AMX Xeon
    (``tools/benchmark.py --only transformer_train``, docs/speed.md). Unlike
    that guard (and like ``nn.MultiheadAttention``) the explicit path gives
    NaN for a query with every key masked; no model here makes one (padding
    leaves a pixel, a denoising group sees itself).
    """
    if not (keep_weights or torch.jit.is_tracing()) and \
            (dropout_p == 0. or q.device.type != 'cpu'):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=dropout_p), None
    logits = (q * q.size(-1)**-0.5) @ k.transpose(-2, -1)
    if attend is not None:
        logits = logits.masked_fill(~attend, float('-inf'))
    weights = logits.softmax(dim=-1)
    return F.dropout(weights, dropout_p) @ v, \
        weights.detach() if keep_weights else None


@MODELS.register_module()
class MultiheadAttention(BaseModule):
    """Batch-first multi-head attention; positions are added to queries and
    keys.

    Args:
        embed_dims: model width ``D``.
        num_heads: heads ``H``; ``D`` must be divisible by it.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout on the output, before the caller's residual add.
        keep_weights: opt-in; when True every forward runs the explicit path
            and stores the head-wise weights ``(B, H, Lq, Lk)`` in
            ``self.attn_weights`` (detached), e.g. for attention maps.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 keep_weights: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dims,
                                                       embed_dims))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dims))
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.keep_weights = keep_weights
        self.attn_weights: Optional[Tensor] = None
        # The same initialization as nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Attend from ``query + query_pos`` to ``key + key_pos``, reading
        ``value``.

        Args:
            query: ``(B, Lq, D)``.
            key: ``(B, Lk, D)``; ``query`` when None (self-attention).
            value: ``(B, Lk, D)``; ``key`` (without its position) when None.
            query_pos: ``(B, Lq, D)`` or ``(1, Lq, D)`` added to ``query``.
            key_pos: ``(B, Lk, D)`` added to ``key``.
            attn_mask: bool, True = this query may not attend to this key (the
                meaning ``nn.MultiheadAttention`` gives it): ``(Lq, Lk)`` for
                every image and head, or ``(B * H, Lq, Lk)``; or None.
            key_padding_mask: ``(B, Lk)`` bool, True = padded key (ignored);
                or None.
            **kwargs: inputs other attentions take (ignored here).

        Returns:
            ``(B, Lq, D)``: the attention output after ``out_proj`` and
            ``proj_drop`` (no residual).
        """
        key = query if key is None else key
        value = key if value is None else value
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = (split_heads(F.linear(x, w, b), self.num_heads)
                   for x, w, b in ((_with_pos(query, query_pos), w_q, b_q),
                                   (_with_pos(key, key_pos), w_k, b_k),
                                   (value, w_v, b_v)))
        attend = attend_mask(attn_mask, key_padding_mask, self.num_heads,
                             query.size(0))
        out, weights = dot_product_attention(
            q, k, v, attend, self.attn_drop if self.training else 0.,
            keep_weights=self.keep_weights)
        if self.keep_weights:
            self.attn_weights = weights
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.embed_dims)
        return self.proj_drop(self.out_proj(out))
