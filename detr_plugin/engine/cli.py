"""What ``tools/train.py`` and ``tools/test.py`` share: flags and config edits.

The flags and their meaning are mmdet 3.x's (``--work-dir``, ``--cfg-options``,
``--launcher``, ``--local-rank``); the one addition is that a machine without
CUDA gets settings that work there (see :func:`adapt_to_device`).
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
from mmengine.registry import DefaultScope, Registry

from . import cpu_autocast
from .hooks.adapt_checkpoint import CheckpointMisfitError
from .safe_checkpoint import CheckpointReadError, UnsafeCheckpointError

# Checkpoint faults whose message names the file, the problem and the fix
CHECKPOINT_FAULTS = (CheckpointMisfitError, CheckpointReadError,
                     UnsafeCheckpointError)


@contextmanager
def one_line_errors(faults=CHECKPOINT_FAULTS):
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
    (as mmdet: ``--work-dir``, else the file's, else ``./work_dirs/<name>``).
    """
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
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


def check_hook_arguments(cfg: Config) -> None:
    """Each hook config of ``default_hooks`` and ``custom_hooks`` gives only
    arguments its class takes: mmengine builds hooks with the runner, and
    ``CheckpointHook`` passes unknown ones to ``Runner.save_checkpoint``,
    which fails at the first save, after an epoch. Else exit with one line
    naming the key."""
    from mmengine.hooks import CheckpointHook

    from ..registry import HOOKS, registered_class
    hooks = [(f'default_hooks.{name}', hook) for name, hook in
             (cfg.get('default_hooks') or {}).items()] + \
        [(f'custom_hooks.{i}', hook)
         for i, hook in enumerate(cfg.get('custom_hooks') or [])]
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for key, hook in hooks:
            kind = hook.get('type') if isinstance(hook, dict) else None
            cls = registered_class(HOOKS, kind)
            if cls is None:
                continue  # none, built, or unknown: the runner names it
            names, open_ended = init_arguments(cls)
            if open_ended and not issubclass(cls, CheckpointHook):
                continue  # e.g. EMAHook: the rest is the model's
            for arg in sorted(set(hook) - names - {'type'}):
                raise SystemExit(unknown_argument(f'{key}.{arg}', cls, arg))


def init_arguments(cls: type) -> Tuple[Set[str], bool]:
    """The keyword arguments ``cls.__init__`` and its bases' take, and
    whether one of them takes ``**kwargs`` too."""
    params = [p for c in cls.__mro__[:-1]  # not object's
              if '__init__' in vars(c)
              for p in signature(c.__init__).parameters.values()]
    return {p.name for p in params if p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {'self'}, \
        any(p.kind is p.VAR_KEYWORD for p in params)


def unknown_argument(key: str, cls: type, arg: str) -> str:
    """One line: config ``key`` gives ``cls`` the argument ``arg`` it does
    not take; the closest one it takes."""
    close = get_close_matches(arg, init_arguments(cls)[0], 1)
    return (f'error: {key}: {cls.__name__} takes no argument {arg!r}' + (
        f' (did you mean {close[0]}?)' if close else '') +
        '; remove or rename it.')


@contextmanager
def named_argument_errors(cfg: Config):
    """End the run with one line naming the config key of an argument
    that a class does not take: Python's ``TypeError`` (through
    mmengine's builders, when the runner builds the model, the optimizer,
    the datasets) names only the class. The key is a dict whose ``type``
    is that class (which does not take the argument), else one without a
    ``type`` (e.g. ``dn_cfg``, given to a class by code); when no key
    holds the argument (a bug, not a typo) the error propagates."""
    try:
        yield
    except TypeError as e:
        found = re.findall(r"(\w+)\.__init__\(\) got an unexpected keyword "
                           r"argument '(\w+)'", str(e))
        if not found:
            raise
        name, arg = found[-1]
        with DefaultScope.overwrite_default_scope(
                cfg.get('default_scope') or 'detr_plugin'):
            typed, untyped = [], []
            for key, node in _config_items(cfg.to_dict()):
                if not isinstance(node, dict) or arg not in node:
                    continue
                cls = _registered_class(node.get('type'))
                if 'type' not in node:
                    untyped.append(f'{key}.{arg}')
                elif cls is not None and cls.__name__ == name and \
                        arg not in init_arguments(cls)[0]:
                    typed.append((f'{key}.{arg}', cls))
            if not (typed or untyped):
                raise
            keys, cls = ([k for k, _ in typed], typed[0][1]) if typed else \
                (untyped, _registered_class(name) or _loaded_class(name))
        raise SystemExit(unknown_argument(' / '.join(keys), cls, arg)
                         if cls else f'error: {" / ".join(keys)}: {e}') \
            from None


def _registered_class(kind) -> Optional[type]:
    """The class a config's ``type`` names in any registry of the current
    scope (``kind`` itself when a class), or None."""
    from .. import registry
    return next(filter(None, (
        registry.registered_class(found, kind)
        for _, found in sorted(vars(registry).items())
        if isinstance(found, Registry))), None)


def _config_items(node, prefix: str = ''):
    """``(key path, value)`` of every entry of a config's nested dicts and
    lists."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, (list, tuple)) else ()
    for name, value in items:
        key = f'{prefix}.{name}' if prefix else str(name)
        yield key, value
        yield from _config_items(value, key)


def _loaded_class(name: str) -> Optional[type]:
    """The loaded class of that name, for one no registry holds (the
    first found where several share it)."""
    stack, seen = [object], set()
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls
        stack.extend(c for c in type.__subclasses__(cls) if c not in seen)
        seen.update(stack)
    return None


def check_pretrained_sources(cfg: Config) -> None:
    """A ``Pretrained`` ``init_cfg`` of the model from ``torchvision://``
    (mmdet's R50 recipes: ``torchvision://resnet50``) needs torchvision,
    which mmengine imports only when training starts, after the runner has
    logged its config; else exit with one line naming the key."""
    at = re.compile(r'\.init_cfg(\.\d+)?\.checkpoint$')  # a dict or a list
    found = [(key, value) for key, value in _config_items(
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
    from .hooks.atomic_checkpoint import find_resumable_checkpoint
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
        cfg.optim_wrapper.loss_scale = 'dynamic'
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
    mmdet's limit on torch dynamo's recompilations."""
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    from mmengine.runner import Runner

    from ..registry import RUNNERS
    setup_cache_size_limit_of_dynamo()
    init_process_group(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
