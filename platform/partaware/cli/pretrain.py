"""``partctl pretrain``: train the lab encoders (``lab/<objective>``) under one budget, live."""

from __future__ import annotations

import os
import time
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import deprecated, print_table
from partaware.errors import SpecError
from partaware.lab.presets import PRESETS
from partaware.progress import console
from partaware.storage import StorageRoot

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 24) -> str:
    """A loss curve in one line of block characters (the last ``width`` buckets)."""
    if not values:
        return ""
    step = max(1, len(values) // width)
    pts = [sum(values[i : i + step]) / len(values[i : i + step]) for i in range(0, len(values), step)][-width:]
    lo, hi = min(pts), max(pts)
    span = hi - lo or 1.0
    return "".join(_SPARK[min(len(_SPARK) - 1, int((v - lo) / span * (len(_SPARK) - 1)))] for v in pts)


def progress_table(snapshot: dict[str, dict[str, Any]], started: float) -> Table:
    from partaware.lab.objectives import ROWS_BY_NAME

    table = Table(title=f"lab pretraining ({time.perf_counter() - started:.0f} s)")
    for col in ("encoder", "family", "state", "step", "loss", "first → now", "curve"):
        table.add_column(col)
    for name, s in snapshot.items():
        losses = s.get("losses") or []
        loss = f"{s['loss']:.4f}" if s.get("loss") is not None else "-"
        trend = f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "-"
        table.add_row(
            f"lab/{name}",
            ROWS_BY_NAME[name].family,
            s["state"],
            f"{s['step']}/{s['total']}",
            loss,
            trend,
            sparkline(losses),
        )
    return table


def ensure_dataset(root: StorageRoot, dataset: str, version: str | None) -> str:
    """The dataset version to train on; the synthetic dataset is prepared (with the quickstart's
    options, so ``partctl submit`` reuses it) when no version exists yet."""
    from partaware.datasets import DATASETS, prepare_dataset
    from partaware.datasets.store import list_versions

    dataset = DATASETS.resolve(dataset)
    if version or list_versions(root, dataset):
        return version or list_versions(root, dataset)[-1].version
    from partaware.cli.jobs import find_spec
    from partaware.spec import load_spec

    options = next((d.options for d in load_spec(find_spec("quickstart")).datasets if d.name == dataset), {})
    console.print(f"preparing {dataset} with {options or 'defaults'} (not prepared yet under {root.uri})")
    prepared, _ = prepare_dataset(root, dataset, options=options)
    return prepared.version


@app.command()
def pretrain(
    objectives: str = typer.Option("all", help="all | comma list of objectives (supervised,mocov3,dino,mae,...)."),
    datasets: str = typer.Option("synthetic", help="The prepared dataset to pretrain on (training split only)."),
    dataset: str = typer.Option(None, "--dataset", hidden=True, help="Deprecated spelling of --datasets."),
    dataset_version: str = typer.Option(None, help="Dataset version (default: the newest prepared)."),
    budget: str = typer.Option(
        "quickstart",
        help="Named budget (steps x batch, sized for): "
        + " | ".join(f"{p.name} ({p.steps:,} x {p.batch_size}, {p.sized_for})" for p in PRESETS.values())
        + "; docs/lab.md.",
    ),
    steps: int = typer.Option(None, help="Optimiser steps per objective (overrides the budget's)."),
    batch_size: int = typer.Option(None, help="Images per step (overrides the budget's)."),
    seed: int = typer.Option(0, help="Seed: initialisation, data order, views and masks."),
    storage: str = typer.Option(None, help="Storage root (default $PARTAWARE_STORAGE or ./partaware-store)."),
    ray: bool = typer.Option(True, "--ray/--no-ray", help="Each objective as its own Ray task (default) or here."),
    device: str = typer.Option("auto", help="With --no-ray: auto (cuda when there is one) | cuda | cpu."),
    release: bool = typer.Option(
        False, "--release", help="Then write the weights as the package's released lab zoo (lab-release/<objective>)."
    ),
) -> None:
    """Pretrain the lab encoders: the same tiny ViT, data and budget under each objective (cached, resumable)."""
    from partaware.lab.ray_tasks import pretrain as run_pretrain
    from partaware.lab.ray_tasks import resolve_objectives

    if dataset is not None:
        deprecated("--dataset", "--datasets")
    chosen = [d.strip() for d in (dataset or datasets).split(",") if d.strip()]
    if len(chosen) != 1:
        raise SpecError(f"--datasets {datasets!r}: the lab pretrains on one dataset; name exactly one")
    dataset = chosen[0]
    from partaware.lab.presets import get_preset

    names = resolve_objectives(objectives)
    preset = get_preset(budget)
    device = _resolve_device(device)
    if release and (steps is not None or batch_size is not None):
        raise SpecError("--release ships a named budget as it is: drop --steps/--batch-size")
    root = StorageRoot.open(storage, writable=True)
    version = None if preset.data is not None else ensure_dataset(root, dataset, dataset_version)
    started = time.perf_counter()
    from contextlib import nullcontext

    from partaware.runs.cluster import ray_session

    session = ray_session(os.environ.get("RAY_ADDRESS")) if ray else nullcontext()
    with session, Live(console=console, refresh_per_second=4, transient=False) as live:

        def show(snapshot: dict[str, dict[str, Any]]) -> None:
            live.update(progress_table(snapshot, started))

        results = run_pretrain(
            root, names, dataset=dataset, dataset_version=version, budget=preset.name, steps=steps,
            batch_size=batch_size, seed=seed, progress=show, use_ray=ray, device=device,
        )  # fmt: skip
    table = Table(title=f"lab encoders (storage root: {root.uri})")
    cols = ("encoder", "family", "status", "loss first → last", "learning curve", "seconds", "images seen", "budget")
    for col in (*cols, "weights"):
        table.add_column(col)
    for name, info in results.items():
        curve_name = info.get("learning_curve", "loss")
        curve = info["loss_curve"] if curve_name == "loss" else info.get("metric_curves", {}).get(curve_name, [])
        learning = f"{curve_name} {curve[0]:.3f} → {curve[-1]:.3f}" if curve else "-"
        table.add_row(
            f"lab/{name}",
            info["family"],
            "cached" if info.get("cached") else "trained",
            f"{info['loss_first']:.3f} → {info['loss_last']:.3f}",
            learning,
            f"{info['seconds']:.1f}",
            str(info["images_seen"]),
            info["budget_key"],
            info["weights_digest"][:12],
        )
    print_table(table)
    console.print(f"total {time.perf_counter() - started:.1f} s", highlight=False)
    if release:
        _write_release(root, results, preset.name)


def _resolve_device(device: str) -> str:
    if device not in ("auto", "cuda", "cpu"):
        raise SpecError(f"--device {device!r}: valid: auto, cuda, cpu")
    if device == "cpu":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise SpecError("--device cuda: torch sees no CUDA device here (use --device auto or cpu)")
    return "cpu"


def _write_release(root: StorageRoot, results: dict[str, dict[str, Any]], preset: str) -> None:
    """Ship the weights as the package's release and say whether each file reproduced the previous one."""
    from partaware.lab.release import release_dir, write_release

    record = write_release(root, results, preset=preset)
    table = Table(title=f"released lab zoo ({release_dir()})")
    for col in ("encoder", "preset", "file", "sha256", "bit-identical to the previous release"):
        table.add_column(col)
    for name, entry in record["objectives"].items():
        if name not in results:
            continue
        same = {None: "no previous release of this budget and recipe", True: "yes",
                False: "no (other hardware or software)"}[entry["reproduced"]]  # fmt: skip
        table.add_row(f"lab-release/{name}", entry["preset"], entry["file"], entry["file_sha256"][:16], same)
    print_table(table)
