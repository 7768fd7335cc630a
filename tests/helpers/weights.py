"""Weights for comparisons that no initialization makes trivially equal."""
import itertools
import re

import torch


def perturb(model, seed=0):
    """Every weight and buffer (the frozen BatchNorms' too) drawn anew:
    matrices and kernels with variance 1 / fan-in (transformers' std-0.02
    init would give nearly the same box to every query), queries and
    anchors N(0, 1), vectors (biases, norms) moved by N(0, 0.1^2) -- so no
    term is trivially zero (Deformable DETR's sampling offsets, DAB's last
    box layer); tied weights stay tied."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(),
                                            model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith('running_var'):
                tensor.copy_(1 + 0.5 * noise.abs())
            elif re.search(r'(embeddings|level_embed)\b', name):
                tensor.copy_(noise)
            elif tensor.dim() > 1:
                tensor.copy_(noise * (tensor[0].numel() ** -0.5))
            else:
                tensor.add_(0.1 * noise)
    return model.eval()
