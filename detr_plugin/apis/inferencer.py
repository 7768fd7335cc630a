"""Detect objects in image files with a config and a checkpoint, through
mmdet's ``init_detector`` (the model), mmengine's ``CheckpointLoader`` (the
checkpoint: weights, class names from its ``meta.dataset_meta``),
``inference_detector`` and ``DetLocalVisualizer``.
"""
import copy
import glob
import os
import os.path as osp
from functools import cached_property
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import Compose
from mmdet.apis.det_inferencer import IMG_EXTENSIONS
from mmdet.structures import DetDataSample
from mmengine.config import Config


def list_images(source: str) -> List[str]:
    """An image file, the images of a folder (not recursive) or a glob
    pattern (``**`` recursive), sorted; ``FileNotFoundError`` if none."""
    if osp.isfile(source):
        return [source]
    if osp.isdir(source):
        paths = [osp.join(source, name) for name in sorted(
            os.listdir(source))]
    else:
        paths = sorted(glob.glob(source, recursive=True))
    images = [p for p in paths
              if osp.isfile(p) and p.lower().endswith(IMG_EXTENSIONS)]
    if not images:
        raise FileNotFoundError(f'no image ({", ".join(IMG_EXTENSIONS)}) '
                                f'found at {source!r}')
    return images


def rescaled(result: DetDataSample, scale: float,
             shape: Tuple[int, int]) -> DetDataSample:
    """The predictions of ``result`` for the image resized by ``scale`` to
    ``shape`` ``(h, w)``: boxes scaled, masks and the panoptic map resized
    (nearest)."""
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    pred = result.pred_instances.clone()
    pred.bboxes = pred.bboxes * scale
    if 'masks' in pred:
        pred.masks = F.interpolate(pred.masks[None].float(), shape)[0] > 0.5
    out = DetDataSample(pred_instances=pred)
    if 'pred_panoptic_seg' in result:
        seg = result.pred_panoptic_seg.sem_seg
        out.pred_panoptic_seg = PixelData(sem_seg=F.interpolate(
            seg[None].float(), shape)[0].to(seg.dtype))
    return out


