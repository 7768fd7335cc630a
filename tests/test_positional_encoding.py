"""Positional encodings: the paper's formula, padding, and mmdet parity."""
import math

import pytest
import torch
from mmdet.models.layers import SinePositionalEncoding as MMDetSine

from detr_plugin.models import (LearnedPositionalEncoding,
                                SinePositionalEncoding)


def test_sine_matches_the_formula_by_hand():
    # One 2x3 map whose last column is padding; 4 channels per axis.
    mask = torch.tensor([[[False, False, True], [False, False, True]]])
    feat = torch.zeros(1, 8, 2, 3)
    pos = SinePositionalEncoding(num_feats=4, temperature=100)(mask, feat)
    assert pos.shape == (1, 8, 2, 3)
    for y in range(2):
        for x in range(2):  # real cells: coordinates are 1-based counts
            for axis, coord in ((0, y + 1), (1, x + 1)):
                for i in range(4):
                    freq = 100**(2 * (i // 2) / 4)
                    expect = (math.sin if i % 2 == 0 else math.cos)(
                        coord / freq)
                    assert pos[0, axis * 4 + i, y, x].item() == \
                        pytest.approx(expect, abs=1e-6)


def test_normalized_sine_spans_each_images_own_extent():
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[1, :, 3:] = True  # second image: 3 real columns of 6
    mask[1, 2:, :] = True  # ...and 2 real rows of 4
    enc = SinePositionalEncoding(num_feats=2, normalize=True)
    pos = enc(mask, torch.zeros(2, 4, 4, 6))
    x_sin = pos[:, 2]  # channel 0 of the x axis: sin(2*pi * x / width)
    y_sin = pos[:, 0]
    # the last real column/row sits at 2*pi, half-way at pi: sin ~ 0
    assert x_sin[0, 0, 5].item() == pytest.approx(0, abs=1e-5)
    assert x_sin[1, 0, 2].item() == pytest.approx(0, abs=1e-5)
    assert x_sin[0, 0, 2].item() == pytest.approx(0, abs=1e-5)
    assert y_sin[1, 1, 0].item() == pytest.approx(0, abs=1e-5)
    # the same relative position gets the same code whatever the padding:
    # column 1 of 6 (image 0) and column 0 of 3 (image 1) are both 1/3.
    assert torch.allclose(pos[0, 2:, 0, 1], pos[1, 2:, 0, 0], atol=1e-5)
    assert x_sin[1, 0, 0].item() == pytest.approx(math.sin(2 * math.pi / 3),
                                                  abs=1e-5)


@pytest.mark.parametrize('padded', [True, False])
def test_sine_equals_mmdet(padded):
    torch.manual_seed(0)
    mask = torch.zeros(3, 5, 7, dtype=torch.bool)
    if padded:
        mask[0, 3:, :] = True
        mask[2, :, 4:] = True
    feat = torch.randn(3, 64, 5, 7)
    ours = SinePositionalEncoding(32, normalize=True)(
        mask if padded else None, feat)
    theirs = MMDetSine(32, normalize=True)(mask if padded else None,
                                          input=feat)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_learned_is_column_then_row_table_lookup():
    enc = LearnedPositionalEncoding(num_feats=3, row_num_embed=5,
                                    col_num_embed=6)
    enc.init_weights()
    pos = enc(None, torch.zeros(2, 6, 4, 5))
    assert pos.shape == (2, 6, 4, 5)
    assert torch.equal(pos[1, :3, 2, 4], enc.col_embed.weight[4])
    assert torch.equal(pos[1, 3:, 2, 4], enc.row_embed.weight[2])
    with pytest.raises(ValueError, match='at most 5x6'):
        enc(None, torch.zeros(1, 6, 6, 5))
