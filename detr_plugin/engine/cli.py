"""What ``tools/train.py`` and ``tools/test.py`` share: flags and config edits.

The flags and their meaning are mmdet 3.x's (``--work-dir``, ``--cfg-options``,
``--launcher``, ``--local-rank``); the one addition is that a machine without
CUDA gets settings that work there (see :func:`adapt_to_device`).
"""
import argparse
import logging
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from . import cpu_autocast


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
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config with ``--cfg-options``, launcher and work dir applied
    (as mmdet: ``--work-dir``, else the file's, else ``./work_dirs/<name>``).
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    adapt_to_device(cfg)
    return cfg


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
        wrapper = cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        if wrapper.get('type', 'MMDistributedDataParallel') == \
                'MMDistributedDataParallel':
            wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper


def enable_amp(cfg: Config) -> None:
    """Mixed precision: mmengine's ``AmpOptimWrapper`` (fp16, dynamic loss
    scale) on CUDA, :class:`CPUAutocastOptimWrapper` (bf16) on a CPU with
    native bf16; on other CPUs fp32 with a warning, unless the config (or
    ``--cfg-options``) already names that wrapper."""
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    elif cpu_autocast.native_bf16() or \
            cfg.optim_wrapper.get('type') == 'CPUAutocastOptimWrapper':
        cfg.optim_wrapper.type = 'CPUAutocastOptimWrapper'
        cfg.optim_wrapper.setdefault('dtype', 'bfloat16')
    else:
        print_log(
            '--amp: this CPU has no native bf16 (torch.ops.mkldnn.'
            '_is_mkldnn_bf16_supported() is False; capability '
            f'{torch.backends.cpu.get_cpu_capability()}), where bf16 autocast'
            ' makes training 8-24x slower: training in fp32 instead. To '
            'force bf16: --cfg-options optim_wrapper.type='
            'CPUAutocastOptimWrapper', logger='current', level=logging.WARNING)


def enable_auto_scale_lr(cfg: Config) -> None:
    """Scale the LR by (total batch size) / ``auto_scale_lr.base_batch_size``.
    """
    if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
        raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict('
                           'base_batch_size=...) in the config')
    cfg.auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume`` (``'auto'``: the latest checkpoint in ``work_dir``) or
    ``--resume CKPT``; resuming takes precedence over ``load_from``."""
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        cfg.resume = True
        cfg.load_from = resume


def init_process_group(cfg: Config) -> None:
    """mmengine's ``init_dist`` for ``cfg.launcher``, before the runner
    (which uses the group it finds): the data check runs on rank 0 and
    shares its verdict. Without CUDA, its ``torch.cuda.set_device`` raises on
    a CPU-only torch; it is made a no-op, the rest of ``init_dist`` kept."""
    from unittest import mock

    from mmengine.dist import init_dist, is_distributed
    if cfg.launcher == 'none' or is_distributed():
        return
    dist_cfg = cfg.env_cfg.get('dist_cfg', {})
    if torch.cuda.is_available():
        init_dist(cfg.launcher, **dist_cfg)
    else:
        with mock.patch('torch.cuda.set_device', lambda device: None):
            init_dist(cfg.launcher, **dist_cfg)


def build_runner(cfg: Config):
    """mmengine's ``Runner``, or ``cfg.runner_type`` from our registry."""
    from mmengine.runner import Runner

    from ..registry import RUNNERS
    init_process_group(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)
