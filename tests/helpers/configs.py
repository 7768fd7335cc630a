"""The repository's paths and the one tiny config of the tests."""
import os
import os.path as osp
from typing import Sequence

from mmengine.config import Config

from .data import SHAPES_CLASSES

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
DETR_R50 = osp.join(CONFIG_DIR, 'detr', 'detr_r50_8xb2-150e_coco.py')
DETR_R50_ALIAS = osp.join(CONFIG_DIR, 'detr_r50_8xb2.py')  # its short name
TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'configs', 'detr_tiny_shapes.py')
# the real balloon set, used when present
BALLOON_ENV = 'DETR_BALLOON_ROOT'
BALLOON_ROOT = os.environ.get(
    BALLOON_ENV, osp.join(osp.dirname(REPO_ROOT), 'shared', 'data', 'balloon'))


def tiny_config(num_classes: int = 3) -> Config:
    """:data:`TINY_CONFIG` (a 32-d DETR on ResNet-18 with 8 base channels,
    2 + 2 layers, 10 queries, no dropout) with ``num_classes`` classes."""
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.model.bbox_head.num_classes = num_classes
    return cfg


# the shrunk sizes of :func:`tiny_variant_config`, by config key
TINY_WIDTHS = dict(embed_dims=32, feedforward_channels=64, num_feats=16,
                   num_layers=2, num_queries=10, num_dn_queries=10,
                   max_per_img=10)


def tiny_variant_config(variant: str, num_classes: int = 3) -> Config:
    """The R50 recipe of a DETR ``variant`` (a key of ``R50_CONFIGS``:
    ``detr``, ``conditional_detr``, ``dab_detr``, ``deformable_detr``,
    ``deformable_detr_refine``, ``deformable_detr_refine_twostage``,
    ``dino``) shrunk as :data:`TINY_WIDTHS` says: ResNet-18 with 8 base
    channels, 32-d 2 + 2 layers, 10 queries; no pretrained weights."""
    from mmdet_reference import (REPO_CONFIG_DIR, R50_CONFIGS,
                                 load_config)
    cfg = load_config(osp.join(REPO_CONFIG_DIR, R50_CONFIGS[variant]))

    def shrink(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in TINY_WIDTHS and isinstance(value, int):
                    node[key] = TINY_WIDTHS[key]
                elif key == 'out_channels' and value == 256:  # the neck's
                    node[key] = TINY_WIDTHS['embed_dims']
                else:
                    shrink(value)
        elif isinstance(node, list):
            for value in node:
                shrink(value)
    shrink(cfg.model)
    cfg.model.backbone.update(depth=18, base_channels=8)
    if cfg.model.get('neck'):  # ResNet-18's stages have 8, 16, 32, 64
        cfg.model.neck.in_channels = [
            8 * 2**i for i in cfg.model.backbone.out_indices]
    cfg.model.bbox_head.num_classes = num_classes
    return cfg


def tiny_panoptic_config(num_things: int = 3, num_stuff: int = 2,
                         num_queries: int = 6, **model) -> Config:
    """:func:`tiny_config` as a ``DETRPanoptic`` with the official mask head:
    128-d, 1 + 1 layers (the mask head's block widths halve from it down to
    8 channels for GroupNorm 8), ResNet-18 stages 1-3 (8, 16, 32 channels)
    as its FPN levels, masks at stride 4; ``model`` overrides the model
    config."""
    cfg = tiny_config(num_things + num_stuff)
    layer = dict(attn_cfgs=dict(embed_dims=128),
                 ffn_cfgs=dict(embed_dims=128, feedforward_channels=256))
    cfg.merge_from_dict(dict(model=dict(
        type='DETRPanoptic', num_things_classes=num_things,
        num_queries=num_queries, data_preprocessor=dict(pad_mask=True),
        backbone=dict(out_indices=(0, 1, 2, 3)),
        positional_encoding=dict(num_feats=64),
        encoder=dict(num_layers=1, layer_cfg=layer),
        decoder=dict(num_layers=1, layer_cfg=layer),
        bbox_head=dict(embed_dims=128),
        test_cfg=dict(max_per_img=num_queries),
        mask_head=dict(num_heads=8, fpn_dims=(32, 16, 8)))))
    cfg.merge_from_dict(dict(model=model))
    return cfg


def data_overrides(root: str, classes: Sequence[str] = SHAPES_CLASSES,
                   splits: Sequence[str] = ('train', ), **dataset) -> dict:
    """``merge_from_dict`` overrides pointing ``data_root`` and each
    ``{split}_dataloader`` (and the evaluator of ``val``/``test``) at
    ``root``'s COCO layout:
    ``annotations/instances_{name}.json`` and ``{name}/`` images, where
    ``name`` is ``val`` for the test split. ``dataset``: extra keys of each
    dataset."""
    root = root.rstrip('/') + '/'
    overrides = dict(data_root=root)
    for split in splits:
        name = 'val' if split == 'test' else split
        overrides[f'{split}_dataloader'] = dict(dataset=dict(
            dict(data_root=root, ann_file=f'annotations/instances_{name}.json',
                 data_prefix=dict(img=f'{name}/'),
                 metainfo=dict(classes=tuple(classes))), **dataset))
        if split != 'train':
            overrides[f'{split}_evaluator'] = dict(
                ann_file=f'{root}annotations/instances_{name}.json')
    return overrides


def tiny_train_config(root: str, classes: Sequence[str] = SHAPES_CLASSES,
                      max_iters: int = 4, stalls: bool = False,
                      **overrides) -> Config:
    """:func:`tiny_config` trained on ``root`` for ``max_iters`` iterations
    of one image (iteration ``k`` reads image ``k``), a checkpoint every 2
    iterations, no validation or test loop. ``stalls``: the run imports
    :mod:`helpers.save_stalls` (for ``tools.run_until_stalled``)."""
    cfg = tiny_config(num_classes=len(classes))
    cfg.merge_from_dict(data_overrides(root, classes))
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator',
                'test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None
    if stalls:
        cfg.custom_imports.imports.append('helpers.save_stalls')
    cfg.train_cfg.max_iters = max_iters
    cfg.merge_from_dict(overrides)
    return cfg


def add_eval_split(cfg: Config, root: str, split: str = 'val') -> Config:
    """Give a :func:`tiny_train_config` a ``{split}`` loop, dataloader and
    COCO metric on ``root``'s val images."""
    cfg[f'{split}_dataloader'] = dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            cfg.train_dataloader.dataset, test_mode=True,
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/')))
    cfg[f'{split}_cfg'] = dict(type=f'{split.capitalize()}Loop')
    cfg[f'{split}_evaluator'] = dict(
        type='CocoMetric', metric='bbox',
        ann_file=osp.join(root, 'annotations', 'instances_val.json'))
    return cfg


def write_config(cfg: Config, path: str) -> str:
    cfg.dump(path)
    return path
