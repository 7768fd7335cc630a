"""DETR's modules, one idea per file; importing registers them."""
from .attention import MultiheadAttention
from .conditional_detr import (ConditionalAttention, ConditionalDETR,
                               ConditionalDetrTransformerDecoder)
from .dab_detr import (DABDETR, DabDetrTransformerDecoder,
                       DabDetrTransformerEncoder)
from .deformable_attention import DeformableAttention
from .deformable_detr import (DeformableDETR, DeformableDETRHead,
                              DeformableDetrTransformerDecoder,
                              DeformableDetrTransformerEncoder)
from .detr import DETR
from .dino import DINO, DINOHead, DinoTransformerDecoder
from .detr_head import DETRHead
from .hungarian_assigner import HungarianAssigner, QueryMatches
from .match_costs import (BatchedTargets, BBoxL1Cost, ClassificationCost,
                          FocalLossCost,
                          IoUCost)
from .positional_encoding import (LearnedPositionalEncoding,
                                  SinePositionalEncoding)
from .transformer_layers import (BaseTransformerLayer, DetrTransformerDecoder,
                                 DetrTransformerEncoder)

__all__ = [
    'ConditionalAttention', 'ConditionalDETR',
    'ConditionalDetrTransformerDecoder', 'DABDETR',
    'DabDetrTransformerDecoder', 'DabDetrTransformerEncoder',
    'DeformableAttention', 'DeformableDETR', 'DeformableDETRHead',
    'DeformableDetrTransformerDecoder', 'DeformableDetrTransformerEncoder',
    'DINO', 'DINOHead', 'DinoTransformerDecoder', 'MultiheadAttention', 'DETR', 'DETRHead', 'HungarianAssigner',
    'QueryMatches', 'BatchedTargets', 'BBoxL1Cost', 'ClassificationCost',
    'FocalLossCost',
    'IoUCost', 'LearnedPositionalEncoding', 'SinePositionalEncoding',
    'BaseTransformerLayer', 'DetrTransformerDecoder', 'DetrTransformerEncoder'
]
