"""Image files that cannot be used as annotated: name them (file, image id,
fix), skip the corrupt ones or resize the mis-sized ones when asked.

A JPEG or PNG whose end is cut off (a partial download) decodes without an
error in OpenCV 4 (the missing rows grey) and to ``None`` in OpenCV 5, where
mmcv's ``LoadImageFromFile`` fails an ``assert``: here a file whose end
marker is missing is corrupt, whatever the decoder. mmcv's ``cv2`` and
``pillow`` backends rotate a JPEG by its EXIF orientation for ``color_type``
``'color'`` and ``'grayscale'``, while COCO boxes and sizes usually refer to
the stored pixels.
"""
from typing import Optional, Tuple

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image

from ...registry import TRANSFORMS

ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF: transposed, rotated 90 / 270
# what ends a whole file of these formats (a partial download lacks it),
# by the bytes that start one
END_MARKERS = dict(JPEG=b'\xff\xd9', PNG=b'IEND\xaeB`\x82')
MAGIC = {b'\xff\xd8': 'JPEG', b'\x89PNG': 'PNG'}


def cut_off(data: bytes) -> bool:
    """Whether ``data`` starts as a JPEG or PNG file and lacks its end
    marker near its end (JPEGs may carry padding after it)."""
    kind = next((k for magic, k in MAGIC.items() if data.startswith(magic)),
                None)
    return kind is not None and END_MARKERS[kind] not in data[-1024:]


class CorruptImageError(OSError):
    """An image file that exists but cannot be decoded."""


class ImageSizeError(ValueError):
    """An image whose decoded size is not the size its annotation gives."""


def decode_image(data: bytes, path: str, color_type: str = 'color',
                 imdecode_backend: str = 'cv2') -> np.ndarray:
    """The image in ``data`` as mmcv decodes it (``(h, w, 3)`` uint8 for
    ``'color'``), else :class:`CorruptImageError` naming ``path``."""
    img, reason = None, 'the file is empty'
    if cut_off(data):
        reason = 'the file ends before the image does (truncated)'
    elif data:
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


def rotates(loader: LoadImageFromFile) -> bool:
    """Whether ``loader`` applies EXIF orientation (mmcv's ``imfrombytes``:
    cv2 and pillow do for these flags)."""
    return loader.color_type in ('color', 'grayscale') and \
        loader.imdecode_backend in ('cv2', 'pillow')


def image_header(path: str) -> Tuple[Tuple[int, int], int, bool]:
    """``((h, w) in the header, EXIF orientation (1: none), whether the
    file ends as a whole JPEG / PNG does)`` from its first and last bytes;
    :class:`CorruptImageError` if the header is unreadable."""
    try:
        with open(path, 'rb') as f, Image.open(f) as image:  # the header
            (w, h), orientation = image.size, image.getexif().get(274, 1)
            f.seek(0)
            head = f.read(8)
            f.seek(-min(1024, f.seek(0, 2)), 2)
            whole = not cut_off(head + f.read())
    except Exception as e:  # PIL raises many types
        raise CorruptImageError(
            f'corrupt image file {path}: its header cannot be read '
            f'({e})') from None
    return (h, w), orientation, whole


def size_error(path: str, img_id, key: str, declared: Tuple[int, int],
               decoded: Tuple[int, int], orientation: int = 1) -> str:
    """What is wrong with an image of another size than its annotation's,
    and the fix (``key``: its dataset's config key)."""
    where = key or 'the dataset (a CheckedCocoDataset)'
    text = (f'image {path} (img_id {img_id}) decodes to {decoded[0]} x '
            f'{decoded[1]} (h x w) but the annotation file gives '
            f'{declared[0]} x {declared[1]}; its boxes would be misplaced or '
            'clamped. ')
    if orientation in ROTATING_ORIENTATIONS:
        return text + (
            f'Its EXIF orientation {orientation} makes mmcv rotate it while '
            'the annotation refers to the stored pixels. Fix: re-save it '
            "without the EXIF rotation, or load ignoring it: color_type="
            "'color_ignore_orientation' in LoadImageFromFile of the train and"
            ' test pipelines.')
    return text + (
        'Fix: write the real width and height into the annotation file (if '
        'the boxes refer to this image), or, if they were drawn on a copy '
        f"of the annotated size, set size_mismatch='rescale' in {where}: "
        'the image is then resized to that size.')


def corrupt_fix(key: str) -> str:
    """The fix of a corrupt file of the dataset of config key ``key``:
    replace it, or skip such files (a training set only)."""
    fix = 'Replace or delete the file (and its entry in the annotation file)'
    if key and not key.startswith('train'):
        return f'{fix} ({key} cannot skip images: every one is evaluated)'
    return (f"{fix}, or skip such files while training: corrupt_images='skip'"
            ' on the CheckedCocoDataset (--cfg-options '
            f"{key or 'train_dataloader.dataset'}.corrupt_images=skip)")


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names corrupt and mis-sized files.

    Args:
        skip_corrupt: ``False``: a corrupt file raises
            :class:`CorruptImageError` naming it, its image id and the fix;
            ``True`` (or mmcv's ``ignore_empty``): return ``None`` (mmengine
            loads another image; in test mode it raises) and warn naming the
            file and the count skipped by this process.
        size_mismatch: for an image whose decoded size differs from its
            annotation's ``height`` / ``width``: ``'error'`` (default),
            :class:`ImageSizeError` naming both sizes and the fix;
            ``'rescale'``: resize the image to the annotation's size (the
            boxes, the evaluation and the predictions stay in its pixels).
    """

    def __init__(self, skip_corrupt: bool = False,
                 size_mismatch: str = 'error', **kwargs) -> None:
        super().__init__(**kwargs)
        self.skip_corrupt, self.size_mismatch = skip_corrupt, size_mismatch
        self.num_skipped = 0
        self.config_key = ''  # its dataset's, for the messages

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
                    f'{error} (img_id {img_id}). '
                    f'{corrupt_fix(self.config_key)}.') from None
            self.num_skipped += 1
            print_log(f'skipped {error} (img_id {img_id}); '
                      f'{self.num_skipped} corrupt image(s) skipped so far '
                      'by this process', logger='current', level=30)
            return None
        declared = results.get('height'), results.get('width')
        if None not in declared and img.shape[:2] != declared:
            if self.size_mismatch != 'rescale':
                raise ImageSizeError(size_error(
                    path, img_id, self.config_key, declared, img.shape[:2],
                    image_header(path)[1] if rotates(self) else 1))
            img = mmcv.imresize(img, declared[::-1])
        results['img'] = img.astype(np.float32) if self.to_float32 else img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, skip_corrupt={self.skip_corrupt}'
                f', size_mismatch={self.size_mismatch!r})')
