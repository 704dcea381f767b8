"""Lab pretraining cost per objective, as a ratio against ``supervised`` measured in the same run,
and the projected wall time of the default budget on a 2-core machine.

Each objective trains a few steps of the default batch with one torch thread (as a Ray task does) on the
quickstart's training objects (synthetic, 1000 images, 64-px object crops). CPU seconds per step are
measured with ``process_time`` as well as wall time: on a shared, loaded machine the CPU figure is the
one that projects; two Ray tasks run at once on two cores, so the projection is sum(CPU) / 2.

    .venv/bin/python bench/bench_lab.py [--steps 4] [--storage DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from partaware.datasets import prepare_dataset
from partaware.lab.data import load_lab_data
from partaware.lab.objectives import objective_names
from partaware.lab.train import DEFAULT_BATCH, DEFAULT_STEPS, Budget, bind_budget, fit
from partaware.storage import StorageRoot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--storage", default=None, help="reuse a storage root holding the quickstart dataset")
    parser.add_argument("--objectives", default="all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = StorageRoot.open(args.storage or tmp)
        start = time.perf_counter()
        prepared, _ = prepare_dataset(root, "synthetic", options={"size": 1000, "image_size": 224})
        data = load_lab_data(prepared, size=64)
        print(f"dataset + decode: {time.perf_counter() - start:.1f} s, {len(data)} training images")
        names = objective_names() if args.objectives == "all" else args.objectives.split(",")
        scratch = StorageRoot.open(tmp).sub("bench")
        rows = {}
        for name in names:
            budget = bind_budget(Budget(steps=args.steps + 1, batch_size=DEFAULT_BATCH, seed=0), data)
            fit(scratch, name, budget, data, checkpoint_every=10**9, stop_after=1)  # warm-up, setup (tokenizer)
            w0, c0 = time.perf_counter(), time.process_time()
            fit(scratch, name, budget, data, checkpoint_every=10**9)  # resumes at step 1
            rows[name] = ((time.perf_counter() - w0) / args.steps, (time.process_time() - c0) / args.steps)
        base = rows.get("supervised", next(iter(rows.values())))[1]
        print(f"{'objective':<12}{'wall s/step':>12}{'cpu s/step':>12}{'x supervised':>14}{'default budget cpu s':>22}")
        for name, (wall, cpu) in rows.items():
            print(f"{name:<12}{wall:>12.3f}{cpu:>12.3f}{cpu / base:>14.2f}{cpu * DEFAULT_STEPS:>22.1f}")
        total = sum(cpu for _, cpu in rows.values()) * DEFAULT_STEPS
        print(
            f"default budget: {DEFAULT_STEPS} steps x {DEFAULT_BATCH} images; all objectives {total:.0f} CPU s "
            f"-> about {total / 2:.0f} s wall on 2 cores (2 Ray tasks at once)"
        )


if __name__ == "__main__":
    main()
