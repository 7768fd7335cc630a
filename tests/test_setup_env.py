"""tools/setup_env.sh refuses an installed torch older than requirements.txt
states, with a message that says what to do (checked with fake versions
through its ``--check-torch-version`` hook: nothing is installed), and builds
mmcv with its CUDA kernels where there is a GPU (its ``--mmcv-build``
hook)."""
import os
import os.path as osp
import subprocess

import pytest
from helpers.configs import REPO_ROOT

SETUP = osp.join(REPO_ROOT, 'tools', 'setup_env.sh')


def check(version):
    return subprocess.run(['bash', SETUP, '--check-torch-version', version],
                          capture_output=True, text=True)


def test_requirements_state_the_minimum_torch():
    with open(osp.join(REPO_ROOT, 'requirements.txt')) as f:
        assert 'torch>=2.6\n' in f.read()


@pytest.mark.parametrize('version', ['2.5.1', '2.5.1+cu121', '1.13.1'])
def test_older_torch_is_refused(version):
    proc = check(version)
    assert proc.returncode == 1
    assert f'torch {version} is installed in' in proc.stderr
    assert 'detr_plugin needs torch>=2.6' in proc.stderr
    assert 'pip install torch==2.13.0), or delete' in proc.stderr


@pytest.mark.parametrize('version', ['2.6', '2.6.0', '2.10.1', '2.13.0+cpu'])
def test_new_enough_torch_is_kept(version):
    proc = check(version)
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr


def mmcv_build(tmp_path, nvidia_smi_lists_a_gpu):
    """The ``--mmcv-build`` hook's answer (how mmcv would be built) with a
    fake ``nvidia-smi`` first on the PATH and torch's CUDA hidden."""
    fake = tmp_path / 'nvidia-smi'
    fake.write_text('#!/bin/sh\n' + (
        'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"\n'
        if nvidia_smi_lists_a_gpu else 'exit 9\n'))
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}',
               CUDA_VISIBLE_DEVICES='')
    return subprocess.run(['bash', SETUP, '--mmcv-build'], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_a_gpu_builds_mmcv_with_cuda_and_not_from_the_cache(tmp_path):
    """With a GPU, mmcv is compiled with its CUDA kernels (FORCE_CUDA=1),
    never taken from pip's cache, where a wheel built on a CPU machine
    would have none; without, as before (issue 27)."""
    with_gpu = mmcv_build(tmp_path, True).split()
    assert {'FORCE_CUDA=1', 'MMCV_WITH_OPS=1', '--no-cache-dir'} <= \
        set(with_gpu)
    without = mmcv_build(tmp_path, False).split()
    assert 'MMCV_WITH_OPS=1' in without
    assert not {'FORCE_CUDA=1', '--no-cache-dir'} & set(without)

