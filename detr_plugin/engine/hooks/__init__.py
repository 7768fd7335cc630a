"""The hooks a config can name, registered in the ``detr_plugin`` scope when
``detr_plugin`` is imported."""
from .adapt_checkpoint import AdaptCheckpointHook  # noqa: F401
from .atomic_checkpoint import (AtomicCheckpointHook,  # noqa: F401
                                AtomicLocalBackend)
from .batch_augment_switch import BatchAugmentSwitchHook  # noqa: F401
from .data_check import DataCheckHook  # noqa: F401
from .transform_schedule import TransformScheduleHook  # noqa: F401
from .nonfinite_loss import (NonFiniteLossError,  # noqa: F401
                             NonFiniteLossHook, nonfinite_terms)
