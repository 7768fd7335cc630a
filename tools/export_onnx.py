"""Export a DETR config + checkpoint to ONNX and check it with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--opset 17]
        [--shape 800 1216] [--check-shapes 800 1216 608 800] [--dynamo]

The graph takes normalised, padded images and their padding mask and returns
boxes, scores and labels, with a dynamic batch and image size: see
:mod:`detr_plugin.deploy.onnx_export`. Multi-level models (Deformable DETR,
DINO) export for exactly the ``--shape`` size (their level shapes are traced
as constants): pad inputs to it; the tool says so. When onnxruntime is
installed, the exported file is run on random images of the two
``--check-shapes`` sizes, alone and as one padded batch, and the largest
differences from PyTorch's ``predict`` are printed.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from detr_plugin.apis import DETRInferencer  # noqa: E402
from detr_plugin.engine import cli  # noqa: E402
from detr_plugin.deploy import (  # noqa: E402
    DETRExportWrapper, compare_with_pytorch, export_onnx,
    has_fixed_input_size)


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
    args = parser.parse_args(argv)
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
    return report


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
