"""Export a DETR config + checkpoint to ONNX and check it with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--opset 17]
        [--shape 800 1216] [--check-shapes 800 1216 608 800] [--dynamo]
        [--latency N]

The graph takes normalised, padded images and their padding mask and returns
boxes, scores and labels, with a dynamic batch and image size: see
:mod:`detr_plugin.deploy.onnx_export`. Multi-level models (Deformable DETR,
DINO) export for exactly the ``--shape`` size (their level shapes are traced
as constants): pad inputs to it; the tool says so. When onnxruntime is
installed, the exported file is run on random images of the two
``--check-shapes`` sizes, alone and as one padded batch, and the largest
differences from PyTorch's ``predict`` are printed; ``--latency N`` then
times one image of ``--shape`` N times in onnxruntime and in PyTorch (the
same graph's forward, eager, no gradients), alternately, and prints the
medians.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli

from detr_plugin.apis import DETRInferencer  # noqa: E402
import cli  # noqa: E402
from detr_plugin.deploy import (  # noqa: E402
    DETRExportWrapper, export_onnx, has_fixed_input_size)
from detr_plugin.deploy.onnx_export import OUTPUT_NAMES  # noqa: E402


def latency(detector: nn.Module, onnx_file: str, shape: Tuple[int, int],
            repeats: int) -> Dict[str, float]:
    """Median seconds of onnxruntime's run and PyTorch's eager forward of
    the exported computation on one ``shape`` image, alternately, after
    one warm-up each."""
    import statistics
    import time

    import onnxruntime
    session = onnxruntime.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    image = torch.randn(1, 3, *shape)
    mask = torch.zeros(1, *shape, dtype=torch.bool)
    feeds = dict(image=image.numpy(), mask=mask.numpy())
    wrapper = DETRExportWrapper(detector)
    runs = dict(onnxruntime=lambda: session.run(list(OUTPUT_NAMES), feeds),
                pytorch=lambda: wrapper(image, mask))
    times = {name: [] for name in runs}
    with torch.no_grad():
        for step in range(repeats + 1):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if step:  # the first is the warm-up
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export DETR to ONNX')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('out', help='the ONNX file to write')
    parser.add_argument('--opset', type=int, default=17,
                        help='ONNX opset version')
    parser.add_argument('--shape', type=int, nargs=2, default=[800, 1216],
                        metavar=('H', 'W'), help='image size to trace with')
    parser.add_argument('--dynamo', action='store_true',
                        help='use torch.export-based exporter (needs '
                        'onnxscript) instead of the TorchScript-based one')
    parser.add_argument('--check-shapes', type=int, nargs=4,
                        metavar=('H1', 'W1', 'H2', 'W2'),
                        help='two image sizes to compare on (default: '
                        '--shape, and 0.76 of its height by 0.66 of its '
                        'width: 800 1216 608 800)')
    parser.add_argument('--latency', type=int, default=0, metavar='N',
                        help='time N runs of one --shape image in '
                        'onnxruntime and PyTorch (medians)')
    args = parser.parse_args(argv)
    if args.latency < 0:
        parser.error('--latency takes a number of runs, 0 or more')
    if min(args.shape + (args.check_shapes or [1])) < 1:
        parser.error('--shape and --check-shapes take sizes of 1 pixel or '
                     'more')
    if osp.isdir(args.out):
        parser.error(f'{args.out} is a folder: give the .onnx file to write')
    if args.check_shapes is None:
        h, w = args.shape
        args.check_shapes = [h, w, round(h * 0.76), round(w * 0.658)]
    return args


def main(argv=None):
    """Export; returns the comparison report (None without onnxruntime)."""
    args = parse_args(argv)
    cli.check_config_file(args.config)
    cli.check_checkpoint_file(args.checkpoint, 'CHECKPOINT')
    detector = DETRInferencer(args.config, args.checkpoint,
                              device='cpu').model
    try:
        DETRExportWrapper(detector)  # refuses what the export cannot cover
    except ValueError as e:
        raise SystemExit(f'error: {args.config}: {e}') from None
    if hasattr(getattr(detector, 'neck', None), 'fuse'):
        detector.neck.fuse()  # RT-DETR: each RepVGG block one convolution
    fixed = has_fixed_input_size(detector)
    h1, w1, h2, w2 = args.check_shapes
    if fixed and (max(h1, h2) > args.shape[0] or
                  max(w1, w2) > args.shape[1]):
        raise SystemExit(
            f'error: --check-shapes {h1} {w1} {h2} {w2} do not fit in --shape '
            f'{args.shape[0]} {args.shape[1]}: the {type(detector).__name__} '
            'graph takes images padded to exactly that size.')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    export_onnx(detector, args.out, tuple(args.shape), opset=args.opset,
                dynamo=args.dynamo)
    size = f'{args.shape[0]}x{args.shape[1]}'
    print(f'wrote {args.out} (opset {args.opset}, traced at {size}, '
          + (f'dynamic batch; {type(detector).__name__} computes its '
             'feature levels\' shapes in Python, so the graph takes images '
             f'padded to exactly {size} (mask: True on the padding))'
             if fixed else 'dynamic batch/height/width)'))
    if importlib.util.find_spec('onnxruntime') is None:
        print('onnxruntime is not installed: the exported model was not run')
        return None
    report = compare_with_pytorch(detector, args.out, [(h1, w1), (h2, w2)],
                                  canvas=tuple(args.shape) if fixed else None)
    print('largest differences, onnxruntime vs PyTorch:')
    for case, diff in report.items():
        print(f'  {case:>24}: boxes {diff["boxes"]:.2e} px, scores '
              f'{diff["scores"]:.2e}, label mismatches '
              f'{diff["label_mismatches"]}')
    if args.latency:
        medians = latency(detector, args.out, tuple(args.shape), args.latency)
        report['latency_seconds'] = medians
        print(f'latency, one {size} image, median of {args.latency} '
              f'({torch.get_num_threads()} threads): onnxruntime '
              f'{medians["onnxruntime"] * 1e3:.1f} ms, PyTorch eager '
              f'{medians["pytorch"] * 1e3:.1f} ms')
    return report


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
