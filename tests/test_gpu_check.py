"""``tools/gpu_check.sh``, the prepared GPU check: its CPU dry run goes
through every step with its stand-in and prints the table; the wheelhouse it
installs from is checked for every package and for its size."""
import json
import os.path as osp
import subprocess

from helpers.configs import REPO_ROOT
from helpers.tools import load_tool


def test_dry_run_prints_the_table(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        ['bash', osp.join(REPO_ROOT, 'tools', 'gpu_check.sh'), '--dry-run',
         '--out', str(out), '--wheels', str(tmp_path / 'none')],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = (out / 'gpu_check.md').read_text()
    assert table in proc.stdout
    for row in ('| machine | none (CPU: ', '(dry run) |',
                '| mmcv ops compiled with CUDA | not available |',
                f'| wheelhouse | no wheelhouse at {tmp_path}/none',
                '| cuda tests | ', '| detr head_loss | ',
                '| DINO demo --amp (fp16) | 4 iterations finished, '):
        assert row in table, row
    results = json.loads((out / 'gpu_check.json').read_text())
    assert results['tests']['tests collected'] >= 10  # the cuda-marked
    assert results['benchmark']['models']['detr']['head_loss_speedup'] > 0
    assert results['demo']['finished']
    # the plan: an offline install into a venv over the machine's torch,
    # mmcv from its sdist with its CUDA kernels
    assert '-m venv --system-site-packages' in proc.stdout
    assert "'FORCE_CUDA': '1'" in proc.stdout


def test_wheelhouse_check_names_what_is_missing_or_too_large(tmp_path):
    gpu_check = load_tool('gpu_check')
    assert gpu_check.check_wheelhouse(str(tmp_path / 'x')) == [
        f'no wheelhouse at {tmp_path}/x (bash tools/gpu_check.sh --prepare '
        f'{tmp_path}/x on a machine with the package index)']
    for name in ('mmengine-0.10.7-py3-none-any.whl',
                 'mmdet-3.3.0-py3-none-any.whl', 'addict-2.4.0-py3-none-any'
                 '.whl', 'yapf-0.43.0-py3-none-any.whl',
                 'platformdirs-4.14.9-py3-none-any.whl',
                 'termcolor-3.3.0-py3-none-any.whl',
                 'terminaltables-3.1.10-py2.py3-none-any.whl',
                 'shapely-2.2.0-cp312-cp312-manylinux_2_28_x86_64.whl'):
        (tmp_path / name).write_bytes(b'0')
    assert gpu_check.check_wheelhouse(str(tmp_path)) == [
        f'{tmp_path} lacks pycocotools', f'{tmp_path} lacks mmcv==2.1.0',
        f"{tmp_path} lacks mmcv's sdist mmcv-2.1.0.tar.gz"]
    (tmp_path / 'pycocotools-2.0.11-cp312-abi3-manylinux2014_x86_64.whl'
     ).write_bytes(b'0')
    with open(tmp_path / 'mmcv-2.1.0.tar.gz', 'wb') as f:
        f.truncate(61 * 2**20)  # over the limit
    assert gpu_check.check_wheelhouse(str(tmp_path)) == [
        f'{tmp_path} holds 61.0 MiB, over the 60 MiB limit']
