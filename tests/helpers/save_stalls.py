"""Fault injection: a checkpoint save that stalls half-way, until killed.

Imported only by a training subprocess whose config lists it in
``custom_imports`` (``tiny_train_config(..., stalls=True)``), with
``DETR_TEST_STALL_SAVE_OF`` naming the checkpoint file to stall on (see
``helpers.tools.run_until_stalled``). Importing it installs:

* for ``AtomicLocalBackend`` (``'atomic_local'``): the ``os.fsync`` of that
  checkpoint's temporary file stalls -- every byte written, not yet renamed
  onto the checkpoint's path;
* ``backend_args=dict(backend='stall_local')``: mmengine's
  ``LocalBackend.put`` (open the final path, write) stalls after writing half
  of that checkpoint's bytes.
"""
import os
import os.path as osp
import time

from mmengine.fileio import LocalBackend, register_backend

from helpers.tools import STALL_FILE_ENV, STALL_MARKER_ENV

TARGET = os.environ.get(STALL_FILE_ENV)


def _stall(path: str) -> None:
    """Signal the test and wait to be killed."""
    with open(os.environ[STALL_MARKER_ENV], 'w') as f:
        f.write(path)
    time.sleep(3600)


def _stalling_fsync(fd, _fsync=os.fsync):
    path = os.readlink(f'/proc/self/fd/{fd}') if isinstance(fd, int) else ''
    if osp.basename(path).startswith(f'.{TARGET}.'):
        _stall(path)
    return _fsync(fd)


class StallLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` that stalls half-way through ``TARGET``."""

    def put(self, obj: bytes, filepath) -> None:
        if osp.basename(str(filepath)) != TARGET:
            return super().put(obj, filepath)
        with open(filepath, 'wb') as f:  # as LocalBackend.put does
            f.write(obj[:len(obj) // 2])
            f.flush()
        _stall(str(filepath))


if TARGET:
    os.fsync = _stalling_fsync
    register_backend('stall_local', StallLocalBackend, force=True)
