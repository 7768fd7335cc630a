"""The check of a config's data before the first iteration: the datasets
built from the config and loaded by their own code
(:class:`.CheckedCocoDataset`), plus what loading does not see."""
import logging
import os.path as osp
from contextlib import contextmanager
from typing import List, Optional, Tuple

from mmengine.config import Config
from mmengine.dist import (broadcast_object_list, get_world_size,
                           is_main_process)
from mmengine.logging import MMLogger, print_log
from mmengine.registry import DefaultScope

from ..registry import DATASETS
from .checked_coco import CheckedCocoDataset, DatasetReport
from .coco_annotations import (DatasetCheckError, ids_text, load_coco_json,
                               match_classes)
from .transforms import CorruptImageError, decode_image

SPLITS = ('train', 'val', 'test')


@contextmanager
def _reported_not_logged():
    """Only errors from the current logger: what the datasets would log is
    in their reports (and logged by the dataset that takes one over)."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def dataset_configs(dataset_cfg: dict, key: str) -> List[Tuple[str, dict]]:
    """``(key, config)`` of each leaf dataset under wrappers (``dataset=``
    as in ``RepeatDataset``, ``datasets=[...]`` as in ``ConcatDataset``)."""
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        return [leaf for i, sub in enumerate(dataset_cfg['datasets'])
                for leaf in dataset_configs(sub, f'{key}.datasets[{i}]')]
    if isinstance(dataset_cfg.get('dataset'), dict):
        return dataset_configs(dataset_cfg['dataset'], f'{key}.dataset')
    return [(key, dataset_cfg)]


def load_dataset(ds_cfg: dict, key: str, check_files: bool = True,
                 decode_images: bool = False, hand_off: bool = False
                 ) -> Tuple[Optional[CheckedCocoDataset], DatasetReport]:
    """The dataset of ``ds_cfg`` (config ``key``) built through the registry
    and loaded, its image files checked, and its report, holding the errors
    found. Other types and remote files are not checked (``skipped``)."""
    kind = ds_cfg.get('type')
    try:
        cls = kind if isinstance(kind, type) else DATASETS.get(kind)
    except Exception:  # a type of an unimported scope
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, CheckedCocoDataset)):
        return None, DatasetReport(key, skipped=(
            f'type {kind!r} has no data checks (CheckedCocoDataset, the base '
            "config's type, is mmdet's CocoDataset with them)"))
    # serialized after the file check, which reads the data list
    dataset = DATASETS.build(dict(ds_cfg, lazy_init=True,
                                  serialize_data=False))
    if dataset.backend_args or '://' in dataset.ann_file:
        return None, DatasetReport(key, skipped=(
            f'files read through backend_args {dataset.backend_args}'
            if dataset.backend_args else
            f'remote annotation file {dataset.ann_file}'))
    dataset.config_key = key
    try:
        dataset.full_init()
    except DatasetCheckError as e:
        dataset.report.errors.append(str(e))
    report = dataset.report
    if not dataset.test_mode and report.parsed and not report.errors \
            and report.num_boxes == 0:
        report.errors.append(
            f'{key}: {report.ann_file} has no usable box of the classes '
            f'{report.classes}: DETR would learn only "no object". Fix: '
            'check metainfo.classes and the boxes.')
    if check_files and report.parsed:
        check_image_files(dataset, decode_images)
    if hand_off and not report.errors:
        if ds_cfg.get('serialize_data', True):
            # the step full_init skipped above; mmengine has no public call
            dataset.data_bytes, dataset.data_address = \
                dataset._serialize_data()
        dataset.keep_for_next_build()
    return dataset, report


def check_image_files(dataset: CheckedCocoDataset, decode: bool) -> None:
    """Each image the dataset lists exists; with ``decode`` it also decodes,
    to the size its annotation gives. Found problems go to its report."""
    report = dataset.report
    if not osp.isdir(report.img_dir or '.'):
        report.errors.append(
            f'{report.key}.data_prefix.img: image folder not found: '
            f'{report.img_dir}. Fix: check data_root + data_prefix.img.')
        return
    for info in dataset.data_list:  # loaded, not serialized
        img_id, path = info['img_id'], info['img_path']
        size = (info['height'], info['width'])
        if not osp.isfile(path):
            report.missing_files.append((img_id, path))
        elif decode:
            with open(path, 'rb') as f:
                try:
                    shape = decode_image(f.read(), path).shape[:2]
                except CorruptImageError as e:
                    report.corrupt_files.append((img_id, str(e)))
                    continue
            if shape != size:
                report.size_mismatch.append((img_id, size, shape))
    report.files_checked = 'exist and decode' if decode else 'exist'
    if report.missing_files:
        ids = [i for i, _ in report.missing_files]
        report.errors.append(
            f'{report.key}: {len(ids)} of the image files listed in '
            f'{report.ann_file} are missing (image ids {ids_text(ids)}; e.g. '
            f'{report.missing_files[0][1]}). Fix: check data_prefix.img, or '
            'remove those images from the annotation file.')
    if report.corrupt_files:
        ids = [i for i, _ in report.corrupt_files]
        text = (f'{report.key}: {len(ids)} image files are unreadable '
                f'(image ids {ids_text(ids)}; {report.corrupt_files[0][1]}).')
        skips = [getattr(t, 'skip_corrupt', False) or getattr(
            t, 'ignore_empty', False) for t in dataset.pipeline.transforms]
        if any(skips):
            report.warn(f"{text} Training skips them (corrupt_images='skip').")
        else:
            report.errors.append(
                f'{text} Fix: replace or delete them, or skip them while '
                "training with corrupt_images='skip' in "
                f'{report.key} (a CheckedCocoDataset).')
    if report.size_mismatch:
        img_id, declared, actual = report.size_mismatch[0]
        report.warn(
            f'{report.key}: {len(report.size_mismatch)} images decode to a '
            'size other than their width/height in the annotation file '
            f'(e.g. image {img_id}: {declared} declared, {actual} decoded, '
            'as (h, w)); their boxes may be misplaced (an EXIF rotation?).')


def config_errors(cfg: Config, split: str, reports) -> List[str]:
    """Each box head's ``num_classes`` is the number of classes; the
    evaluator's own annotation file (when no dataset read it) is present,
    COCO-shaped and has the classes."""
    errors, model = [], cfg.get('model') or {}
    for key in ('bbox_head', 'roi_head.bbox_head'):
        node = model
        for part in key.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        for head in node if isinstance(node, (list, tuple)) else [node]:
            n = head.get('num_classes') if isinstance(head, dict) else None
            r = next((r for r in reports if n is not None and r.classes
                      and len(r.classes) != n), None)
            if r:
                key = f'model.{key}.num_classes'
                errors.append(
                    f'{key} is {n} but {r.key} has {len(r.classes)} classes '
                    f'{r.classes[:10]} (its metainfo.classes). Labels would '
                    'not match the classifier (out-of-range labels, or '
                    'classes never trained and AP 0). Fix: set '
                    f'{key}={len(r.classes)}, or list the {n} class names in '
                    'metainfo.classes.')
    metrics = cfg.get(f'{split}_evaluator') or [] if split != 'train' else []
    metrics = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    loaded = {osp.abspath(r.ann_file) for r in reports if r.ann_file}
    classes = next((r.classes for r in reports if r.classes), None)
    for i, metric in enumerate(metrics):
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else ''
        if not ann_file or '://' in ann_file or \
                osp.abspath(ann_file) in loaded:
            continue
        key = f'{split}_evaluator' + (f'[{i}]' if len(metrics) > 1 else '')
        try:
            coco = load_coco_json(ann_file, f'{key}.ann_file',
                                  metric.get('format_only', False))
            if classes:
                match_classes(classes, coco['categories'], ann_file,
                              f'{split}_dataloader.dataset.metainfo.classes')
        except DatasetCheckError as e:
            errors.append(str(e))
    return errors


def audit_split(cfg: Config, split: str, check_files: bool = True,
                decode_images: bool = False,
                hand_off: bool = False) -> List[DatasetReport]:
    """A :class:`DatasetReport` per dataset of ``{split}_dataloader``, the
    config's problems in the first one's ``errors``; nothing is raised.
    Loading checks the annotation file (exists, JSON, COCO-shaped), the
    classes (its categories, in order), the boxes, a training set's images
    after ``filter_cfg``; then a training set must have boxes, the image
    folder and files exist (``check_files``; ``decode_images``: and decode),
    ``num_classes`` fit and the evaluator's annotation file load."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = cfg.get(f'{split}_dataloader') or {}
    if not loader.get('dataset'):
        return []
    reports = []
    with _reported_not_logged(), DefaultScope.overwrite_default_scope(
            cfg.get('default_scope') or 'detr_plugin'):
        for key, ds_cfg in dataset_configs(loader['dataset'],
                                           f'{split}_dataloader.dataset'):
            reports.append(load_dataset(ds_cfg, key, check_files,
                                        decode_images, hand_off)[1])
    first = next((r for r in reports if not r.skipped), reports[0])
    first.errors += config_errors(cfg, split, reports)
    return reports


