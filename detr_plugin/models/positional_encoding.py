"""Positional encodings of the feature map (DETR paper, section 3.2 and A.4).

Both encodings take the padding mask of the feature map, ``(B, h, w)`` bool
with True at padded positions, or ``None`` when no image in the batch is
padded, and return ``(B, 2 * num_feats, h, w)``: the first ``num_feats``
channels encode the row (y), the last ``num_feats`` the column (x).
"""
import math
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..registry import MODELS


def _not_padded(mask: Optional[Tensor], like: Tensor) -> Tensor:
    """``(B, h, w)`` float, 1 at real pixels; all ones when ``mask`` is None.

    Args:
        mask: ``(B, h, w)`` bool, True = padded, or None.
        like: the feature map ``(B, C, h, w)``, for shape, device and batch.
    """
    if mask is not None:
        return (~mask).float()
    batch, _, height, width = like.shape
    return like.new_ones((batch, height, width), dtype=torch.float32)


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """Fixed sine/cosine encoding of normalized pixel coordinates.

    A position's coordinate is the cumulative count of not-padded cells up to
    it along its column (y) or row (x); with ``normalize`` it is divided by the
    count at the last cell (so a real image spans ``(0, scale]`` whatever its
    padding) after adding ``offset``. Channel ``2i`` is ``sin(c / T^(2i/F))``
    and ``2i + 1`` is ``cos(c / T^(2i/F))`` with ``T = temperature``,
    ``F = num_feats``.

    Args:
        num_feats: channels per axis; the output has ``2 * num_feats``.
        temperature: ``T`` above.
        normalize: divide coordinates by the image extent (DETR: True).
        scale: range of normalized coordinates; 2*pi by default.
        eps: added to the denominator of the normalization.
        offset: added to the coordinate before normalization.
    """

    def __init__(self,
                 num_feats: int,
                 temperature: int = 10000,
                 normalize: bool = False,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 offset: float = 0.,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Optional[Tensor], feat: Tensor) -> Tensor:
        """Encode positions.

        Args:
            mask: ``(B, h, w)`` bool, True = padded; None if nothing is padded.
            feat: the feature map ``(B, C, h, w)`` (only its shape is used).

        Returns:
            ``(B, 2 * num_feats, h, w)`` float32.
        """
        not_padded = _not_padded(mask, feat)
        y_embed = not_padded.cumsum(1)  # (B, h, w), 1-based row index
        x_embed = not_padded.cumsum(2)  # (B, h, w), 1-based column index
        if self.normalize:
            y_embed = (y_embed + self.offset) / (
                y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (
                x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(
            self.num_feats, dtype=torch.float32, device=feat.device)
        dim_t = self.temperature**(2 * (dim_t // 2) / self.num_feats)
        pos_x = x_embed[..., None] / dim_t  # (B, h, w, F)
        pos_y = y_embed[..., None] / dim_t
        batch, height, width = not_padded.shape
        # interleave sin (even channels) and cos (odd channels)
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()),
                            dim=4).view(batch, height, width, -1)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()),
                            dim=4).view(batch, height, width, -1)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


@MODELS.register_module()
class LearnedPositionalEncoding(BaseModule):
    """Learned absolute encoding: one table for rows, one for columns.

    Position ``(y, x)`` gets ``concat(col_embed[x], row_embed[y])`` (columns
    first, as in DETR and mmdet). Padding does not change it: the tables index
    absolute cells.

    Args:
        num_feats: channels per axis; the output has ``2 * num_feats``.
        row_num_embed: rows the table covers (feature-map height at most).
        col_num_embed: columns the table covers.
    """

    def __init__(self,
                 num_feats: int,
                 row_num_embed: int = 50,
                 col_num_embed: int = 50,
                 init_cfg=dict(type='Uniform', layer='Embedding')) -> None:
        super().__init__(init_cfg=init_cfg)
        self.row_embed = nn.Embedding(row_num_embed, num_feats)
        self.col_embed = nn.Embedding(col_num_embed, num_feats)
        self.num_feats = num_feats

    def forward(self, mask: Optional[Tensor], feat: Tensor) -> Tensor:
        """Encode positions.

        Args:
            mask: ``(B, h, w)`` bool padding mask or None (unused but for its
                documented meaning; kept for the common interface).
            feat: the feature map ``(B, C, h, w)``.

        Returns:
            ``(B, 2 * num_feats, h, w)``.
        """
        batch, _, height, width = feat.shape
        if height > self.row_embed.num_embeddings or \
                width > self.col_embed.num_embeddings:
            raise ValueError(
                f'LearnedPositionalEncoding covers at most '
                f'{self.row_embed.num_embeddings}x'
                f'{self.col_embed.num_embeddings} cells; got a {height}x'
                f'{width} feature map. Raise row_num_embed/col_num_embed.')
        rows = self.row_embed(torch.arange(height, device=feat.device))
        cols = self.col_embed(torch.arange(width, device=feat.device))
        pos = torch.cat((cols[None, :, :].expand(height, width, -1),
                         rows[:, None, :].expand(height, width, -1)), dim=-1)
        return pos.permute(2, 0, 1)[None].expand(batch, -1, -1, -1)
