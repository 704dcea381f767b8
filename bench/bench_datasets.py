"""Real-format conversion: images/s with 1 reader thread vs several, and the cost of an idempotent rerun.

A LIP-layout release (JPEG images + PNG label maps) is fabricated once; each variant converts it into a
fresh storage root. Figures are ratios against the 1-thread baseline measured in the same process.

    .venv/bin/python bench/bench_datasets.py [--size 200] [--side 320] [--threads 4]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.storage import StorageRoot


def fabricate_lip(root: Path, size: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(size):
        split = "train" if i % 5 else "val"
        image = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        labels = (np.arange(side)[None, :] * 20 // side).repeat(side, axis=0).astype(np.uint8)
        for folder, array, fmt in (
            (root / "TrainVal_images" / f"{split}_images", image, "JPEG"),
            (root / "TrainVal_parsing_annotations" / f"{split}_segmentations", labels, "PNG"),
        ):
            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(array).save(buf, format=fmt)
            (folder / f"{i:06d}.{'jpg' if fmt == 'JPEG' else 'png'}").write_bytes(buf.getvalue())


def timed(source: Path, store: str, workers: int) -> tuple[float, bool]:
    start = time.perf_counter()
    _, built = prepare_dataset(
        StorageRoot.open(store), "lip", source=str(source), options={"decode_images": True}, workers=workers
    )
    return time.perf_counter() - start, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--side", type=int, default=320)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "LIP"
        fabricate_lip(source, args.size, args.side)
        serial, _ = timed(source, f"{tmp}/store1", 1)
        threaded, _ = timed(source, f"{tmp}/store2", args.threads)
        rerun, built = timed(source, f"{tmp}/store2", args.threads)
    print(f"lip prepare, {args.size} images of {args.side} px (decode_images=true), {os.cpu_count()} cores")
    print(f"  1 reader thread:     {args.size / serial:7.1f} img/s  (baseline)")
    print(
        f"  {args.threads} reader threads:    {args.size / threaded:7.1f} img/s  x{serial / threaded:.2f} vs baseline"
    )
    print(
        f"  rerun, same source:  {rerun * 1000:7.1f} ms  ({'rebuilt!' if built else 'nothing to do'}; "
        f"{serial / rerun:.0f}x faster than converting)"
    )


if __name__ == "__main__":
    main()
