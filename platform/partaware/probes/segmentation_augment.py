"""The paper's segmentation data pipeline on (image, label map) pairs (mmseg 0.x, protocol §3.5), in numpy/torch.

Why reimplemented rather than imported: the paper ran mmseg 0.x with mmcv 1.3, which this stack cannot
install; each step below follows those transforms' code so a reader can check them one by one:

- train: ``Resize`` (img_scale, ratio 0.5-2.0, keep ratio; image bilinear, labels nearest) ->
  ``RandomCrop`` (crop, ``cat_max_ratio`` 0.75, up to 10 redraws) -> ``RandomFlip`` (p 0.5) ->
  ``PhotoMetricDistortion`` -> ``Normalize`` -> ``Pad`` (image 0 after normalisation, labels 255);
- test: keep-ratio ``Resize`` to the test scale, ``Normalize``; labels stay at the original size.

Images are RGB ``uint8`` (H, W, 3); labels ``uint8`` (H, W) already in classes 0..K-1 with 255 ignored
(``probes.label_maps.LabelConvention``: ``reduce_zero_label`` is applied on reading, as mmseg's loader
does). Every random draw comes from the ``numpy.random.Generator`` passed in, so a sample is a pure
function of its seed. Resizing uses torch's bilinear/nearest without antialiasing, which is what OpenCV's
``INTER_LINEAR``/``INTER_NEAREST`` (mmcv's backend) compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from partaware.probes.metrics import IGNORE_INDEX

RATIO_RANGE = (0.5, 2.0)
CAT_MAX_RATIO = 0.75
CROP_TRIES = 10
FLIP_PROB = 0.5
BRIGHTNESS_DELTA = 32
CONTRAST_RANGE = (0.5, 1.5)
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 18  # in OpenCV's hue units (0..180)


def _writable(array: np.ndarray) -> np.ndarray:
    """A C-contiguous, writable array (torch cannot safely view a read-only one, such as a decoded image's)."""
    return np.require(array, requirements=("C", "W"))


def rescale_size(width: int, height: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's keep-ratio size: the largest (w, h) with the long edge <= max(scale) and short edge <= min(scale)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 resized to ``size`` = (w, h), bilinear, rounded back to uint8."""
    if image.shape[1::-1] == tuple(size):
        return image
    x = torch.from_numpy(_writable(image)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 labels resized to ``size`` = (w, h), nearest (no new class values appear)."""
    if label.shape[::-1] == tuple(size):
        return label
    x = torch.from_numpy(_writable(label))[None, None].float()
    return F.interpolate(x, size=(size[1], size[0]), mode="nearest")[0, 0].to(torch.uint8).numpy()


def random_resize(
    image: np.ndarray, label: np.ndarray, scale: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``Resize(img_scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True)``."""
    ratio = rng.uniform(*RATIO_RANGE)
    target = (int(scale[0] * ratio), int(scale[1] * ratio))
    size = rescale_size(image.shape[1], image.shape[0], target)
    return resize_image(image, size), resize_label(label, size)


def _crop_box(height: int, width: int, crop: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    y = int(rng.integers(0, max(height - crop, 0) + 1))
    x = int(rng.integers(0, max(width - crop, 0) + 1))
    return y, min(y + crop, height), x, min(x + crop, width)


def random_crop(
    image: np.ndarray, label: np.ndarray, crop: int, rng: np.random.Generator, cat_max_ratio: float = CAT_MAX_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomCrop``: a crop where no single labelled class covers ``cat_max_ratio`` or more of the
    labelled pixels (redrawn up to 10 times, then the last draw is kept); smaller images are kept whole."""
    box = _crop_box(*label.shape, crop, rng)
    if cat_max_ratio < 1.0:
        for _ in range(CROP_TRIES):
            y0, y1, x0, x1 = box
            values, counts = np.unique(label[y0:y1, x0:x1], return_counts=True)
            counts = counts[values != IGNORE_INDEX]
            if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
                break
            box = _crop_box(*label.shape, crop, rng)
    y0, y1, x0, x1 = box
    return image[y0:y1, x0:x1], label[y0:y1, x0:x1]


def random_flip(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, prob: float = FLIP_PROB
) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of both with probability ``prob``."""
    if rng.random() < prob:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)  # truncates, as mmseg


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """uint8 RGB -> uint8 HSV in OpenCV's units (H 0..179, S and V 0..255)."""
    rgb = image.astype(np.float32) / 255.0
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    s = np.where(v > 0, delta / np.maximum(v, 1e-12), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.maximum(delta, 1e-12)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h * 60.0) % 360.0, 0.0)
    hsv = np.stack([h / 2.0, s * 255.0, v * 255.0], -1)
    return np.clip(np.round(hsv), 0, [179, 255, 255]).astype(np.uint8)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_hsv`` (OpenCV's units), uint8 RGB."""
    h = hsv[..., 0].astype(np.float32) * 2.0 / 60.0
    s = hsv[..., 1].astype(np.float32) / 255.0
    v = hsv[..., 2].astype(np.float32) / 255.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros((*hsv.shape[:-1], 3), np.float32)
    for k, channels in enumerate(table):
        rgb[i == k] = np.stack(channels, -1)[i == k]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion``: brightness, contrast (before or after), saturation, hue; each with p 0.5."""
    image = np.asarray(image)
    if rng.integers(2):
        image = _convert(image, beta=rng.uniform(-BRIGHTNESS_DELTA, BRIGHTNESS_DELTA))
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(*CONTRAST_RANGE))
    if rng.integers(2):
        hsv = rgb_to_hsv(image)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*SATURATION_RANGE))
        image = hsv_to_rgb(hsv)
    if rng.integers(2):
        hsv = rgb_to_hsv(image)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(rng.integers(-HUE_DELTA, HUE_DELTA))) % 180
        image = hsv_to_rgb(hsv)
    if not contrast_first and rng.integers(2):
        image = _convert(image, alpha=rng.uniform(*CONTRAST_RANGE))
    return image


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 ``(x / 255 - mean) / std`` (the encoder's own statistics)."""
    x = torch.from_numpy(_writable(image)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return x.sub_(m).div_(s)


def pad_to(image: torch.Tensor, label: np.ndarray, crop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mmseg ``Pad(size=crop)``: bottom/right padding, 0 for the (normalised) image and 255 for the labels."""
    h, w = label.shape
    out_image = torch.zeros(3, max(h, crop), max(w, crop), dtype=image.dtype)
    out_image[:, :h, :w] = image
    out_label = torch.full((max(h, crop), max(w, crop)), IGNORE_INDEX, dtype=torch.uint8)
    out_label[:h, :w] = torch.from_numpy(_writable(label))
    return out_image, out_label


def train_sample(
    image: np.ndarray,
    label: np.ndarray,
    *,
    scale: tuple[int, int],
    crop: int,
    mean: Sequence[float],
    std: Sequence[float],
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented training pair: (3, crop, crop) float32 and (crop, crop) uint8 labels."""
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label map {label.shape} differ in size")
    image, label = random_resize(image, label, scale, rng)
    image, label = random_crop(image, label, crop, rng)
    image, label = random_flip(image, label, rng)
    image = photometric_distortion(image, rng)
    return pad_to(normalise(image, mean, std), label, crop)


def eval_image(image: np.ndarray, *, scale: tuple[int, int], mean: Sequence[float], std: Sequence[float]):
    """The evaluation input: keep-ratio resized to ``scale`` and normalised, (3, h, w) float32."""
    return normalise(resize_image(image, rescale_size(image.shape[1], image.shape[0], scale)), mean, std)
