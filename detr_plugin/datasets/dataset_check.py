"""The check of a config's data before the first iteration: its datasets built
and loaded by their own code (:class:`.CheckedCocoDataset`), then what loading
does not see: image files, ``num_classes``, the evaluator's annotation file."""
import logging
import os.path as osp
from typing import List, Tuple

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import LoadPanopticAnnotations
from mmdet.evaluation import CocoMetric, CocoPanopticMetric
from mmengine.config import Config
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.logging import MMLogger, print_log
from mmengine.registry import DefaultScope

from ..registry import DATASETS, METRICS, registered_class
from .checked_coco import CheckedCocoDataset, DatasetReport
from .coco_annotations import (DatasetCheckError, ids_text, load_coco_json,
                               match_classes)
from .transforms import AddStuffInstances
from .transforms.checked_loading import (
    CheckedLoadImageFromFile, CorruptImageError, corrupt_fix, decode_image,
    image_header, rotates, size_error)

SPLITS = ('train', 'val', 'test')


def dataset_configs(dataset_cfg: dict, key: str) -> List[Tuple[str, dict]]:
    """``(key, config)`` of each leaf dataset under wrappers (``dataset=``
    as in ``RepeatDataset``, ``datasets=[...]`` as in ``ConcatDataset``)."""
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        return [leaf for i, sub in enumerate(dataset_cfg['datasets'])
                for leaf in dataset_configs(sub, f'{key}.datasets[{i}]')]
    if isinstance(dataset_cfg.get('dataset'), dict):
        return dataset_configs(dataset_cfg['dataset'], f'{key}.dataset')
    return [(key, dataset_cfg)]


def check_dataset(ds_cfg: dict, key: str, check_files: bool, decode: bool,
                  hand_off: bool) -> DatasetReport:
    """The report of the dataset of ``ds_cfg`` (config ``key``), built
    through the registry and loaded; other types and remote files are not
    checked (``skipped``)."""
    cls = registered_class(DATASETS, ds_cfg.get('type'))
    if not (isinstance(cls, type) and issubclass(cls, CheckedCocoDataset)):
        return DatasetReport(key, skipped=(
            f'type {ds_cfg.get("type")!r} has no data checks '
            "(CheckedCocoDataset, the base config's type, is mmdet's "
            'CocoDataset with them)'))
    # not serialized: the file check reads the data list
    dataset = DATASETS.build(dict(ds_cfg, lazy_init=True,
                                  serialize_data=False))
    if dataset.backend_args or '://' in dataset.ann_file:
        return DatasetReport(key, skipped=(
            f'files read through backend_args {dataset.backend_args}'
            if dataset.backend_args else
            f'remote annotation file {dataset.ann_file}'))
    dataset.config_key = key
    try:
        dataset.full_init()
    except DatasetCheckError as e:
        dataset.report.errors.append(str(e))
    report = dataset.report
    if report.parsed and not (report.errors or dataset.data_list):
        report.errors.append(  # the file lists images (filter_data)
            f'{key}.indices={ds_cfg.get("indices")!r} keeps none of its '
            'images. Fix: indices=None for all, N > 0 for the first N, or a '
            'list of positions.')
    if report.parsed and not (dataset.test_mode or report.errors
                              or report.num_boxes):
        report.errors.append(
            f'{key}: {report.ann_file} has no usable box of the classes '
            f'{report.classes}: DETR would learn only "no object". Fix: '
            'check metainfo.classes and the boxes.')
    if check_files and report.parsed:
        check_image_files(dataset, decode)
    if report.thing_classes:
        check_panoptic_pipeline(dataset, check_files)
    if hand_off and not report.errors:
        dataset.keep_for_next_build()
    return report


