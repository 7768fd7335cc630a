"""Fault injection: the disk is full when a checkpoint is written.

Imported only by a training subprocess whose config lists it in
``custom_imports``: every write of a ``.pth`` by the atomic checkpoint
backend fails as on a full disk (``OSError`` ``ENOSPC``).
"""
import errno
import os

from detr_plugin.engine.hooks import atomic_checkpoint

write = atomic_checkpoint.atomic_write


def full_disk_write(data, path):
    if str(path).endswith('.pth'):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return write(data, path)


atomic_checkpoint.atomic_write = full_disk_write
