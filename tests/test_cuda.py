"""On a GPU (``bash tools/run_tests.sh --cuda``; skipped elsewhere): fp16 and
bf16 autocast steps of every variant are finite, CUDA float32 (TF32 off)
computes what the CPU computes, mmcv's deformable-attention kernel computes
what its PyTorch path computes (in float32 under autocast too), and a DDP
(NCCL) step of DINO leaves no parameter without a gradient."""
import copy
import math
import socket

import pytest
import torch
from helpers.configs import tiny_variant_config
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

from mmdet_reference import (build_plugin_model,
                             train_without_dropout)
from detr_plugin.models import DeformableAttention
from detr_plugin.models.folded_backbone import no_tf32
from mmdet_reference import make_batch

pytestmark = pytest.mark.cuda

VARIANTS = ('detr', 'conditional_detr', 'dab_detr', 'deformable_detr',
            'deformable_detr_refine', 'deformable_detr_refine_twostage',
            'dino')


def tiny(variant, device='cuda'):
    torch.manual_seed(0)
    return build_plugin_model(tiny_variant_config(variant)).to(device)


def batch(device='cuda'):
    inputs, samples = make_batch([(64, 80), (72, 64)], [3, 1], num_classes=3)
    return inputs.to(device), [s.to(device) for s in samples]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('variant', VARIANTS)
def test_autocast_step_is_finite(variant, dtype):
    model = tiny(variant).train()
    inputs, samples = batch()
    with torch.autocast('cuda', dtype=dtype):
        losses = model.loss(inputs, samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert [n for n, p in model.named_parameters()
            if p.grad is not None and not p.grad.isfinite().all()] == []


@pytest.mark.parametrize('variant', VARIANTS)
def test_cuda_float32_equals_cpu(variant):
    """Every layer's logits and boxes and the detections, CUDA against CPU
    with the same weights, TF32 off."""
    cpu = tiny(variant, 'cpu').eval()
    gpu = copy.deepcopy(cpu).cuda().eval()
    inputs, samples = batch('cpu')
    with torch.no_grad(), no_tf32():
        cpu_logits, cpu_boxes = cpu._forward(inputs, samples)
        gpu_logits, gpu_boxes = gpu._forward(inputs.cuda(),
                                             [s.cuda() for s in samples])
    assert (gpu_logits.cpu() - cpu_logits).abs().max() <= 1e-4
    assert (gpu_boxes.cpu() - cpu_boxes).abs().max() <= 1e-4


def deformable_inputs(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([(12, 16), (6, 8), (3, 4)])
    starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
    tokens = int(shapes.prod(1).sum())
    value = torch.randn(2, tokens, 4, 8, generator=gen)
    locations = torch.rand(2, 20, 4, 3, 4, 2, generator=gen) * 1.2 - 0.1
    # softmax over each head's levels and points, as the module's
    weights = torch.rand(2, 20, 4, 12, generator=gen).softmax(-1).view(
        2, 20, 4, 3, 4)
    return [t.cuda() for t in (value, shapes, starts, locations, weights)]


def test_mmcv_kernel_equals_its_pytorch_path():
    """The module's CUDA path (mmcv's kernel, inputs cast to float32) and
    mmcv's PyTorch path give the same output and gradients, also when the
    values arrive in fp16 from an autocast ``value_proj``."""
    attention = DeformableAttention(embed_dims=32, num_heads=4,
                                    num_levels=3, num_points=4).cuda()
    value, shapes, starts, locations, weights = deformable_inputs()
    refs = locations[:, :, 0, :, 0].contiguous()  # (B, Q, L, 2)
    offsets = (locations - refs[:, :, None, :, None]) * \
        shapes.flip(-1)[:, None]  # in pixels of each level
    for half in (False, True):
        inputs = [t.clone().requires_grad_() for t in (value, offsets)]
        v = inputs[0].half() if half else inputs[0]
        logits = weights.log().flatten(-2)
        with torch.autocast('cuda', dtype=torch.float16, enabled=half):
            out = attention.sample(v, inputs[1], logits, refs, shapes,
                                   starts, shapes.tolist())
        assert out.dtype == torch.float32
        out.square().sum().backward()
        expected_in = [t.clone().requires_grad_() for t in (value, offsets)]
        expected_locations = refs[:, :, None, :, None] + \
            expected_in[1] / shapes.flip(-1)[:, None]
        expected = multi_scale_deformable_attn_pytorch(
            expected_in[0].half().float() if half else expected_in[0],
            shapes, expected_locations, weights)
        expected.square().sum().backward()
        assert (out - expected).abs().max() <= 1e-4
        # the fp16 values' gradient is rounded to fp16 on its way back
        rtol = 2e-3 if half else 1e-4
        for got, want in zip(inputs, expected_in):
            assert (got.grad - want.grad).abs().max() <= \
                rtol * max(1., float(want.grad.abs().max()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_ddp_nccl_step_of_dino_leaves_no_parameter_without_gradient():
    """Two DDP steps (NCCL, one process) without find_unused_parameters:
    DDP fails in the second if the first left a parameter out of the
    graph (mmdet #10989); every trainable parameter has a gradient."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group('nccl', init_method=f'tcp://127.0.0.1:'
                            f'{free_port()}', rank=0, world_size=1)
    try:
        model = train_without_dropout(tiny('dino'))
        ddp = DistributedDataParallel(model, device_ids=[0],
                                      find_unused_parameters=False)
        inputs, samples = batch()
        for _ in range(2):
            ddp.zero_grad()
            losses = ddp(inputs, samples, mode='loss')
            sum(v for k, v in losses.items() if 'loss' in k).backward()
        missing = [name for name, p in model.named_parameters()
                   if p.requires_grad and p.grad is None]
        assert missing == []
    finally:
        dist.destroy_process_group()
