"""The backbone as inference runs it: BatchNorm folded into the convolutions,
channels-last memory.

At inference every BatchNorm of the backbone normalizes with its running
statistics, so it is an affine map that folds into the convolution before it
(mmcv's ``fuse_conv_bn`` does the folding), and oneDNN's CPU convolutions run
fastest on NHWC ("channels_last") tensors. The two together took ``predict``
at 800 x 1333 from 5.4 s to 3.1 s on the 2-core development CPU (each alone:
folding 1.16x; channels_last with unfolded BN gains little and slowed
training, hence inference only). The outputs equal the plain backbone's to
float rounding (1e-7 on the detection scores).

:class:`FoldedBackboneCache` keeps the folded copy next to the trained
backbone, which is never modified, and rebuilds it whenever a parameter or
buffer of the original changed (see :func:`_weights_key`). The copy holds
one more set of backbone weights while inference runs.
"""
import copy
from typing import Optional, Tuple

import torch
from mmcv.cnn import fuse_conv_bn
from torch import Tensor, nn


def _weights_key(module: nn.Module) -> Tuple[Tuple, Tensor]:
    """Changes whenever a parameter or buffer of ``module`` is replaced or
    modified: storage, dtype and version counter of each tensor, and the sum
    of each (writes through ``.data``, as mmengine's EMA swap does, bypass
    the version counter). Reading ResNet-50's 23.5 M weights once took
    12 ms on one core of the development CPU; its forward pass at 800 x 1333
    takes seconds."""
    tensors = [*module.parameters(), *module.buffers()]
    meta = tuple((t.data_ptr(), t._version, t.device, t.dtype)
                 for t in tensors)
    with torch.no_grad():
        sums = torch.stack(
            [t.detach().sum(dtype=torch.float64) for t in tensors])
    return meta, sums


class FoldedBackboneCache:
    """Runs a backbone for inference through a BN-folded, channels-last copy.

    Args:
        channels_last: also convert the copy and its input to
            ``torch.channels_last``.
    """

    def __init__(self, channels_last: bool = True) -> None:
        self.channels_last = channels_last
        self._folded: Optional[nn.Module] = None
        self._key: Optional[Tuple] = None

    def folded(self, backbone: nn.Module) -> nn.Module:
        """The folded copy of ``backbone``'s current weights (eval mode)."""
        key = _weights_key(backbone)
        if self._folded is None or key[0] != self._key[0] or \
                not torch.equal(key[1], self._key[1]):
            folded = copy.deepcopy(backbone)
            folded.eval()  # mmdet's ResNet.train() returns None
            folded = fuse_conv_bn(folded)
            if self.channels_last:
                folded = folded.to(memory_format=torch.channels_last)
            self._folded, self._key = folded, key
        return self._folded

    def __call__(self, backbone: nn.Module,
                 images: Tensor) -> Tuple[Tensor, ...]:
        """``backbone(images)`` computed by the folded copy.

        Args:
            backbone: the model's backbone, in eval mode.
            images: ``(B, 3, H, W)`` normalized input.

        Returns:
            The backbone's outputs, ``(B, C_i, h_i, w_i)`` each (channels-last
            strides when ``channels_last``).
        """
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.folded(backbone)(images)

    def __deepcopy__(self, memo) -> 'FoldedBackboneCache':
        """A copied detector starts with an empty cache."""
        return FoldedBackboneCache(self.channels_last)
