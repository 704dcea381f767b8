"""Ray Tune for linear probes on cached features: trials per minute and the per-trial overhead.

Baseline, in the same process: the same configurations trained one after another with the plain
probe function (no Ray). Then the Tune search (local Ray, ``--cpus`` CPUs, one CPU per trial), first
without early stopping (same work as the baseline, so the difference is overhead), then with ASHA.
Per-trial overhead = ((wall - fixed cost of a search) x concurrent trials - summed in-trial training time) / Ray
trials, where the fixed cost (Tuner set-up, final fit) is measured with a 1-trial, 1-epoch search.

    python bench/bench_tune.py [--n 4000] [--dim 384] [--trials 8] [--epochs 10] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from partaware.probes.fit import fit_and_score
from partaware.probes.splits import stratified_validation_split
from partaware.spec import Resources, SearchSettings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    from partaware.tune import run_probe_search

    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.n)
    x = (rng.normal(size=(args.classes, args.dim))[y] * 0.12 + rng.normal(size=(args.n, args.dim))).astype(np.float32)
    test = rng.permutation(args.n)[: args.n // 5]
    train = np.setdiff1d(np.arange(args.n), test)
    feats, labels = {"train": x[train], "test": x[test]}, {"train": y[train], "test": y[test]}
    lrs = np.geomspace(1e-3, 1.0, args.trials).tolist()
    fixed = {"batch_size": 256, "epochs": args.epochs, "device": "cpu"}
    print(
        f"tune bench: linear probe, {len(train)} train x {args.dim} dims, {args.classes} classes, "
        f"{args.trials} trials x {args.epochs} epochs, {args.cpus} CPUs, 1 CPU per trial"
    )

    torch.set_num_threads(1)
    tr, va = stratified_validation_split(y[train], 0.2, seed=0)
    start = time.perf_counter()
    for lr in lrs:
        fit_and_score("linear", (x[train][tr], y[train][tr]), (x[train][va], y[train][va]), {**fixed, "lr": lr},
                      num_classes=args.classes)  # fmt: skip
    serial = time.perf_counter() - start
    print(
        f"  baseline, plain loop without Ray: {serial / args.trials:.2f} s/trial, "
        f"{60 * args.trials / serial:.1f} trials/min (one process)"
    )

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    space = {"lr": {"type": "grid", "values": lrs}}
    slots = min(args.cpus, args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        variants = (
            ("no early stopping, 1 head per trial", args.epochs, 1),
            ("ASHA (grace 2, factor 2), 1 head per trial", 2, 1),
            (f"no early stopping, {args.trials // slots} heads per trial", args.epochs, args.trials // slots),
        )
        # Fixed cost of a search: one 1-epoch trial plus the final fit (Tuner set-up, object store, storage).
        start = time.perf_counter()
        one = SearchSettings(num_samples=1, max_epochs=1, grace_period=1)
        run_probe_search("linear", feats, labels, space={"lr": {"type": "grid", "values": [0.01]}}, settings=one,
                         fixed={**fixed, "epochs": 1}, storage_path=tmp, name="bench-fixed", resume=False)  # fmt: skip
        fixed_cost = time.perf_counter() - start
        print(f"  fixed cost of one search (1 trial x 1 epoch, final fit included): {fixed_cost:.1f} s")
        for i, (label, grace, heads) in enumerate(variants):
            settings = SearchSettings(num_samples=1, max_epochs=args.epochs, grace_period=grace, reduction_factor=2)
            start = time.perf_counter()
            out = run_probe_search("linear", feats, labels, space=space, settings=settings, fixed=fixed,
                                   storage_path=tmp, name=f"bench-{i}", resources=Resources(cpus_per_trial=1),
                                   resume=False, heads_per_trial=heads)  # fmt: skip
            wall = time.perf_counter() - start
            in_trial = sum(t["seconds"] for t in out.trial_results)  # per-head shares add up to trial time
            ray_trials = -(-out.trials // heads)
            overhead = max(0.0, (wall - fixed_cost) * slots - in_trial) / ray_trials
            print(f"  tune, {label}: {wall:.1f} s wall (search + final fit), {60 * out.trials / wall:.1f} configs/min, "
                  f"{ray_trials} Ray trials, {in_trial / out.trials:.2f} s training per config, "
                  f"overhead {overhead:.2f} s per Ray trial, {out.trials_stopped_early} stopped early, "
                  f"best lr {out.best_config['lr']:.3g} -> test top-1 {out.value:.1f}%")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
