"""The DETR detector (Carion et al. 2020, figure 2) on mmdet's template.

``image (B, 3, H, W) -> backbone -> (B, C, h, w) -> 1x1 input projection ->
(B, D, h, w) -> flatten -> encoder (B, h*w, D) -> decoder over Q learned
queries -> (L, B, Q, D) -> head``. The padding mask marks the pixels each
image gained when the batch was padded to ``batch_input_shape``; it is resized
to the feature map and masks the encoder's and the decoder's keys.

The transformer pass follows mmdet 3.x's ``DetectionTransformer``
(``mmdet/models/detectors/base_detr.py``), which this class subclasses:
``pre_transformer -> forward_encoder -> pre_decoder -> forward_decoder``, each
returning the keyword inputs of the next, and ``loss``/``predict`` that hand
the result to the head. A DETR variant is a subclass that overrides the
stages it changes (``conditional_detr.py``, ``dab_detr.py``).
"""
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base_detr import DetectionTransformer
from torch import Tensor, nn

from ..registry import MODELS
from .folded_backbone import FoldedBackboneCache


def padding_mask(batch_data_samples,
                 device: Optional[torch.device] = None) -> Optional[Tensor]:
    """``(B, H, W)`` bool over the padded input on ``device``, True at
    padding pixels; filled on the device (no copy from the host).

    Returns None when no image is padded (every ``img_shape`` equals the
    ``batch_input_shape``), which lets attention skip masking.
    """
    input_h, input_w = batch_data_samples[0].batch_input_shape
    img_shapes = [s.img_shape[:2] for s in batch_data_samples]
    if all(h == input_h and w == input_w for h, w in img_shapes):
        return None
    mask = torch.ones((len(img_shapes), input_h, input_w), dtype=torch.bool,
                      device=device)
    for i, (h, w) in enumerate(img_shapes):
        mask[i, :h, :w] = False
    return mask


def resize_mask(pixel_mask: Optional[Tensor], feat: Tensor
                ) -> Optional[Tensor]:
    """``(B, H, W)`` pixel mask -> ``(B, h, w)`` on ``feat``'s device, nearest
    resize as official DETR and mmdet (None stays None)."""
    if pixel_mask is None:
        return None
    return F.interpolate(pixel_mask[:, None].to(feat.device).float(),
                         size=feat.shape[-2:])[:, 0].bool()


