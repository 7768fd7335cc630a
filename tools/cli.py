"""What ``tools/train.py``, ``tools/test.py`` and the other tools share: the
flags and the checks of a config before anything is built.

The flags and their meaning are mmdet 3.x's (``--work-dir``, ``--cfg-options``,
``--launcher``, ``--local-rank``); a machine without CUDA gets settings that
work there (:func:`adapt_to_device`). A config mistake ends in one line
naming the key and the fix, before the runner is built: a type or an
argument that no class takes (:func:`check_config_arguments`, from the
registries and the classes' signatures), a value of the wrong kind in
``--cfg-options``, a checkpoint that is not a file.
"""
import argparse
import logging
import os
import os.path as osp
import re
from contextlib import contextmanager
from difflib import get_close_matches
from inspect import signature
from typing import Optional, Set, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

from detr_plugin import registry
from detr_plugin.checkpoint import (CheckpointMisfitError,
                                    CheckpointReadError, CheckpointWriteError,
                                    UnsafeCheckpointError,
                                    find_resumable_checkpoint,
                                    use_safe_loading)
from detr_plugin.datasets import DatasetCheckError, name_dataset_configs
from detr_plugin.engine import cpu_autocast

# Faults whose message names the file or key, the problem and the fix: the
# tools end with it alone (no traceback through mmengine's runner)
CHECKPOINT_FAULTS = (CheckpointMisfitError, CheckpointReadError,
                     CheckpointWriteError, UnsafeCheckpointError)
TOOL_FAULTS = CHECKPOINT_FAULTS + (DatasetCheckError, )


@contextmanager
def one_line_errors(faults=TOOL_FAULTS):
    """End a tool's run with ``error: <message>`` (exit status 1) for
    ``faults``, instead of a traceback through mmengine's runner after its
    long log (the message is the last line)."""
    try:
        yield
    except faults as e:
        raise SystemExit(f'error: {e.args[0] if e.args else e}') from None


def check_config_file(path: str) -> None:
    """The config ``path`` is a file; else exit with one line naming the
    closest config of its folder."""
    if osp.isfile(path):
        return
    folder = osp.dirname(path) or '.'
    close = get_close_matches(osp.basename(path), os.listdir(folder), 1) \
        if osp.isdir(folder) else []
    raise SystemExit(f'error: CONFIG {path}: no such file' + (
        f' (did you mean {osp.join(osp.dirname(path), close[0])}?)'
        if close else '') + '.')


