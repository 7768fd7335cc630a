"""``tools/*`` in subprocesses (one process per run: no mmengine global state
-- loggers, message hubs, the process group -- leaks from one run into the
next) or loaded as modules; and what a run leaves in its work dir."""
import glob
import importlib.util
import os
import os.path as osp
import socket
import subprocess
import sys
import time
from typing import Sequence

from .configs import REPO_ROOT

TOOLS = osp.join(REPO_ROOT, 'tools')
TESTS = osp.join(REPO_ROOT, 'tests')
# a run importing helpers.save_stalls stalls the save of this checkpoint file
# (e.g. 'iter_4.pth') and then touches the marker file
STALL_FILE_ENV = 'DETR_TEST_STALL_SAVE_OF'
STALL_MARKER_ENV = 'DETR_TEST_STALL_MARKER'


def load_tool(name: str):
    """``tools/<name>.py`` as a module (its ``main``, ``parse_args``, ...)."""
    spec = importlib.util.spec_from_file_location(
        f'tools_{name}', osp.join(TOOLS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _command(args: Sequence[str]) -> list:
    """A .py tool with this interpreter, a .sh tool with bash."""
    tool = osp.join(TOOLS, args[0])
    return [sys.executable if tool.endswith('.py') else 'bash', tool,
            *map(str, args[1:])]


def tool_env(**extra: str) -> dict:
    """One intra-op thread; this checkout and ``tests/`` importable (for
    ``custom_imports`` of :mod:`helpers.save_stalls`)."""
    return dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
                PYTHONPATH=os.pathsep.join([REPO_ROOT, TESTS]), **extra)


def run_tool(args: Sequence[str], cwd: str, timeout: int = 300,
             check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run ``tools/<args[0]> args[1:]`` in ``cwd`` with the extra
    environment ``env``; ``.out`` is its stdout + stderr. ``check``: fail
    with the tail of the output unless it exits with status 0."""
    proc = subprocess.run(_command(args), cwd=cwd, env=tool_env(**env),
                          capture_output=True, text=True, timeout=timeout)
    proc.out = proc.stdout + proc.stderr
    assert not check or proc.returncode == 0, \
        f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
    return proc


def run_until_stalled(args: Sequence[str], cwd: str, stall_file: str,
                      timeout: float = 300) -> str:
    """Start ``tools/<args[0]>`` (its config importing
    :mod:`helpers.save_stalls`) with the save of ``stall_file`` stalled
    half-way, wait until it stalls, kill it with SIGKILL; return its
    output."""
    marker = osp.join(cwd, f'stalled-{time.monotonic_ns()}')
    log = open(f'{marker}.log', 'w+')
    proc = subprocess.Popen(
        _command(args), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
        env=tool_env(**{STALL_FILE_ENV: stall_file,
                        STALL_MARKER_ENV: marker}))
    deadline = time.monotonic() + timeout
    try:
        while not osp.exists(marker):
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(
                    f'{args} ended (status {proc.returncode}) before '
                    f'stalling:\n{log.read()[-5000:]}')
            if time.monotonic() > deadline:
                raise AssertionError(f'{args} did not stall in {timeout} s')
            time.sleep(0.1)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    log.seek(0)
    return log.read()


def free_port() -> int:
    """A TCP port nobody listens on now (for torchrun's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def load_checkpoint(path: str) -> dict:
    """A checkpoint loaded as the tools load it (``weights_only=True``,
    mmengine's types allow-listed)."""
    from detr_plugin.checkpoint import safe_load
    return safe_load(path)


def read_log(work_dir: str) -> str:
    """The text log(s) mmengine wrote under ``work_dir/<timestamp>/``."""
    return ''.join(open(path).read() for path in sorted(
        glob.glob(osp.join(work_dir, '*', '*.log'))))