def check_dataset_config(cfg: Config, split: str = 'train',
                         check_files: bool = True,
                         decode_images: bool = False,
                         hand_off: bool = False) -> List[DatasetReport]:
    """Raise one :class:`DatasetCheckError` listing every problem that
    would make ``{split}_dataloader`` fail or learn nothing (see
    :func:`audit_split`), or return the reports. On several processes the
    check runs on rank 0 and the others get its verdict (and ``[]``).
    ``hand_off``: the runner's datasets take the loaded ones over."""
    reports, verdict, failure = [], None, None
    if is_main_process():
        try:
            reports = audit_split(cfg, split, check_files, decode_images,
                                  hand_off)
        except Exception as e:  # the other processes must not wait for ever
            failure, verdict = e, (f'the check of the {split} data failed '
                                   f'on rank 0: {type(e).__name__}: {e}')
        errors = [e for r in reports for e in r.errors]
        if errors or not hand_off:  # no dataset takes the warnings over
            for text in (w for r in reports for w in r.warnings):
                print_log(text, logger='current', level=logging.WARNING)
        if errors:
            where = f' ({cfg.filename})' if cfg.filename else ''
            verdict = (f'the {split} data of the config{where} cannot be '
                       'used:\n' + '\n'.join(
                           f'  {i}. {e}' for i, e in enumerate(errors, 1)))
    if get_world_size() > 1:
        shared = [verdict]
        broadcast_object_list(shared)
        verdict = shared[0]
    if failure is not None:
        raise failure
    if verdict:
        raise DatasetCheckError(verdict)
    return reports
