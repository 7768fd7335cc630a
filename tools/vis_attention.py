"""Show where DETR looks: decoder and encoder attention for one image.

    python tools/vis_attention.py CONFIG CHECKPOINT IMAGE [--out FILE.png]
        [--topk 6] [--points X,Y ...] [--device cpu]

Writes one figure (DETR paper figures 3 and 6, as in its notebook):
row 1, the last decoder layer's cross-attention of the query behind each of
the ``--topk`` best detections (head-averaged, over the stride-32 feature
map); row 2, the image with that detection's box, label and score; row 3, the
image with the reference points (by default the centres of the best 4
boxes, or of all ``--topk`` if fewer) and the last encoder layer's
self-attention from each of them.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli

from detr_plugin.apis import (AttentionMaps, DETRInferencer,  # noqa: E402
                              attention_maps)
import cli  # noqa: E402

POINT_COLOURS = ('red', 'lime', 'cyan', 'yellow', 'magenta', 'orange')


def parse_point(text: str):
    x, y = (float(v) for v in text.split(','))
    return x, y


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Plot DETR attention maps')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', default='attention.png',
                        help='the figure to write (PNG)')
    parser.add_argument('--topk', type=int, default=6,
                        help='detections whose decoder attention is shown')
    parser.add_argument('--points', nargs='+', type=parse_point,
                        help='encoder reference points X,Y in image pixels '
                        '(default: centres of the 4 best boxes, at most '
                        '--topk)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:N')
    args = parser.parse_args(argv)
    if not osp.isfile(args.image):
        parser.error(f'IMAGE {args.image}: ' + (
            'is a folder; give one image file' if osp.isdir(args.image) else
            'no such file'))
    return args


def plot(maps: AttentionMaps, classes, out_file: str) -> None:
    """Write the three-row figure of ``maps`` to ``out_file``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    num_det, num_points = len(maps.bboxes), len(maps.points)
    cols = max(num_det, num_points + 1, 1)
    fig, axes = plt.subplots(3, cols, figsize=(2.6 * cols, 7.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for i in range(num_det):
        query = int(maps.queries[i])
        axes[0, i].imshow(maps.decoder_maps[i].numpy(), cmap='viridis')
        axes[0, i].set_title(f'query {query}', fontsize=9)
        x1, y1, x2, y2 = maps.bboxes[i].tolist()
        axes[1, i].imshow(maps.image)
        axes[1, i].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1,
                                       fill=False, color='red', linewidth=2))
        label = int(maps.labels[i])
        name = classes[label] if label < len(classes) else str(label)
        axes[1, i].set_title(f'{name} {float(maps.scores[i]):.2f}',
                             fontsize=9)
    axes[2, 0].imshow(maps.image)
    axes[2, 0].set_title('reference points', fontsize=9)
    for j, ((x, y), (row, col)) in enumerate(
            zip(maps.points.tolist(), maps.cells.tolist())):
        colour = POINT_COLOURS[j % len(POINT_COLOURS)]
        axes[2, 0].scatter([x], [y], c=colour, s=40, edgecolors='black')
        ax = axes[2, j + 1]
        ax.imshow(maps.encoder_maps[j].numpy(), cmap='cividis')
        ax.scatter([col], [row], c=colour, s=30, edgecolors='black')
        ax.set_title(f'encoder self-attn ({x:.0f}, {y:.0f})', fontsize=8)
    fig.suptitle('rows 1-2: last decoder layer cross-attention of the top '
                 'queries; row 3: last encoder layer self-attention',
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file, dpi=100)
    plt.close(fig)


def main(argv=None) -> AttentionMaps:
    args = parse_args(argv)
    cli.check_config_file(args.config)
    cli.check_checkpoint_file(args.checkpoint, 'CHECKPOINT')
    import mmcv
    try:  # the image first: a corrupt one is named before the model loads
        height, width = mmcv.imread(args.image).shape[:2]
    except Exception as e:
        raise SystemExit(f'error: IMAGE {args.image} cannot be read as an '
                         f'image ({type(e).__name__}: {e}).') from None
    outside = [(x, y) for x, y in args.points or ()
               if not (0 <= x < width and 0 <= y < height)]
    if outside:
        raise SystemExit(f'error: --points {outside} lie outside the '
                         f'{width} x {height} (w x h) image: give X,Y in its '
                         'pixels.')
    try:
        inferencer = DETRInferencer(args.config, args.checkpoint,
                                    device=args.device)
        maps = attention_maps(inferencer, args.image, topk=args.topk,
                              points=args.points)
    except ValueError as e:  # no test pipeline; no DETR attention
        raise SystemExit(f'error: {args.config}: {e}') from None
    plot(maps, inferencer.classes, args.out)
    print(f'attention of {len(maps.bboxes)} detections and '
          f'{len(maps.points)} reference points written to {args.out}')
    return maps


if __name__ == '__main__':
    with cli.one_line_errors():  # a bad checkpoint: its message, no trace
        main()
