"""Mixed precision: ``--amp`` picks fp16 with a loss scaler on CUDA and bf16
on a CPU with native bf16 (``--amp-dtype`` chooses); every variant's box
math runs in float32 under either autocast, so fp16 steps stay finite where
they overflowed (a reference point near 1); an fp16 overflow is a step the
loss scaler skips, counted, not a fault. fp16 runs here under the CPU's fp16
autocast, which rounds and overflows as a GPU's does."""
import copy
import math
import re
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from helpers.configs import (DETR_R50, tiny_config, tiny_train_config,
                             tiny_variant_config, write_config)
from helpers.tools import load_tool, run_tool
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from detr_plugin.engine import CPUAutocastOptimWrapper, cpu_autocast
from detr_plugin.engine.hooks import NonFiniteLossHook
from mmdet_reference import build_plugin_model
from detr_plugin.models import BatchedTargets
from mmdet_reference import make_batch


cli = load_tool('cli')


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


def test_amp_flag_selects_cpu_autocast_wrapper(monkeypatch):
    """On a CPU with native bf16 (the probe patched, so that this holds on
    an AVX2-only CPU too) ``--amp`` selects bf16 CPU autocast."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cpu_autocast, 'native_bf16', lambda: True)
    cfg = Config.fromfile(DETR_R50)
    cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    model = torch.nn.Linear(2, 2)
    assert isinstance(build_wrapper(model, cfg.optim_wrapper),
                      CPUAutocastOptimWrapper)


def test_amp_without_native_bf16_trains_fp32_saying_so(monkeypatch):
    """On a CPU without native bf16 (the probe patched, whatever this one
    has) ``--amp`` keeps fp32 with one warning naming the way to force bf16,
    which works; the benchmark's ``amp_train_step`` says which it ran
    (issue 14, item 2)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cpu_autocast, 'native_bf16', lambda: False)
    cfg = Config.fromfile(DETR_R50)
    with mock.patch.object(cli, 'print_log') as log:
        cli.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    (warning, ), _ = log.call_args
    assert warning.startswith('--amp: this CPU has no native bf16')
    assert 'training in fp32 instead. To force bf16: --amp-dtype bfloat16' \
        in warning
    cfg.merge_from_dict({'optim_wrapper.type': 'CPUAutocastOptimWrapper'})
    with mock.patch.object(cli, 'print_log') as log:
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

    seen_dtypes = []  # the last decoder layer's FFN, and the classifier's
    for module in (bf16_model.decoder.layers[-1].ffns[0],
                   bf16_model.bbox_head.fc_cls):
        module.register_forward_hook(
            lambda module, args, out: seen_dtypes.append(out.dtype))

    fp32_log = fp32_model.train_step(make_data(), fp32_wrapper)
    bf16_log = bf16_model.train_step(make_data(), bf16_wrapper)

    # the forward ran under autocast, the head's classifier in float32
    assert seen_dtypes == [torch.bfloat16, torch.float32]
    for key in ('loss', 'loss_cls', 'loss_bbox', 'loss_iou'):
        assert math.isfinite(bf16_log[key])
        rel = abs(bf16_log[key] - fp32_log[key]) / abs(fp32_log[key])
        assert rel < 0.05, (key, bf16_log[key], fp32_log[key])
    for name, param in bf16_model.named_parameters():
        assert param.dtype == torch.float32, name
        assert torch.isfinite(param).all(), name
    for model in (fp32_model, bf16_model):  # both took a step
        weights = model.state_dict()
        assert not torch.equal(weights['query_embedding.weight'],
                               initial['query_embedding.weight'])


# --------------------------------------------------- fp16: box math in fp32
VARIANTS = ('detr', 'conditional_detr', 'dab_detr', 'deformable_detr',
            'deformable_detr_refine', 'deformable_detr_refine_twostage',
            'dino')


