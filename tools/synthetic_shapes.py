"""A deterministic synthetic detection set in COCO format: filled shapes.

Every image is a noisy background with 0..``max_objects`` non-overlapping
filled shapes of random colour, size and position; the class of an object is
its *shape* (not its colour), its box the tight box of the drawn pixels.
Written under ``root``: ``{train,val}/000001.jpg ...`` (BGR) and
``annotations/instances_{train,val}.json``. The same arguments give the same
bytes: each split's random stream is seeded by ``(seed, split index)`` only.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

SHAPES = ('circle', 'square', 'triangle')
# Saturated BGR colours, far from the grey backgrounds.
COLOURS = ((40, 40, 230), (40, 200, 40), (230, 90, 30), (30, 220, 230),
           (220, 40, 220), (240, 220, 40))
SPLITS = ('train', 'val')


def _shape_mask(shape: str, size: int, height: int, width: int,
                rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width)`` bool mask of one shape about ``size`` px wide,
    placed at a random position fully inside the image."""
    mask = np.zeros((height, width), np.uint8)
    x0 = int(rng.integers(0, width - size + 1))
    y0 = int(rng.integers(0, height - size + 1))
    if shape == 'circle':
        r = size // 2
        cv2.circle(mask, (x0 + r, y0 + r), r, 1, thickness=-1)
    elif shape == 'square':
        cv2.rectangle(mask, (x0, y0), (x0 + size - 1, y0 + size - 1), 1,
                      thickness=-1)
    elif shape == 'triangle':
        pts = np.array([[x0 + size // 2, y0], [x0, y0 + size - 1],
                        [x0 + size - 1, y0 + size - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:
        raise ValueError(f'unknown shape {shape!r}, expected one of {SHAPES}')
    return mask.astype(bool)


def mask_bbox(mask: np.ndarray) -> List[float]:
    """COCO ``[x, y, w, h]`` (pixels) of the drawn pixels: pixel ``i`` covers
    ``[i, i + 1)``, as OpenCV's bounding rectangle of non-zero pixels."""
    return [float(v) for v in cv2.boundingRect(mask.astype(np.uint8))]


def draw_objects(img: np.ndarray, num_objects: int,
                 size_range: Tuple[float, float], num_shapes: int,
                 rng: np.random.Generator) -> list:
    """Paint up to ``num_objects`` non-overlapping shapes of random class,
    colour, size and place into ``img`` ``(h, w, 3)`` (in place); return
    them as ``(shape index, mask)`` pairs."""
    height, width = img.shape[:2]
    occupied = np.zeros((height, width), bool)
    objects = []
    lo, hi = (int(f * min(height, width)) for f in size_range)
    for _ in range(num_objects):
        for _attempt in range(20):  # rejection sampling: no overlaps
            label = int(rng.integers(num_shapes))
            size = int(rng.integers(max(lo, 4), max(hi, 4) + 1))
            mask = _shape_mask(SHAPES[label], size, height, width, rng)
            if not (mask & occupied).any():
                break
        else:
            continue  # image too crowded; keep fewer objects
        occupied |= mask
        img[mask] = COLOURS[int(rng.integers(len(COLOURS)))]
        objects.append((label, mask))
    return objects


def _write_split(root: str, split: str, num_images: int,
                 categories: List[dict], image_size: Tuple[int, int],
                 seed: int, empty_fraction: float, max_objects: int,
                 size_range: Tuple[float, float], ext: str) -> str:
    """Write one split's images and COCO JSON; return the JSON path."""
    height, width = image_size
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    num_empty = int(round(empty_fraction * num_images))
    empty = set(rng.permutation(num_images)[:num_empty].tolist())
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        n = 0 if i in empty else int(rng.integers(1, max_objects + 1))
        img = np.full((height, width, 3), rng.integers(60, 190), np.float32)
        img += rng.normal(0, 12, size=img.shape)  # a noisy grey background
        objects = draw_objects(img, n, size_range, len(categories), rng)
        file_name = f'{i + 1:06d}.{ext}'
        cv2.imwrite(osp.join(root, split, file_name),
                    np.clip(img, 0, 255).astype(np.uint8))
        images.append(dict(id=i + 1, file_name=file_name, height=height,
                           width=width))
        for label, mask in objects:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1,
                category_id=categories[label]['id'], bbox=mask_bbox(mask),
                area=float(mask.sum()), iscrowd=0))
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)
    return ann_file


def generate_shapes_dataset(root: str,
                            num_train: int = 200,
                            num_val: int = 50,
                            image_size: Tuple[int, int] = (192, 192),
                            seed: int = 0,
                            category_ids: Optional[Sequence[int]] = None,
                            empty_fraction: float = 0.1,
                            max_objects: int = 4,
                            size_range: Tuple[float, float] = (0.15, 0.4),
                            num_classes: int = 3,
                            ext: str = 'jpg') -> Dict[str, object]:
    """Write the shapes set (see the module docstring) under ``root``.

    Args:
        image_size: ``(h, w)`` of every image in pixels.
        category_ids: COCO category id of each class, in class order; any
            distinct positive ints, e.g. ``(3, 17, 90)``. Default ``1..K``
            for the first ``num_classes`` of :data:`SHAPES`.
        empty_fraction: share of images (per split, rounded) without objects.
        max_objects: objects per non-empty image are uniform in
            ``1..max_objects`` (fewer when the image gets too crowded).
        size_range: object width as fractions of ``min(h, w)``.

    Returns:
        ``dict(classes, category_ids, ann_files=dict(train=path, val=path))``;
        ``classes`` in the order of the JSON's categories, i.e. mmdet's
        labels ``0..K-1``: pass it as ``metainfo=dict(classes=...)``.
    """
    if category_ids is None:
        category_ids = tuple(range(1, num_classes + 1))
    category_ids = tuple(int(c) for c in category_ids)
    if not 1 <= len(category_ids) <= len(SHAPES) or \
            len(set(category_ids)) != len(category_ids) or \
            min(category_ids) < 1:
        raise ValueError(f'category_ids must be 1..{len(SHAPES)} distinct '
                         f'positive ints, got {category_ids}')
    categories = [dict(id=cid, name=SHAPES[k], supercategory='shape')
                  for k, cid in enumerate(category_ids)]
    ann_files = {
        split: _write_split(root, split, n, categories, tuple(image_size),
                            seed, empty_fraction, max_objects,
                            tuple(size_range), ext)
        for split, n in zip(SPLITS, (num_train, num_val))
    }
    return dict(classes=tuple(c['name'] for c in categories),
                category_ids=category_ids, ann_files=ann_files)
