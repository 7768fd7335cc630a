"""Detect objects in images with a config and a checkpoint: mmdet's
``DetInferencer`` in this package's scope, whose checkpoint must fit.

mmdet's inferencer loads the checkpoint with ``strict=False``: a classifier
of another class count, or layers the file lacks, would predict at random
after a warning. Here the checkpoint is fitted to the model first
(:func:`detr_plugin.checkpoint.fit_to_model`: one of mmdet's layout renamed,
a misfit refused naming the file and the fix), and every checkpoint scheme
is read without running code (:func:`detr_plugin.checkpoint.
use_safe_loading`).
"""
import copy
from typing import Optional, Sequence, Union

import numpy as np
from mmdet.apis import DetInferencer
from mmdet.structures import DetDataSample
from mmengine.config import Config

from ..checkpoint import fit_to_model, use_safe_loading


class DETRInferencer(DetInferencer):
    """mmdet's ``DetInferencer`` (its ``__call__``, visualizer and outputs)
    for a config of this package; :meth:`predict` detects in one image.

    Args:
        model: config file or ``Config`` (a test pipeline is required).
        weights: checkpoint to load (any scheme); None keeps the
            initialisation (tests).
        device, palette: as ``DetInferencer``'s.
    """

    def __init__(self, model: Union[str, Config],
                 weights: Optional[str] = None, device: str = 'cpu',
                 palette: str = 'none') -> None:
        from .. import engine  # noqa: F401  (mmdet's modules, our scope)
        use_safe_loading()
        cfg = model if isinstance(model, Config) else Config.fromfile(model)
        if not (cfg.get('test_dataloader') or {}).get('dataset'):
            raise ValueError(
                f'{cfg.filename or "the config"} has no test_dataloader (a '
                'config that only trains, e.g. a panoptic box stage): images '
                'are read with its test pipeline. Use the config of a stage '
                'that tests, or give this one a test_dataloader.')
        self.weights = weights
        super().__init__(copy.deepcopy(cfg), weights, device,
                         scope=cfg.get('default_scope', 'detr_plugin'),
                         palette=palette, show_progress=False)

    def _load_weights_to_model(self, model, checkpoint: Optional[dict],
                               cfg) -> None:
        """The checkpoint fitted to the model (refused if it does not fit),
        then mmdet's loading of it and of its class names."""
        if checkpoint is not None:
            fit_to_model(checkpoint.get('state_dict', checkpoint), model,
                         self.weights, refuse_misfit=True)
        super()._load_weights_to_model(model, checkpoint, cfg)

    def _init_pipeline(self, cfg):
        """mmdet's, from the test pipeline without the annotation loaders
        (images have none; a panoptic one would look for a PNG)."""
        cfg = copy.deepcopy(cfg)
        dataset = cfg.test_dataloader.dataset
        dataset.pipeline = [t for t in dataset.pipeline if str(
            t['type']).split('.')[-1] not in ('LoadAnnotations',
                                              'LoadPanopticAnnotations')]
        return super()._init_pipeline(cfg)

    @property
    def classes(self) -> Sequence[str]:
        return self.model.dataset_meta['classes']

    def predict(self, image: Union[str, np.ndarray]) -> DetDataSample:
        """Detect in one image (a path, or a BGR ``(H, W, 3)`` uint8 array):
        ``pred_instances`` with ``bboxes`` ``(k, 4)`` xyxy in original-image
        pixels, ``scores`` and ``labels`` ``(k,)`` by descending score (``k``
        = ``test_cfg.max_per_img``); a panoptic model adds ``masks`` to them
        and ``pred_panoptic_seg``."""
        return self(image, return_datasamples=True, no_save_vis=True,
                    no_save_pred=True)['predictions'][0]
