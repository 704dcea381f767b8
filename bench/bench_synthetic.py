"""Synthetic dataset generation: images/s with 1 process vs the default pool, in one run.

Prints figures as a ratio against the serial baseline measured in the same process (the machines
are shared and noisy, so absolute numbers are only indicative).

    .venv/bin/python bench/bench_synthetic.py [--size 400]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from partaware.datasets import prepare_dataset
from partaware.storage import StorageRoot


def timed_prepare(size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        prepare_dataset(StorageRoot.open(tmp), "synthetic", options={"size": size}, workers=workers)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=400)
    args = parser.parse_args()
    pool = min(4, os.cpu_count() or 1)
    serial = timed_prepare(args.size, 1)
    parallel = timed_prepare(args.size, pool)
    print(f"synthetic prepare, {args.size} images at 224 px, {os.cpu_count()} cores")
    print(f"  serial (1 process):      {args.size / serial:7.1f} img/s  (baseline)")
    print(f"  pool ({pool} processes):    {args.size / parallel:7.1f} img/s  x{serial / parallel:.2f} vs baseline")


if __name__ == "__main__":
    main()
