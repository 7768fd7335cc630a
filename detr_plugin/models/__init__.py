"""DETR's modules, one idea per file; importing registers them."""
from .attention import MultiheadAttention  # noqa: F401
from .conditional_detr import (ConditionalAttention,  # noqa: F401
                               ConditionalDETR,
                               ConditionalDetrTransformerDecoder)
from .dab_detr import (DABDETR, DabDetrTransformerDecoder,  # noqa: F401
                       DabDetrTransformerEncoder)
from .deformable_attention import DeformableAttention  # noqa: F401
from .deformable_detr import (DeformableDETR,  # noqa: F401
                              DeformableDETRHead,
                              DeformableDetrTransformerDecoder,
                              DeformableDetrTransformerEncoder)
from .detr import DETR  # noqa: F401
from .detr_head import DETRHead  # noqa: F401
from .detr_panoptic import DETRPanoptic  # noqa: F401
from .dfine import (DFINE, DFINEDecoderLayer,  # noqa: F401
                    DFINEDeformableAttention, DFINEHead,
                    DFINETransformerDecoder, MatchabilityAwareLoss)
from .dfine_encoder import DFINEHybridEncoder  # noqa: F401
from .dino import DINO, DINOHead, DinoTransformerDecoder  # noqa: F401
from .hgnetv2 import HGNetV2  # noqa: F401
from .hungarian_assigner import HungarianAssigner, QueryMatches  # noqa: F401
from .hybrid_encoder import (CSPRepLayer, HybridEncoder,  # noqa: F401
                             RepVGGBlock)
from .mask_head import MaskHeadSmallConv, MHAttentionMap  # noqa: F401
from .match_costs import (BatchedTargets, BBoxL1Cost,  # noqa: F401
                          ClassificationCost, FocalLossCost, IoUCost)
from .positional_encoding import (LearnedPositionalEncoding,  # noqa: F401
                                  SinePositionalEncoding)
from .presnet import PResNet  # noqa: F401
from .rtdetr import (RTDETR, RTDETRHead,  # noqa: F401
                     RTDETRTransformerDecoder, RTDETRVarifocalLoss)
from .transformer_layers import (BaseTransformerLayer,  # noqa: F401
                                 DetrTransformerDecoder,
                                 DetrTransformerEncoder)