def fp16_step(model, reference_at=None):
    """One loss + backward of a tiny variant under the CPU's fp16 autocast;
    ``reference_at``: every query's first learned reference coordinate
    set there. Returns the losses and the parameters whose gradient holds
    NaN or inf."""
    if reference_at is not None:
        fc = model.decoder.ref_point_head.layers[-1] if hasattr(
            model.decoder, 'ref_point_head') else model.reference_points_fc
        with torch.no_grad():
            fc.weight.zero_()
            fc.bias.zero_()
            fc.bias[0] = math.log(reference_at / (1 - reference_at))
    inputs, samples = make_batch([(64, 80), (72, 64)], [3, 1], num_classes=3)
    with torch.autocast('cpu', dtype=torch.float16):
        losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    return losses, [name for name, p in model.named_parameters()
                    if p.grad is not None and not p.grad.isfinite().all()]


def build_tiny(variant):
    torch.manual_seed(0)
    return build_plugin_model(tiny_variant_config(variant)).train()


@pytest.mark.parametrize('variant', VARIANTS)
def test_fp16_step_of_every_variant_is_finite(variant):
    """Under fp16 autocast the transformer runs in fp16 (the decoder's
    FFNs) while the head's classifier and box MLP compute in float32, and
    every loss and gradient is finite."""
    model = build_tiny(variant)
    ffn = []  # the last decoder layer's FFN output
    model.decoder.layers[-1].ffns[0].register_forward_hook(
        lambda module, args, out: ffn.append(out.dtype))
    losses, bad = fp16_step(model)
    assert ffn == [torch.float16]
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert bad == []
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        refs = None if variant == 'detr' else [
            torch.full((1, 10, 4), 0.5)] * 2
        logits, boxes = model.bbox_head(
            torch.randn(2, 1, 10, 32), None if refs is None else
            refs if variant != 'conditional_detr' else
            [r[..., :2] for r in refs])
    assert logits.dtype == boxes.dtype == torch.float32


@pytest.mark.parametrize('variant', ['conditional_detr', 'deformable_detr',
                                     'deformable_detr_refine'])
def test_reference_near_one_keeps_fp16_gradients_finite(variant):
    """Learned reference points at 0.9985 (a trained model has them near
    the image's edges): ``inverse_sigmoid``'s gradient 1 / (x (1 - x))
    overflowed fp16, leaving inf in 5 of Conditional DETR's gradients
    (ref_point_head, query_embedding) and 3 of Deformable DETR's, whatever
    the loss scale; the references now stay float32 from their sigmoid to
    the refinement (issue 27)."""
    losses, bad = fp16_step(build_tiny(variant), reference_at=0.9985)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert bad == []


def test_box_math_is_float32_under_autocast():
    """The shared box math returns float32 from fp16 or bf16 inputs under
    autocast: the refinement, the references' sigmoid, the matching costs
    and the set losses."""
    from detr_plugin.models.box_precision import sigmoid_references
    from detr_plugin.models.detr_head import refine
    model = build_tiny('conditional_detr')
    _, samples = make_batch([(64, 80)], [3], num_classes=3)
    targets = BatchedTargets.from_samples(samples, torch.device('cpu'))
    for dtype in (torch.float16, torch.bfloat16):
        deltas = torch.randn(2, 1, 10, 4).to(dtype)
        refs = torch.rand(2, 1, 10, 2).to(dtype)
        logits = torch.randn(2, 1, 10, 3).to(dtype)
        with torch.autocast('cpu', dtype=dtype):
            boxes = refine(deltas, refs)
            assert boxes.dtype == torch.float32
            assert sigmoid_references(deltas).dtype == torch.float32
            costs = model.bbox_head.assigner.cost_matrices(logits, boxes,
                                                           targets)
            matches = model.bbox_head.assigner.assign(logits, boxes, targets)
            losses = model.bbox_head.set_losses(logits, boxes, targets,
                                                matches)
        assert costs.dtype == 'float32'
        assert all(loss.dtype == torch.float32 for loss in losses)


