"""The DETR detector (Carion et al. 2020, figure 2).

``image (B, 3, H, W) -> backbone -> (B, C, h, w) -> 1x1 input projection ->
(B, D, h, w) -> flatten -> encoder (B, h*w, D) -> decoder over Q learned
queries -> (L, B, Q, D) -> head``. The padding mask marks the pixels each
image gained when the batch was padded to ``batch_input_shape``; it is resized
to the feature map and masks the encoder's and the decoder's keys.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor, nn

from ..registry import MODELS
from .folded_backbone import FoldedBackboneCache


def padding_mask(batch_data_samples) -> Optional[Tensor]:
    """``(B, H, W)`` bool over the padded input, True at padding pixels.

    Returns None when no image is padded (every ``img_shape`` equals the
    ``batch_input_shape``), which lets attention skip masking.
    """
    input_h, input_w = batch_data_samples[0].batch_input_shape
    img_shapes = [s.img_shape[:2] for s in batch_data_samples]
    if all(h == input_h and w == input_w for h, w in img_shapes):
        return None
    mask = torch.ones((len(img_shapes), input_h, input_w), dtype=torch.bool)
    for i, (h, w) in enumerate(img_shapes):
        mask[i, :h, :w] = False
    return mask


@MODELS.register_module()
class DETR(BaseDetector):
    """DETR: backbone, input projection, transformer and set-prediction head.

    Args:
        backbone: backbone config (mmdet's ``ResNet``); its last output is
            used.
        encoder: ``DetrTransformerEncoder`` config.
        decoder: ``DetrTransformerDecoder`` config.
        bbox_head: ``DETRHead`` config.
        positional_encoding: ``SinePositionalEncoding`` (default type) or
            ``LearnedPositionalEncoding`` config with ``num_feats = D / 2``.
        num_queries: object queries ``Q``.
        backbone_channels: channels of the backbone's last output; read off
            the backbone (``feat_dim`` of mmdet's ResNet) when None.
        fold_backbone_bn: run the backbone through copies with its
            BatchNorms folded into the convolutions where nothing trains
            (:mod:`.folded_backbone`); same outputs, faster.
        backbone_channels_last: with ``fold_backbone_bn``, run those copies
            in channels-last memory format.
    """

    def __init__(self,
                 backbone: dict,
                 encoder: dict,
                 decoder: dict,
                 bbox_head: dict,
                 positional_encoding: dict,
                 num_queries: int = 100,
                 backbone_channels: Optional[int] = None,
                 fold_backbone_bn: bool = True,
                 backbone_channels_last: bool = True,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.encoder = MODELS.build(
            {'type': 'DetrTransformerEncoder', **encoder})
        self.decoder = MODELS.build(
            {'type': 'DetrTransformerDecoder', **decoder})
        self.embed_dims = self.encoder.embed_dims
        self.positional_encoding = MODELS.build(
            {'type': 'SinePositionalEncoding', **positional_encoding})
        if 2 * self.positional_encoding.num_feats != self.embed_dims:
            raise ValueError(
                f'positional_encoding.num_feats must be embed_dims / 2 = '
                f'{self.embed_dims // 2}, got '
                f'{self.positional_encoding.num_feats}')
        if backbone_channels is None:
            backbone_channels = self.backbone.feat_dim
        self.input_proj = nn.Conv2d(backbone_channels, self.embed_dims, 1)
        self.num_queries = num_queries
        self.query_embedding = nn.Embedding(num_queries, self.embed_dims)
        self.bbox_head = MODELS.build(
            dict(bbox_head, train_cfg=train_cfg, test_cfg=test_cfg))
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.folded_backbone = FoldedBackboneCache(backbone_channels_last) \
            if fold_backbone_bn else None

    def init_weights(self) -> None:
        """Xavier-uniform transformer matrices, as official DETR and mmdet."""
        super().init_weights()
        for module in (self.encoder, self.decoder):
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> the backbone's last map ``(B, C, h, w)``.

        With ``fold_backbone_bn``, BN-folded copies compute what nothing
        trains (:mod:`.folded_backbone`): the whole backbone at inference
        without gradients, its frozen stages in training. Exporters and
        compilers see the backbone itself (ONNX runtimes fold BN
        themselves).
        """
        folded = self.folded_backbone
        if folded is not None and not torch.jit.is_tracing() and \
                not torch.compiler.is_compiling():
            if not self.training and not torch.is_grad_enabled():
                return folded(self.backbone, batch_inputs)[-1]
            if self.training:
                feats = folded.train_forward(self.backbone, batch_inputs)
                if feats is not None:
                    return feats[-1]
        return self.backbone(batch_inputs)[-1]

    def forward_transformer(self, feat: Tensor,
                            batch_data_samples) -> Tensor:
        """Encoder and decoder over the backbone map of a batch.

        Args:
            feat: ``(B, C, h, w)`` backbone features.
            batch_data_samples: for ``img_shape`` / ``batch_input_shape``.

        Returns:
            ``(L, B, Q, D)`` decoder outputs of every layer.
        """
        mask = padding_mask(batch_data_samples)
        return self.transformer(
            feat, None if mask is None else mask.to(feat.device))

    def transformer(self, feat: Tensor,
                    pixel_mask: Optional[Tensor]) -> Tensor:
        """Input projection, encoder and decoder.

        Args:
            feat: ``(B, C, h, w)`` backbone features.
            pixel_mask: ``(B, H, W)`` bool, True at padded input pixels, or
                None when nothing is padded.

        Returns:
            ``(L, B, Q, D)`` decoder outputs of every layer.
        """
        feat = self.input_proj(feat)  # (B, D, h, w)
        batch = feat.size(0)
        mask = None if pixel_mask is None else F.interpolate(
            # nearest resize to the feature map, as official DETR and mmdet
            pixel_mask[:, None].float(), size=feat.shape[-2:])[:, 0].bool()
        pos = self.positional_encoding(mask, feat)  # (B, D, h, w)
        feat = feat.flatten(2).transpose(1, 2)  # (B, h*w, D)
        pos = pos.flatten(2).transpose(1, 2).to(feat.dtype)
        mask = None if mask is None else mask.flatten(1)  # (B, h*w)
        memory = self.encoder(feat, pos, mask)
        query_pos = self.query_embedding.weight[None].expand(batch, -1, -1)
        query = torch.zeros_like(query_pos)
        return self.decoder(query, query_pos, memory, pos, mask)

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        """Losses of every decoder layer; see ``DETRHead.loss_by_feat``."""
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head.loss(hidden_states, batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples,
                rescale: bool = True) -> List:
        """Data samples with ``pred_instances`` (bboxes, scores, labels)."""
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        results = self.bbox_head.predict(hidden_states, batch_data_samples,
                                         rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples=None) -> Tuple[Tensor, Tensor]:
        """Raw head outputs ``(L, B, Q, C + 1)`` and ``(L, B, Q, 4)``."""
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head(hidden_states)
