"""Shared helpers of the tests: configs, models and synthetic batches."""
import os.path as osp
from mmengine.config import Config

from detr_plugin.mmdet_reference import (  # noqa: F401
    build_mmdet_model, build_plugin_model, build_r50_pair, load_config,
    make_batch, mmdet_config_path, random_boxes)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
BALLOON_ROOT = osp.join(osp.dirname(REPO_ROOT), 'shared', 'data', 'balloon')


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
