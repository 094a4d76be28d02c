"""One PNG/JPEG file -> one model input: resize, convert channels, scale, lay out.

The steps, always the same so that a folder scores the same on every machine:

1. decode with Pillow and convert to ``L`` (1 channel), ``RGB`` (3) or ``RGBA`` (4);
2. resize to the model's ``H x W``: area averaging (``BOX``) when the picture shrinks, which is
   how scikit-learn's 8x8 digits were made from 32x32 bitmaps, bilinear when it grows;
3. scale the 8-bit pixels: ``pixel * s`` when the model's metadata has ``lc2d.pixel_scale = s``,
   else ``pixel / 255`` (values in ``[0, 1]``, the range the digits model was trained on);
4. lay out as the model's ``lc2d.data_format`` says (``H, W, C`` or ``C, H, W``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from service.contract import InputContract
from service.model_format import Key
from service.scoring.errors import ScoringInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIXEL_SCALE_KEY = Key.PIXEL_SCALE
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageLayout:
    """How an image becomes one model input.

    Attributes:
        instance_shape: the model's instance shape (rank 2 ``H, W`` or rank 3).
        height, width, channels: the picture size and channel count the model wants.
        channels_first: ``True`` for ``C, H, W`` inputs.
        pixel_scale: multiplier of 8-bit pixel values, or ``None`` for ``pixel / 255``.
    """

    instance_shape: tuple[int, ...]
    height: int
    width: int
    channels: int
    channels_first: bool
    pixel_scale: float | None

    @classmethod
    def from_contract(cls, contract: InputContract) -> ImageLayout:
        """Reads the layout from the model's input contract and metadata.

        Raises:
            ScoringInputError: the model does not take 1-, 3- or 4-channel images of a fixed size.
        """
        shape = contract.instance_shape
        if any(d is None for d in shape) or len(shape) not in (2, 3):
            raise ScoringInputError(f"image folders need a model taking images of a fixed size "
                                    f"([H, W], [H, W, C] or [C, H, W]), this model takes {list(shape)}")
        dims = tuple(int(d) for d in shape if d is not None)
        channels_first = len(dims) == 3 and contract.data_format == "channels_first"
        if len(dims) == 2:
            height, width, channels = dims[0], dims[1], 1
        elif channels_first:
            channels, height, width = dims
        else:
            height, width, channels = dims
        if channels not in _MODES:
            raise ScoringInputError(f"image folders need a model with 1, 3 or 4 channels, this model's "
                                    f"input {list(dims)} has {channels}")
        return cls(instance_shape=dims, height=height, width=width, channels=channels,
                   channels_first=channels_first, pixel_scale=_pixel_scale(contract))


def read_image(path: Path | BinaryIO, layout: ImageLayout, name: str | None = None) -> np.ndarray:
    """Decodes one file (or an open binary stream) into a float32 array of ``layout.instance_shape``.

    Args:
        path: the file, or a stream holding a PNG or JPEG (a ``{"b64": ...}`` value of a request).
        layout: how the picture becomes a model input.
        name: what to call the image in messages (default: the path).

    Raises:
        ScoringInputError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    name = name or repr(str(path))
    try:
        with Image.open(path) as image:
            shrinks = image.width >= layout.width and image.height >= layout.height
            picture = image.convert(_MODES[layout.channels]).resize(
                (layout.width, layout.height),
                Image.Resampling.BOX if shrinks else Image.Resampling.BILINEAR)
    except Image.DecompressionBombError as err:  # more pixels than Pillow agrees to decode
        raise ScoringInputError(f"expected a PNG or JPEG image of at most {Image.MAX_IMAGE_PIXELS:,} "
                                f"pixels, received {name}, which Pillow refuses as a "
                                f"decompression bomb ({err})") from err
    except (UnidentifiedImageError, OSError, ValueError, MemoryError) as err:
        raise ScoringInputError(f"expected a PNG or JPEG image, received {name}, which Pillow "
                                f"cannot read ({err})") from err
    pixels = np.asarray(picture, dtype=np.float32).reshape(layout.height, layout.width, layout.channels)
    if layout.pixel_scale is None:
        scaled = pixels / np.float32(255)
    else:
        scaled = pixels * np.float32(layout.pixel_scale)
    if layout.channels_first:
        scaled = scaled.transpose(2, 0, 1)
    return scaled.reshape(layout.instance_shape)


def _pixel_scale(contract: InputContract) -> float | None:
    raw = contract.metadata.get(PIXEL_SCALE_KEY)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise ScoringInputError(f"metadata {PIXEL_SCALE_KEY} must be a number, received {raw!r}") from err
