"""The decode stage's cost per CPU core at real image sizes: how many cores feed one GPU.

On a GPU the encoder stops being the limit and the CPU work in front of it (read, JPEG decode, crop,
resize) decides whether the GPU waits. This measures that work on one core, in this one process, on the
same JPEG bytes for every mode, per dataset shape:

- **decode only** (the floor): ``PIL`` open, load, RGB, once per image, no crop;
- **decode per region** (the paper code's loader): the image decoded again for every region, then crop
  and resize, as ``bench_extract``'s plain loop does;
- **decode once** (the pipeline's decode stage, ``extract.crops.crop_regions``): one decode per image,
  every region cropped from it.

The images are fabricated (no downloads): smooth colour fields with texture at two scales and fine grain, saved
as JPEG quality 90, so their bytes per pixel sit near real photos'; the script prints it (ImageNet's
training JPEGs average about 110 KB at about 400x350, 0.8 bytes per pixel). Region boxes follow each
shape: the whole image (ImageNet, object level), keypoint-centred squares of 40-160 px (CUB, COCO part
patches), object boxes (COCO objects).

    .venv/bin/python bench/bench_decode.py [--images 200] [--size 224]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from partaware.extract.crops import crop_regions, decode_image

# name -> (width, height, regions per image, region box side range in px; None = whole image)
SHAPES: dict[str, tuple[int, int, int, tuple[int, int] | None]] = {
    "imagenet object (whole image)": (500, 375, 1, None),
    "cub parts (keypoint squares)": (500, 375, 10, (40, 160)),
    "coco parts (keypoint squares)": (640, 480, 8, (40, 160)),
    "coco objects (boxes)": (640, 480, 7, (60, 400)),
}


def photo_like_jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
    """A JPEG with about a photo's byte density (0.75 bytes per pixel at quality 90): a smooth colour field,
    texture at two scales (cells of about 8 and 2 px) and fine grain."""

    def field(cells_w: int, scale: float) -> np.ndarray:
        cells_h = max(2, cells_w * height // width)
        small = rng.normal(0, scale, (cells_h, cells_w, 3)).astype(np.float32)
        up = [Image.fromarray(small[..., c]).resize((width, height), Image.Resampling.BICUBIC) for c in range(3)]
        return np.stack([np.asarray(u) for u in up], axis=-1)

    pixels = 128 + field(6, 50) + field(60, 18) + field(width * 3 // 5, 60) + rng.normal(0, 10, (height, width, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def boxes_for(rng: np.random.Generator, width: int, height: int, n: int, sides: tuple[int, int] | None) -> list:
    """``n`` boxes: the whole image, or squares (keypoint patches may cross the edge: black fill) and boxes."""
    if sides is None:
        return [None] * n
    out = []
    for _ in range(n):
        w, h = rng.integers(sides[0], sides[1] + 1, 2)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        out.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
    return out


def decode_only(images: list[bytes], boxes: list, size: int) -> None:
    for data in images:
        decode_image(data)


def decode_per_region(images: list[bytes], boxes: list, size: int) -> None:
    for data, image_boxes in zip(images, boxes, strict=True):
        for box in image_boxes:
            crop_regions(data, [box], size=size)


def decode_once(images: list[bytes], boxes: list, size: int) -> None:
    for data, image_boxes in zip(images, boxes, strict=True):
        crops = crop_regions(data, image_boxes, size=size)
        assert not any(crops.errors), crops.errors


def regions_per_s(mode, images: list[bytes], boxes: list, size: int, repeats: int) -> float:
    """Regions per second of ``mode`` over the best of ``repeats`` passes (shared machine: the least disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mode(images, boxes, size)
        best = min(best, time.perf_counter() - start)
    return sum(map(len, boxes)) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="images per shape")
    parser.add_argument("--size", type=int, default=224, help="the encoder's input side")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per mode (the best counts)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"decode stage on one core: {args.images} fabricated JPEGs per shape, crops to {args.size} px, "
          f"best of {args.repeats}")  # fmt: skip
    header = (f"  {'shape':32} {'px':>8} {'KB':>5} {'B/px':>5} {'reg/img':>7} | {'decode only':>11} "
              f"{'per region':>10} {'once':>8} | {'once/per-region':>15} {'once/floor':>10} "
              f"{'cores/1k reg/s':>14}")  # fmt: skip
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, (width, height, per_image, sides) in SHAPES.items():
        images = [photo_like_jpeg(rng, width, height) for _ in range(args.images)]
        boxes = [boxes_for(rng, width, height, per_image, sides) for _ in images]
        floor, loader, stage = (regions_per_s(mode, images, boxes, args.size, args.repeats)
                                for mode in (decode_only, decode_per_region, decode_once))  # fmt: skip
        kb = sum(map(len, images)) / len(images) / 1024
        print(
            f"  {name:32} {width}x{height} {kb:5.0f} {kb * 1024 / (width * height):5.2f} {per_image:7d} | "
            f"{floor:11.0f} {loader:10.0f} {stage:8.0f} | {stage / loader:15.2f} {stage / floor:10.2f} "
            f"{1000 / stage:14.1f}"
        )
    print("  (columns decode only / per region / once: regions/s on one core; cores/1k reg/s: cores the "
          "decode stage needs per 1,000 regions/s of GPU throughput)")  # fmt: skip


if __name__ == "__main__":
    main()
