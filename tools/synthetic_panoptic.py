"""The shapes set's panoptic variant: textured stuff bands under the shapes.

Every image is cut into 1-3 horizontal bands of stuff -- ``sky`` (a pale
gradient), ``water`` (dark, striped), ``ground`` (speckled), always in that
order from the top -- and 0..``max_objects`` filled shapes (the things:
circle, square, triangle; see :mod:`.synthetic_shapes`) are painted over
them. Every pixel belongs to one segment; a band hidden by the shapes is
left out.

Layout written under ``root`` (COCO panoptic, as mmdet's
``CocoPanopticDataset`` and ``CocoPanopticMetric`` read it, plus the things
as COCO instances with RLE masks for ``CocoMetric``)::

    root/{train,val}/000001.jpg ...
    root/annotations/panoptic_{train,val}.json
    root/annotations/panoptic_{train,val}/000001.png ...   segment ids, RGB
    root/annotations/instances_{train,val}.json

Categories: the things 1-3, the stuff 4-6. The same arguments give the same
bytes.
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from synthetic_shapes import SHAPES, SPLITS, draw_objects, mask_bbox

STUFF = ('sky', 'water', 'ground')


def _stuff_texture(stuff: str, height: int, width: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``(height, width, 3)`` float BGR texture of one stuff class: sky pale
    blue, lighter downwards; water dark blue with horizontal stripes; ground
    olive brown, speckled."""
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    base, shade, noise = dict(
        sky=((235, 200, 165), rows / height * 20, 4),
        water=((140, 80, 25), 25 * np.sin(rows * 2 * np.pi / 6), 6),
        ground=((50, 110, 140), 0 * rows, 25))[stuff]
    img = np.broadcast_to(np.float32(base) + shade, (height, width, 3))
    return img + rng.normal(0, noise, size=img.shape)


def _draw_panoptic_image(height: int, width: int, max_objects: int,
                         size_range: Tuple[float, float],
                         rng: np.random.Generator):
    """An image and its segments ``(category index, mask)``, the stuff
    indices after the shapes' (``len(SHAPES) + stuff index``)."""
    num_bands = int(rng.integers(1, len(STUFF) + 1))
    bands = np.sort(rng.choice(len(STUFF), num_bands, replace=False))
    while True:  # bands at least height / 8 high
        cuts = np.sort(rng.choice(np.arange(1, height), num_bands - 1,
                                  replace=False))
        bounds = [0, *cuts.tolist(), height]
        if min(np.diff(bounds)) >= height // 8:
            break
    img = np.zeros((height, width, 3), np.float32)
    stuff_masks = []
    for band, top, bottom in zip(bands, bounds, bounds[1:]):
        img[top:bottom] = _stuff_texture(STUFF[band], height, width,
                                         rng)[top:bottom]
        mask = np.zeros((height, width), bool)
        mask[top:bottom] = True
        stuff_masks.append((len(SHAPES) + int(band), mask))
    things = draw_objects(img, int(rng.integers(0, max_objects + 1)),
                          size_range, len(SHAPES), rng)
    covered = np.zeros((height, width), bool)
    for _, mask in things:
        covered |= mask
    stuff = [(label, mask & ~covered) for label, mask in stuff_masks]
    segments = things + [(label, m) for label, m in stuff if m.any()]
    return np.clip(img, 0, 255).astype(np.uint8), segments


def _write_split(root: str, split: str, num_images: int,
                 image_size: Tuple[int, int], seed: int, max_objects: int,
                 size_range: Tuple[float, float]) -> Dict[str, str]:
    """Write one split's images, PNGs and both JSON files."""
    from panopticapi.utils import id2rgb
    height, width = image_size
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    categories = [dict(id=i + 1, name=name, supercategory='shape'
                       if i < len(SHAPES) else 'stuff',
                       isthing=int(i < len(SHAPES)))
                  for i, name in enumerate(SHAPES + STUFF)]
    png_dir = osp.join(root, 'annotations', f'panoptic_{split}')
    os.makedirs(png_dir, exist_ok=True)
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, panoptic, instances = [], [], []
    for i in range(num_images):
        img, segments = _draw_panoptic_image(height, width, max_objects,
                                             size_range, rng)
        name = f'{i + 1:06d}'
        cv2.imwrite(osp.join(root, split, name + '.jpg'), img)
        images.append(dict(id=i + 1, file_name=name + '.jpg',
                           height=height, width=width))
        ids = np.zeros((height, width), np.uint32)
        segments_info = []
        for segment_id, (label, mask) in enumerate(segments, start=1):
            ids[mask] = segment_id
            info = dict(id=segment_id, category_id=label + 1, iscrowd=0,
                        bbox=mask_bbox(mask), area=int(mask.sum()))
            segments_info.append(info)
            if label < len(SHAPES):
                rle = mask_utils.encode(np.asfortranarray(
                    mask.astype(np.uint8)))
                rle['counts'] = rle['counts'].decode('ascii')
                instances.append(dict(info, id=len(instances) + 1,
                                      image_id=i + 1, segmentation=rle))
        cv2.imwrite(osp.join(png_dir, name + '.png'), id2rgb(ids)[..., ::-1])
        panoptic.append(dict(image_id=i + 1, file_name=name + '.png',
                             segments_info=segments_info))
    files = dict(
        panoptic=(panoptic, categories),
        instances=(instances, [c for c in categories if c['isthing']]))
    paths = {}
    for kind, (annotations, cats) in files.items():
        paths[kind] = osp.join(root, 'annotations', f'{kind}_{split}.json')
        with open(paths[kind], 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=cats), f)
    return paths


def generate_panoptic_shapes_dataset(
        root: str,
        num_train: int = 200,
        num_val: int = 50,
        image_size: Tuple[int, int] = (64, 64),
        seed: int = 0,
        max_objects: int = 3,
        size_range: Tuple[float, float] = (0.3, 0.6)) -> Dict[str, object]:
    """Write the panoptic set (see the module docstring) under ``root``.

    Args:
        image_size: ``(h, w)`` of every image in pixels.
        max_objects: shapes per image are uniform in ``0..max_objects``
            (fewer when the image gets too crowded).
        size_range: shape width as fractions of ``min(h, w)``.

    Returns:
        ``dict(classes, thing_classes, stuff_classes, ann_files)``: the
        metainfo of mmdet's ``CocoPanopticDataset`` and, per split, the
        ``panoptic`` and ``instances`` JSON paths.
    """
    ann_files = {
        split: _write_split(root, split, n, tuple(image_size), seed,
                            max_objects, tuple(size_range))
        for split, n in zip(SPLITS, (num_train, num_val))
    }
    return dict(classes=SHAPES + STUFF, thing_classes=SHAPES,
                stuff_classes=STUFF, ann_files=ann_files)
