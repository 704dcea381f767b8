"""One augmentation base for every objective, vectorised over the batch (no per-image Python loop), on its device.

Images arrive as one ``uint8`` tensor ``B x 3 x S x S`` already downscaled in memory; a view is
drawn for the whole batch with one ``grid_sample`` (random resized crop + horizontal flip as a
per-image affine map), then per-image colour jitter (brightness, contrast, saturation), random
grayscale and Gaussian blur, then normalisation. Every random draw comes from the ``torch.Generator``
passed in, so a step's views are a pure function of (seed, step): resuming a run replays them.

Recipes (``ViewRecipe``) differ per method only where the published methods differ: MAE uses crop +
flip only; MoCo v3, DINO and iBOT add colour jitter, grayscale and blur; DINO/iBOT add small local
crops (multi-crop). Hue jitter and solarisation are left out (named here so nobody assumes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewRecipe:
    """How to draw one view."""

    size: int
    scale: tuple[float, float] = (0.25, 1.0)  # crop area as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter_p: float = 0.0  # probability of colour jitter
    jitter: float = 0.4  # brightness/contrast/saturation strength
    #: hue rotation, a fraction of the colour circle either way (as torchvision's ColorJitter ``hue``, at most
    #: 0.5), with the jitter's probability; 0 = none (and no random draw, so other recipes' views are unchanged)
    hue: float = 0.0
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # in pixels of the output view


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def crop_grid(n: int, recipe: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """Sampling grids ``n x size x size x 2`` for random resized crops (+ flips)."""
    area = _uniform(n, *recipe.scale, gen)
    log_r = _uniform(n, math.log(recipe.ratio[0]), math.log(recipe.ratio[1]), gen)
    ratio = log_r.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # width/height as fractions of the image side
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - h)
    sx = w
    if recipe.flip:
        sx = torch.where(torch.rand(n, generator=gen) < 0.5, -w, w)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    return F.affine_grid(theta, [n, 3, recipe.size, recipe.size], align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)


# RGB -> YIQ: a hue change is a rotation of the (I, Q) chroma plane about the luma axis Y.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Each image's hue rotated by ``turns`` (a fraction of the circle), luma kept: a rotation in YIQ space."""
    angle = 2 * math.pi * turns
    rot = torch.zeros(x.shape[0], 3, 3)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    m = (torch.linalg.inv(_YIQ) @ rot @ _YIQ).to(x.device, x.dtype)
    return torch.einsum("nij,njhw->nihw", m, x).clamp(0, 1)


def colour_jitter(x: torch.Tensor, recipe: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation (each a factor in ``1 +- jitter``), then hue (``+- hue`` of the circle,
    when set) on a ``jitter_p`` share."""
    n, s = x.shape[0], recipe.jitter
    on = (torch.rand(n, generator=gen) < recipe.jitter_p).float().view(n, 1, 1, 1).to(x.device)
    b, c, sat = (_uniform(n, 1 - s, 1 + s, gen).view(n, 1, 1, 1).to(x.device) for _ in range(3))
    y = (x * b).clamp(0, 1)
    mean = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * c + mean).clamp(0, 1)
    g = _gray(y)
    y = ((y - g) * sat + g).clamp(0, 1)
    if recipe.hue > 0:
        y = rotate_hue(y, _uniform(n, -recipe.hue, recipe.hue, gen))
    return on * y + (1 - on) * x


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    on = (torch.rand(x.shape[0], generator=gen) < p).float().view(-1, 1, 1, 1).to(x.device)
    return on * _gray(x) + (1 - on) * x


def gaussian_blur(x: torch.Tensor, recipe: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma, applied to a ``blur_p`` share of the batch."""
    n, c, h, w = x.shape
    on = torch.rand(n, generator=gen) < recipe.blur_p
    sigma = _uniform(n, *recipe.blur_sigma, gen)
    if not bool(on.any()):
        return x
    radius = max(1, int(math.ceil(2 * recipe.blur_sigma[1])))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # n x K
    k = k.repeat_interleave(c, dim=0).to(x.device)  # (n*c) x K
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c)
    y = y.view(n, c, h, w)
    return torch.where(on.view(n, 1, 1, 1).to(x.device), y, x)


def make_views(
    images: torch.Tensor,
    recipe: ViewRecipe,
    gen: torch.Generator,
    *,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """One normalised float view ``B x 3 x size x size`` of a ``uint8`` batch, computed on the batch's
    device (the random draws stay on the CPU generator, so a view is the same wherever it is computed)."""
    x = images.float() / 255.0
    grid = crop_grid(x.shape[0], recipe, gen).to(x.device)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if recipe.jitter_p > 0:
        x = colour_jitter(x, recipe, gen)
    if recipe.gray_p > 0:
        x = random_grayscale(x, recipe.gray_p, gen)
    if recipe.blur_p > 0:
        x = gaussian_blur(x, recipe, gen)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def multi_crop(
    images: torch.Tensor,
    global_recipe: ViewRecipe,
    local_recipe: ViewRecipe,
    gen: torch.Generator,
    *,
    n_global: int = 2,
    n_local: int = 4,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> list[torch.Tensor]:
    """DINO/iBOT multi-crop: ``n_global`` large views then ``n_local`` small ones."""
    views = [make_views(images, global_recipe, gen, mean=mean, std=std) for _ in range(n_global)]
    views += [make_views(images, local_recipe, gen, mean=mean, std=std) for _ in range(n_local)]
    return views


def normalise(images: torch.Tensor, *, mean, std) -> torch.Tensor:
    """The un-augmented, normalised batch (evaluation and tests)."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s
