"""The built-in synthetic part dataset: objects assembled from a shared vocabulary of part types.

Why it is built this way (the embedded default must carry the same signal as real part datasets):
- a **part type** is identified by local appearance only: its shape and its texture pattern. Colours,
  sizes, rotation and position are random, so colour or place never gives a part away;
- an **object class** is a layout of part types, and classes share part types (a ``leg`` is in dog,
  bird, chair and robot; ``car`` and ``bus`` have the same parts in other numbers and places), so
  telling objects apart needs the global arrangement, not any one part;
- background clutter (shapes with textures no part uses) and partial occlusion keep it from being
  trivial.

Every image comes with exact masks: an instance map (0 = not object, k = the k-th part), a semantic
part map and an object map (0 = background, class index + 1), plus object and part boxes, one
keypoint per part (its centre), and one whole-image label-map row per level for segmentation.
Everything is a pure function of ``(seed, index)``, so any image can be regenerated alone and in any
process.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from partaware.datasets.convert import LABEL_MAP_ID, LABEL_MAP_LABEL, label_map_info
from partaware.datasets.store import DatasetBuild, PreparedDataset, find_prepared
from partaware.errors import SpecError
from partaware.storage import StorageRoot
from partaware.validation import format_validation_error, register_options_model

GENERATOR_VERSION = "2"  # 2: whole-image label-map rows

# --- vocabulary -------------------------------------------------------------------------------

#: part type -> (shape, texture). Shapes and textures are each unique to a part type.
PART_TYPES: dict[str, tuple[str, str]] = {
    "head": ("ellipse", "dots"),
    "body": ("rounded_rect", "stripes"),
    "leg": ("rectangle", "bands"),
    "wing": ("triangle", "checker"),
    "tail": ("diamond", "gradient"),
    "wheel": ("ring", "solid"),
    "window": ("square", "grid"),
    "handle": ("cross", "rings"),
}
PART_NAMES: tuple[str, ...] = tuple(PART_TYPES)

# Object templates in object units (the object spans about [-1, 1]^2, y down):
# (part type, centre x, centre y, half-width, half-height, angle in degrees). Drawn in order.
_P = tuple[str, float, float, float, float, float]
OBJECT_TEMPLATES: dict[str, tuple[_P, ...]] = {
    "dog": (
        ("tail", 0.85, -0.25, 0.25, 0.08, -30),
        ("leg", -0.5, 0.5, 0.09, 0.32, 0),
        ("leg", -0.2, 0.5, 0.09, 0.32, 0),
        ("leg", 0.25, 0.5, 0.09, 0.32, 0),
        ("leg", 0.55, 0.5, 0.09, 0.32, 0),
        ("body", 0.0, 0.0, 0.75, 0.3, 0),
        ("head", -0.8, -0.45, 0.28, 0.24, 0),
    ),
    "bird": (
        ("leg", -0.12, 0.75, 0.06, 0.25, 0),
        ("leg", 0.12, 0.75, 0.06, 0.25, 0),
        ("tail", 0.0, 0.55, 0.12, 0.3, 0),
        ("wing", -0.65, -0.15, 0.35, 0.35, -70),
        ("wing", 0.65, -0.15, 0.35, 0.35, 70),
        ("body", 0.0, 0.1, 0.35, 0.45, 0),
        ("head", 0.0, -0.6, 0.26, 0.24, 0),
    ),
    "car": (
        ("body", 0.0, 0.05, 0.95, 0.35, 0),
        ("window", -0.4, -0.1, 0.2, 0.17, 0),
        ("window", 0.4, -0.1, 0.2, 0.17, 0),
        ("wheel", -0.55, 0.5, 0.25, 0.25, 0),
        ("wheel", 0.55, 0.5, 0.25, 0.25, 0),
    ),
    "bus": (
        ("body", 0.0, -0.05, 0.95, 0.55, 0),
        ("window", -0.66, -0.3, 0.15, 0.15, 0),
        ("window", -0.22, -0.3, 0.15, 0.15, 0),
        ("window", 0.22, -0.3, 0.15, 0.15, 0),
        ("window", 0.66, -0.3, 0.15, 0.15, 0),
        ("wheel", -0.65, 0.6, 0.2, 0.2, 0),
        ("wheel", 0.0, 0.6, 0.2, 0.2, 0),
        ("wheel", 0.65, 0.6, 0.2, 0.2, 0),
    ),
    "plane": (
        ("wing", -0.05, -0.55, 0.3, 0.45, 180),
        ("wing", -0.05, 0.55, 0.3, 0.45, 0),
        ("body", 0.0, 0.0, 0.95, 0.18, 0),
        ("tail", 0.85, -0.25, 0.12, 0.25, 20),
        ("window", -0.6, 0.0, 0.08, 0.08, 0),
        ("window", -0.35, 0.0, 0.08, 0.08, 0),
        ("window", -0.1, 0.0, 0.08, 0.08, 0),
    ),
    "chair": (
        ("leg", -0.5, 0.55, 0.08, 0.4, 0),
        ("leg", 0.5, 0.55, 0.08, 0.4, 0),
        ("body", 0.0, 0.1, 0.65, 0.15, 0),
        ("handle", 0.0, -0.45, 0.4, 0.4, 0),
    ),
    "robot": (
        ("leg", -0.25, 0.7, 0.1, 0.3, 0),
        ("leg", 0.25, 0.7, 0.1, 0.3, 0),
        ("body", 0.0, 0.0, 0.4, 0.45, 0),
        ("handle", -0.65, 0.0, 0.22, 0.22, 0),
        ("handle", 0.65, 0.0, 0.22, 0.22, 0),
        ("head", 0.0, -0.7, 0.24, 0.22, 0),
    ),
    "cup": (
        ("handle", 0.6, -0.05, 0.28, 0.28, 0),
        ("body", 0.0, 0.0, 0.45, 0.6, 0),
        ("tail", 0.0, -0.72, 0.45, 0.1, 0),
    ),
}
OBJECT_NAMES: tuple[str, ...] = tuple(OBJECT_TEMPLATES)
_CLUTTER_SHAPES = ("ellipse", "rectangle")


@register_options_model
class SyntheticConfig(BaseModel):
    """Everything that changes the generated bytes (and so the dataset version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(3000, ge=8, le=1_000_000, description="number of images")
    image_size: int = Field(224, ge=64, le=1024, description="side of the square images, in pixels")
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.15, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    occlusion_prob: float = Field(0.3, ge=0.0, le=1.0)
    max_clutter: int = Field(6, ge=0, le=50)
    min_part_pixels: int = Field(24, ge=1, description="smaller visible parts get no region row")
    jpeg_quality: int = Field(92, ge=50, le=100)

    @model_validator(mode="after")
    def _splits_fit(self) -> SyntheticConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for train")
        return self


@dataclass(frozen=True)
class PartInstance:
    index: int  # value in the instance map (1-based, drawing order)
    part: str
    keypoint: tuple[float, float]  # (x, y) centre of the part, in pixels


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered image with its exact annotations."""

    index: int
    object_label: str
    image: np.ndarray  # H x W x 3 uint8
    instance_map: np.ndarray  # H x W uint8: 0 = not object, k = part instance k
    parts: tuple[PartInstance, ...]

    def part_map(self) -> np.ndarray:
        """Semantic part map: 0 = background, part type index + 1 elsewhere."""
        lut = np.zeros(256, np.uint8)
        for p in self.parts:
            lut[p.index] = PART_NAMES.index(p.part) + 1
        return lut[self.instance_map]

    def object_map(self) -> np.ndarray:
        """Semantic object map: 0 = background, object class index + 1 on the object's visible pixels."""
        return np.where(self.instance_map > 0, OBJECT_NAMES.index(self.object_label) + 1, 0).astype(np.uint8)


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x0, y0, x1, y1) of a boolean mask, x1/y1 exclusive; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def split_of(index: int, config: SyntheticConfig) -> str:
    """Split of image ``index``: a seeded permutation, cut by the configured fractions."""
    order = _split_order(config.size, config.seed)
    rank = order[index]
    n_test = max(1, round(config.size * config.test_fraction))
    n_val = round(config.size * config.val_fraction)
    if rank < n_test:
        return "test"
    if rank < n_test + n_val:
        return "val"
    return "train"


