"""Corrupt and truncated image files: name them (file, image id, fix) or skip.

OpenCV >= 5 (requirements.txt) decodes a truncated JPEG or PNG, even one
missing only its last two bytes, to ``None`` (OpenCV 4 filled the missing rows
with grey); mmcv's ``LoadImageFromFile`` then fails an ``assert``.
"""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from ...registry import TRANSFORMS


class CorruptImageError(OSError):
    """An image file that exists but cannot be decoded."""


def decode_image(data: bytes, path: str, color_type: str = 'color',
                 imdecode_backend: str = 'cv2') -> np.ndarray:
    """The image in ``data`` as mmcv decodes it (``(h, w, 3)`` uint8 for
    ``'color'``), else :class:`CorruptImageError` naming ``path``."""
    img, reason = None, 'the file is empty'
    if data:
        reason = f'{imdecode_backend} cannot decode it (truncated, or not ' \
            'an image)'
        try:
            img = mmcv.imfrombytes(data, flag=color_type,
                                   backend=imdecode_backend)
        except Exception as e:  # decoders raise many types
            reason = f'the decoder failed: {e}'
    if img is None:
        raise CorruptImageError(f'corrupt image file {path}: {reason}')
    return img


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names corrupt files or skips them.

    Args:
        skip_corrupt: ``False``: a corrupt file raises
            :class:`CorruptImageError` naming it, its image id and the fix;
            ``True`` (or mmcv's ``ignore_empty``): return ``None`` (mmengine
            loads another image; in test mode it raises) and warn naming the
            file and the count skipped by this process.
    """

    def __init__(self, skip_corrupt: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_corrupt = skip_corrupt
        self.num_skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        path, img_id = results['img_path'], results.get('img_id')
        try:  # read as mmcv reads it; its decoding cannot name the problem
            data = fileio.get(path, backend_args=self.backend_args) \
                if self.file_client_args is None else \
                fileio.FileClient.infer_client(self.file_client_args,
                                               path).get(path)
        except Exception:
            if self.ignore_empty:
                return None
            raise  # FileNotFoundError names the path
        try:
            img = decode_image(data, path, self.color_type,
                               self.imdecode_backend)
        except CorruptImageError as error:
            if not (self.skip_corrupt or self.ignore_empty):
                raise CorruptImageError(
                    f'{error} (img_id {img_id}). Replace or delete the file '
                    '(and its entry in the annotation file), or skip such '
                    "files while training: corrupt_images='skip' on the "
                    'CheckedCocoDataset (--cfg-options '
                    'train_dataloader.dataset.corrupt_images=skip)') from None
            self.num_skipped += 1
            print_log(f'skipped {error} (img_id {img_id}); '
                      f'{self.num_skipped} corrupt image(s) skipped so far '
                      'by this process', logger='current', level=30)
            return None
        results['img'] = img.astype(np.float32) if self.to_float32 else img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{super().__repr__()[:-1]}, skip_corrupt={self.skip_corrupt})'