def check_checkpoint_file(path: Optional[str], what: str) -> None:
    """The checkpoint ``path`` that ``what`` (a flag or config key) names
    is a file, when local (a URL is left to mmengine's loaders); else exit
    with one line, before the runner is built."""
    if not path or '://' in path or osp.isfile(osp.expanduser(path)):
        return
    raise SystemExit(f'error: {what} {path}: ' + (
        'is a folder, not a checkpoint file' if osp.isdir(path) else
        'no such file') + '. Fix: give the path of a .pth file (e.g. '
        'work_dirs/<config name>/epoch_*.pth, or one converted by '
        'tools/convert_checkpoint.py).')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank``."""
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config: key=value pairs merged into '
        'it, e.g. train_dataloader.batch_size=4 or key="[a,b]"; no white '
        'space is allowed')
    parser.add_argument('--launcher', default='none', help='job launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options``, launcher and work dir applied
    (as mmdet: ``--work-dir``, else the file's, else ``./work_dirs/<name>``),
    its data to be checked (``DataCheckHook``); its types and arguments are
    checked when the runner is built, after the tool's own edits."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    use_safe_loading()  # every checkpoint scheme without running code
    check_config_file(args.config)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.launcher == 'pytorch' and 'RANK' not in os.environ:
        raise SystemExit('error: --launcher pytorch: RANK is not set, so '
                         'this process was not started by torchrun. Fix: '
                         'bash tools/dist_train.sh CONFIG NPROC (or '
                         'dist_test.sh), or no --launcher for one process.')
    if args.cfg_options is not None:
        check_option_types(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    # the data is checked before the first iteration, its messages naming
    # each dataset's config key
    cfg.setdefault('default_hooks', {}).setdefault(
        'data_check', dict(type='DataCheckHook'))
    name_dataset_configs(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if osp.exists(cfg.work_dir) and not osp.isdir(cfg.work_dir):
        raise SystemExit(f'error: the work dir {cfg.work_dir} is a file; '
                         'give --work-dir a folder.')
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader') or {}
        if loader.get('num_workers') == 0 and \
                loader.get('persistent_workers'):
            loader['persistent_workers'] = False  # torch refuses it
            print_log(f'{split}_dataloader.num_workers=0: '
                      'persistent_workers set to False (it needs workers).',
                      logger='current')
    adapt_to_device(cfg)
    return cfg


def check_option_types(cfg: Config, options: dict) -> None:
    """Each ``--cfg-options`` value replacing a number or a bool of the
    config is one too (mmengine would fail later with a raw traceback);
    else exit with one line naming the key."""
    for key, value in options.items():
        old = cfg
        for part in key.split('.'):
            old = old[int(part)] if isinstance(old, (list, tuple)) and \
                part.isdigit() and int(part) < len(old) else \
                old.get(part) if isinstance(old, (dict, Config)) else None
        kind = 'True or False' if isinstance(old, bool) else 'a number' \
            if isinstance(old, (int, float)) else None
        if kind and value is not None and (
                isinstance(value, bool) != isinstance(old, bool)
                or not isinstance(value, (int, float))):
            raise SystemExit(f'error: --cfg-options {key}={value}: expected '
                             f'{kind}, like the config\'s value {old!r}')


# The registries a config key's ``type`` names are looked up in first (then
# every other one): mmdet has a ResNet model, mmcv a ResNet too.
KEY_REGISTRIES = (
    (r'init_cfg', ('WEIGHT_INITIALIZERS', )),
    (r'^model\.', ('MODELS', 'TASK_UTILS')),
    (r'^optim_wrapper\.optimizer', ('OPTIMIZERS', )),
    (r'^optim_wrapper', ('OPTIM_WRAPPERS', )),
    (r'^param_scheduler', ('PARAM_SCHEDULERS', )),
    (r'_hooks', ('HOOKS', )),
    (r'_dataloader\.(batch_)?sampler', ('DATA_SAMPLERS', )),
    (r'\.pipeline', ('TRANSFORMS', )),
    (r'_dataloader', ('DATASETS', )),
    (r'_evaluator', ('METRICS', )),
    (r'^visualizer\.vis_backends', ('VISBACKENDS', )),
    (r'^visualizer', ('VISUALIZERS', )),
)
# arguments that the builder of a key's dict takes out itself (mmcv's
# build_norm_layer: requires_grad; build_plugin_layer: postfix; DETRHead,
# mmdet's and ours: bg_cls_weight; mmengine's build_optim_wrapper: the
# constructor's)
BUILDER_ARGUMENTS = dict(norm_cfg={'requires_grad'}, cfg={'postfix'},
                         loss_cls={'bg_cls_weight'},
                         optim_wrapper={'constructor', 'paramwise_cfg'},
                         # the runner builds by-epoch schedulers per iteration
                         param_scheduler={'convert_to_iter_based'})
CHECKED_KEYS = ('model', 'optim_wrapper', 'param_scheduler', 'default_hooks',
                'custom_hooks', 'train_dataloader', 'val_dataloader',
                'test_dataloader', 'val_evaluator', 'test_evaluator',
                'visualizer')


def class_of(kind, key: str) -> Optional[type]:
    """The class a config's ``type`` names (the registries of ``key``
    first), or None for a function; exit naming the key when no registry
    knows the name."""
    if isinstance(kind, type):
        return kind
    names = [name for pattern, found in KEY_REGISTRIES
             if re.search(pattern, key) for name in found]
    every = sorted(name for name, value in vars(registry).items()
                   if isinstance(value, registry.Registry))
    for name in dict.fromkeys(names + every):
        found = getattr(registry, name).get(kind) \
            if isinstance(kind, str) else kind
        if found is not None:
            return found if isinstance(found, type) else None
    known = set()  # the names of those registries and of their parents
    for name in names or every:
        found = getattr(registry, name)
        while found is not None:
            known |= set(found._module_dict)
            found = found.parent
    close = get_close_matches(str(kind), known, 1)
    raise SystemExit(f'error: {key}: {kind!r} is not a registered type'
                     + (f' (did you mean {close[0]}?)' if close else '') +
                     '; fix the name, or import the module that registers '
                     'it (custom_imports).')


def init_arguments(cls: type) -> Tuple[Set[str], bool]:
    """The keyword arguments ``cls.__init__`` and its bases' take, and
    whether they end in ``**kwargs`` that nothing checks (every
    ``__init__`` of the chain forwards them on)."""
    inits = [signature(c.__init__).parameters.values()
             for c in cls.__mro__[:-1] if '__init__' in vars(c)]
    params = [p for init in inits for p in init]
    open_ended = bool(inits) and all(
        any(p.kind is p.VAR_KEYWORD for p in init) for init in inits)
    return {p.name for p in params if p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}, open_ended


def unknown_argument(key: str, cls: type, arg: str) -> str:
    """One line: config ``key`` gives ``cls`` the argument ``arg`` it does
    not take; the closest one it takes."""
    close = get_close_matches(arg, init_arguments(cls)[0], 1)
    return (f'error: {key}: {cls.__name__} takes no argument {arg!r}' + (
        f' (did you mean {close[0]}?)' if close else '') +
        '; remove or rename it.')


def check_config_arguments(cfg: Config) -> None:
    """Every dict of the config that names a ``type`` names a registered
    class and gives it only arguments it takes, and so do the dicts without
    a type that a class builds from (its ``config_dict_types()``, e.g.
    DETR's ``encoder``, DINO's ``dn_cfg``); else exit with one line naming
    the key and the closest name. mmengine would fail while it builds the
    runner, or (a hook's argument) at the first save, naming the class
    only."""
    from mmengine.hooks import CheckpointHook

    def check(node, key: str, kind=None) -> None:
        if isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                check(item, f'{key}.{i}', kind)
            return
        if not isinstance(node, dict):
            return
        cls = class_of(node.get('type', kind), key) \
            if node.get('type', kind) is not None else None
        if cls is not None:
            names, open_ended = init_arguments(cls)
            # CheckpointHook's **kwargs go to the saving: none is checked
            if not open_ended or issubclass(cls, CheckpointHook):
                extra = BUILDER_ARGUMENTS.get(key.rsplit('.', 1)[-1],
                                              set()) | BUILDER_ARGUMENTS.get(
                    key.split('.', 1)[0], set())
                for arg in sorted(set(node) - names - extra
                                  - {'type', '_scope_'}):
                    raise SystemExit(unknown_argument(f'{key}.{arg}', cls,
                                                      arg))
            if open_ended and not issubclass(cls, CheckpointHook):
                return  # e.g. EMAHook: the rest is its model's
        built = getattr(cls, 'config_dict_types', dict)()
        for arg, value in node.items():
            if arg != 'type':
                check(value, f'{key}.{arg}', built.get(arg))

    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope') or 'detr_plugin'):
        for key in CHECKED_KEYS:
            check(cfg.get(key), key)


def config_items(node, prefix: str = ''):
    """``(key path, value)`` of every entry of a config's nested dicts and
    lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, (list, tuple)) else ()
    for name, value in items:
        key = f'{prefix}.{name}' if prefix else str(name)
        yield key, value
        yield from config_items(value, key)