@functools.lru_cache(maxsize=8)
def _split_order(size: int, seed: int) -> np.ndarray:
    perm = np.random.default_rng([seed, 7919]).permutation(size)
    rank = np.empty(size, dtype=np.int64)
    rank[perm] = np.arange(size)
    return rank


# --- rendering --------------------------------------------------------------------------------


def render_sample(index: int, config: SyntheticConfig) -> SyntheticSample:
    """Render image ``index`` of the dataset described by ``config`` (pure and deterministic)."""
    rng = np.random.default_rng([config.seed, index])
    size = config.image_size
    label = OBJECT_NAMES[index % len(OBJECT_NAMES)]  # balanced classes
    canvas = _background(rng, size)
    for _ in range(int(rng.integers(0, config.max_clutter + 1))):
        _draw_clutter(rng, canvas)

    # object pose: scale (pixels per object unit), rotation, mirror, position
    scale = size * rng.uniform(0.22, 0.36)
    theta = math.radians(rng.uniform(-25, 25))
    mirror = rng.random() < 0.5
    margin = 1.1 * scale
    centre = rng.uniform(margin, size - margin, size=2) if size > 2 * margin else np.array([size / 2] * 2)
    cos, sin = math.cos(theta), math.sin(theta)

    instance_map = np.zeros((size, size), np.uint8)
    parts: list[PartInstance] = []
    for k, (part, px, py, hw, hh, angle) in enumerate(OBJECT_TEMPLATES[label], start=1):
        px += rng.normal(0, 0.04)
        py += rng.normal(0, 0.04)
        hw *= rng.uniform(0.85, 1.15)
        hh *= rng.uniform(0.85, 1.15)
        angle = angle + rng.normal(0, 8)
        if mirror:
            px, angle = -px, -angle
        x = centre[0] + scale * (cos * px - sin * py)
        y = centre[1] + scale * (sin * px + cos * py)
        part_theta = theta + math.radians(angle)
        shape, texture = PART_TYPES[part]
        region, colour = _render_part(rng, size, (x, y), (scale * hw, scale * hh), part_theta, shape, texture)
        if region is None:
            continue
        ys, xs, m = region
        canvas[ys, xs][m] = colour[m]
        instance_map[ys, xs][m] = k
        parts.append(PartInstance(k, part, (float(x), float(y))))

    if rng.random() < config.occlusion_prob:
        _draw_occluder(rng, canvas, instance_map, centre, scale)

    noise = rng.normal(0, 6, canvas.shape)
    image = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return SyntheticSample(index, label, image, instance_map, tuple(parts))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random colour field (low-frequency noise, bilinearly upsampled)."""
    coarse = rng.uniform(40, 215, size=(4, 4, 3))
    img = Image.fromarray(coarse.astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32).copy()


def _window(size: int, centre: tuple[float, float], radius: float) -> tuple[slice, slice]:
    x, y = centre
    x0, x1 = max(0, int(x - radius) - 1), min(size, int(x + radius) + 2)
    y0, y1 = max(0, int(y - radius) - 1), min(size, int(y + radius) + 2)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _local_coords(ys: slice, xs: slice, centre, half, theta) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in the part's frame, normalised so the part spans [-1, 1]^2."""
    yy, xx = np.mgrid[ys, xs].astype(np.float32) + 0.5
    dx, dy = xx - centre[0], yy - centre[1]
    c, s = math.cos(theta), math.sin(theta)
    return (c * dx + s * dy) / half[0], (-s * dx + c * dy) / half[1]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + v * v <= 1
    if shape in ("rectangle", "square"):
        return (au <= 1) & (av <= 1)
    if shape == "rounded_rect":
        corner = (np.maximum(au - 0.6, 0) / 0.4) ** 2 + (np.maximum(av - 0.4, 0) / 0.6) ** 2
        return (corner <= 1) & (au <= 1) & (av <= 1)
    if shape == "triangle":  # apex at v = -1, base at v = +1
        return (av <= 1) & (au <= (v + 1) / 2)
    if shape == "diamond":
        return au + av <= 1
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.5**2)
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1)) | ((au <= 1) & (av <= 0.3))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
    """Weight in [0, 1] of the second colour; patterns live in the part frame, so they turn with it."""
    if texture == "solid":
        return np.zeros_like(u)
    if texture == "stripes":  # stripes across the long axis
        return (np.sin(2 * np.pi * freq * u) > 0).astype(np.float32)
    if texture == "bands":  # bands along the part
        return (np.sin(2 * np.pi * freq * v) > 0).astype(np.float32)
    if texture == "dots":
        fu, fv = (u * freq) % 1 - 0.5, (v * freq) % 1 - 0.5
        return (fu * fu + fv * fv < 0.09).astype(np.float32)
    if texture == "checker":
        return ((np.floor(u * freq) + np.floor(v * freq)) % 2).astype(np.float32)
    if texture == "grid":
        fu, fv = (u * freq) % 1, (v * freq) % 1
        return ((fu < 0.25) | (fv < 0.25)).astype(np.float32)
    if texture == "gradient":
        return np.clip((u + 1) / 2, 0, 1)
    if texture == "rings":
        return (np.sin(2 * np.pi * freq * np.sqrt(u * u + v * v)) > 0).astype(np.float32)
    if texture == "noise":
        return np.clip(0.5 + 0.35 * np.sin(7.3 * u + 3.1) * np.cos(5.7 * v + 1.7), 0, 1)
    raise ValueError(f"unknown texture {texture!r}")


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, 255, 3)
    b = rng.uniform(0, 255, 3)
    while np.abs(a - b).sum() < 150:  # keep the pattern visible
        b = rng.uniform(0, 255, 3)
    return a, b


