"""Ray Train at the edge: the paper's segmentation schedule (protocol §3.5) as ``TorchTrainer`` workers.

Why Ray Train and not Tune: the paper's schedule has no search (a fixed lr, 160k iterations), and the
encoder is in the loop, so each run wants a whole GPU worker that the cluster may have to add; one
``TorchTrainer`` per seed asks for exactly that (``resources.cpus_per_worker``, ``gpus_per_worker``,
``memory_per_worker``, whether or not such a node exists yet) and keeps
its run folder, checkpoints included, under ``storage_path/name``. A rerun of the same name resumes from the
latest checkpoint (Ray Train restores it; the loop continues on the same batches). The compute is
``partaware.probes.segmentation_paper``; this module only places it and turns the runs into one outcome.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from partaware.errors import PartawareError
from partaware.probes.baselines import segmentation_baselines_from_pixels
from partaware.probes.segmentation_paper import (
    CHECKPOINT_EVERY,
    LR,
    PAPER_VERSION,
    WEIGHT_DECAY,
    PaperJob,
    Schedule,
)
from partaware.probes.uncertainty import LEVEL, RESAMPLES, average_items, miou_interval
from partaware.spec import Resources
from partaware.tune import SearchOutcome, _storage

STATE_FILE = "state.pt"
STORAGE_ENV_PREFIX = "PARTAWARE_S3_"  # the endpoint and the S3 limits (``partaware.storage``)
MAX_LOADER_WORKERS = 8


def _train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """One worker: train and score ``config["job"]``, resuming from Ray Train's latest checkpoint if any."""
    import ray.train
    import ray.train.torch
    import torch

    from partaware.placement import compute_device, where
    from partaware.probes.segmentation_paper import train_paper_segmentation

    torch.set_num_threads(config["threads"])
    on, note = compute_device(config["device"], config["gpus"])
    device = ray.train.torch.get_device() if on == "cuda" else torch.device("cpu")
    resume = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = torch.load(os.path.join(folder, STATE_FILE), map_location="cpu", weights_only=True)

    def save(state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            torch.save(state, os.path.join(folder, STATE_FILE))
            ray.train.report({"iteration": state["iteration"]}, checkpoint=ray.train.Checkpoint.from_directory(folder))

    outcome = train_paper_segmentation(config["job"], device=device, resume=resume, on_progress=ray.train.report,
                                       on_checkpoint=save)  # fmt: skip
    ray.train.report({"iteration": outcome["iterations"], **outcome["metrics"]})
    return {**outcome, "placed": where(on, note)}


def train_one(job: PaperJob, *, storage_path: str, name: str, resources: Resources,
              device: str = "auto") -> tuple[dict[str, Any], str]:  # fmt: skip
    """Run ``job`` in one ``TorchTrainer`` worker; (the worker's outcome, the Train run's folder).

    The worker asks for ``cpus_per_worker`` CPUs, ``gpus_per_worker`` GPUs and ``memory_per_worker`` GiB
    whether or not the cluster has them now (an autoscaler adds them); where it computes is ``device``
    (``partaware.placement``: ``auto`` is CUDA when its GPU has a device, else the CPU)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    gpus, cpus, memory = resources.gpus_per_worker, resources.cpus_per_worker, resources.memory_per_worker
    scaling = ray.train.ScalingConfig(
        num_workers=1, use_gpu=gpus > 0,
        resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {}),
                              **({"memory": int(memory * 2**30)} if memory else {})},
    )  # fmt: skip
    path, filesystem = _storage(storage_path)
    env = _storage_env()
    run_config = ray.train.RunConfig(
        name=name, storage_path=path, storage_filesystem=filesystem,
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        worker_runtime_env={"env_vars": env} if env else None,
    )  # fmt: skip
    workers = min(MAX_LOADER_WORKERS, max(0, int(cpus) - 1))  # augmentation in loader processes, one core computes
    config = {"job": replace(job, loader_workers=workers), "threads": max(1, int(cpus) - workers), "device": device,
              "gpus": gpus}  # fmt: skip
    trainer = TorchTrainer(_train_loop, train_loop_config=config, scaling_config=scaling, run_config=run_config)
    try:
        result = trainer.fit()
    except Exception as e:  # Ray wraps the worker's error; say which run failed and why
        raise PartawareError(f"paper segmentation run {name} failed: {type(e).__name__}: {e}") from e
    if result.return_value is None:
        raise PartawareError(f"paper segmentation run {name} returned nothing ({result.error})")
    return result.return_value, result.path


def run_paper_segmentation(
    job: PaperJob,
    *,
    seeds: Sequence[int],
    storage_path: str,
    name: str,
    resources: Resources,
    train_pixels: np.ndarray,
    train_splits: str,
    device: str = "auto",
) -> tuple[SearchOutcome, str]:
    """One run per seed of the paper's fixed schedule: (a ``SearchOutcome``: mean and std over seeds, an
    interval over test images, the majority baseline; the digest of the weights the workers loaded).
    Nothing is selected, so nothing is searched."""
    start = time.perf_counter()
    runs = [train_one(replace(job, seed=s), storage_path=storage_path, name=f"{name}-seed{s}", resources=resources,
                      device=device) for s in seeds]  # fmt: skip
    outs = [out for out, _ in runs]
    metrics = {k: 100.0 * statistics.fmean(o["metrics"][k] for o in outs) for k in ("miou", "macc", "aacc")}
    per_seed = [100.0 * o["metrics"]["miou"] for o in outs]
    low, high = miou_interval(average_items([o["counts"] for o in outs]), seed=seeds[0])
    wall = time.perf_counter() - start
    on_gpu = any(o["device"].startswith("cuda") for o in outs)
    first = outs[0]
    fixed = {"lr": LR, "weight_decay": WEIGHT_DECAY, "optimizer": "adamw", "schedule": "poly",
             "batch_size": job.batch_size, "iterations": job.iterations}  # fmt: skip
    protocol = {
        "segmentation_mode": "paper", "paper_version": PAPER_VERSION, "iterations": job.iterations,
        "batch_size": job.batch_size, "crop": first["geometry"]["crop"],
        "slide": {"window": first["geometry"]["crop"], "stride": first["geometry"]["stride"]},
        "train_scale": first["geometry"]["train_scale"], "test_scale": first["geometry"]["test_scale"],
        "geometry_source": first["geometry"]["source"], "blocks": first["blocks"], "patch_size": first["patch"],
        "schedule": Schedule(job.iterations).record(), "weight_decay_on": first["weight_decay_on"],
        "augmentation": "random resize 0.5-2.0 of train_scale (keep ratio), random crop (cat_max_ratio 0.75), "
                        "horizontal flip (p 0.5), photometric distortion, pad (image 0, labels 255)",
        "test": "keep-ratio resize to test_scale, single-scale sliding window (no flip), logits resized to "
                "the label map; windows smaller than the crop are zero-padded",
        "position_embeddings": "interpolated to the crop (timm set_input_size)",
        "loss": "cross-entropy, ignore 255, mean over all pixels (mmseg 0.x); auxiliary head dropped "
                "(the frozen backbone cannot pass its gradient to the decode head)",
        "precision": "fp16 autocast backbone, fp32 head" if first["amp"] else "fp32",
        "reported_checkpoint": "last iteration", "checkpoint_every": CHECKPOINT_EVERY, "train_splits": train_splits,
        "reduce_zero_label": job.convention.reduce_zero_label, "device": first["device"],
        "node_type": first["placed"]["node_type"],
        "iterations_per_second": [o["iterations_per_second"] for o in outs],
        "resumed_from": [o["resumed_from"] for o in outs],
        "ray_train": {"trainer": "TorchTrainer", "runs": [path for _, path in runs]},
        "paper_quirk_best_epoch_on_eval": False,
    }  # fmt: skip
    outcome = SearchOutcome(
        task="segmentation", metric="miou", value=metrics["miou"],
        std=statistics.stdev(per_seed) if len(per_seed) > 1 else None, metrics=metrics, seeds=list(seeds),
        n_train=len(job.train), n_val=0, n_test=len(job.test), search_space={k: {"fixed": v} for k, v in fixed.items()},
        best_config=fixed, trials=0, wall_seconds=wall, cpu_hours=wall * resources.cpus_per_worker / 3600.0,
        gpu_hours=wall * resources.gpus_per_worker / 3600.0 if on_gpu else 0.0, protocol=protocol,
        experiment_path=runs[0][1], per_seed=per_seed, ci_low=_percent(low), ci_high=_percent(high),
        ci={"level": LEVEL, "method": "percentile bootstrap", "units": "images", "resamples": RESAMPLES,
            "seed": seeds[0]},
        baselines=segmentation_baselines_from_pixels(train_pixels, first["counts"]["gt"].sum(0)),
        n_classes=job.convention.num_classes,
    )  # fmt: skip
    return outcome, first["weights_digest"]


def _storage_env() -> dict[str, str]:
    """This process's S3 settings (endpoint, ``$PARTAWARE_S3_*`` limits) for the worker, which may start on a
    node that lacks them: it reads the dataset and the weights through the same storage root."""
    names = [n for n in os.environ if n.startswith(STORAGE_ENV_PREFIX)] + ["AWS_ENDPOINT_URL"]
    return {n: os.environ[n] for n in sorted(names) if os.environ.get(n, "").strip()}


def _percent(fraction: float) -> float | None:
    return 100.0 * fraction if np.isfinite(fraction) else None
