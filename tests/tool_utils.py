"""Run ``tools/*.py`` / ``tools/*.sh`` in subprocesses on a tiny shapes set.

The runner tests train ``tests/configs/detr_tiny_shapes.py`` (a shrunk
``configs/detr_r50_8xb2.py`` reading ``data/shapes/`` relative to the working
directory) with the real command-line tools, one process per run, so that no
mmengine global state (loggers, message hubs, the process group) leaks from
one run into the next.
"""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Sequence

import torch

from detr_test_utils import REPO_ROOT

TINY_CONFIG = osp.join(REPO_ROOT, 'tests', 'configs', 'detr_tiny_shapes.py')
TOOLS = osp.join(REPO_ROOT, 'tools')


def make_shapes_root(root: str, **kwargs) -> str:
    """Write the synthetic shapes set (64x64) to ``root/data/shapes``."""
    from detr_plugin.datasets import generate_shapes_dataset
    kwargs = dict(dict(num_train=5, num_val=2, image_size=(64, 64)), **kwargs)
    generate_shapes_dataset(osp.join(root, 'data', 'shapes'), **kwargs)
    return root


def run_tool(cmd: Sequence[str], cwd: str, timeout: int = 300,
             **env: str) -> subprocess.CompletedProcess:
    """Run ``tools/<cmd[0]>`` (a .py with this interpreter, a .sh with bash)
    in ``cwd`` with one intra-op thread and the extra environment ``env``;
    fail with the tail of its output."""
    tool = osp.join(TOOLS, cmd[0])
    prefix = [sys.executable] if tool.endswith('.py') else ['bash']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
               PYTHONPATH=REPO_ROOT, **env)
    proc = subprocess.run(prefix + [tool, *cmd[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, \
        f'{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def load_checkpoint(path: str) -> dict:
    """A checkpoint loaded as mmengine does: ``weights_only`` by default."""
    import detr_plugin.engine  # noqa: F401  (the allow-list)
    return torch.load(path, map_location='cpu')


def read_log(work_dir: str) -> str:
    """The text log(s) mmengine wrote under ``work_dir/<timestamp>/``."""
    return ''.join(open(path).read() for path in sorted(
        glob.glob(osp.join(work_dir, '*', '*.log'))))
