"""Checks of a config's data before the first iteration.

``check_dataset_config(cfg, 'train')`` audits every COCO dataset of
``train_dataloader`` (through ``RepeatDataset``/``ConcatDataset``-style
wrappers), its evaluator's annotation file for ``val``/``test``, and the
model's ``num_classes``, and raises one :class:`DatasetCheckError` listing
every problem that would make the run fail or silently learn nothing, each
naming the config key, the file, the image or annotation ids and the fix.
Warnings (e.g. annotations of unknown images) are logged; unusable boxes are
reported by the dataset itself when it drops them
(:class:`.coco_dataset.CocoDatasetChecksMixin`), once.
"""
import os.path as osp
from typing import Iterator, List, Tuple

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.config import Config
from mmengine.logging import print_log

from .coco_annotations import (DatasetCheckError, load_coco_json,
                               match_classes)
from .dataset_report import DatasetReport, audit_coco_dataset

SPLITS = ('train', 'val', 'test')


def iter_dataset_configs(dataset_cfg: dict,
                         key: str) -> Iterator[Tuple[str, dict]]:
    """``(key, config)`` of each leaf dataset under wrappers
    (``dataset=`` as in ``RepeatDataset``, ``datasets=[...]`` as in
    ``ConcatDataset``)."""
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        for i, sub in enumerate(dataset_cfg['datasets']):
            yield from iter_dataset_configs(sub, f'{key}.datasets[{i}]')
    elif isinstance(dataset_cfg.get('dataset'), dict):
        yield from iter_dataset_configs(dataset_cfg['dataset'],
                                        f'{key}.dataset')
    else:
        yield key, dataset_cfg


def _reads_plain_coco(cls) -> bool:
    """Whether ``cls`` reads its file as mmdet's ``CocoDataset`` does (or
    with :class:`.coco_dataset.CocoDatasetChecksMixin` on top); subclasses
    such as ``LVISV1Dataset`` or ``Objects365V2Dataset`` parse other
    layouts that these checks would misjudge."""
    from .coco_dataset import CocoDatasetChecksMixin
    allowed = {
        name: {getattr(MMDetCocoDataset, name),
               getattr(CocoDatasetChecksMixin, name)}
        for name in ('load_data_list', 'parse_data_info')}
    return all(getattr(cls, name) in funcs for name, funcs in allowed.items())


def _dataset_class(type_):
    """The class a dataset ``type`` builds in the ``detr_plugin`` scope."""
    if isinstance(type_, type):
        return type_
    from ..registry import DATASETS
    try:
        return DATASETS.get(type_)
    except Exception:  # a type from an unimported scope
        return None


def audit_split(cfg: Config, split: str, check_files: bool = True,
                decode_images: bool = False) -> List[DatasetReport]:
    """A :class:`DatasetReport` per dataset of ``{split}_dataloader``, plus
    the ``num_classes`` and evaluator problems added to the first report's
    ``errors``. Nothing is raised; see :func:`check_dataset_config`."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        return []
    reports = []
    for key, ds_cfg in iter_dataset_configs(
            loader['dataset'], f'{split}_dataloader.dataset'):
        cls = _dataset_class(ds_cfg.get('type'))
        if cls is None or not issubclass(cls, MMDetCocoDataset):
            reports.append(DatasetReport(
                key=key, skipped=f'type {ds_cfg.get("type")!r} is not a '
                'CocoDataset'))
            continue
        if not _reads_plain_coco(cls):
            reports.append(DatasetReport(
                key=key, skipped=f'type {ds_cfg.get("type")!r} reads its '
                'annotations its own way (e.g. LVIS, Objects365)'))
            continue
        classes = (ds_cfg.get('metainfo') or {}).get('classes') or \
            cls.METAINFO['classes']
        if isinstance(classes, str):
            classes = (classes, )
        reports.append(audit_coco_dataset(
            ds_cfg, key, tuple(classes),
            test_mode=ds_cfg.get('test_mode', False),
            check_files=check_files, decode_images=decode_images))
    if reports:
        first = next((r for r in reports if not r.skipped), reports[0])
        first.errors += _num_classes_errors(cfg, reports)
        first.errors += _evaluator_errors(cfg, split, reports)
    return reports


def _head_num_classes(model_cfg) -> List[Tuple[str, int]]:
    """``(key, num_classes)`` of the model's box heads."""
    found = []
    for key in ('bbox_head', 'roi_head.bbox_head'):
        node = model_cfg
        for part in key.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        heads = node if isinstance(node, (list, tuple)) else [node]
        for head in heads:
            if isinstance(head, dict) and 'num_classes' in head:
                found.append((f'model.{key}.num_classes',
                              head['num_classes']))
    return found