def check_pretrained_sources(cfg: Config) -> None:
    """A ``Pretrained`` ``init_cfg`` of the model from ``torchvision://``
    (mmdet's R50 recipes: ``torchvision://resnet50``) needs torchvision,
    which mmengine imports only when training starts, after the runner has
    logged its config; else exit with one line naming the key."""
    at = re.compile(r'\.init_cfg(\.\d+)?\.checkpoint$')  # a dict or a list
    found = [(key, value) for key, value in config_items(
        cfg.get('model'), 'model')
        if at.search(key) and str(value).startswith('torchvision://')]
    if not found:
        return
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # missing, or built for another torch
        key = at.sub('.init_cfg', found[0][0])
        raise SystemExit(
            f'error: {key} loads {found[0][1]} through torchvision, which '
            f'does not import here ({type(e).__name__}: {e}). Fix: install '
            'the torchvision release of your torch, or, when load_from '
            f'holds the whole model (fine-tuning), --cfg-options {key}=None:'
            ' load_from replaces those weights anyway.') from None


def check_frozen_detector(cfg: Config) -> None:
    """A model with ``freeze_detector=True`` (a panoptic stage 2) loads its
    detector: from ``load_from``, a checkpoint ``--resume`` finds (which
    drops ``load_from``) or a ``Pretrained`` ``init_cfg``; without any it
    would stay at its random initial weights. Else exit with one line."""
    model = cfg.get('model') or {}
    if not model.get('freeze_detector') or cfg.get('load_from') or \
            model.get('init_cfg'):
        return
    work_dir = cfg.get('work_dir') or ''
    if cfg.get('resume') and osp.isdir(work_dir) and \
            find_resumable_checkpoint(work_dir):
        return
    raise SystemExit(
        'error: model.freeze_detector=True trains the mask head on a frozen '
        'detector, but load_from is not set' + (
            f' (--resume drops it) and {work_dir} holds no checkpoint to '
            'resume' if cfg.get('resume') else '') + ': the detector would '
        'stay random. Fix: --cfg-options load_from=<the box model of stage 1 '
        '(or a converted official panoptic checkpoint)>.')


