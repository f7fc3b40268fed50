"""Image decoding and the train / eval transforms (Pillow + torch only, no torchvision).

Randomness comes only from an explicit ``torch.Generator`` so that a batch can be rebuilt exactly.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

# CLIP's normalisation constants (also a sensible default for from-scratch encoders).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class UnreadableImage(ValueError):
    """An image file or byte string that Pillow cannot decode (or a missing file)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"unreadable image {name}: {reason}")
        self.name = name
        self.reason = reason


def load_image(
    source: bytes | str | os.PathLike, name: str | None = None, draft_size: int | None = None
) -> Image.Image:
    """Decode ``source`` (a path, or encoded bytes) into an RGB image.

    ``name`` is what error messages call the image (default: the path; ``<bytes>`` for bytes).
    ``draft_size`` lets a JPEG decode at a reduced scale (1/2, 1/4, 1/8) that still keeps both sides at
    least that many pixels: much faster for large photos headed for a small model input. High-bit-depth
    grayscale (16-bit PNG, 32-bit integer) is scaled to 8 bits rather than clipped (which turns it white).
    Raises :class:`UnreadableImage` for a missing file or anything Pillow cannot decode.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "<bytes>"
        handle = io.BytesIO(bytes(source))
    else:
        label = name or os.fspath(source)
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise UnreadableImage(label, "no such file")
        handle = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings about odd-but-decodable files
            with Image.open(handle) as image:
                if draft_size:
                    image.draft("RGB", (draft_size, draft_size))
                image.load()  # decode now, so a truncated file fails here and not later
                return _to_8bit(image).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImage(label, f"{type(err).__name__}: {err}") from err


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _to_8bit(image: Image.Image) -> Image.Image:
    """A high-bit-depth grayscale image as 8-bit grayscale ("L"), scaled from its 16-bit range; any other
    image unchanged. (Pillow's own conversion clips every value above 255 to white.)"""
    if image.mode not in HIGH_BIT_DEPTH_MODES:
        return image
    values = np.asarray(image).astype(np.float64)
    if image.mode != "I" or values.max(initial=0) > 255:  # "I" from an 8-bit source keeps its values
        values = values / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


@dataclass
class ImageCheck:
    """What :func:`check_image` found: why the image cannot be used (None: it can), and for an image that
    must be re-encoded to be stored as 8-bit (high bit depth) its 8-bit PNG bytes."""

    problem: str | None = None
    reencoded: bytes | None = None


def check_image(path: str | os.PathLike) -> ImageCheck:
    """Look at an image file's header (no decoding, except for high-bit-depth images): missing, not an
    image, or past Pillow's decompression-bomb limit is a problem naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return ImageCheck(f"{path}: no such file")
    try:
        with Image.open(path) as image:  # raises DecompressionBombError past twice the pixel limit
            high_bit_depth = image.mode in HIGH_BIT_DEPTH_MODES
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return ImageCheck(f"{path}: {type(err).__name__}: {err}")
    if not high_bit_depth:
        return ImageCheck()
    try:
        buffer = io.BytesIO()
        load_image(path).save(buffer, format="PNG")
    except UnreadableImage as err:
        return ImageCheck(str(err))
    return ImageCheck(reencoded=buffer.getvalue())


_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def _swap_word(match: re.Match) -> str:
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper() and len(word) > 1:
        return other.upper()
    if word[0].isupper():
        return other.capitalize()
    return other


def swap_left_right(text: str) -> str:
    """Swap the words "left" and "right" (whole words only; "LEFT" -> "RIGHT", "Left" -> "Right")."""
    return _LEFT_RIGHT.sub(_swap_word, text)


def to_tensor(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """An RGB PIL image -> float tensor [3, H, W], scaled to [0, 1] then normalised per channel."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (tensor - mean_t) / std_t


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass
class ImageTransform:
    """Resize (eval) or light random-resized-crop + optional horizontal flip (train) to ``size`` x ``size``.

    ``__call__`` returns ``(pixels [3, size, size], flipped)``; when ``flipped`` is True the caller must
    pass the paired text through :func:`swap_left_right`.
    """

    size: int
    train: bool = False
    hflip: bool = False
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    scale: tuple[float, float] = (0.8, 1.0)  # fraction of the image area kept by the train crop
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect-ratio range of the train crop

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"image size must be positive, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < low <= high <= 1, got {self.scale}")

    def crop_box(
        self, width: int, height: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """A random crop (x0, y0, x1, y1) keeping a fraction in ``scale`` of the area.

        The aspect ratio is log-uniform in ``ratio`` intersected with what fits inside the image at that
        area; an image too elongated for ``ratio`` gets the fitting ratio closest to it (no rejection loop).
        """
        area = width * height * _uniform(generator, *self.scale)
        lo, hi = area / height**2, width**2 / area  # aspect ratios for which the crop fits
        a_lo, a_hi = max(self.ratio[0], lo), min(self.ratio[1], hi)
        if a_lo > a_hi:  # no overlap: take the fitting ratio nearest to the allowed range
            a_lo = a_hi = min(max(self.ratio[0], lo), hi)
        aspect = math.exp(_uniform(generator, math.log(a_lo), math.log(a_hi)))
        w = min(width, max(1, int(round(math.sqrt(area * aspect)))))
        h = min(height, max(1, int(round(math.sqrt(area / aspect)))))
        x0 = int(torch.randint(0, width - w + 1, (), generator=generator))
        y0 = int(torch.randint(0, height - h + 1, (), generator=generator))
        return x0, y0, x0 + w, y0 + h

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> tuple[Tensor, bool]:
        flipped = False
        if self.train:
            box = self.crop_box(image.width, image.height, generator)
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
            if self.hflip and float(torch.rand((), generator=generator)) < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                flipped = True
        elif image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return to_tensor(image, self.mean, self.std), flipped
