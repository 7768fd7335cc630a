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
from .detr_head import DETRHead
from .detr_panoptic import DETRPanoptic
from .dino import DINO, DINOHead, DinoTransformerDecoder
from .hungarian_assigner import HungarianAssigner, QueryMatches
from .mask_head import MaskHeadSmallConv, MHAttentionMap
from .match_costs import (BatchedTargets, BBoxL1Cost, ClassificationCost,
                          FocalLossCost, IoUCost)
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
    'DINO', 'DINOHead', 'DinoTransformerDecoder', 'DETR', 'DETRHead',
    'DETRPanoptic', 'HungarianAssigner', 'MaskHeadSmallConv', 'MHAttentionMap',
    'MultiheadAttention',
    'QueryMatches', 'BatchedTargets', 'BBoxL1Cost', 'ClassificationCost',
    'FocalLossCost', 'IoUCost', 'LearnedPositionalEncoding',
    'SinePositionalEncoding',
    'BaseTransformerLayer', 'DetrTransformerDecoder', 'DetrTransformerEncoder'
]
