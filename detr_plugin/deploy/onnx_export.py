"""Export DETR to ONNX with dynamic image size, padding mask and
post-processing in the graph.

The detector's own ``predict`` reads image sizes from data samples (Python
ints) and returns ``InstanceData``; :class:`DETRExportWrapper` takes tensors
instead and returns tensors:

* inputs: ``image`` ``(B, 3, H, W)`` float32, already normalised as the
  config's data preprocessor does (mean/std, RGB), padded at the bottom and
  right to a common ``H x W``; ``mask`` ``(B, H, W)`` bool, True at padded
  pixels (all False for one image);
* outputs: ``boxes`` ``(B, K, 4)`` xyxy in pixels of the (unpadded) input
  image, ``scores`` ``(B, K)`` and ``labels`` ``(B, K)`` int64, by
  descending score, ``K = min(test_cfg.max_per_img, num_queries)``.

``B``, ``H`` and ``W`` are dynamic axes -- except for multi-level models
(Deformable DETR, DINO), whose level shapes, reference grids and proposals
are computed from the feature maps' sizes in Python and so are traced as
constants: their graph takes images padded to exactly the traced ``H x W``
(:func:`has_fixed_input_size`). Rescaling to the original image (the inverse
of the test pipeline's resize) stays with the caller, as does the score
threshold.
"""
from typing import Tuple

import torch
from torch import Tensor, nn

INPUT_NAMES = ('image', 'mask')
OUTPUT_NAMES = ('boxes', 'scores', 'labels')


def has_fixed_input_size(detector: nn.Module) -> bool:
    """Whether the exported graph only takes the traced image size (a
    multi-level model: ``num_feature_levels``)."""
    return hasattr(detector, 'num_feature_levels')


class DETRExportWrapper(nn.Module):
    """``(image, mask) -> (boxes, scores, labels)`` around a ``DETR``.

    Computes what ``DETR.predict(..., rescale=False)`` computes, with the
    padding mask given as a tensor rather than derived from data samples.
    The wrapper and the detector are put in eval mode (no dropout); the
    exporter restores the wrapper's mode after tracing, so the wrapper must
    not be left in training mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        if hasattr(detector, 'mask_head'):
            raise ValueError(
                f'{type(detector).__name__} predicts masks and panoptic maps,'
                ' which the ONNX export does not cover (boxes, scores and '
                'labels only): export a detector config.')
        self.detector = detector
        self.eval()
        num_queries = detector.num_queries  # two-stage: no query embedding
        max_per_img = (detector.bbox_head.test_cfg or {}).get(
            'max_per_img', num_queries)
        self.top_k = min(max_per_img, num_queries)

    def forward(self, image: Tensor,
                mask: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        det = self.detector
        head_inputs = det.forward_transformer(det.extract_feat(image),
                                              pixel_mask=mask)
        cls_logits, box_preds = (
            out[-1] for out in det.bbox_head(**head_inputs))  # last layer
        valid = ~mask
        height = valid.any(2).sum(1).float()  # (B,) real rows
        width = valid.any(1).sum(1).float()  # (B,) real columns
        sizes = torch.stack((width, height, width, height), 1)[:, None]
        return det.bbox_head.decode(cls_logits, box_preds, sizes)[:3]


def export_onnx(detector: nn.Module, out_file: str,
                sample_shape: Tuple[int, int] = (320, 480),
                opset: int = 17, dynamo: bool = False) -> None:
    """Trace ``DETRExportWrapper(detector)`` on a random image of
    ``sample_shape`` and write ``out_file`` with dynamic B, H, W (B only, for
    a model that :func:`has_fixed_input_size`).

    Args:
        dynamo: use torch's ``torch.export``-based exporter (needs the
            ``onnxscript`` package; about 20x slower to export here) instead
            of the TorchScript-based one (deprecated since torch 2.9, still
            the faster and default choice in torch 2.13).
    """
    device = next(detector.parameters()).device  # trace where it lives
    image = torch.randn(1, 3, *sample_shape, device=device)
    mask = torch.zeros(1, *sample_shape, dtype=torch.bool, device=device)
    axes = dict(image={0: 'batch', 2: 'height', 3: 'width'},
                mask={0: 'batch', 1: 'height', 2: 'width'})
    if has_fixed_input_size(detector):
        axes = dict(image={0: 'batch'}, mask={0: 'batch'})
    if dynamo:  # the same axes as torch.export's dims
        dims = dict(batch=torch.export.Dim('batch'),
                    height=torch.export.Dim('height', min=32, max=8192),
                    width=torch.export.Dim('width', min=32, max=8192))
        kwargs = dict(dynamic_shapes={
            name: {axis: dims[dim] for axis, dim in named.items()}
            for name, named in axes.items()})
    else:
        kwargs = dict(dynamic_axes=dict(
            axes, boxes={0: 'batch'}, scores={0: 'batch'},
            labels={0: 'batch'}))
    with torch.no_grad():
        torch.onnx.export(DETRExportWrapper(detector), (image, mask),
                          out_file, input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES),
                          opset_version=opset, dynamo=dynamo, **kwargs)
    assert not detector.training, 'the exporter left the detector training'
