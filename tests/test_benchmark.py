"""tools/benchmark.py: it refuses to time models that compute different
things, and writes every ratio it measured. Nothing here asserts a time."""
import json

import pytest
import torch
from helpers.tools import load_tool, run_tool

from detr_plugin.mmdet_reference import build_r50_pair


def test_parity_gate_refuses_models_that_differ():
    benchmark = load_tool('benchmark')
    theirs, ours = build_r50_pair()
    benchmark.check_parity(theirs, ours, 'cpu')  # the same weights: passes
    with torch.no_grad():
        ours.bbox_head.reg_mlp.layers[-1].bias[0] += 0.5
    with pytest.raises(SystemExit, match='parity check failed'):
        benchmark.check_parity(theirs, ours, 'cpu')


@pytest.mark.parametrize('model', ['detr', 'dab_detr'])
def test_json_holds_the_measured_ratios(tmp_path, model):
    out = tmp_path / 'out.json'
    proc = run_tool(['benchmark.py', '--model', model, '--only', 'head_loss',
                     '--repeats', '1', '--json', str(out)], str(tmp_path),
                    timeout=600)
    assert 'parity check passed' in proc.stdout
    result = json.loads(out.read_text())
    seconds = result['head_loss_seconds']
    assert set(seconds) == {'mmdet', 'plugin'}
    assert result['head_loss_speedup'] == pytest.approx(
        seconds['mmdet'] / seconds['plugin'], rel=0.01)
    assert result['device'] == 'cpu' and result['threads'] == 1
    assert result['model'] == model
    assert 'inference_speedup' not in result  # not asked for