def _render_part(rng, size, centre, half, theta, shape, texture):
    """The part's window, its boolean mask there, and its colours there; None if it is off-canvas."""
    half = (max(half[0], 1.0), max(half[1], 1.0))
    ys, xs = _window(size, centre, math.hypot(*half))
    if ys.stop <= ys.start or xs.stop <= xs.start:
        return None, None
    u, v = _local_coords(ys, xs, centre, half, theta)
    mask = _shape_mask(shape, u, v)
    if not mask.any():
        return None, None
    a, b = _two_colours(rng)
    freq = rng.uniform(2.0, 3.0)
    w = _texture(texture, u, v, freq)[..., None]
    colour = (1 - w) * a + w * b
    return (ys, xs, mask), colour.astype(np.float32)


def _draw_clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    size = canvas.shape[0]
    centre = tuple(rng.uniform(0, size, 2))
    half = tuple(rng.uniform(0.03, 0.15, 2) * size)
    shape = _CLUTTER_SHAPES[int(rng.integers(len(_CLUTTER_SHAPES)))]
    region, colour = _render_part(rng, size, centre, half, rng.uniform(0, np.pi), shape, "noise")
    if region is not None:
        ys, xs, m = region
        canvas[ys, xs][m] = colour[m]


def _draw_occluder(rng, canvas, instance_map, obj_centre, scale) -> None:
    """A textured blob over part of the object; occluded pixels leave the object's masks."""
    size = canvas.shape[0]
    centre = tuple(obj_centre + rng.normal(0, 0.6 * scale, 2))
    half = tuple(rng.uniform(0.25, 0.5, 2) * scale)
    region, colour = _render_part(rng, size, centre, half, rng.uniform(0, np.pi), "ellipse", "noise")
    if region is not None:
        ys, xs, m = region
        canvas[ys, xs][m] = colour[m]
        instance_map[ys, xs][m] = 0


