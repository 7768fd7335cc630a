"""The check of a config's data before the first iteration: its datasets,
loaded by their own code (:class:`.CheckedCocoDataset`, which reports what
the annotation file holds), then what loading does not see: image files,
segment maps, ``num_classes``, the evaluator's annotation file. The runner's
own datasets are checked by ``DataCheckHook`` (before the first iteration),
the check tool's are built here; each annotation file is read once."""
import ast
import os.path as osp
from typing import List, Optional, Tuple

import mmcv
import numpy as np

from mmcv.transforms import LoadImageFromFile
from mmdet.datasets.transforms import LoadPanopticAnnotations
from mmdet.evaluation import CocoMetric, CocoPanopticMetric
from mmengine.config import Config
from mmengine.dist import broadcast_object_list, is_main_process
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


def leaf_datasets(dataset, key: str) -> List[Tuple[str, object]]:
    """``(key, dataset)`` of each leaf of a built dataset under mmengine's
    and mmdet's wrappers (``datasets``: ``ConcatDataset``; ``dataset``:
    ``RepeatDataset``, ``ClassBalancedDataset``, ``MultiImageMixDataset``),
    keyed as :func:`dataset_configs` keys the config."""
    inner = getattr(dataset, 'datasets', None)
    if isinstance(inner, (list, tuple)):
        return [leaf for i, sub in enumerate(inner)
                for leaf in leaf_datasets(sub, f'{key}.datasets[{i}]')]
    if getattr(dataset, 'dataset', None) is not None:
        return leaf_datasets(dataset.dataset, f'{key}.dataset')
    return [(key, dataset)]


def name_dataset_configs(cfg: Config) -> None:
    """Give each :class:`.CheckedCocoDataset` of the config its config key
    (``config_key``), which its messages name."""
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope') or 'detr_plugin'):
        for split in SPLITS:
            loader = cfg.get(f'{split}_dataloader') or {}
            top = f'{split}_dataloader.dataset'
            for key, ds_cfg in dataset_configs(loader.get('dataset') or {},
                                               top):
                cls = registered_class(DATASETS, ds_cfg.get('type'))
                if isinstance(cls, type) and \
                        issubclass(cls, CheckedCocoDataset):
                    ds_cfg.setdefault('config_key', key)


def check_dataset(dataset, key: str, check_files: bool,
                  decode: bool) -> DatasetReport:
    """The report of a built (and loaded, unless lazy) dataset of config
    ``key``: what its loading found, then its image files; other types and
    remote files are not checked (``skipped``)."""
    if not isinstance(dataset, CheckedCocoDataset):
        return DatasetReport(key, skipped=(
            f'type {type(dataset).__name__!r} has no data checks '
            "(CheckedCocoDataset, the base config's type, is mmdet's "
            'CocoDataset with them)'))
    if dataset.backend_args or '://' in dataset.ann_file:
        return DatasetReport(key, skipped=(
            f'files read through backend_args {dataset.backend_args}'
            if dataset.backend_args else
            f'remote annotation file {dataset.ann_file}'))
    dataset.config_key = dataset.config_key or key
    try:
        dataset.full_init()  # a no-op where it has loaded
    except DatasetCheckError as e:
        dataset.report.errors.append(str(e))
    report = dataset.report
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
    return report


def data_infos(dataset):
    """Each image's entry of a loaded dataset (serialized or not)."""
    return dataset.data_list if dataset.data_list else \
        (dataset.get_data_info(i) for i in range(len(dataset)))


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
    for info in data_infos(dataset):
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
    missing, disagree = [], []
    for info in data_infos(dataset):
        path = info['seg_map_path'] or ''
        if not osp.isfile(path):
            missing.append((info['img_id'], path))
            continue
        problem = segment_map_problem(path, info)
        if problem:
            disagree.append((info['img_id'], problem))
    if missing:
        report.errors.append(
            f'{key}: {len(missing)} segment maps of the images of '
            f'{report.ann_file} are missing (image ids '
            f'{ids_text([i for i, _ in missing])}; e.g. {missing[0][1]}): '
            'LoadPanopticAnnotations would stop on the first. Fix: set '
            f"{key}.data_prefix.seg to the folder of the file's PNGs.")
    if disagree:
        report.errors.append(
            f'{key}: {len(disagree)} segment maps disagree with the '
            f'segments_info of {report.ann_file} (image ids '
            f'{ids_text([i for i, _ in disagree])}); the first: '
            f'{disagree[0][1]}. Training would give those images wrong or no '
            'masks. Fix: the PNGs of this file (lossless, one colour per '
            'segment id: R + 256 G + 256^2 B), or the file of these PNGs.')


# a listed segment's pixel count may differ from its area by this share
AREA_TOLERANCE = 0.02


