"""A tiny trained-looking detector on disk: config, checkpoint and images,
for the inference tools (``tools/infer.py``, ``vis_attention.py``,
``export_onnx.py``)."""
import cv2
import numpy as np
import torch

from mmdet_reference import build_plugin_model

from .configs import tiny_config
from .data import SHAPES_CLASSES

IMAGE_SHAPES = {'a.jpg': (90, 120), 'b.png': (128, 96)}  # (h, w)


def write_tiny_detector(root, dropout: float = 0.):
    """A tiny 3-class DETR config file and checkpoint, and two images.

    Returns ``(config path, checkpoint path, image folder)``. The test
    pipeline resizes to at most 160 x 128 so that every forward is fast.
    ``dropout`` sets every attention and FFN dropout of the transformer
    (inference must switch them off).
    """
    cfg = tiny_config(num_classes=len(SHAPES_CLASSES))
    for part in ('encoder', 'decoder'):
        layer = cfg.model[part].layer_cfg
        layer.attn_cfgs.update(attn_drop=dropout, proj_drop=dropout)
        layer.ffn_cfgs.update(ffn_drop=dropout)
    cfg.test_dataloader.dataset.pipeline[1].scale = (160, 128)
    config = str(root / 'tiny_detr.py')
    cfg.dump(config)
    torch.manual_seed(0)
    model = build_plugin_model(cfg)
    checkpoint = str(root / 'tiny_detr.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=SHAPES_CLASSES))),
               checkpoint)
    images = root / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in IMAGE_SHAPES.items():
        cv2.imwrite(str(images / name),
                    rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (images / 'notes.txt').write_text('not an image')
    return config, checkpoint, str(images)
