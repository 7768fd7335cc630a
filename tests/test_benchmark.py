"""tools/benchmark.py: it refuses to time models that compute different
things, and writes every ratio it measured. Nothing here asserts a time."""
import json
import os.path as osp

import pytest
import torch
from helpers.tools import load_tool, run_tool

from mmdet_reference import (REPO_CONFIG_DIR,
                             build_plugin_model, build_r50_pair)
from mmdet_reference import make_batch


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


def test_bf16_gap_compares_losses_at_the_same_choices():
    """The bf16 check's second pass takes the first pass's proposal ranking
    and matches, although its own scores would pick others; afterwards the
    model chooses for itself again."""
    benchmark = load_tool('benchmark')
    model = build_plugin_model(
        osp.join(REPO_CONFIG_DIR, 'demo', 'dino_r18_shapes.py')).eval()
    assigner = model.bbox_head.assigner
    inputs, samples = make_batch([(96, 128), (80, 112)], [4, 2],
                                 num_classes=3)

    def choices(run):
        """The matches and proposal ranking of one pass, after ``run``."""
        seen, owners = dict(assign=[], proposal_score=[]), dict(
            assign=assigner, proposal_score=model)
        before = {name: dict(vars(owner)) for name, owner in owners.items()}
        for name, owner in owners.items():
            choose = getattr(owner, name)
            setattr(owner, name, lambda *a, choose=choose, name=name:
                    seen[name].append(choose(*a)) or seen[name][-1])
        run()
        model.loss(inputs, samples)
        for name, owner in owners.items():  # what was there before
            vars(owner).pop(name)
            if name in before[name]:
                setattr(owner, name, before[name][name])
        return seen

    def scramble():
        """Other classifier weights: other scores, ranking and matches."""
        with torch.no_grad():
            for branch in model.bbox_head.cls_branches:
                branch.weight.normal_(0, 1)

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(
            [*a['proposal_score'], *(m.query_idx for m in a['assign'])],
            [*b['proposal_score'], *(m.query_idx for m in b['assign'])]))

    torch.manual_seed(0)
    with torch.no_grad():
        first = choices(lambda: None)
        assert not same(first, choices(scramble))  # scrambling changes them
        with benchmark.replayed_choices(model) as replay:
            recorded = choices(lambda: None)
            replayed = choices(lambda: (replay(), scramble()))
    assert same(recorded, replayed) and len(replayed['assign']) == 1
    assert 'assign' not in vars(assigner)
    assert 'proposal_score' not in vars(model)


def test_impossible_requests_are_refused_before_measuring(tmp_path):
    """Each failed only after the measurements (a missing --json folder,
    --repeats 0: 'no median for empty data'), inside torch (--device cuda
    without CUDA) or printed an empty table (--only sampling for DETR)."""
    for args, rule in (
            (['--repeats', '0'], '--repeats takes 1 or more'),
            (['--json', str(tmp_path / 'no' / 'r.json')],
             'its folder does not exist'),
            (['--only', 'sampling'], '--only sampling: not measured for '
             'detr (sampling: multi-level models only'),
            (['--model', 'dino', '--only', 'scaling'], 'not measured for '
             'dino')) + ((['--device', 'cuda'], 'this torch sees no CUDA'),
                         ) * (not torch.cuda.is_available()):
        proc = run_tool(['benchmark.py', *args], str(tmp_path), check=False)
        assert proc.returncode == 2 and rule in proc.out, proc.out
