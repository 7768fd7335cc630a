"""DEIM's Dense O2O (section 3.2) from mmdet's mixing transforms: a mosaic
followed by a random affine of the mosaic only, and MixUp with a
probability (mmdet 3.3's ``MixUp`` always mixes)."""
import random

from mmdet.datasets.transforms import MixUp, Mosaic

from ...registry import TRANSFORMS


@TRANSFORMS.register_module()
class DenseMosaic(Mosaic):
    """With probability ``prob``: mmdet's ``Mosaic`` of the image and three
    others (``img_scale`` each, on a ``2 * img_scale`` canvas), then mmdet's
    ``RandomAffine`` of ``affine`` on the result (DEIM: rotation 10 degrees,
    translation 0.1, scaling 0.5-1.5); otherwise the image unchanged (mmdet's
    ``RandomAffine`` alone would transform every image).

    Args:
        affine: ``RandomAffine``'s arguments.
        prob: the probability of a mosaic.
        **kwargs: ``Mosaic``'s.
    """

    def __init__(self, affine: dict, prob: float = 0.5, **kwargs) -> None:
        super().__init__(prob=1.0, **kwargs)
        self.mosaic_prob = prob
        self.affine = TRANSFORMS.build(dict(type='RandomAffine', **affine))

    def transform(self, results: dict) -> dict:
        if random.uniform(0, 1) > self.mosaic_prob:
            results.pop('mix_results', None)
            return results
        return self.affine(super().transform(results))


@TRANSFORMS.register_module()
class DenseMixUp(MixUp):
    """With probability ``prob``, mmdet's ``MixUp`` (the image blended half
    and half with another, the boxes of both kept); otherwise the image
    unchanged. ``**kwargs``: ``MixUp``'s."""

    def __init__(self, prob: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prob = prob

    def transform(self, results: dict) -> dict:
        if random.uniform(0, 1) > self.prob:
            results.pop('mix_results', None)
            return results
        return super().transform(results)
