"""Convert a DETR checkpoint of another layout to this package's.

    python tools/convert_checkpoint.py --from official detr-r50-e632da11.pth \
        detr_r50_coco.pth [--num-classes 80]
    python tools/convert_checkpoint.py --from mmdet \
        detr_r50_8xb2-150e_coco_20221023_153551-436d03e8.pth detr_r50_coco.pth

``official``: a facebookresearch/detr release file (read with
``torch.load(weights_only=True)``, only ``argparse.Namespace`` allowed besides
tensors); its 92-row COCO classifier becomes an 80-class head in mmdet's class
order (``--num-classes 91`` keeps every row, class index = COCO category id).
The panoptic release (``detr-r50-panoptic-00ce5173.pth``, told by its
``detr.`` keys) becomes a ``DETRPanoptic`` with mmdet's 133 COCO panoptic
classes (``--num-classes 250`` keeps every row) for
``configs/detr_panoptic/detr_r50_8xb2-panoptic-25e_coco.py``.
``mmdet``: an mmdet 3.x checkpoint of DETR or a successor (Conditional DETR,
DAB-DETR, Deformable DETR, DINO; told from its keys, ``--model`` names it).
``hf``: a Hugging Face transformers state dict (``pytorch_model.bin``,
``.pth`` or ``model.safetensors``) of ``DetrForObjectDetection``,
``DetrForSegmentation``, ``ConditionalDetrForObjectDetection``,
``DabDetrForObjectDetection`` or ``DeformableDetrForObjectDetection`` (told
from its keys); its own classes are kept, named from a ``config.json``
beside it. Deformable DETR's needs ``model.neck.bias=True`` in its config.
``RTDetrV2ForObjectDetection`` is told by its keys too.
``rtdetr``: an official rtdetrv2_pytorch checkpoint (its EMA weights if it
has them, else ``model``; any size, R18vd to R101vd, told from the keys,
which the output names in ``meta['config']``).
``dfine`` / ``deim``: an official D-FINE or DEIM (D-FINE model) checkpoint,
read as ``rtdetr``'s (S/M/L/X told from the keys; ``deim`` names the DEIM
config: its MLPs use SiLU). ``DFineForObjectDetection`` is ``hf``'s.
The output ``{'state_dict', 'meta'}`` loads strictly into the matching config
of ``configs/`` (``load_from=...`` or ``tools/test.py CONFIG OUT``).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli

from detr_plugin.checkpoint import (  # noqa: E402
    MMDET_LAYOUTS, convert_checkpoint, convert_hf_checkpoint,
    convert_dfine_checkpoint, convert_rtdetr_checkpoint, num_classes_of)
import cli  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--from', dest='source', required=True,
                        choices=['official', 'mmdet', 'hf', 'rtdetr', 'dfine',
                                 'deim'],
                        help='layout of SRC')
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes of the head: official 80 (default, '
                        'mmdet\'s COCO order) or 91 (COCO category ids), '
                        'its panoptic release 133 (default) or 250; mmdet, '
                        'hf: checked against the checkpoint')
    parser.add_argument('--model', choices=sorted(MMDET_LAYOUTS),
                        default=None, help='mmdet: the DETR variant of SRC '
                        '(default: told from its keys)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.check_checkpoint_file(args.src, 'SRC')
    if osp.isdir(args.dst):
        raise SystemExit(f'error: DST {args.dst} is a folder: give the path '
                         'of the .pth file to write.')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    if args.source == 'hf':
        converted = convert_hf_checkpoint(args.src, args.dst,
                                          args.num_classes)
    elif args.source == 'rtdetr':
        converted = convert_rtdetr_checkpoint(args.src, args.dst,
                                              args.num_classes)
    elif args.source in ('dfine', 'deim'):
        converted = convert_dfine_checkpoint(args.src, args.dst,
                                             args.source == 'deim',
                                             args.num_classes)
    else:
        converted = convert_checkpoint(args.src, args.dst, args.source,
                                       args.num_classes, args.model)
    state_dict = converted['state_dict']
    num_params = sum(v.numel() for v in state_dict.values()
                     if v.is_floating_point())
    print(f'{args.src} ({args.source}) -> {args.dst}: {len(state_dict)} '
          f'tensors, {num_params / 1e6:.2f} M values, '
          f'{num_classes_of(state_dict)} classes')
    if 'config' in converted['meta']:  # the size found
        family = dict(dfine='dfine', deim='deim').get(args.source, 'rtdetr')
        print(f'its model: configs/{family}/{converted["meta"]["config"]}')
    if 'neck.convs.0.conv.bias' in state_dict:  # transformers' Deformable
        print('its neck convolutions have biases: load it with '
              'model.neck.bias=True in the config')


if __name__ == '__main__':
    # a bad or unconvertible checkpoint: its message, no traceback
    with cli.one_line_errors(cli.CHECKPOINT_FAULTS + (KeyError, ValueError)):
        main()
