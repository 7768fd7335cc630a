"""tools/setup_env.sh refuses an installed torch older than requirements.txt
states, with a message that says what to do (checked with fake versions
through its ``--check-torch-version`` hook: nothing is installed)."""
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