def test_refinement_smaller_than_a_bf16_step_survives_autocast():
    """A trained head refines by small corrections to large values: in
    bf16 (8 significant bits) ``1.9 + 0.003`` is 1.9, and each layer's
    refinement was rounded away -- DINO's demo checkpoint's losses moved by
    up to 7.1 % under bf16 autocast, 0.69 % with the head's branches in
    float32 (docs/speed.md). Its boxes and logits under autocast now equal
    fp32's."""
    model = build_tiny('dino').eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for branch in model.bbox_head.reg_branches:
            branch.layers[-1].weight.normal_(0, 1e-3, generator=gen)
            branch.layers[-1].bias.copy_(torch.tensor([1.9, -1.7, -2.3, .9]))
    hidden = torch.randn(3, 2, 10, 32, generator=gen)
    refs = [torch.rand(2, 10, 4, generator=gen) * 0.8 + 0.1] * 3
    with torch.no_grad():
        logits, boxes = model.bbox_head(hidden, refs)
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast('cpu', dtype=dtype):
                mixed_logits, mixed_boxes = model.bbox_head(hidden, refs)
            assert torch.equal(mixed_boxes, boxes)
            assert torch.equal(mixed_logits, logits)
        # what the branch's last layer gives alone in bf16 (as the head's
        # branches did before): the corrections rounded away
        last = model.bbox_head.reg_branches[0].layers[-1]
        features = torch.randn(50, 32, generator=gen)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            rounded = last(features)
        assert rounded.dtype == torch.bfloat16
        assert (rounded.float() - last(features)).abs().max() > 1e-3


# ------------------------------------------- --amp: wrapper, dtype, scaler
def test_amp_on_cuda_is_fp16_with_a_loss_scaler(monkeypatch):
    """With CUDA, ``--amp`` is mmengine's AmpOptimWrapper in fp16 with a
    dynamic loss scale; ``--amp-dtype bfloat16`` or the config's
    ``optim_wrapper.dtype`` choose bf16."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    for dtype, config_dtype, expected in ((None, None, 'float16'),
                                          ('bfloat16', None, 'bfloat16'),
                                          (None, 'bfloat16', 'bfloat16')):
        cfg = Config.fromfile(DETR_R50)
        if config_dtype:
            cfg.optim_wrapper.dtype = config_dtype
        cli.enable_amp(cfg, dtype)
        assert (cfg.optim_wrapper.type, cfg.optim_wrapper.loss_scale,
                cfg.optim_wrapper.dtype) == ('AmpOptimWrapper', 'dynamic',
                                             expected)
    with pytest.raises(SystemExit, match='--amp-dtype float32: choose one'):
        cli.enable_amp(Config.fromfile(DETR_R50), 'float32')


def test_cpu_fp16_wrapper_scales_and_refuses_a_gpu_model(monkeypatch):
    """``--amp --amp-dtype float16`` on a CPU: CPU autocast in fp16 with
    a dynamic loss scaler (bf16: none), whose state is saved with the
    optimizer's; a model on another device is refused by name."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config.fromfile(DETR_R50)
    cli.enable_amp(cfg, 'float16')
    assert cfg.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    model = torch.nn.Linear(2, 2)
    wrapper = build_wrapper(model, cfg.optim_wrapper)
    assert wrapper.cast_dtype == torch.float16
    assert wrapper.loss_scaler.is_enabled()
    assert wrapper.state_dict()['loss_scaler']['scale'] == 2.**16
    bf16 = build_wrapper(model, dict(cfg.optim_wrapper, dtype='bfloat16'))
    assert not bf16.loss_scaler.is_enabled()
    with pytest.raises(RuntimeError, match=(
            r'CPUAutocastOptimWrapper autocasts on the CPU, but the model '
            r'Linear is on meta: use mmengine\'s AmpOptimWrapper')):
        with wrapper.optim_context(torch.nn.Linear(2, 2, device='meta')):
            pass


