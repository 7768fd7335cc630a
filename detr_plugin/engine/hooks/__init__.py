"""The hooks a config can name, registered in the ``detr_plugin`` scope when
``detr_plugin`` is imported."""
from .adapt_checkpoint import AdaptCheckpointHook
from .atomic_checkpoint import (AtomicCheckpointHook, AtomicLocalBackend,
                                atomic_write, find_resumable_checkpoint,
                                is_complete_checkpoint)
from .nonfinite_loss import (NonFiniteLossError, NonFiniteLossHook,
                             nonfinite_terms)

__all__ = [
    'AdaptCheckpointHook', 'AtomicCheckpointHook', 'AtomicLocalBackend',
    'atomic_write', 'find_resumable_checkpoint', 'is_complete_checkpoint',
    'NonFiniteLossError', 'NonFiniteLossHook', 'nonfinite_terms'
]
