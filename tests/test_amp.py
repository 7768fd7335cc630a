"""``--amp`` without CUDA: a bf16-autocast forward, float32 weights/losses;
fp32 with a warning on a CPU without native bf16."""
import copy
from unittest import mock

import pytest
import torch
from helpers.configs import DETR_R50, tiny_config, tiny_train_config, \
    write_config
from helpers.tools import load_tool, run_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from detr_plugin.engine import CPUAutocastOptimWrapper, cli, cpu_autocast
from detr_plugin.mmdet_reference import build_plugin_model
from detr_plugin.testing import make_batch


def make_data(num_gts=(3, 1), seed=0):
    """``train_step`` input: two uint8 images of different sizes + GT."""
    _, samples = make_batch([(64, 80), (72, 64)], num_gts, num_classes=3,
                            seed=seed)
    generator = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, *s.img_shape), generator=generator,
                            dtype=torch.uint8) for s in samples]
    return dict(inputs=images, data_samples=samples)


def build_wrapper(model, optim_cfg):
    with DefaultScope.overwrite_default_scope('detr_plugin'):
        return build_optim_wrapper(model, optim_cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU behaviour')
def test_amp_flag_selects_cpu_autocast_wrapper(monkeypatch):
    """On a CPU with native bf16 (the probe patched, so that this holds on
    an AVX2-only CPU too) ``--amp`` selects bf16 CPU autocast."""
    monkeypatch.setattr(cpu_autocast, 'native_bf16', lambda: True)
    cfg = Config.fromfile(DETR_R50)
    cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    model = torch.nn.Linear(2, 2)
    assert isinstance(build_wrapper(model, cfg.optim_wrapper),
                      CPUAutocastOptimWrapper)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU behaviour')
def test_amp_without_native_bf16_trains_fp32_saying_so(monkeypatch):
    """On a CPU without native bf16 (the probe patched, whatever this one
    has) ``--amp`` keeps fp32 with one warning naming the way to force bf16,
    which works; the benchmark's ``amp_train_step`` says which it ran
    (issue 14, item 2)."""
    monkeypatch.setattr(cpu_autocast, 'native_bf16', lambda: False)
    cfg = Config.fromfile(DETR_R50)
    with mock.patch('detr_plugin.engine.cli.print_log') as log:
        cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    (warning, ), _ = log.call_args
    assert warning.startswith('--amp: this CPU has no native bf16')
    assert 'training in fp32 instead. To force bf16: --cfg-options ' \
        'optim_wrapper.type=CPUAutocastOptimWrapper' in warning
    cfg.merge_from_dict({'optim_wrapper.type': 'CPUAutocastOptimWrapper'})
    with mock.patch('detr_plugin.engine.cli.print_log') as log:
        cli.enable_amp(cfg)  # forced: bf16, no warning
    assert not log.called and cfg.optim_wrapper.dtype == 'bfloat16'
    benchmark = load_tool('benchmark')
    assert benchmark.amp_dtype('cpu') == \
        'float32 (no native bf16 on this CPU: --amp trains in fp32)'
    monkeypatch.setattr(cpu_autocast, 'native_bf16', lambda: True)
    assert benchmark.amp_dtype('cpu') == 'bfloat16'


def test_amp_training_keeps_the_folded_backbone(shapes, tmp_path):
    """``tools/train.py --amp`` (bf16 forced, whatever this CPU has) runs
    the frozen stages through the BN-folded copy: its check runs in float32
    and passes, with no fall-back warning (issue 14, item 2)."""
    cfg = write_config(tiny_train_config(shapes), str(tmp_path / 'c.py'))
    proc = run_tool(['train.py', cfg, '--amp', '--work-dir',
                     str(tmp_path / 'work'), '--cfg-options',
                     'train_cfg.max_iters=2',
                     'optim_wrapper.type=CPUAutocastOptimWrapper'],
                    str(tmp_path))
    assert "type='CPUAutocastOptimWrapper'" in proc.out
    assert 'Iter(train) [2/2]' in proc.out
    assert 'BN-folded copy does not compute' not in proc.out


def test_bf16_step_matches_fp32():
    cfg = tiny_config()
    torch.manual_seed(0)
    fp32_model = build_plugin_model(cfg)
    bf16_model = copy.deepcopy(fp32_model)
    initial = copy.deepcopy(fp32_model.state_dict())
    fp32_wrapper = build_wrapper(fp32_model, cfg.optim_wrapper)
    bf16_wrapper = build_wrapper(
        bf16_model, dict(cfg.optim_wrapper, type='CPUAutocastOptimWrapper'))

    seen_dtypes = []
    bf16_model.bbox_head.fc_cls.register_forward_hook(
        lambda module, args, out: seen_dtypes.append(out.dtype))

    fp32_log = fp32_model.train_step(make_data(), fp32_wrapper)
    bf16_log = bf16_model.train_step(make_data(), bf16_wrapper)

    assert seen_dtypes == [torch.bfloat16]  # the forward ran under autocast
    for key in ('loss', 'loss_cls', 'loss_bbox', 'loss_iou'):
        assert bf16_log[key].dtype == torch.float32
        assert torch.isfinite(bf16_log[key])
        rel = (bf16_log[key] - fp32_log[key]).abs() / fp32_log[key].abs()
        assert rel < 0.05, (key, float(bf16_log[key]), float(fp32_log[key]))
    for name, param in bf16_model.named_parameters():
        assert param.dtype == torch.float32, name
        assert torch.isfinite(param).all(), name
    for model in (fp32_model, bf16_model):  # both took a step
        weights = model.state_dict()
        assert not torch.equal(weights['query_embedding.weight'],
                               initial['query_embedding.weight'])
