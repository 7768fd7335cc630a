"""Shared helpers of the tests: configs, models and synthetic batches."""
import os.path as osp
from typing import Sequence, Tuple

import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
BALLOON_ROOT = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data', 'balloon')


def mmdet_config_path(name: str) -> str:
    """Path of a config shipped inside the mmdet wheel, e.g. 'detr/x.py'."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', name)


def load_config(path: str) -> Config:
    """A config with pretrained initialisation switched off."""
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    return cfg


def build_plugin_model(cfg_or_path):
    """Build a model of this package in the detr_plugin scope."""
    import detr_plugin  # noqa: F401
    from detr_plugin.registry import MODELS
    cfg = load_config(cfg_or_path) if isinstance(cfg_or_path, str) \
        else cfg_or_path
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def build_mmdet_model(path: str):
    """Build mmdet's own model from one of mmdet's configs."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_config(path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def random_boxes(num: int, height: int, width: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``(num, 4)`` valid xyxy boxes inside a ``height x width`` image."""
    xy = torch.rand(num, 2, generator=generator) * torch.tensor(
        [width * 0.7, height * 0.7])
    wh = (torch.rand(num, 2, generator=generator) * 0.3 + 0.05) * \
        torch.tensor([width, height])
    return torch.cat([xy, xy + wh], dim=1)


def make_batch(img_shapes: Sequence[Tuple[int, int]],
               num_gts: Sequence[int],
               num_classes: int = 80,
               seed: int = 0):
    """Normalised inputs padded to one shape, and their data samples.

    Args:
        img_shapes: ``(h, w)`` of each image before padding.
        num_gts: boxes per image.

    Returns:
        ``inputs`` ``(B, 3, H, W)`` and a list of ``DetDataSample`` with
        ``gt_instances`` (xyxy pixel boxes, labels) and the metainfo the
        detector reads (``img_shape``, ``batch_input_shape``,
        ``scale_factor``, ``ori_shape``).
    """
    generator = torch.Generator().manual_seed(seed)
    pad_h = max(h for h, _ in img_shapes)
    pad_w = max(w for _, w in img_shapes)
    inputs = torch.zeros(len(img_shapes), 3, pad_h, pad_w)
    samples = []
    for i, ((h, w), n) in enumerate(zip(img_shapes, num_gts)):
        inputs[i, :, :h, :w] = torch.randn(3, h, w, generator=generator)
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
            batch_input_shape=(pad_h, pad_w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=random_boxes(n, h, w, generator),
            labels=torch.randint(0, num_classes, (n, ), generator=generator))
        samples.append(sample)
    return inputs, samples


def tiny_config(num_classes: int = 3, num_queries: int = 10,
                embed_dims: int = 32, num_layers: int = 2) -> Config:
    """``configs/detr_r50_8xb2.py`` shrunk for fast tests: ResNet-18 with
    8 base channels, a 32-d 2 + 2 layer transformer, no dropout."""
    cfg = load_config(osp.join(CONFIG_DIR, 'detr_r50_8xb2.py'))
    attn = dict(type='MultiheadAttention', embed_dims=embed_dims,
                num_heads=4, attn_drop=0., proj_drop=0.)
    ffn = dict(type='FFN', embed_dims=embed_dims,
               feedforward_channels=2 * embed_dims, num_fcs=2, ffn_drop=0.,
               act_cfg=dict(type='ReLU', inplace=True))
    cfg.merge_from_dict(dict(model=dict(
        num_queries=num_queries,
        backbone=dict(depth=18, base_channels=8),
        positional_encoding=dict(num_feats=embed_dims // 2),
        encoder=dict(num_layers=num_layers,
                     layer_cfg=dict(attn_cfgs=attn, ffn_cfgs=ffn)),
        decoder=dict(num_layers=num_layers,
                     layer_cfg=dict(attn_cfgs=attn, ffn_cfgs=ffn)),
        bbox_head=dict(num_classes=num_classes, embed_dims=embed_dims),
        test_cfg=dict(max_per_img=num_queries))))
    return cfg