def check_image_files(dataset: CheckedCocoDataset, decode: bool) -> None:
    """Each image the dataset lists exists, has a readable header and whole
    end, and is the size its annotation gives as its loader decodes it
    (decoded when the end is cut or its loader applies an EXIF orientation;
    ``decode``: every image); problems go to its report."""
    report, key = dataset.report, dataset.report.key
    if not osp.isdir(report.img_dir or '.'):
        report.errors.append(
            f'{key}.data_prefix.img: image folder not found: '
            f'{report.img_dir}. Fix: check data_root + data_prefix.img.')
        return
    loader = next((t for t in dataset.pipeline.transforms
                   if isinstance(t, LoadImageFromFile)),
                  CheckedLoadImageFromFile())
    rotated = []  # (img_id, orientation) of rotations that keep the size
    for info in dataset.data_list:  # loaded, not serialized
        img_id, path = info['img_id'], info['img_path']
        size = (info['height'], info['width'])
        if not osp.isfile(path):
            report.missing_files.append((img_id, path))
            continue
        try:
            shape, orientation, whole = image_header(path)
            orientation = orientation if rotates(loader) else 1
            if decode or not whole or orientation != 1:  # as it is loaded
                with open(path, 'rb') as f:
                    shape = decode_image(f.read(), path, loader.color_type,
                                         loader.imdecode_backend).shape[:2]
        except CorruptImageError as e:
            report.corrupt_files.append((img_id, str(e)))
            continue
        if shape != size:
            report.size_mismatch.append((img_id, size, shape))
            if len(report.size_mismatch) == 1:
                first = size_error(path, img_id, key, size, shape,
                                   orientation)
        elif orientation in (2, 3, 4):  # mirrored, or turned 180
            rotated.append((img_id, orientation))
    report.files_checked = 'exist and decode' if decode else \
        'exist, header and end read'
    if report.missing_files:
        ids = [i for i, _ in report.missing_files]
        report.errors.append(
            f'{key}: {len(ids)} of the image files listed in '
            f'{report.ann_file} are missing (image ids {ids_text(ids)}; e.g. '
            f'{report.missing_files[0][1]}). Fix: check data_prefix.img, or '
            'remove those images from the annotation file.')
    if report.corrupt_files:
        ids = [i for i, _ in report.corrupt_files]
        text = (f'{key}: {len(ids)} image files are unreadable (image ids '
                f'{ids_text(ids)}; {report.corrupt_files[0][1]}).')
        if getattr(loader, 'skip_corrupt', False) or loader.ignore_empty:
            report.warn(f"{text} Training skips them (corrupt_images='skip').")
        else:
            report.errors.append(f'{text} {corrupt_fix(key)}.')
    if report.size_mismatch:
        text = (f'{key}: {len(report.size_mismatch)} images are not the size '
                'the annotation file gives (image ids '
                f'{ids_text([i for i, _, _ in report.size_mismatch])}); the '
                f'first: {first}')
        if dataset.size_mismatch == 'rescale':
            report.warn(f"{text} (size_mismatch='rescale': they are resized)")
        else:
            report.errors.append(text)
    if rotated:
        report.warn(
            f'{key}: {len(rotated)} images have an EXIF orientation that '
            'mmcv applies on loading without changing their size (image ids '
            f'{ids_text([i for i, _ in rotated])}; orientations '
            f'{sorted({o for _, o in rotated})}): if their boxes were drawn '
            'on the stored pixels, they are mirrored or rotated. Fix then: '
            "color_type='color_ignore_orientation' in LoadImageFromFile.")


