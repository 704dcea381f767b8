"""Peak memory of a probe's inputs, as a multiple of the feature bytes it probes.

The probe stage holds in the driver what one probe reads (``extract.features.read_features``) and the
per-split arrays it hands to the search (``probes.inputs.split_arrays``); for an attentive probe that is
``tokens``, 591 KiB per region at ViT-B/16, so the multiple decides which head node a study needs
(cluster/README.md). This writes a ``tokens`` feature set in the real format (several shards, rows out of
order, as an extraction leaves them), then, each in a fresh process, reads it and splits it as the probe stage
does, and prints the peak resident memory above the process's starting point against the tap's bytes; the
probe stage's own estimate (``runs.stages.probe.probe_memory_need``) is printed beside it.

    .venv/bin/python bench/bench_probe_memory.py [--regions 4000] [--tokens 197] [--dim 384] [--shards 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

import numpy as np

from partaware.extract.features import FEATURES, part_name, shard_table, write_table
from partaware.storage import StorageRoot

KEY = "bench-tokens"


def write_feature_set(root: StorageRoot, regions: int, shape: tuple[int, int], shards: int, seed: int = 0) -> None:
    """A complete ``tokens`` feature set: ``shards`` parts whose rows interleave (as parallel actors write them)."""
    rng = np.random.default_rng(seed)
    froot = root.sub(FEATURES, KEY)
    order = rng.permutation(regions)
    for shard, rows in enumerate(np.array_split(order, shards)):
        tokens = rng.standard_normal((len(rows), *shape), dtype=np.float32)
        write_table(froot, shard_table(rows, [f"r{r}" for r in rows], {"tokens": tokens}), part_name(shard))
    froot.mark_complete(info={"rows": regions, "errors": 0, "taps": {"tokens": {"shape": list(shape),
                                                                                "dtype": "float32"}}})  # fmt: skip


def measure(storage: str, split: bool) -> dict:
    """In this (fresh) process: peak RSS growth while reading (and splitting) the set, in bytes."""
    from partaware.extract.features import feature_set_info, read_features, tap_bytes
    from partaware.probes.inputs import split_arrays
    from partaware.runs.stages.probe import probe_memory_need

    root = StorageRoot.open(storage)
    info = feature_set_info(root, KEY)
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fs = read_features(root, KEY, ["tokens"])
    if split:  # the probe stage's selection: labelled rows of the level, then one array per probe split
        rows = {int(r): ("train" if r % 5 else "test", int(r) % 10) for r in fs.rows}
        feats, _ = split_arrays(fs, rows, "tokens", {"train": "train", "test": "test"})
        assert sum(len(v) for v in feats.values()) == len(fs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"growth": peak - start, "tap": tap_bytes(info, "tokens"), "estimate": probe_memory_need(info, ("tokens",))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regions", type=int, default=4000)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--child", nargs=2, metavar=("STORAGE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == "split")))
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_feature_set(StorageRoot.open(tmp), args.regions, (args.tokens, args.dim), args.shards)
        gib = 2**30
        print(f"probe inputs: {args.regions} regions x tokens {args.tokens}x{args.dim} fp32 in {args.shards} shards")
        for mode, label in (("read", "read_features"), ("split", "read_features + split_arrays")):
            out = subprocess.run([sys.executable, __file__, "--child", tmp, mode], capture_output=True, text=True,
                                 check=True)  # fmt: skip
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"  {label:30} peak growth {m['growth'] / gib:6.2f} GiB = x{m['growth'] / m['tap']:.2f} the tap's "
                f"{m['tap'] / gib:.2f} GiB   (the probe stage's estimate: x{m['estimate'] / m['tap']:.2f})"
            )


if __name__ == "__main__":
    main()