class DETRInferencer:
    """A detector ready for images, on ``device``, in eval mode.

    Args:
        config: config file or ``Config`` (built in its ``default_scope``).
        checkpoint: weights to load; None keeps the initialisation (tests).
        palette: box colours, as mmdet's ``init_detector`` takes them
            (``'none'``: the config's dataset palette, else random).
    """

    def __init__(self,
                 config: Union[str, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 palette: str = 'none') -> None:
        import warnings

        from mmdet.apis import init_detector
        from mmengine.runner import CheckpointLoader

        # allow-lists mmengine's checkpoint types for weights_only loading
        # and registers mmdet's transforms / visualizers for our scope
        from .. import engine  # noqa: F401
        cfg = config if isinstance(config, Config) else \
            Config.fromfile(str(config))
        if not (cfg.get('test_dataloader') or {}).get('dataset'):
            raise ValueError(
                f'{cfg.filename or "the config"} has no test_dataloader (a '
                'config that only trains, e.g. a panoptic box stage): images '
                'are read with its test pipeline. Use the config of a stage '
                'that tests, or give this one a test_dataloader.')
        loaded = None if checkpoint is None else \
            CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        with warnings.catch_warnings(record=True) as caught:
            self.model = init_detector(  # it edits a Config it is given
                copy.deepcopy(cfg) if cfg is config else cfg, None,
                palette=palette, device=device)
        for w in caught:  # the checkpoint's classes replace COCO's (below)
            if loaded is None or 'checkpoint is None' not in str(w.message):
                warnings.warn_explicit(w.message, w.category, w.filename,
                                       w.lineno)  # where init_detector warned
        self.cfg = self.model.cfg
        if loaded is not None:
            self.fit_checkpoint(checkpoint, loaded, palette)

    def fit_checkpoint(self, path: str, loaded: dict,
                       palette: str = 'none') -> None:
        """Load the checkpoint ``loaded`` from ``path`` into the model, as
        ``init_detector`` would, but refusing one with tensors of other
        shapes, or without some of the model's (``init_detector`` loads with
        ``strict=False``: a misfit classifier or missing layers would predict
        at random after a warning), and renaming one in mmdet's layout (of
        DETR or a successor) first (``init_detector`` would warn of every key
        missing before we could rename them), as ``tools/test.py`` does."""
        import warnings

        from ..engine.hooks.adapt_checkpoint import fit_to_model
        state_dict = loaded.get('state_dict', loaded)
        fit_to_model(state_dict, self.model, path, refuse_misfit=True)
        self.model.load_state_dict(state_dict, strict=False)
        # init_detector's (mmdet 3.3.0) classes of a checkpoint, which it
        # looks up only while loading one itself: its meta's dataset_meta
        # (lower-cased keys) or mmdet 2's CLASSES, else COCO's with a warning
        meta = loaded.get('meta') or {}
        found = {k.lower(): v for k, v in meta['dataset_meta'].items()} \
            if 'dataset_meta' in meta else dict(classes=meta['CLASSES']) \
            if 'CLASSES' in meta else {}
        if not found:
            warnings.warn('dataset_meta or class names are not saved in the '
                          "checkpoint's meta data, use COCO classes by "
                          'default.')
        # its palette: the argument, else the config's, else the checkpoint's
        # (init_detector has set 'random' where neither names one)
        if palette != 'none' or self.model.dataset_meta['palette'] != 'random':
            found.pop('palette', None)
        self.model.dataset_meta.update(found)

    @property
    def classes(self) -> Sequence[str]:
        return self.model.dataset_meta['classes']

    def pipeline(self, from_array: bool) -> Compose:
        """The config's test pipeline without ``Load(Panoptic)Annotations``
        (images have none); it loads from a file or, ``from_array``, an
        array."""
        steps = copy.deepcopy(self.cfg.test_dataloader.dataset.pipeline)
        steps = [s for s in steps if s['type'].split('.')[-1] not in
                 ('LoadAnnotations', 'LoadPanopticAnnotations')]
        if from_array:
            steps[0]['type'] = 'mmdet.LoadImageFromNDArray'
        return Compose(steps)

    def __call__(self, image: Union[str, np.ndarray]) -> DetDataSample:
        """Detect in one image (a path, or a BGR ``(H, W, 3)`` uint8 array):
        ``pred_instances`` with ``bboxes`` ``(k, 4)`` xyxy in original-image
        pixels, ``scores`` and ``labels`` ``(k,)`` by descending score (``k``
        = ``test_cfg.max_per_img``); a panoptic model adds ``masks`` to them
        and ``pred_panoptic_seg``."""
        from mmdet.apis import inference_detector
        return inference_detector(
            self.model, image,
            test_pipeline=self.pipeline(isinstance(image, np.ndarray)))

    @cached_property
    def visualizer(self):
        """mmdet's ``DetLocalVisualizer`` from the config (without storage
        backends), knowing the model's classes and palette."""
        import mmdet.visualization  # noqa: F401  (registers it)

        from ..registry import VISUALIZERS
        vis_cfg = copy.deepcopy(self.cfg.get(
            'visualizer', dict(type='DetLocalVisualizer')))
        vis_cfg.update(vis_backends=None, save_dir=None,
                       name=f'detr_inferencer_{id(self)}')
        visualizer = VISUALIZERS.build(vis_cfg)
        visualizer.dataset_meta = self.model.dataset_meta
        return visualizer

    def draw(self, image_path: str, result: DetDataSample, out_file: str,
             score_thr: float, max_side: Optional[int] = None,
             panoptic_file: Optional[str] = None) -> None:
        """Write ``image_path`` with the labelled boxes (and masks, if the
        model predicts them) scoring at least ``score_thr`` to ``out_file``,
        shrunk (predictions scaled) to at most ``max_side`` pixels on its
        longer side; a panoptic prediction, to ``panoptic_file`` when
        given."""
        import mmcv
        image = mmcv.imread(image_path, channel_order='rgb')
        name = osp.basename(image_path)
        scale = min(1., (max_side or np.inf) / max(image.shape[:2]))
        if scale < 1:
            image = mmcv.imrescale(image, scale)
            result = rescaled(result, scale, image.shape[:2])
        detections = DetDataSample(pred_instances=result.pred_instances)
        self.visualizer.add_datasample(
            name, image, detections, draw_gt=False, show=False,
            pred_score_thr=score_thr, out_file=out_file)
        if not panoptic_file or 'pred_panoptic_seg' not in result:
            return
        if (result.pred_panoptic_seg.sem_seg != len(self.classes)).any():
            panoptic = DetDataSample(
                pred_panoptic_seg=result.pred_panoptic_seg)
            self.visualizer.add_datasample(
                name, image, panoptic, draw_gt=False, show=False,
                out_file=panoptic_file)
        else:  # all VOID: nothing to draw (mmdet's drawing needs a segment)
            mmcv.imwrite(image[..., ::-1], panoptic_file)

    def category_ids(self) -> List[int]:
        """COCO ``category_id`` of each label: the COCO ids for COCO's 80
        (and COCO panoptic's 133) classes in mmdet's order and for the 91
        official rows (label = id);
        otherwise ``label + 1``, the ids of a COCO file numbering its
        categories from 1 in the order of the classes."""
        from ..checkpoint_converters import (COCO_CATEGORY_IDS,
                                             COCO_PANOPTIC_IDS,
                                             coco_class_names)
        for ids in (COCO_CATEGORY_IDS, COCO_PANOPTIC_IDS, range(91)):
            if list(self.classes) == coco_class_names(len(ids)):
                return list(ids)
        return list(range(1, len(self.classes) + 1))


def image_ids(image_paths: Sequence[str]) -> List[int]:
    """A COCO ``image_id`` per image: its file name when every name is a
    number and no two are the same (``000000397133.jpg`` -> 397133), else
    its position in ``image_paths``."""
    stems = [osp.splitext(osp.basename(p))[0] for p in image_paths]
    if all(s.isdigit() for s in stems) and \
            len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(image_paths)))


def coco_results(results: Sequence[DetDataSample],
                 image_paths: Sequence[str], category_ids: Sequence[int],
                 classes: Sequence[str], score_thr: float = 0.,
                 ids: Optional[Sequence[int]] = None) -> List[dict]:
    """Detections as a COCO results list (what ``COCO.loadRes`` reads), one
    dict per box with ``bbox`` ``[x, y, w, h]`` in original-image pixels,
    ``file_name`` and ``category_name``; ``image_id`` from ``ids``
    (default: :func:`image_ids` of ``image_paths``)."""
    ids = image_ids(image_paths) if ids is None else ids
    entries = []
    for image_id, path, result in zip(ids, image_paths, results):
        pred = result.pred_instances
        for box, score, label in zip(pred.bboxes.tolist(),
                                     pred.scores.tolist(),
                                     pred.labels.tolist()):
            if score < score_thr:
                continue
            x1, y1, x2, y2 = box
            entries.append(dict(
                image_id=image_id, file_name=osp.basename(path),
                category_id=int(category_ids[label]),
                category_name=classes[label],
                bbox=[round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                score=round(float(score), 5)))
    return entries
