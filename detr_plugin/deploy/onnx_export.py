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
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
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
        return det.bbox_head.decode(cls_logits, box_preds, sizes)


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


def run_onnx(onnx_file: str, image: np.ndarray,
             mask: np.ndarray) -> Sequence[np.ndarray]:
    """``boxes, scores, labels`` of the exported model with onnxruntime."""
    import onnxruntime
    session = onnxruntime.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    return session.run(list(OUTPUT_NAMES), dict(image=image, mask=mask))


def _paired_differences(boxes: np.ndarray, scores: np.ndarray,
                        labels: np.ndarray, reference) -> Tuple[float, float,
                                                                int]:
    """Largest box and score differences between one image's ONNX outputs
    and ``reference`` (``InstanceData``), after pairing the detections
    one-to-one (same label, nearest box and score), so that near-tied
    scores ranked in another order do not count as differences. Also the
    number of pairs whose labels differ."""
    from scipy.optimize import linear_sum_assignment
    ref_boxes = reference.bboxes.cpu().numpy()
    ref_scores = reference.scores.cpu().numpy()
    ref_labels = reference.labels.cpu().numpy()
    cost = np.abs(boxes[:, None] - ref_boxes[None]).max(-1) + \
        1e3 * np.abs(scores[:, None] - ref_scores[None]) + \
        1e6 * (labels[:, None] != ref_labels[None])
    rows, cols = linear_sum_assignment(cost)
    return (float(np.abs(boxes[rows] - ref_boxes[cols]).max(initial=0)),
            float(np.abs(scores[rows] - ref_scores[cols]).max(initial=0)),
            int((labels[rows] != ref_labels[cols]).sum()))


def compare_with_pytorch(detector: nn.Module, onnx_file: str,
                         shapes: Sequence[Tuple[int, int]],
                         seed: int = 0,
                         canvas: Optional[Tuple[int, int]] = None
                         ) -> Dict[str, dict]:
    """Run the ONNX file (onnxruntime) and ``detector.predict`` (in eval
    mode) on random images of each ``shapes`` entry alone, and on all of
    them as one padded batch (which exercises the mask); with ``canvas``
    (a fixed-size graph) every batch is padded to it.

    Returns:
        Per case (``'HxW'``, ``'HxW+HxW padded'``): ``boxes`` (largest
        absolute difference, pixels), ``scores`` (largest absolute
        difference) and ``label_mismatches``.
    """
    from mmdet.structures import DetDataSample
    detector.eval()
    generator = torch.Generator().manual_seed(seed)
    images = [torch.randn(3, h, w, generator=generator) for h, w in shapes]
    cases = [[i] for i in range(len(shapes))]
    if len(shapes) > 1:
        cases.append(list(range(len(shapes))))
    report = {}
    for case in cases:
        pad_h, pad_w = canvas or (max(shapes[i][0] for i in case),
                                  max(shapes[i][1] for i in case))
        batch = torch.zeros(len(case), 3, pad_h, pad_w)
        mask = torch.ones(len(case), pad_h, pad_w, dtype=torch.bool)
        samples = []
        for row, i in enumerate(case):
            h, w = shapes[i]
            batch[row, :, :h, :w] = images[i]
            mask[row, :h, :w] = False
            samples.append(DetDataSample(metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w),
                batch_input_shape=(pad_h, pad_w), scale_factor=(1., 1.))))
        device = next(detector.parameters()).device
        with torch.no_grad():
            expected = detector.predict(batch.to(device), samples,
                                        rescale=False)
        boxes, scores, labels = run_onnx(onnx_file, batch.numpy(),
                                         mask.numpy())
        diffs = [_paired_differences(boxes[row], scores[row], labels[row],
                                     expected[row].pred_instances)
                 for row in range(len(case))]
        name = '+'.join(f'{shapes[i][0]}x{shapes[i][1]}' for i in case)
        if canvas:
            name += f' padded to {pad_h}x{pad_w}'
        elif len(case) > 1:
            name += ' padded'
        report[name] = dict(boxes=max(d[0] for d in diffs),
                            scores=max(d[1] for d in diffs),
                            label_mismatches=sum(d[2] for d in diffs))
    return report