def check_panoptic_pipeline(dataset: CheckedCocoDataset,
                            check_files: bool) -> None:
    """In a panoptic dataset's pipeline, ``AddStuffInstances`` follows the
    loading of the segment map and knows the number of things; with
    ``check_files``, each image has the segment PNG
    ``LoadPanopticAnnotations`` reads (named as the image, ``.jpg`` ->
    ``.png``, under ``data_prefix.seg``)."""
    report, key = dataset.report, dataset.report.key
    steps = dataset.pipeline.transforms
    for i, step in enumerate(steps):
        if not isinstance(step, AddStuffInstances):
            continue
        if not any(isinstance(t, LoadPanopticAnnotations) and t.with_seg
                   for t in steps[:i]):
            report.errors.append(
                f'{key}.pipeline[{i}] (AddStuffInstances) reads the segment '
                'map, which no LoadPanopticAnnotations(with_seg=True) before '
                "it loads: training would stop at its first batch (KeyError:"
                " 'gt_seg_map'). Fix: LoadPanopticAnnotations with "
                'with_seg=True (its default) before it.')
        if step.num_things != len(report.thing_classes):
            report.errors.append(
                f'{key}.pipeline[{i}].num_things is {step.num_things} but '
                f'the dataset has {len(report.thing_classes)} thing classes '
                f'{report.thing_classes[:10]}: stuff would be taken for '
                'things or things for stuff (a num_things variable of a base'
                ' config keeps its value in the pipeline it built). Fix: '
                f'num_things={len(report.thing_classes)} there.')
    if not (check_files and any(isinstance(t, LoadPanopticAnnotations)
                                for t in steps)):
        return
    missing = [(info['img_id'], info['seg_map_path'])
               for info in dataset.data_list
               if not osp.isfile(info['seg_map_path'] or '')]
    if missing:
        report.errors.append(
            f'{key}: {len(missing)} segment maps of the images of '
            f'{report.ann_file} are missing (image ids '
            f'{ids_text([i for i, _ in missing])}; e.g. {missing[0][1]}): '
            'LoadPanopticAnnotations would stop on the first. Fix: set '
            f"{key}.data_prefix.seg to the folder of the file's PNGs.")


def segment_prefix_errors(metric: dict, key: str, reports) -> List[str]:
    """The ground-truth PNGs of a ``CocoPanopticMetric`` (config ``key``)
    are where its dataset reads them (PNGs of another split may have the
    same names: PQ would be computed against them), or at least a folder
    (the metric reads it after the whole inference)."""
    seg = None if metric.get('format_only') else metric.get('seg_prefix')
    r = next((r for r in reports if r.seg_dir and osp.realpath(r.ann_file)
              == osp.realpath(metric['ann_file'])), None)
    if seg and '://' not in seg and not osp.isdir(seg):
        return [f'{key}.seg_prefix: folder not found: {seg} (the ground-truth'
                ' segment PNGs, read after the whole inference). Fix: the '
                f"folder of the PNGs of {metric['ann_file']}."]
    if seg and r and osp.realpath(seg) != osp.realpath(r.seg_dir):
        return [f'{key}.seg_prefix is {seg}, but {r.key} reads the segment '
                f'maps of {r.ann_file} from {r.seg_dir}: PQ would be computed'
                ' against other PNGs (another split\'s have the same names). '
                f'Fix: {key}.seg_prefix={r.seg_dir!r}.']
    return []


