"""Decode an image once and cut every region of it into an encoder-ready square.

Pure code (PIL, numpy, torch; no Ray, no storage): the pipeline's decode stage and any single-process
reference call exactly these functions. The rules follow the paper code (``moco/loader.py``):
- the region box is rounded to whole pixels (as ``PIL.Image.crop`` does) and cropped from the
  original image; the area outside the image is filled black, so keypoint-centred squares near an
  edge keep their size and their keypoint in the centre;
- the crop is resized to ``input_size x input_size`` with the encoder's interpolation (square part
  patches keep their shape; object boxes are stretched to the square, recorded as preprocessing);
- normalisation (``x / 255 - mean) / std``) runs on the encoder's device, on uint8 batches, so the
  decode stage ships 4x fewer bytes than float tensors.

Changing any of this changes feature bytes: bump ``encoders.base.PREPROCESS_VERSION``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

Box = tuple[float, float, float, float]


class RegionError(ValueError):
    """A region (or its whole image) that cannot be cropped; the message is the errors-table reason."""


def decode_image(data: bytes) -> Image.Image:
    """RGB image from encoded bytes; ``RegionError`` naming the decoder's complaint if it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise RegionError(f"undecodable image: {type(e).__name__}: {e}") from None


def pixel_box(box: Sequence[float] | None, width: int, height: int) -> tuple[int, int, int, int]:
    """The region's box in whole pixels (``None`` = whole image); ``RegionError`` if it has no pixel inside.

    A box may extend past the image (it is filled black); one that is empty, not finite, or entirely
    outside the image is out of bounds.
    """
    if box is None:
        return 0, 0, width, height
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise RegionError(f"out-of-bounds region: box {list(box)} is not 4 finite numbers")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise RegionError(f"out-of-bounds region: empty box {[x0, y0, x1, y1]}")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise RegionError(f"out-of-bounds region: box {[x0, y0, x1, y1]} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def crop_resize(image: Image.Image, box: tuple[int, int, int, int], size: int, interpolation: str) -> np.ndarray:
    """``size x size x 3`` uint8 crop of ``box`` (black outside the image), resized with ``interpolation``."""
    crop = image.crop(box)  # PIL pads out-of-image pixels with 0 (black) for RGB
    return np.asarray(crop.resize((size, size), resample=_RESAMPLE[interpolation]), dtype=np.uint8)


@dataclass
class ImageCrops:
    """Every region of one image: crops for the good ones, a reason for the bad ones."""

    pixels: np.ndarray  # (n, size, size, 3) uint8, zeros where ``errors[i]`` is set
    errors: list[str]  # "" for a good region


def crop_regions(
    data: bytes, boxes: Sequence[Sequence[float] | None], *, size: int, interpolation: str = "bicubic"
) -> ImageCrops:
    """Decode ``data`` once and crop each of ``boxes`` (one read per image, many regions).

    An undecodable image fails all its regions; an out-of-bounds box fails only itself.
    """
    n = len(boxes)
    pixels = np.zeros((n, size, size, 3), dtype=np.uint8)
    try:
        image = decode_image(data)
    except RegionError as e:
        return ImageCrops(pixels, [str(e)] * n)
    errors = [""] * n
    for i, box in enumerate(boxes):
        try:
            pixels[i] = crop_resize(image, pixel_box(box, image.width, image.height), size, interpolation)
        except RegionError as e:
            errors[i] = str(e)
    return ImageCrops(pixels, errors)


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``N x H x W x 3`` uint8 -> ``N x 3 x H x W`` float32 ``(x / 255 - mean) / std`` on ``pixels.device``."""
    m = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return x.sub_(m).div_(s).contiguous()
