"""Corrupt and truncated image files: detect them, name them, or skip them.

OpenCV 4 decodes a truncated JPEG without an error (the missing rows grey),
OpenCV 5 returns ``None`` (mmcv: "failed to load image").
:func:`find_corruption` reads the file's structure instead -- JPEG markers to
the end-of-image marker, PNG chunks to ``IEND`` -- a few ms per megabyte.
:class:`CheckedLoadImageFromFile`, which ``CheckedCocoDataset`` puts in place
of ``LoadImageFromFile``, names a corrupt file and its image id, or skips it.
"""
import re
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from ...registry import TRANSFORMS

JPEG_SOI = b'\xff\xd8'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# a marker inside JPEG entropy-coded data: 0xFF then neither a stuffed 0x00,
# a restart marker RST0-7 (0xD0-0xD7) nor a fill byte 0xFF
_JPEG_MARKER = re.compile(b'\xff[^\x00\xd0-\xd7\xff]')
# markers without a length field
_JPEG_STANDALONE = set(range(0xD0, 0xD8)) | {0x01, 0xD8}


class CorruptImageError(OSError):
    """An image file that exists but cannot be read completely."""


def _jpeg_corruption(data: bytes) -> Optional[str]:
    """Walk the marker segments by their lengths (an EXIF thumbnail's own
    end-of-image marker, inside APP1, is skipped) and after each start of
    scan the entropy-coded data, to the end-of-image marker EOI (0xFFD9);
    bytes after it are allowed."""
    pos, size = 2, len(data)
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size \
                and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > size:
            return f'ends after {size} bytes without the end-of-image marker'
        if data[pos] != 0xFF:
            return f'no JPEG marker at byte {pos}'
        marker = data[pos + 1]
        if marker == 0xD9:
            return None
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if pos + 4 > size:
            return f'ends after {size} bytes inside a segment header'
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
        if pos > size:
            return f'ends after {size} bytes inside a marker segment'
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                return (f'ends after {size} bytes inside the compressed '
                        'image data (truncated)')
            pos = found.start()


def _png_corruption(data: bytes) -> Optional[str]:
    """Walk the chunks by their lengths to ``IEND``."""
    pos, size = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= size:
        length = int.from_bytes(data[pos:pos + 4], 'big')
        kind = data[pos + 4:pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if pos > size:
            break
        if kind == b'IEND':
            return None
    return f'ends after {size} bytes before the IEND chunk (truncated)'


def find_corruption(data: bytes) -> Optional[str]:
    """Why the bytes of an image file are not a complete image, or ``None``
    (the structure of JPEG and PNG files; other formats: the decoder's)."""
    if not data:
        return 'the file is empty'
    if data.startswith(JPEG_SOI):
        return _jpeg_corruption(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_corruption(data)
    return None


def decode_image(data: bytes, path: str, color_type: str = 'color',
                 imdecode_backend: str = 'cv2') -> np.ndarray:
    """The image in ``data`` (``(h, w, 3)`` uint8 for ``'color'``) as mmcv
    decodes it, after :func:`find_corruption`; else a
    :class:`CorruptImageError` naming ``path`` and the problem."""
    reason, img = find_corruption(data), None
    if reason is None:
        try:
            img = mmcv.imfrombytes(
                data, flag=color_type, backend=imdecode_backend)
        except Exception as e:  # decoders raise many types
            reason = f'the decoder failed: {e}'
    if img is None:
        raise CorruptImageError(f'corrupt image file {path}: ' + (
            reason or f'{imdecode_backend} cannot decode it'))
    return img


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names corrupt files or skips them.

    Args:
        skip_corrupt: ``False``: a corrupt or truncated file raises
            :class:`CorruptImageError` naming it, its image id and the fix.
            ``True``: the transform returns ``None`` (mmengine's
            ``BaseDataset`` loads another image; in test mode it raises) and
            warns naming the file and the count skipped by this process.
        **kwargs: mmcv's arguments; ``ignore_empty=True`` (mmcv: a missing
            file gives ``None``) also skips corrupt files.
    """

    def __init__(self, skip_corrupt: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_corrupt = skip_corrupt
        self.num_skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        """Read ``results['img_path']``; add ``img``, ``img_shape``,
        ``ori_shape`` (or return ``None`` for a skipped file)."""
        filename = results['img_path']
        try:  # as mmcv reads it
            data = fileio.FileClient.infer_client(
                self.file_client_args, filename).get(filename) \
                if self.file_client_args is not None else \
                fileio.get(filename, backend_args=self.backend_args)
        except Exception:
            if self.ignore_empty:
                return None
            raise  # FileNotFoundError names the path
        try:
            img = decode_image(data, filename, self.color_type,
                               self.imdecode_backend)
        except CorruptImageError as error:
            if not (self.skip_corrupt or self.ignore_empty):
                raise CorruptImageError(
                    f'{error} (img_id {results.get("img_id")}). Replace or '
                    'delete the file (and its entry in the annotation file), '
                    "or skip such files while training: corrupt_images='skip'"
                    ' on the CheckedCocoDataset (--cfg-options '
                    'train_dataloader.dataset.corrupt_images=skip)') from None
            self.num_skipped += 1
            print_log(
                f'skipped {error} (img_id {results.get("img_id")}); '
                f'{self.num_skipped} corrupt image(s) skipped so far by '
                'this process', logger='current', level=30)
            return None
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + \
            f', skip_corrupt={self.skip_corrupt})'
