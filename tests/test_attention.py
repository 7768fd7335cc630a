"""Attention on SDPA computes what nn.MultiheadAttention computes and loads
its weights unchanged."""
import torch
from torch import nn

from detr_plugin.models import MultiheadAttention


def _pair(seed=0, embed_dims=32, num_heads=4):
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(embed_dims, num_heads,
                                      batch_first=True)
    nn.init.normal_(reference.in_proj_bias)
    nn.init.normal_(reference.out_proj.bias)
    ours = MultiheadAttention(embed_dims, num_heads)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


def _inputs(batch=2, len_q=5, len_k=7, dims=32):
    return (torch.randn(batch, len_q, dims), torch.randn(batch, len_k, dims),
            torch.randn(batch, len_k, dims))


def test_same_parameter_names_as_torch():
    reference, ours = _pair()
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_equals_torch_with_padding_mask():
    reference, ours = _pair()
    query, key, value = _inputs()
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 4:] = True  # the second item has 3 padded keys
    expected, _ = reference(query, key, value, key_padding_mask=mask)
    got = ours(query, key, value, key_padding_mask=mask)
    assert (got - expected).abs().max() < 1e-5
    # and the padding does matter:
    unmasked = ours(query, key, value)
    assert (unmasked[1] - got[1]).abs().max() > 1e-3
    assert torch.allclose(unmasked[0], got[0], atol=1e-6)


def test_opt_in_weights_equal_torch_head_weights():
    reference, ours = _pair(seed=1)
    query, key, value = _inputs()
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 5:] = True
    ours.keep_weights = True
    out = ours(query, key, value, key_padding_mask=mask)
    expected_out, expected_w = reference(
        query, key, value, key_padding_mask=mask,
        average_attn_weights=False)
    assert ours.attn_weights.shape == (2, 4, 5, 7)
    assert (ours.attn_weights - expected_w).abs().max() < 1e-6
    assert (out - expected_out).abs().max() < 1e-5
    assert ours.attn_weights[0, :, :, 5:].abs().max() == 0  # padded keys
    # off by default: nothing is kept
    assert MultiheadAttention(32, 4).attn_weights is None


def test_attn_mask_and_positions_equal_torch():
    """An ``attn_mask`` (True = may not attend, 2-D or per image and head)
    combines with the padding mask as in nn.MultiheadAttention, and
    positions go to queries and keys only."""
    reference, ours = _pair(seed=2)
    query, key, value = _inputs()
    query_pos, key_pos = torch.randn_like(query), torch.randn_like(key)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 6:] = True
    blocked = torch.rand(5, 7, generator=torch.Generator().manual_seed(0)) \
        < 0.3
    blocked[:, 0] = False  # every query keeps a key
    expected, _ = reference(query + query_pos, key + key_pos, value,
                            key_padding_mask=padding, attn_mask=blocked)
    got = ours(query, key, value, query_pos=query_pos, key_pos=key_pos,
               attn_mask=blocked, key_padding_mask=padding,
               reference_points=None)  # extra inputs are ignored
    assert (got - expected).abs().max() < 1e-5
    per_head = blocked.expand(2 * 4, 5, 7)
    got3d = ours(query, key, value, query_pos=query_pos, key_pos=key_pos,
                 attn_mask=per_head, key_padding_mask=padding)
    assert (got3d - expected).abs().max() < 1e-5
    unmasked = ours(query, key, value, query_pos=query_pos, key_pos=key_pos,
                    key_padding_mask=padding)
    assert (unmasked - got).abs().max() > 1e-3


def test_training_dropout_drops_attention_weights():
    """In training on a CPU, attention dropout runs on the explicit path:
    each weight of a query's row is dropped or scaled by 1 / (1 - p), the
    padded keys stay at zero, and without ``keep_weights`` the same
    random draws give the same output."""
    from detr_plugin.models.attention import dot_product_attention
    torch.manual_seed(3)
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8)
    attend = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    attend[1, ..., 5:] = False
    eye = torch.eye(7).expand(2, 4, 7, 7)  # the output is the weights
    torch.manual_seed(4)
    dropped, weights = dot_product_attention(q, k, eye, attend, 0.5,
                                             keep_weights=True)
    expected = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(
        ~attend, float('-inf')).softmax(-1)
    assert (weights - expected).abs().max() < 1e-6
    kept = dropped != 0
    assert (dropped[kept] - 2 * expected[kept]).abs().max() < 1e-6
    assert 0.3 < kept[..., :5].float().mean() < 0.7
    assert not kept[1, ..., 5:].any()
    torch.manual_seed(4)
    again, none = dot_product_attention(q, k, eye, attend, 0.5)
    assert none is None and torch.equal(again, dropped)
    # the module trains on this path: its output is random in training
    # (dropout) and deterministic in eval mode
    _, ours = _pair(seed=5)
    ours.attn_drop = 0.5
    query, key, value = _inputs()
    ours.train()
    assert not torch.equal(ours(query, key, value), ours(query, key, value))
    ours.eval()
    assert torch.equal(ours(query, key, value), ours(query, key, value))
