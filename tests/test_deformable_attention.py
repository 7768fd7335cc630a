"""Deformable attention: our CPU paths compute what mmcv's PyTorch path
computes (bilinear samples, zero outside each map, weighted and summed), for
points inside, on the border of and far outside the maps -- the training path
with the same gradients; and the module gives the same output with and
without gradients."""
import torch
from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

from detr_plugin.models import DeformableAttention
from detr_plugin.models.deformable_attention import (sample_levels_cpu,
                                                     sample_levels_grid)

SHAPES = torch.tensor([(7, 9), (4, 5), (2, 3), (1, 1)])  # (h, w) per level
START = torch.cat((SHAPES.new_zeros(1), SHAPES.prod(1).cumsum(0)[:-1]))
TOKENS = int(SHAPES.prod(1).sum())


def sampling_inputs():
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(2, TOKENS, 4, 8, generator=gen)
    # x, y from -0.5 to 1.5: inside, on the border and outside every map
    locations = torch.rand(2, 13, 4, 4, 3, 2, generator=gen) * 2 - 0.5
    locations[0, 0] = 0.  # exactly on the border
    locations[0, 1] = 1.
    locations[0, 2, :, 0] = (torch.arange(9) + 0.5)[:3, None] / 9  # centres
    weights = torch.rand(2, 13, 4, 4, 3, generator=gen).softmax(-1)
    return value, locations, weights


def test_cpu_path_equals_mmcvs_sampling():
    value, locations, weights = sampling_inputs()
    expected = multi_scale_deformable_attn_pytorch(value, SHAPES, locations,
                                                   weights)
    got = sample_levels_cpu(value, SHAPES.tolist(), locations, weights)
    assert got.shape == expected.shape == (2, 13, 32)
    assert (got - expected).abs().max() < 1e-5
    # far outside every map: nothing is sampled
    far = torch.full_like(locations, 3.)
    assert sample_levels_cpu(value, SHAPES.tolist(), far,
                             weights).abs().max() \
        == 0


def test_training_path_equals_mmcvs_sampling_and_gradients():
    inputs = [t.requires_grad_() for t in sampling_inputs()]
    value, locations, weights = inputs
    expected = multi_scale_deformable_attn_pytorch(value, SHAPES, locations,
                                                   weights)
    upstream = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    got = sample_levels_grid(value, SHAPES.tolist(), locations, weights)
    grads = torch.autograd.grad(got, inputs, upstream)
    assert got.shape == expected.shape == (2, 13, 32)
    assert (got - expected).abs().max() < 1e-5
    for grad, expected_grad in zip(grads, expected_grads):
        assert expected_grad.abs().max() > 0.1
        assert (grad - expected_grad).abs().max() < 1e-4


def test_module_output_is_the_same_with_and_without_gradients():
    torch.manual_seed(0)
    attention = DeformableAttention(embed_dims=32, num_heads=4, num_levels=4,
                                    num_points=3, dropout=0.).eval()
    torch.nn.init.normal_(attention.sampling_offsets.weight, std=0.5)
    torch.nn.init.normal_(attention.attention_weights.weight)
    query, value = torch.randn(2, 10, 32), torch.randn(2, TOKENS, 32)
    references = torch.rand(2, 10, 4, 2)
    padding = torch.zeros(2, TOKENS, dtype=torch.bool)
    padding[1, -5:] = True
    kwargs = dict(value=value, key_padding_mask=padding,
                  reference_points=references, spatial_shapes=SHAPES,
                  level_start_index=START)
    with torch.no_grad():  # the gather path
        fast = attention(query, **kwargs)
    slow = attention(query, **kwargs)  # the grid_sample path
    assert slow.requires_grad
    assert (fast - slow).abs().max() < 1e-5