@MODELS.register_module()
class DETR(DetectionTransformer):
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
        neck: optional neck (mmdet's ``ChannelMapper``); without one, a 1x1
            ``input_proj`` (official DETR's name) maps the backbone's last
            map to ``D`` channels.
        backbone_channels: channels of the backbone's last output; read off
            the backbone (``feat_dim`` of mmdet's ResNet) when None.
        fold_backbone_bn: run the backbone through copies with its
            BatchNorms folded into the convolutions where nothing trains
            (:mod:`.folded_backbone`); same outputs, faster.
        backbone_channels_last: with ``fold_backbone_bn``, run those copies
            in channels-last memory format.
    """

    # default types of the transformer parts; a variant names its own
    encoder_type = 'DetrTransformerEncoder'
    decoder_type = 'DetrTransformerDecoder'

    def __init__(self,
                 *args,
                 backbone_channels: Optional[int] = None,
                 fold_backbone_bn: bool = True,
                 backbone_channels_last: bool = True,
                 **kwargs) -> None:
        self.backbone_channels = backbone_channels  # read by _init_layers
        super().__init__(*args, **kwargs)
        self.folded_backbone = FoldedBackboneCache(backbone_channels_last) \
            if fold_backbone_bn else None

    def _init_layers(self) -> None:
        """Positional encoding, encoder, decoder, input projection and query
        embedding (mmdet's template builds backbone, neck and head)."""
        self.positional_encoding = MODELS.build(
            {'type': 'SinePositionalEncoding', **self.positional_encoding})
        self.encoder = MODELS.build({'type': self.encoder_type,
                                     **self.encoder})
        self.decoder = MODELS.build({'type': self.decoder_type,
                                     **self.decoder})
        self.embed_dims = self.encoder.embed_dims
        if 2 * self.positional_encoding.num_feats != self.embed_dims:
            raise ValueError(
                f'positional_encoding.num_feats must be embed_dims / 2 = '
                f'{self.embed_dims // 2}, got '
                f'{self.positional_encoding.num_feats}')
        if not self.with_neck:
            channels = self.backbone_channels or self.backbone.feat_dim
            self.input_proj = nn.Conv2d(channels, self.embed_dims, 1)
        if self.query_embedding_dims:
            self.query_embedding = nn.Embedding(self.num_queries,
                                                self.query_embedding_dims)

    @classmethod
    def config_dict_types(cls) -> dict:
        """The type each untyped config dict of ``__init__`` is built as
        (read by the tools' config check)."""
        return dict(encoder=cls.encoder_type, decoder=cls.decoder_type,
                    positional_encoding='SinePositionalEncoding')

    @property
    def query_embedding_dims(self) -> int:
        """Width of a learned query (``D``; DAB-DETR: 4, an anchor box; 0:
        the queries are not learned embeddings)."""
        return self.embed_dims

    def init_weights(self) -> None:
        """Xavier-uniform transformer matrices, as official DETR and mmdet."""
        super().init_weights()
        for module in (self.encoder, self.decoder):
            if not isinstance(module, nn.Module):  # RT-DETR: no encoder
                continue
            for param in module.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def parse_losses(self, losses: Dict[str, Tensor]
                     ) -> Tuple[Tensor, Dict[str, float]]:
        """mmengine's total loss, with the logged terms read to the host
        in one copy: mmengine's message hub would call ``.item()`` on each
        (a synchronization per term on a GPU; DINO logs 40)."""
        loss, log_vars = super().parse_losses(losses)
        values = torch.stack([value.detach().float().reshape(())
                              for value in log_vars.values()]).tolist()
        return loss, OrderedDict(zip(log_vars, values))

    # -------------------------------------------------- the folded backbone
    def train(self, mode: bool = True) -> 'DETR':
        """Switching between training and evaluation drops the BN-folded
        backbone copies (mmengine's EMA hook swaps weights right before
        ``model.eval()``); a repeated ``train()`` keeps them."""
        if mode != self.training:
            self.refresh_folded_backbone()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        """Loading weights (torch's or mmengine's loader) drops the copies."""
        self.refresh_folded_backbone()
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        """``.to()``, ``.cuda()``, ``.half()``... (every conversion of the
        weights goes through ``_apply``) drop the copies, which were made
        of the weights before it."""
        self.refresh_folded_backbone()
        return super()._apply(fn, *args, **kwargs)

    def refresh_folded_backbone(self) -> None:
        """Rebuild the BN-folded backbone copies at their next use: call it
        after writing backbone weights by hand (in place or via ``.data``)."""
        if getattr(self, 'folded_backbone', None) is not None:
            self.folded_backbone.clear()

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """``(B, 3, H, W)`` -> the backbone's (or neck's) maps
        ``(B, C_i, h_i, w_i)``.

        With ``fold_backbone_bn``, BN-folded copies compute what nothing
        trains (:mod:`.folded_backbone`): the whole backbone at inference
        without gradients (and a neck with BatchNorms: RT-DETR's, its
        RepVGG blocks fused), its frozen stages in training. Exporters and
        compilers see the backbone itself (ONNX runtimes fold BN
        themselves).
        """
        feats = None
        folded = self.folded_backbone if not torch.jit.is_tracing() and \
            not torch.compiler.is_compiling() else None
        inference = not self.training and not torch.is_grad_enabled()
        if folded is not None and inference:
            feats = folded(self.backbone, batch_inputs)
        elif folded is not None and self.training:
            feats = folded.train_forward(self.backbone, batch_inputs)
        if feats is None:
            feats = self.backbone(batch_inputs)
        if not self.with_neck:
            return tuple(feats)
        if folded is not None and inference:
            outs = folded.neck(self.neck, feats)  # RT-DETR's BN neck
            if outs is not None:
                return outs
        return self.neck(feats)

    # ----------------------------------------------- the transformer stages
    def forward_transformer(self, img_feats: Tuple[Tensor, ...],
                            batch_data_samples=None,
                            pixel_mask: Optional[Tensor] = None) -> Dict:
        """mmdet's four stages over a batch; returns the head's inputs.

        Args:
            img_feats: :meth:`extract_feat`'s maps.
            batch_data_samples: for ``img_shape`` / ``batch_input_shape``
                (the padding) and, for variants that need them in training,
                the ground truth.
            pixel_mask: ``(B, H, W)`` bool, True at padded input pixels;
                derived from ``batch_data_samples`` when None. Tensor-in
                callers (the ONNX export) pass it instead of data samples.

        Returns:
            The keyword inputs of the head: ``hidden_states`` ``(L, B, Q,
            D)`` and what the variant adds (e.g. ``references``).
        """
        if pixel_mask is None and batch_data_samples is not None:
            pixel_mask = padding_mask(batch_data_samples,
                                      img_feats[0].device)
        encoder_inputs, decoder_inputs = self.pre_transformer(
            img_feats, pixel_mask)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        more_decoder_inputs, head_inputs = self.pre_decoder(
            **encoder_outputs, batch_data_samples=batch_data_samples)
        decoder_inputs.update(more_decoder_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        pixel_mask: Optional[Tensor]) -> Tuple[Dict, Dict]:
        """Project and flatten the last map; positions and padding.

        Unlike mmdet's, it takes the pixel mask rather than data samples,
        so that tensor-in callers run the same code.

        Args:
            img_feats: maps; the last, ``(B, C, h, w)``, is used.
            pixel_mask: ``(B, H, W)`` bool, True = padded; or None.

        Returns:
            The encoder's inputs ``feat`` ``(B, h*w, D)``, ``feat_mask``
            ``(B, h*w)`` bool or None and ``feat_pos`` ``(B, h*w, D)``; and
            the decoder's ``memory_mask`` and ``memory_pos`` (the same).
        """
        feat = img_feats[-1] if self.with_neck else \
            self.input_proj(img_feats[-1])  # (B, D, h, w)
        mask = resize_mask(pixel_mask, feat)
        pos = self.positional_encoding(mask, feat)  # (B, D, h, w)
        feat = feat.flatten(2).transpose(1, 2)  # (B, h*w, D)
        pos = pos.flatten(2).transpose(1, 2).to(feat.dtype)
        mask = None if mask is None else mask.flatten(1)  # (B, h*w)
        return (dict(feat=feat, feat_mask=mask, feat_pos=pos),
                dict(memory_mask=mask, memory_pos=pos))

    def forward_encoder(self, feat: Tensor, feat_mask: Optional[Tensor],
                        feat_pos: Tensor) -> Dict:
        """``memory`` ``(B, h*w, D)``: the encoded feature map."""
        return dict(memory=self.encoder(feat, feat_pos, feat_mask))

    def pre_decoder(self, memory: Tensor, **kwargs) -> Tuple[Dict, Dict]:
        """DETR's queries: content zeros, position the learned embedding,
        both ``(B, Q, D)``; nothing extra for the head."""
        query_pos = self.query_embedding.weight[None].expand(
            memory.size(0), -1, -1)
        return dict(query=torch.zeros_like(query_pos), query_pos=query_pos,
                    memory=memory), {}

    def forward_decoder(self, query: Tensor, query_pos: Tensor,
                        memory: Tensor, memory_mask: Optional[Tensor],
                        memory_pos: Tensor) -> Dict:
        """``hidden_states`` ``(L, B, Q, D)``: every decoder layer's output."""
        return dict(hidden_states=self.decoder(query, memory, query_pos,
                                               memory_pos, memory_mask))