def _num_classes_errors(cfg: Config, reports) -> List[str]:
    errors = []
    for head_key, num_classes in _head_num_classes(cfg.get('model') or {}):
        for report in reports:
            if report.skipped or not report.classes or \
                    len(report.classes) == num_classes:
                continue
            errors.append(
                f'{head_key} is {num_classes} but {report.key} has '
                f'{len(report.classes)} classes {report.classes[:10]} (its '
                'metainfo.classes). Labels would not match the classifier '
                '(out-of-range labels, or classes never trained and AP 0). '
                f'Fix: set {head_key}={len(report.classes)}, or list the '
                f'{num_classes} class names in metainfo.classes.')
            break
    return errors


def _reads_coco_instances(metric_cfg: dict) -> bool:
    """Whether a metric reads its ``ann_file`` as COCO instances: a
    ``CocoMetric`` (or a type from an unimported scope); not, e.g.,
    ``CocoPanopticMetric``, whose file lists ``segments_info``."""
    from mmdet.evaluation import CocoMetric

    from ..registry import METRICS
    type_ = metric_cfg.get('type')
    try:
        cls = type_ if isinstance(type_, type) else METRICS.get(type_)
    except Exception:
        cls = None
    return cls is None or issubclass(cls, CocoMetric)


def _evaluator_errors(cfg: Config, split: str, reports) -> List[str]:
    """The evaluator's own annotation file (``CocoMetric(ann_file=...)``):
    present, COCO-shaped, with the classes."""
    if split == 'train':
        return []
    metrics = cfg.get(f'{split}_evaluator') or []
    metrics = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    audited = {osp.abspath(r.ann_file) for r in reports if r.ann_file}
    classes = next((r.classes for r in reports if r.classes), None)
    errors = []
    for i, metric in enumerate(metrics):
        ann_file = metric.get('ann_file') if isinstance(metric, dict) \
            else None
        if not ann_file or '://' in ann_file or \
                osp.abspath(ann_file) in audited or \
                not _reads_coco_instances(metric):
            continue
        key = f'{split}_evaluator' + (f'[{i}]' if len(metrics) > 1 else '')
        try:
            coco = load_coco_json(ann_file, f'{key}.ann_file',
                                  images_only=metric.get('format_only',
                                                         False))
            if classes:
                match_classes(classes, coco['categories'], ann_file,
                              f'{split}_dataloader.dataset.metainfo.classes')
        except DatasetCheckError as e:
            errors.append(str(e))
    return errors


def check_dataset_config(cfg: Config, split: str = 'train',
                         check_files: bool = True,
                         decode_images: bool = False
                         ) -> List[DatasetReport]:
    """Raise if ``{split}_dataloader`` would fail or learn nothing.

    Checked: the annotation file exists, is JSON and COCO-shaped; the classes
    are its category names, in its order; ``num_classes`` of the model's box
    head equals the number of classes; the image folder and (with
    ``check_files``, a ``stat`` per image) every image file exist (with
    ``decode_images`` they also decode); a training set keeps at least one
    image after ``filter_cfg`` and has boxes; with ``invalid_boxes='error'``
    on the dataset, no box is unusable. The evaluator's annotation file of
    ``val``/``test`` is checked too.

    Args:
        cfg: the full config (``tools/train.py`` passes it after
            ``--cfg-options``).
        split: ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        The :class:`DatasetReport` of each dataset; their warnings are
        logged.

    Raises:
        DatasetCheckError: every error found, numbered, in one message.
    """
    reports = audit_split(cfg, split, check_files, decode_images)
    errors = [e for r in reports for e in r.errors]
    for warning in (w for r in reports for w in r.warnings):
        print_log(warning, logger='current', level=30)
    if errors:
        where = f' ({cfg.filename})' if cfg.filename else ''
        raise DatasetCheckError(
            f'the {split} data of the config{where} cannot be used:\n' +
            '\n'.join(f'  {i}. {e}' for i, e in enumerate(errors, 1)))
    return reports
