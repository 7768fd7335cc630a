"""DETR's attention maps for one image (paper figures 3 and 6).

* decoder: the last decoder layer's cross-attention of the queries behind the
  top-scoring detections over the feature map; these light up the extremities
  of each object;
* encoder: the last encoder layer's self-attention from a few reference
  points; these already separate instances.

The weights come from the attention modules' ``keep_weights`` opt-in: it is
switched on for the two modules for one forward and back off after.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .inferencer import DETRInferencer


@dataclass
class AttentionMaps:
    """Attention of one image; maps are head-averaged and sum to 1.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, the original image.
        bboxes: ``(k, 4)`` xyxy original-image pixels of the top detections.
        scores: ``(k,)``; labels: ``(k,)``.
        queries: ``(k,)`` the query index behind each detection.
        decoder_maps: ``(k, h, w)`` the query's cross-attention over the
            ``h x w`` feature map (stride 32 for ResNet), last decoder layer.
        points: ``(n, 2)`` reference points, (x, y) original-image pixels.
        cells: ``(n, 2)`` their feature-map cells, (row, col).
        encoder_maps: ``(n, h, w)`` the self-attention from each cell,
            last encoder layer.
    """
    image: np.ndarray
    bboxes: Tensor
    scores: Tensor
    labels: Tensor
    queries: Tensor
    decoder_maps: Tensor
    points: Tensor
    cells: Tensor
    encoder_maps: Tensor


@contextmanager
def kept_weights(*modules) -> Iterator[None]:
    """Switch on ``keep_weights`` of attention ``modules`` for the block.

    Raises:
        ValueError: a module cannot keep its weights (only DETR's
            ``MultiheadAttention`` can; e.g. Conditional DETR's attentions
            split each head into content and spatial halves).
    """
    unable = [type(m).__name__ for m in modules
              if not hasattr(m, 'keep_weights')]
    if unable:
        raise ValueError(
            f'attention maps need attentions that keep their weights '
            f'(DETR\'s MultiheadAttention); this model has {unable}')
    before = [m.keep_weights for m in modules]
    for m in modules:
        m.keep_weights = True
    try:
        yield
    finally:
        for m, keep in zip(modules, before):
            m.keep_weights = keep
            if not keep:
                m.attn_weights = None


@torch.no_grad()
def attention_maps(inferencer: DETRInferencer,
                   image_path: str,
                   topk: int = 6,
                   points: Optional[Sequence[Tuple[float, float]]] = None,
                   num_points: int = 4) -> AttentionMaps:
    """Detect in ``image_path`` and collect the attention maps.

    Args:
        inferencer: the detector (batch of one image, not padded).
        image_path: the image file.
        topk: detections (and decoder maps) to keep, by score.
        points: encoder reference points, (x, y) in original-image pixels;
            by default the box centres of the ``num_points`` best detections.
        num_points: reference points when ``points`` is None.
    """
    import mmcv
    model = inferencer.model
    if not (hasattr(model, 'encoder') and hasattr(model, 'decoder')):
        raise ValueError(f'attention maps are drawn for DETR models; '
                         f'{type(model).__name__} has no DETR transformer')
    data = inferencer.pipeline(image_path)
    data = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    inputs, samples = data['inputs'], data['data_samples']
    cross_attn = model.decoder.layers[-1].attentions[1]
    self_attn = model.encoder.layers[-1].attentions[0]
    with kept_weights(cross_attn, self_attn):
        feats = model.extract_feat(inputs)
        hidden_states = model.forward_transformer(
            feats, samples)['hidden_states']
        decoder_weights = cross_attn.attn_weights.mean(1)[0]  # (Q, h*w)
        encoder_weights = self_attn.attn_weights.mean(1)[0]  # (h*w, h*w)
    height, width = feats[-1].shape[-2:]

    cls_logits, box_preds = model.bbox_head(hidden_states[-1:])
    detections = model.bbox_head.predict_by_feat(
        cls_logits, box_preds, [s.metainfo for s in samples],
        rescale=True)[0][:topk]
    queries = detections.query_index  # the query behind each detection
    topk = len(queries)  # at most num_queries
    decoder_maps = decoder_weights[queries].view(topk, height, width)

    meta = samples[0].metainfo
    scale_w, scale_h = meta['scale_factor']
    input_h, input_w = meta['batch_input_shape']
    if points is None:  # box centres
        boxes = detections.bboxes[:num_points]
        points = (boxes[:, :2] + boxes[:, 2:]) / 2
    points = torch.as_tensor(points, dtype=torch.float32,
                             device=encoder_weights.device).view(-1, 2)
    rows = (points[:, 1] * scale_h / input_h * height).long().clamp(
        0, height - 1)
    cols = (points[:, 0] * scale_w / input_w * width).long().clamp(
        0, width - 1)
    encoder_maps = encoder_weights[rows * width + cols].view(
        -1, height, width)
    return AttentionMaps(  # on the host, wherever the model runs
        image=mmcv.imread(image_path, channel_order='rgb'),
        bboxes=detections.bboxes.cpu(), scores=detections.scores.cpu(),
        labels=detections.labels.cpu(), queries=queries.cpu(),
        decoder_maps=decoder_maps.cpu(), points=points.cpu(),
        cells=torch.stack((rows, cols), dim=1).cpu(),
        encoder_maps=encoder_maps.cpu())
