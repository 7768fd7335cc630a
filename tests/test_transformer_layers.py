"""The operation_order layer reproduces torch's post- and pre-norm layers, adds
positions to queries and keys only, and the decoder normalizes every output."""
import pytest
import torch
from torch import nn

from detr_plugin.models import (BaseTransformerLayer, DetrTransformerDecoder,
                                DetrTransformerEncoder)

D, HEADS, FF = 16, 2, 32
ENCODER_ORDER = ('self_attn', 'norm', 'ffn', 'norm')
DECODER_ORDER = ('self_attn', 'norm', 'cross_attn', 'norm', 'ffn', 'norm')
PRE_NORM_ORDER = ('norm', 'self_attn', 'norm', 'ffn')


def layer_cfg(order):
    return dict(
        attn_cfgs=dict(embed_dims=D, num_heads=HEADS),
        ffn_cfgs=dict(embed_dims=D, feedforward_channels=FF, num_fcs=2,
                      ffn_drop=0., act_cfg=dict(type='ReLU', inplace=True)),
        operation_order=order)


def copy_torch_layer(torch_layer, ours):
    """Map a torch Transformer{Encoder,Decoder}Layer onto ours."""
    state = {}
    for name, value in torch_layer.state_dict().items():
        name = (name.replace('self_attn.', 'attentions.0.')
                .replace('multihead_attn.', 'attentions.1.')
                .replace('linear1.', 'ffns.0.layers.0.0.')
                .replace('linear2.', 'ffns.0.layers.1.')
                .replace('norm1.', 'norms.0.').replace('norm2.', 'norms.1.')
                .replace('norm3.', 'norms.2.'))
        state[name] = value
    ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize('order,norm_first', [(ENCODER_ORDER, False),
                                              (PRE_NORM_ORDER, True)])
def test_encoder_layer_equals_torch(order, norm_first):
    torch.manual_seed(0)
    reference = nn.TransformerEncoderLayer(
        D, HEADS, FF, dropout=0., batch_first=True,
        norm_first=norm_first).eval()
    ours = BaseTransformerLayer(**layer_cfg(order)).eval()
    copy_torch_layer(reference, ours)
    x = torch.randn(2, 9, D)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[1, 6:] = True
    expected = reference(x, src_key_padding_mask=mask)
    got = ours(x, query_key_padding_mask=mask)
    assert (got - expected)[~mask].abs().max() < 1e-5


def test_decoder_layer_equals_torch():
    torch.manual_seed(1)
    reference = nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.,
                                           batch_first=True).eval()
    ours = BaseTransformerLayer(**layer_cfg(DECODER_ORDER)).eval()
    copy_torch_layer(reference, ours)
    query, memory = torch.randn(2, 4, D), torch.randn(2, 9, D)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 7:] = True
    expected = reference(query, memory, memory_key_padding_mask=mask)
    got = ours(query, memory, key_padding_mask=mask)
    assert (got - expected).abs().max() < 1e-5


def test_positions_go_to_queries_and_keys_never_values():
    torch.manual_seed(2)
    layer = BaseTransformerLayer(**layer_cfg(DECODER_ORDER)).eval()
    query, query_pos = torch.randn(2, 4, D), torch.randn(2, 4, D)
    memory, memory_pos = torch.randn(2, 9, D), torch.randn(2, 9, D)
    self_attn, cross_attn = layer.attentions
    norms, ffn = layer.norms, layer.ffns[0]
    x = norms[0](query + self_attn(query + query_pos, query + query_pos,
                                   query))
    x = norms[1](x + cross_attn(x + query_pos, memory + memory_pos, memory))
    expected = norms[2](x + ffn(x))
    got = layer(query, memory, query_pos=query_pos, key_pos=memory_pos)
    assert (got - expected).abs().max() < 1e-6


def test_decoder_returns_every_layer_after_the_shared_norm():
    torch.manual_seed(3)
    decoder = DetrTransformerDecoder(3, layer_cfg(DECODER_ORDER)).eval()
    query_pos = torch.randn(2, 4, D)
    memory, memory_pos = torch.randn(2, 9, D), torch.randn(2, 9, D)
    out = decoder(torch.zeros(2, 4, D), memory, query_pos, memory_pos, None)
    assert out.shape == (3, 2, 4, D)
    x = torch.zeros(2, 4, D)
    for i, layer in enumerate(decoder.layers):
        x = layer(x, memory, query_pos=query_pos, key_pos=memory_pos)
        assert (out[i] - decoder.post_norm(x)).abs().max() < 1e-6
    decoder.return_intermediate = False
    last = decoder(torch.zeros(2, 4, D), memory, query_pos, memory_pos, None)
    assert last.shape == (1, 2, 4, D) and torch.allclose(last[0], out[-1])


def test_encoder_masks_padding_and_keeps_shape():
    torch.manual_seed(4)
    encoder = DetrTransformerEncoder(2, layer_cfg(ENCODER_ORDER)).eval()
    feat, pos = torch.randn(1, 9, D), torch.randn(1, 9, D)
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, 6:] = True
    out = encoder(feat, pos, mask)
    assert out.shape == (1, 9, D)
    # real positions do not see the padded ones: changing them changes nothing
    feat2 = feat.clone()
    feat2[0, 6:] += 10
    out2 = encoder(feat2, pos, mask)
    assert torch.allclose(out[0, :6], out2[0, :6], atol=1e-5)


def test_bad_operation_order_is_refused():
    with pytest.raises(ValueError, match='unknown operations'):
        BaseTransformerLayer(**layer_cfg(('self_attn', 'nrom')))


def test_layer_hands_masks_and_extra_inputs_to_its_attentions():
    """Where positions go is the attention's business: the layer passes
    each attention its masks and every extra keyword input."""
    seen = []

    class Recorder(nn.Module):
        embed_dims = D

        def forward(self, query, key, value, **kwargs):
            seen.append(kwargs)
            return torch.zeros_like(query)

    layer = BaseTransformerLayer(**layer_cfg(DECODER_ORDER))
    layer.attentions = nn.ModuleList([Recorder(), Recorder()])
    query, memory = torch.randn(2, 4, D), torch.randn(2, 9, D)
    self_mask = torch.zeros(4, 4, dtype=torch.bool)
    cross_mask = torch.zeros(4, 9, dtype=torch.bool)
    layer(query, memory, query_pos='qp', key_pos='kp',
          self_attn_mask=self_mask, cross_attn_mask=cross_mask,
          key_padding_mask='kpm', reference_points='refs')
    self_kwargs, cross_kwargs = seen
    assert self_kwargs['query_pos'] == self_kwargs['key_pos'] == 'qp'
    assert self_kwargs['attn_mask'] is self_mask
    assert self_kwargs['key_padding_mask'] is None
    assert cross_kwargs['query_pos'] == 'qp'
    assert cross_kwargs['key_pos'] == 'kp'
    assert cross_kwargs['attn_mask'] is cross_mask
    assert cross_kwargs['key_padding_mask'] == 'kpm'
    assert self_kwargs['reference_points'] == 'refs' == \
        cross_kwargs['reference_points']
