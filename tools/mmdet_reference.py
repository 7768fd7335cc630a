"""Build this package's DETR and mmdet 3.3.0's DETR side by side, and the
batches both are fed (harness code of ``tools/benchmark.py`` and the tests).

Both models come from their own configs (pretrained initialisation off) and
share weights through the mmdet converter, so any difference between them is
a difference in code. :func:`make_batch` builds what a detector's
``loss``/``predict`` take (padded inputs and ``DetDataSample`` objects with
boxes).
"""
import logging
import os.path as osp
from contextlib import contextmanager
from typing import Sequence, Tuple

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData
from torch import nn

REPO_CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                           'configs')
MMDET_DETR_R50 = 'detr/detr_r50_8xb2-150e_coco.py'
# variant -> its R50 recipe: the path of mmdet's config in its wheel and of
# ours under configs/ (ours have mmdet's names)
R50_CONFIGS = dict(
    detr=MMDET_DETR_R50,
    conditional_detr='conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    dab_detr='dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    **{f'deformable_detr{option}': 'deformable_detr/deformable-detr'
       f'{option.replace("_", "-")}_r50_16xb2-50e_coco.py'
       for option in ('', '_refine', '_refine_twostage')},
    dino='dino/dino-4scale_r50_8xb2-12e_coco.py',
)


def mmdet_config_path(name: str) -> str:
    """Path of a config shipped inside the mmdet wheel, e.g. 'detr/x.py'."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', name)


def load_config(path: str) -> Config:
    """A config with pretrained initialisation switched off."""
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    return cfg


def _init_quietly(model: nn.Module) -> nn.Module:
    """``init_weights`` without mmengine's per-parameter INFO report."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model


def build_plugin_model(cfg_or_path) -> nn.Module:
    """Build (and initialise) a model of this package in its scope."""
    from detr_plugin.registry import MODELS
    cfg = load_config(cfg_or_path) if isinstance(cfg_or_path, str) \
        else cfg_or_path
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        model = MODELS.build(cfg.model)
    return _init_quietly(model)


def build_mmdet_model(path: str) -> nn.Module:
    """Build (and initialise) mmdet's own model from one of its configs."""
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(load_config(path).model)
    return _init_quietly(model)


def train_without_dropout(model: nn.Module) -> nn.Module:
    """Training mode (the losses of two-stage proposals and denoising
    queries exist only there) with every dropout off, so that two models'
    losses can be compared number for number."""
    from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVMHA
    model.train()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.MultiheadAttention, MMCVMHA)) \
                or isinstance(getattr(module, 'attn_drop', None), float):
            module.eval()  # ours: attn_drop is applied in training only
    return model


@contextmanager
def same_proposal_ranking(theirs, ours):
    """Two-stage models: our top-k picks the proposals mmdet's scores rank
    first. The scores agree to ~1e-6, but of ~1,000 proposals some score
    within that of each other, so float rounding alone can swap two in the
    top-k order -- and a query's proposal. mmdet's model must run first in
    the block (its proposal scores are read by a forward hook)."""
    if not getattr(ours, 'as_two_stage', False):
        yield
        return
    seen = {}
    hook = theirs.bbox_head.cls_branches[-1].register_forward_hook(
        lambda module, args, scores: seen.update(scores=scores.detach()))
    ours.proposal_score = lambda scores: type(ours).proposal_score(
        seen['scores'])
    try:
        yield
    finally:
        hook.remove()
        del ours.proposal_score


def layer_references(references, num_layers: int):
    """mmdet's forms of a head's references -- ``(B, Q, R)`` for every
    layer (Conditional DETR), ``(L, B, Q, R)`` (DAB-DETR) or a list per
    layer (Deformable DETR, DINO) -- as the one form our heads take: a list
    of ``(B, Q, R)``, one per layer."""
    if not torch.is_tensor(references):
        return list(references)
    if references.dim() == 3:
        return [references] * num_layers
    return list(references.unbind(0))


def fill_zero_weights(model: nn.Module, seed: int = 0,
                      std: float = 0.02) -> nn.Module:
    """Give every all-zero parameter (zero-initialized biases, DAB-DETR's
    last box layer) small random values, so that a comparison exercises
    every term (with DAB's zero box layer, boxes would equal the anchors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    return model


def build_r50_pair(variant: str = 'detr', fill_zeros: bool = False
                   ) -> Tuple[nn.Module, nn.Module]:
    """mmdet's R50 model of a DETR ``variant`` (a key of
    :data:`R50_CONFIGS`) and ours with its weights: ``(theirs, ours)``;
    ``fill_zeros``: :func:`fill_zero_weights` first."""
    from detr_plugin.checkpoint import mmdet_to_plugin
    theirs = build_mmdet_model(mmdet_config_path(R50_CONFIGS[variant]))
    if fill_zeros:
        fill_zero_weights(theirs)
    ours = build_plugin_model(osp.join(REPO_CONFIG_DIR, R50_CONFIGS[variant]))
    ours.load_state_dict(mmdet_to_plugin(theirs.state_dict()), strict=True)
    return theirs, ours


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
               seed: int = 0,
               with_masks: bool = False):
    """Normalised inputs padded to one shape, and their data samples.

    Args:
        img_shapes: ``(h, w)`` of each image before padding.
        num_gts: boxes per image.
        with_masks: also ``gt_instances.masks`` (each box filled), padded to
            the batch input shape as ``pad_mask=True`` pads them (panoptic
            models read them).

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
        if with_masks:
            masks = np.zeros((n, pad_h, pad_w), np.uint8)
            for mask, (x1, y1, x2, y2) in zip(
                    masks,
                    sample.gt_instances.bboxes.round().int().tolist()):
                mask[y1:y2, x1:x2] = 1
            sample.gt_instances.masks = BitmapMasks(masks, pad_h, pad_w)
        samples.append(sample)
    return inputs, samples