def config_errors(cfg: Config, split: str, reports) -> List[str]:
    """Each box head's ``num_classes`` is the number of classes (a panoptic
    model's ``num_things_classes`` the number of things); the
    evaluator's own annotation file (when no dataset read it) is present,
    COCO-shaped and has the classes."""
    errors, model = [], cfg.get('model') or {}
    things = model.get('num_things_classes')
    unset = things is None and \
        getattr(model.get('type'), '__name__',
                str(model.get('type'))).endswith('DETRPanoptic')
    if unset:  # its default: every class a thing
        things = (model.get('bbox_head') or {}).get('num_classes')
    heads = [(f'{key}.num_classes', head.get('num_classes'), 'classes')
             for key, node in (('bbox_head', model.get('bbox_head')),
                               ('roi_head.bbox_head', (model.get(
                                   'roi_head') or {}).get('bbox_head')))
             for head in (node if isinstance(node, (list, tuple)) else [node])
             if isinstance(head, dict)]
    for key, n, field in heads + [
            ('num_things_classes', things, 'thing_classes')]:
        r = next((r for r in reports if n is not None and getattr(r, field)
                  and len(getattr(r, field)) != n), None)
        if r:
            have = getattr(r, field)
            errors.append(
                f'model.{key} is {n}' + (
                    ' (unset: bbox_head.num_classes, every class a thing)'
                    if unset and field == 'thing_classes' else '') +
                f' but {r.key} has {len(have)} '
                f'{field.replace("_", " ")} {have[:10]} (its metainfo.'
                f'{field}): ' + (
                    'out-of-range labels, or classes never trained (AP 0)'
                    if field == 'classes' else 'the panoptic post-processing '
                    'would take stuff for things or things for stuff') +
                f'. Fix: set model.{key}={len(have)}' + (
                    f', or list the {n} class names in metainfo.classes'
                    if field == 'classes' else '') + '.')
    metrics = (cfg.get(f'{split}_evaluator') or []) if split != 'train' else []
    metrics = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    loaded = {osp.abspath(r.ann_file) for r in reports if r.ann_file}
    # COCO instances: a panoptic set's are its things'
    classes = next((r.thing_classes or r.classes for r in reports
                    if r.classes), None)
    for i, metric in enumerate(metrics):
        ann_file = metric.get('ann_file') if isinstance(metric, dict) else ''
        cls = registered_class(METRICS, metric.get('type')) if ann_file \
            else None
        key = f'{split}_evaluator' + (f'[{i}]' if len(metrics) > 1 else '')
        if cls and issubclass(cls, CocoPanopticMetric):
            errors += segment_prefix_errors(metric, key, reports)
        # COCO instances: not, e.g., CocoPanopticMetric's (segments_info)
        if not ann_file or '://' in ann_file or \
                osp.abspath(ann_file) in loaded or \
                (cls and not issubclass(cls, CocoMetric)):
            continue
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
    ``hand_off``: the runner's datasets take the loaded ones over."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = cfg.get(f'{split}_dataloader') or {}
    if not loader.get('dataset'):
        return []
    # only errors are logged: the reports hold what loading logs, and the
    # dataset that takes one over logs it again
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with DefaultScope.overwrite_default_scope(
                cfg.get('default_scope') or 'detr_plugin'):
            reports = [check_dataset(ds_cfg, key, check_files,
                                     decode_images, hand_off)
                       for key, ds_cfg in dataset_configs(
                           loader['dataset'], f'{split}_dataloader.dataset')]
    finally:
        logger.setLevel(level)
    first = next((r for r in reports if not r.skipped), reports[0])
    first.errors += config_errors(cfg, split, reports)
    return reports


def check_dataset_config(cfg: Config, split: str = 'train',
                         check_files: bool = True,
                         decode_images: bool = False,
                         hand_off: bool = False) -> List[DatasetReport]:
    """The reports of :func:`audit_split`, or one :class:`DatasetCheckError`
    listing every problem that would make ``{split}_dataloader`` fail or
    learn nothing. On several processes rank 0 checks and the others get its
    verdict (and ``[]``)."""
    reports, verdict, failure = [], [None], None
    if is_main_process():
        try:
            reports = audit_split(cfg, split, check_files, decode_images,
                                  hand_off)
        except Exception as e:  # the other processes must not wait for ever
            failure, verdict[0] = e, (f'the check of the {split} data failed'
                                      f' on rank 0: {type(e).__name__}: {e}')
        errors = [e for r in reports for e in r.errors]
        if errors or not hand_off:  # no dataset takes the warnings over
            for text in (w for r in reports for w in r.warnings):
                print_log(text, logger='current', level=logging.WARNING)
        if errors:
            verdict[0] = (f'the {split} data of the config' + (
                f' ({cfg.filename})' if cfg.filename else '') + ' cannot be '
                'used:\n' + '\n'.join(f'  {i}. {e}'
                                      for i, e in enumerate(errors, 1)))
    broadcast_object_list(verdict)  # mmengine: nothing on one process
    if failure is not None:
        raise failure
    if verdict[0]:
        raise DatasetCheckError(verdict[0])
    return reports