# --- manifest rows ----------------------------------------------------------------------------


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_jpeg(array: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sample_files(sample: SyntheticSample, config: SyntheticConfig) -> dict[str, bytes]:
    """The files of one sample, by path relative to the dataset folder."""
    stem = f"{sample.index:06d}"
    return {
        f"images/{stem}.jpg": encode_jpeg(sample.image, config.jpeg_quality),
        f"masks/{stem}_instances.png": encode_png(sample.instance_map),
        f"labels/part/{stem}.png": encode_png(sample.part_map()),
        f"labels/object/{stem}.png": encode_png(sample.object_map()),
    }


def sample_rows(sample: SyntheticSample, config: SyntheticConfig) -> Iterator[dict]:
    """Manifest rows of one sample: the object box, each visible part's box, then one whole-image
    label-map row per level (``datasets.labelmaps``' convention), so segmentation reads the same set."""
    stem = f"{sample.index:06d}"
    common = {
        "image_id": stem,
        "image_uri": f"images/{stem}.jpg",
        "width": config.image_size,
        "height": config.image_size,
        "split": split_of(sample.index, config),
        "object_label": sample.object_label,
        "object_label_id": OBJECT_NAMES.index(sample.object_label),
    }
    yield from _box_rows(sample, config, common)
    yield from _label_map_rows(stem, common)


def _box_rows(sample: SyntheticSample, config: SyntheticConfig, common: dict) -> Iterator[dict]:
    """The object (box of its visible pixels), then each part with enough visible pixels."""
    stem = common["image_id"]
    object_id = common["object_label_id"]
    obj_box = box_of(sample.instance_map > 0)
    if obj_box is None:
        return
    yield {
        **common,
        "region_id": f"{stem}/object",
        "level": "object",
        "label": sample.object_label,
        "label_id": object_id,
        "box": list(obj_box),
        "mask_uri": f"labels/object/{stem}.png",
        "mask_index": object_id + 1,
        "label_map_uri": f"labels/object/{stem}.png",
        "sample_rule": "object-box",
    }
    for part in sample.parts:
        mask = sample.instance_map == part.index
        if int(mask.sum()) < config.min_part_pixels:
            continue
        kx, ky = part.keypoint
        ix, iy = int(kx), int(ky)
        visible = 0 <= ix < config.image_size and 0 <= iy < config.image_size and bool(mask[iy, ix])
        yield {
            **common,
            "region_id": f"{stem}/part{part.index:02d}",
            "level": "part",
            "label": part.part,
            "label_id": PART_NAMES.index(part.part),
            "box": list(box_of(mask)),
            "keypoint": [kx, ky],
            "keypoint_visible": visible,
            "mask_uri": f"masks/{stem}_instances.png",
            "mask_index": part.index,
            "label_map_uri": f"labels/part/{stem}.png",
            "sample_rule": "part-box",
        }


def _label_map_rows(stem: str, common: dict) -> Iterator[dict]:
    """One whole-image row per level (box null, per-pixel labels in the map), for every image: a map
    with no visible object is still a segmentation sample (all background)."""
    for level in ("object", "part"):
        yield {
            **common,
            "region_id": f"{stem}/image-{level}",
            "level": level,
            "label": LABEL_MAP_LABEL,
            "label_id": LABEL_MAP_ID,
            "label_map_uri": f"labels/{level}/{stem}.png",
            "sample_rule": "whole-image",
        }


def render_files_and_rows(index: int, config: SyntheticConfig) -> tuple[dict[str, bytes], list[dict]]:
    """Files and manifest rows of image ``index``: the unit of work a process pool maps over."""
    sample = render_sample(index, config)
    return sample_files(sample, config), list(sample_rows(sample, config))


# --- the converter ----------------------------------------------------------------------------

ProgressFn = Callable[[int, int], None]


def prepare_synthetic(
    root: StorageRoot,
    *,
    source: str | None = None,
    options: dict | None = None,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[PreparedDataset, bool]:
    """Generate the dataset under ``root`` unless this exact config was generated before.

    ``options`` are ``SyntheticConfig`` fields. Returns the prepared dataset and whether it was built
    now (False: found complete, nothing done).
    """
    if source is not None:
        raise SpecError(f"synthetic: the dataset is generated, it takes no --source (got {source!r})")
    try:
        config = SyntheticConfig(**(options or {}))
    except ValidationError as e:
        raise SpecError(format_validation_error("synthetic", e, what="dataset options")) from None
    recipe = {"generator": GENERATOR_VERSION, **config.model_dump()}
    found = find_prepared(root, "synthetic", recipe)
    if found is not None:
        return found, False
    workers = workers or min(4, os.cpu_count() or 1)
    rows: list[dict] = []
    with DatasetBuild(root, "synthetic", recipe) as build:
        for done, (files, sample_rows_) in enumerate(_render_all(config, workers), start=1):
            for relpath, data in files.items():
                build.add_file(relpath, data)
            rows.extend(sample_rows_)
            if progress:
                progress(done, config.size)
        info = {
            "description": "procedural objects built from a shared part vocabulary",
            "object_classes": list(OBJECT_NAMES),
            "part_classes": list(PART_NAMES),
            # the maps store 0 = background, k = class k-1: the labelmaps datasets' convention, per level
            "label_maps": {
                "object": label_map_info("object", list(OBJECT_NAMES), names_source="generator"),
                "part": label_map_info("part", list(PART_NAMES), names_source="generator"),
            },
        }
        return build.publish(rows, info), True


def _render_all(config: SyntheticConfig, workers: int) -> Iterator[tuple[dict[str, bytes], list[dict]]]:
    indices = range(config.size)
    if workers <= 1 or config.size < 64:
        yield from (render_files_and_rows(i, config) for i in indices)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(render_files_and_rows, indices, [config] * config.size, chunksize=16)