def adapt_to_device(cfg: Config) -> None:
    """Without CUDA, gloo instead of NCCL (which needs CUDA) and no
    ``device_ids`` for ``MMDistributedDataParallel`` (DDP rejects them for a
    CPU module); an explicit other backend or wrapper type is kept."""
    if torch.cuda.is_available():
        return
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if cfg.launcher != 'none':
        ddp = 'MMDistributedDataParallel'
        wrapper = cfg.get('model_wrapper_cfg') or dict(  # mmengine's default
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        if wrapper.setdefault('type', ddp) == ddp:
            wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper


AMP_DTYPES = ('float16', 'bfloat16')


def enable_amp(cfg: Config, dtype: Optional[str] = None) -> None:
    """Mixed precision (``--amp``, ``--amp-dtype``). On CUDA mmengine's
    ``AmpOptimWrapper`` with a dynamic loss scale, in fp16 unless ``dtype``
    (or the config's ``optim_wrapper.dtype``) says bfloat16. On a CPU
    :class:`CPUAutocastOptimWrapper`: bf16 where the CPU has it natively
    (fp16 when asked: loss-scaled, slow on most CPUs); on other CPUs fp32
    with a warning, unless ``dtype`` or the config names that wrapper."""
    if dtype is not None and dtype not in AMP_DTYPES:
        raise SystemExit(f'error: --amp-dtype {dtype}: choose one of '
                         f'{", ".join(AMP_DTYPES)}')
    dtype = dtype or cfg.optim_wrapper.get('dtype')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')  # or given
        cfg.optim_wrapper.dtype = dtype or 'float16'
    elif dtype or cpu_autocast.native_bf16() or \
            cfg.optim_wrapper.get('type') == 'CPUAutocastOptimWrapper':
        cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
        cfg.optim_wrapper.dtype = dtype or 'bfloat16'
    else:
        print_log(
            '--amp: this CPU has no native bf16 (torch.ops.mkldnn.'
            '_is_mkldnn_bf16_supported() is False; capability '
            f'{torch.backends.cpu.get_cpu_capability()}), where bf16 autocast'
            ' makes training 8-24x slower: training in fp32 instead. To '
            'force bf16: --amp-dtype bfloat16', logger='current',
            level=logging.WARNING)


def enable_auto_scale_lr(cfg: Config) -> None:
    """Scale the LR by (total batch size) / ``auto_scale_lr.base_batch_size``.
    """
    if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
        raise SystemExit('error: --auto-scale-lr needs auto_scale_lr = dict('
                         'base_batch_size=...) in the config: the total '
                         'batch size its learning rate is set for.')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` (``'auto'``: the latest checkpoint in ``work_dir``) or
    ``--resume CKPT``; resuming takes precedence over ``load_from``."""
    if resume == '':
        raise SystemExit('error: --resume got an empty path (an unset '
                         'variable?): give a checkpoint, or --resume alone '
                         'for the newest one in the work dir.')
    if resume is not None:
        cfg.resume = True
        cfg.load_from = None if resume == 'auto' else resume


def refuse_misfit_checkpoints(cfg: Config) -> None:
    """Make the config's ``AdaptCheckpointHook`` (or a new one) refuse a
    checkpoint with tensors of other shapes than the model's: mmengine
    would warn and evaluate them random (``tools/test.py``)."""
    hooks = [h for h in cfg.get('custom_hooks') or []
             if isinstance(h, dict) and h.get('type') == 'AdaptCheckpointHook']
    for hook in hooks:
        hook['on_mismatch'] = 'error'
    if not hooks:
        cfg.custom_hooks = [*(cfg.get('custom_hooks') or []), dict(
            type='AdaptCheckpointHook', on_mismatch='error')]


def init_process_group(cfg: Config) -> None:
    """mmengine's ``init_dist`` for ``cfg.launcher``, before the runner
    (which uses the group it finds): the data check runs on rank 0 and
    shares its verdict. Without CUDA, its ``torch.cuda.set_device`` raises on
    a CPU-only torch; it is made a no-op, the rest of ``init_dist`` kept."""
    from contextlib import nullcontext
    from unittest import mock

    from mmengine.dist import init_dist, is_distributed
    if cfg.launcher == 'none' or is_distributed():
        return
    with nullcontext() if torch.cuda.is_available() else mock.patch(
            'torch.cuda.set_device', lambda device: None):
        init_dist(cfg.launcher, **cfg.env_cfg.get('dist_cfg', {}))


def build_runner(cfg: Config):
    """mmengine's ``Runner``, or ``cfg.runner_type`` from our registry, with
    mmdet's limit on torch dynamo's recompilations, once the config's types
    and arguments passed :func:`check_config_arguments`."""
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.runner import Runner

    from detr_plugin.registry import RUNNERS
    check_config_arguments(cfg)
    setup_cache_size_limit_of_dynamo()
    init_process_group(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
