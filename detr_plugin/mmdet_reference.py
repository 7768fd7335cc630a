"""Build this package's DETR and mmdet 3.3.0's DETR side by side.

Used by the parity tests and ``tools/benchmark.py``: both models come from
their own configs (pretrained initialisation off) and share weights through
the mmdet converter, so any difference between them is a difference in code.
"""
import logging
import os.path as osp
from typing import Tuple

from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

REPO_CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                           'configs')
# ours has mmdet's name, under configs/ of this repository
MMDET_DETR_R50 = 'detr/detr_r50_8xb2-150e_coco.py'


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
    import detr_plugin  # noqa: F401  (registers the modules)
    from detr_plugin.registry import MODELS
    cfg = load_config(cfg_or_path) if isinstance(cfg_or_path, str) \
        else cfg_or_path
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        model = MODELS.build(cfg.model)
    return _init_quietly(model)


def build_mmdet_model(path: str) -> nn.Module:
    """Build (and initialise) mmdet's own model from one of its configs."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(load_config(path).model)
    return _init_quietly(model)


def build_r50_pair() -> Tuple[nn.Module, nn.Module]:
    """mmdet's DETR R50 and ours with mmdet's weights: ``(theirs, ours)``."""
    from .checkpoint_converters import mmdet_to_plugin
    theirs = build_mmdet_model(mmdet_config_path(MMDET_DETR_R50))
    ours = build_plugin_model(osp.join(REPO_CONFIG_DIR, MMDET_DETR_R50))
    ours.load_state_dict(mmdet_to_plugin(theirs.state_dict()), strict=True)
    return theirs, ours
