"""Write the synthetic shapes sets used by the demos: detection (COCO) or,
with ``--panoptic``, panoptic (COCO panoptic: stuff bands under the shapes).

    python tools/generate_demo_data.py --out data/shapes
    python tools/generate_demo_data.py --out /tmp/s --category-ids 3 17 90
    python tools/generate_demo_data.py --panoptic --out data/shapes_panoptic

See ``tools/synthetic_shapes.py`` and ``tools/synthetic_panoptic.py`` for
the layouts. With
``--panoptic`` the class, category and empty-image options do not apply.
"""
import argparse
import json

from synthetic_panoptic import generate_panoptic_shapes_dataset
from synthetic_shapes import generate_shapes_dataset


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/shapes', help='output root')
    parser.add_argument('--panoptic', action='store_true',
                        help='the panoptic variant (stuff bands)')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--image-size', type=int, nargs=2, default=(192, 192),
                        metavar=('H', 'W'), help='image height and width, px')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-classes', type=int, default=3,
                        help='shapes used: 1 to 3 of circle, square, triangle')
    parser.add_argument('--category-ids', type=int, nargs='+', default=None,
                        help='COCO category id of each class (default 1..K)')
    parser.add_argument('--empty-fraction', type=float, default=0.1,
                        help='share of images without objects')
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--size-range', type=float, nargs=2,
                        default=(0.15, 0.4), metavar=('MIN', 'MAX'),
                        help='object width as a fraction of the image side')
    args = parser.parse_args(argv)
    lo, hi = args.size_range
    for wrong, rule in (
            (args.num_train < 1 or args.num_val < 0,
             '--num-train takes 1 or more images, --num-val 0 or more'),
            (min(args.image_size) < 16, '--image-size takes 16 px or more'),
            (not 0 < lo <= hi <= 1, '--size-range MIN MAX: fractions of '
             'the image side, 0 < MIN <= MAX <= 1'),
            (not 0 <= args.empty_fraction <= 1,
             '--empty-fraction takes a share from 0 to 1'),
            (args.max_objects < 1 - args.panoptic, '--max-objects takes 1 '
             'or more (0 with --panoptic; images without objects: '
             '--empty-fraction)'),
            (not 1 <= args.num_classes <= 3, '--num-classes takes 1 to 3')):
        if wrong:
            parser.error(rule)
    return args


def main(argv=None):
    args = parse_args(argv)
    common = dict(num_train=args.num_train, num_val=args.num_val,
                  image_size=tuple(args.image_size), seed=args.seed,
                  max_objects=args.max_objects,
                  size_range=tuple(args.size_range))
    if args.panoptic:
        info = generate_panoptic_shapes_dataset(args.out, **common)
    else:
        info = generate_shapes_dataset(
            args.out, category_ids=args.category_ids,
            empty_fraction=args.empty_fraction,
            num_classes=args.num_classes, **common)
    print(json.dumps(info, indent=2))


if __name__ == '__main__':
    main()