def test_fp16_overflow_is_skipped_and_counted(shapes, tmp_path):
    """``tools/train.py --amp --amp-dtype float16`` with a loss scale of
    2048: the untrained model's largest gradient (about 73, the first
    decoder layer's self-attention output bias) times that overflows fp16,
    so the scaler skips steps and halves its scale until it fits; the hook
    logs each with the new scale, and training goes on (issue 27)."""
    cfg = write_config(tiny_train_config(shapes), str(tmp_path / 'c.py'))
    proc = run_tool(['train.py', cfg, '--amp', '--amp-dtype', 'float16',
                     '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                     'optim_wrapper.loss_scale.init_scale=2048.0'],
                    str(tmp_path))
    assert "dtype='float16'" in proc.out
    assert ('fp16 overflow at iteration 1 (epoch 1, batch 1): non-finite '
            'gradients; the loss scaler skipped the step and lowered its '
            'scale to 1024 (1 skipped so far)') in proc.out
    assert 'Iter(train) [4/4]' in proc.out
    assert re.search(r'\d training step\(s\) were skipped for a non-finite '
                     r'loss or gradient \(fp16 loss scale now \d+\)',
                     proc.out)


def test_loss_scale_below_its_floor_stops_the_run():
    """When the scale falls below ``min_loss_scale`` the gradients overflow
    fp16 unscaled: the hook stops the run saying so."""
    layer = torch.nn.Linear(3, 2)
    wrapper = CPUAutocastOptimWrapper(
        dtype='float16', loss_scale=dict(init_scale=1.),
        optimizer=torch.optim.SGD(layer.parameters(), lr=0.1))
    runner = SimpleNamespace(optim_wrapper=wrapper, iter=4, epoch=0)
    hook = NonFiniteLossHook(min_loss_scale=1.)
    hook.before_train(runner)
    hook.before_train_iter(runner, 4)
    wrapper.update_params(layer(torch.ones(1, 3)).sum() * float('inf'))
    with pytest.raises(FloatingPointError, match=(
            r'the fp16 loss scale fell to 0.5 \(below min_loss_scale=1\) at '
            r'iteration 5 .* no loss scale fixes them')):
        hook.after_train_iter(runner, 4, outputs=dict(loss=float('nan')))


@pytest.mark.parametrize('demo', ['rtdetrv2_r18vd', 'dfine_r18vd'])
def test_rtdetr_steps_under_fp16_and_bf16_autocast_are_finite(demo):
    """RT-DETRv2 and D-FINE inherit the float32 box math (proposals,
    refinement, varifocal loss; D-FINE's distributions, their expectation,
    LQE and FGL/DDF): under either autocast every loss and gradient of a
    training step is finite, and at the same proposals and matches the
    loss terms stay within 1 % of float32's."""
    from benchmark import autocast_loss_gaps
    from helpers.configs import CONFIG_DIR
    cfg = Config.fromfile(f'{CONFIG_DIR}/demo/{demo}_shapes.py')
    torch.manual_seed(0)
    model = build_plugin_model(cfg).train()
    inputs, samples = make_batch([(64, 64), (64, 64)], [3, 1], num_classes=3)
    for dtype in (torch.float16, torch.bfloat16):
        model.zero_grad()
        with torch.autocast('cpu', dtype=dtype):
            losses = model.loss(inputs, samples)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        assert all(math.isfinite(float(v)) for v in losses.values())
        assert all(p.grad.isfinite().all() for p in model.parameters()
                   if p.grad is not None)
        gaps = autocast_loss_gaps(copy.deepcopy(model).eval(), inputs,
                                  samples, 'cpu', dtype)
        assert max(gap for _, _, gap in gaps.values()) < 0.01, (dtype, gaps)