def segment_map_problem(path: str, info: dict) -> str:
    """What is wrong with the segment PNG ``path`` of the image ``info``
    (its ``height``, ``width`` and ``segment_areas``, every segment the file
    lists with its area): another size, ids it holds that the file does not
    list (0 is VOID), listed segments it lacks, or areas that differ; ''
    if nothing."""
    from panopticapi.utils import rgb2id
    with open(path, 'rb') as f:
        png = mmcv.imfrombytes(f.read(), flag='color', channel_order='rgb')
    if png is None:
        return f'{path}: cannot be decoded'
    if png.shape[:2] != (info['height'], info['width']):
        return (f'{path}: {png.shape[0]} x {png.shape[1]} px (h x w), the '
                f'image {info["height"]} x {info["width"]}')
    ids, counts = np.unique(rgb2id(png), return_counts=True)
    found = dict(zip(ids.tolist(), counts.tolist()))
    listed = info['segment_areas']
    unlisted = sorted(set(found) - set(listed) - {0})
    absent = sorted(set(listed) - set(found))
    wrong = [i for i, area in listed.items() if i in found and area and
             abs(found[i] - area) > AREA_TOLERANCE * area + 1]
    if not (unlisted or absent or wrong):
        return ''
    return f'{path}: ' + '; '.join(part for part in (
        unlisted and f'ids {ids_text(unlisted)} are not in segments_info '
        f'({sum(found[i] for i in unlisted)} px)',
        absent and f'segments {ids_text(absent)} of segments_info have no '
        'pixel in it',
        wrong and f'segments {ids_text(wrong)} have ' + ', '.join(
            f'{found[i]} px for an area of {listed[i]}' for i in wrong[:3]))
        if part)


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
        detection = [r for r in reports if r.ann_file and not r.seg_dir]
        if detection and not metric.get('format_only'):
            # a panoptic set's instances file differs from its dataset's by
            # design; a detection set's may not: another split's would score
            # the predictions against other boxes
            errors.append(
                f'{key}.ann_file is {ann_file}, but {detection[0].key} reads '
                f'{detection[0].ann_file}: the metric would compare the '
                'predictions with the annotations of another file (another '
                f"split's: wrong numbers). Fix: {key}.ann_file="
                f"'{detection[0].ann_file}'.")
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
                dataset=None) -> List[DatasetReport]:
    """A :class:`DatasetReport` per dataset of ``{split}_dataloader``, the
    config's problems in the first one's ``errors``; nothing is raised.
    ``dataset``: the split's dataset as the runner built it (else it is
    built here, as the check tool does)."""
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = cfg.get(f'{split}_dataloader') or {}
    if not loader.get('dataset') and dataset is None:
        return []
    key = f'{split}_dataloader.dataset'
    name_dataset_configs(cfg)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope') or 'detr_plugin'):
        if dataset is None:
            dataset = DATASETS.build(dict(loader['dataset'], lazy_init=True))
        reports = [check_dataset(leaf, leaf_key, check_files, decode_images)
                   for leaf_key, leaf in leaf_datasets(dataset, key)]
    first = next((r for r in reports if not r.skipped), reports[0])
    first.errors += config_errors(cfg, split, reports)
    roots = {leaf.data_root for _, leaf in leaf_datasets(dataset, key)
             if getattr(leaf, 'data_root', None)}
    base_root = base_data_root(cfg.filename)
    if base_root in roots and cfg.get('data_root') not in roots:
        first.warn(
            f'data_root is {cfg.data_root!r}, but {key} reads from '
            f'{sorted(roots)}: setting data_root in a child config does not '
            "re-point the datasets its base built with the base's value "
            '(configs/README.md). Fix: restate each dataset dict with '
            'data_root=data_root (and the evaluators\' ann_file).')
    return reports


def base_data_root(filename: str) -> Optional[str]:
    """The ``data_root`` of the bases of the config file ``filename`` when
    the file assigns another one itself, else None."""
    if not (filename and filename.endswith('.py') and osp.isfile(filename)):
        return None
    with open(filename, encoding='utf-8') as f:
        assigned = {target.id: node.value for node in ast.parse(f.read()).body
                    if isinstance(node, ast.Assign) for target in node.targets
                    if isinstance(target, ast.Name)}
    if not {'_base_', 'data_root'} <= set(assigned):
        return None
    try:
        bases = ast.literal_eval(assigned['_base_'])
    except ValueError:
        return None
    for base in [bases] if isinstance(bases, str) else reversed(bases):
        root = Config.fromfile(osp.join(osp.dirname(filename), base)).get(
            'data_root')
        if root is not None:
            return root
    return None


def check_dataset_config(cfg: Config, split: str = 'train',
                         check_files: bool = True,
                         decode_images: bool = False,
                         dataset=None) -> List[DatasetReport]:
    """The reports of :func:`audit_split`, or one :class:`DatasetCheckError`
    listing every problem that would make ``{split}_dataloader`` fail or
    learn nothing. On several processes rank 0 checks and the others get its
    verdict (and ``[]``)."""
    reports, verdict, failure = [], [None], None
    if is_main_process():
        try:
            reports = audit_split(cfg, split, check_files, decode_images,
                                  dataset)
        except Exception as e:  # the other processes must not wait for ever
            failure, verdict[0] = e, (f'the check of the {split} data failed'
                                      f' on rank 0: {type(e).__name__}: {e}')
        errors = [e for r in reports for e in r.errors]
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
