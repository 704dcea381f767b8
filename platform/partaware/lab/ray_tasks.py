"""Pretraining as Ray work: each objective is its own Ray task (one GPU each when the cluster has
GPUs, so a cluster trains them in parallel), with live loss reports through a small actor.

``pretrain`` is what the CLI (``partctl pretrain``) and the job driver call: it trains only the
objectives whose weights under this budget are not already complete, and resumes interrupted ones
from their checkpoints. The compute is ``partaware.lab.train.train_objective``; this module only
spreads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from partaware.errors import PartawareError
from partaware.lab.objectives import OBJECTIVES, objective_names
from partaware.lab.presets import DEFAULT_PRESET, get_preset
from partaware.lab.train import LATEST_FILE, Budget, lab_info, weights_key
from partaware.storage import StorageRoot

#: progress(snapshot): snapshot maps objective -> {"step", "total", "loss", "losses", "state"}
ProgressFn = Callable[[dict[str, dict[str, Any]]], None]


class PretrainError(PartawareError, RuntimeError):
    """One or more objectives failed; the others' weights and every checkpoint are kept."""


def resolve_objectives(objectives: str | Iterable[str] | None) -> list[str]:
    """``all`` / ``None`` / a comma list / names -> canonical objective names (unknown names raise)."""
    if objectives is None:
        return objective_names()
    items = objectives.split(",") if isinstance(objectives, str) else list(objectives)
    items = [i.strip() for i in items if i.strip()]
    if not items or "all" in items:
        return objective_names()
    out: list[str] = []
    for item in items:
        name = OBJECTIVES.resolve(item.removeprefix("lab/"))
        if name not in out:
            out.append(name)
    return out


def make_budget(
    *,
    preset: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int,
    dataset: str,
    dataset_version: str,
) -> Budget:
    """The budget of ``preset`` (default ``quickstart``); explicit ``steps``/``batch_size`` override it
    and then the budget no longer carries the preset's name."""
    p = get_preset(preset or DEFAULT_PRESET)
    custom = (steps is not None and steps != p.steps) or (batch_size is not None and batch_size != p.batch_size)
    return Budget(
        preset="" if custom else p.name,
        steps=steps or p.steps,
        batch_size=batch_size or p.batch_size,
        lr=p.lr,
        seed=seed,
        dataset=dataset,
        dataset_version=dataset_version,
    )


def pretrain(
    root: StorageRoot | str | None,
    objectives: str | Iterable[str] | None = "all",
    *,
    dataset: str = "synthetic",
    dataset_version: str | None = None,
    budget: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    use_ray: bool = True,
    device: str = "cpu",
    resources: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Make sure every objective has weights under one budget; returns objective -> weights info.

    ``budget`` names a preset (``partaware.lab.presets``; default ``quickstart``); a preset with data
    of its own pretrains on that (prepared here when missing) instead of ``dataset``. Cached
    objectives are not retrained (their info has ``cached: True``); ``lab/<objective>`` then
    resolves to this budget. With ``use_ray=False`` objectives train one after the other in this
    process on ``device`` (debugging, one GPU, and machines without Ray).
    With Ray, each objective's task asks for ``resources`` (``num_cpus``, ``num_gpus``, ``memory`` in bytes;
    default one CPU, and one GPU for ``device="cuda"``) whether or not such a node exists yet, and computes
    on ``device`` (``auto``: CUDA when its GPU has a device, see ``partaware.placement``); its info names its
    node (``placed``).
    """
    from partaware.lab.data import load_lab_data, open_lab_dataset

    root = root if isinstance(root, StorageRoot) else StorageRoot.open(root)
    names = resolve_objectives(objectives)
    preset = get_preset(budget or DEFAULT_PRESET)
    if preset.data is not None:
        from partaware.datasets import prepare_dataset

        prepared, _ = prepare_dataset(root, preset.data[0], options=preset.data[1])
    else:
        prepared = open_lab_dataset(root, dataset, dataset_version)
    lab_budget = make_budget(
        preset=preset.name, steps=steps, batch_size=batch_size, seed=seed, dataset=prepared.name,
        dataset_version=prepared.version,
    )  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        key = weights_key(name, lab_budget)
        info = lab_info(root, name, key)
        if info is not None:
            root.write_json({"budget_key": key}, "weights", "lab", name, LATEST_FILE)
            results[name] = {**info, "cached": True}
    todo = [n for n in names if n not in results]
    if progress:
        progress(
            {
                n: {"step": lab_budget.steps, "total": lab_budget.steps, "loss": results[n]["loss_last"],
                    "losses": results[n]["loss_curve"], "state": "cached"} if n in results
                else {"step": 0, "total": lab_budget.steps, "loss": None, "losses": [], "state": "queued"}
                for n in names
            }
        )  # fmt: skip
    if not todo:
        return {n: results[n] for n in names}
    data = load_lab_data(prepared, size=lab_budget.input_size, split=lab_budget.split)
    trained = (
        _train_with_ray(root, todo, lab_budget, data, progress, device, resources)
        if use_ray
        else _train_here(root, todo, lab_budget, data, progress, device)
    )
    results.update(trained)
    return {n: results[n] for n in names}


def _train_here(root, names, budget, data, progress, device: str = "cpu") -> dict[str, dict[str, Any]]:
    from partaware.lab.train import train_objective
    from partaware.placement import compute_device

    device, _ = compute_device(device, 1.0)  # no Ray here: auto = this machine's GPU when it has one
    snapshot = {n: {"step": 0, "total": budget.steps, "loss": None, "losses": [], "state": "queued"} for n in names}

    def on_step(objective: str, step: int, total: int, loss: float) -> None:
        entry = snapshot[objective]
        entry.update(step=step, total=total, loss=loss, state="training")
        entry["losses"].append(loss)
        if progress:
            progress(snapshot)

    out = {}
    for name in names:
        out[name] = train_objective(root, name, budget, data, on_step=on_step, device=device)
        snapshot[name]["state"] = "done"
        if progress:
            progress(snapshot)
    return out


def _train_with_ray(root, names, budget, data, progress, device="cpu", resources=None) -> dict[str, dict[str, Any]]:
    import ray

    if not ray.is_initialized():  # Ray is started in one place only: partaware.runs.cluster.ray_session
        raise PretrainError("pretraining with Ray needs a running Ray: use partaware.runs.cluster.ray_session()")

    hub = _progress_hub().remote({n: budget.steps for n in names})
    data_ref = ray.put(data)
    # asked whether or not such a node exists (an autoscaler adds it); device cuda without resources: one GPU
    asked = {"num_cpus": 1, "num_gpus": 1 if device == "cuda" else 0, **(resources or {})}
    task = _train_task().options(**asked)
    # costliest first (multi-crop, two views), so the last task to start is a short one
    order = sorted(names, key=lambda n: -OBJECTIVES.get(n).views_per_image)
    refs = {task.remote(root.uri, n, budget.model_dump(), data_ref, hub, device, asked.get("num_gpus", 0)): n
            for n in order}  # fmt: skip
    results, errors = {}, {}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        for ref in ready:
            name = refs[ref]
            try:
                results[name] = ray.get(ref)
                hub.set_state.remote(name, "done")
            except Exception as e:  # a failed objective must not hide the others' results
                errors[name] = e
                hub.set_state.remote(name, "failed")
        if progress:
            progress(ray.get(hub.snapshot.remote()))
    ray.kill(hub)
    if errors:
        detail = "; ".join(f"{n}: {getattr(e, 'cause', None) or e}" for n, e in errors.items())
        raise PretrainError(f"pretraining failed for {sorted(errors)} (rerun resumes from checkpoints): {detail}")
    return results


def _train_task():
    """The Ray remote function (built lazily so importing this module does not import Ray)."""
    import ray

    @ray.remote
    def train_one(root_uri: str, objective: str, budget: dict, data, hub, want: str, gpus: float) -> dict[str, Any]:
        from partaware.lab.train import Budget, train_objective
        from partaware.placement import compute_device, where

        device, note = compute_device(want, gpus)
        last = [0.0]

        def on_step(name: str, step: int, total: int, loss: float) -> None:
            now = time.monotonic()
            if now - last[0] > 0.25 or step == total:  # a few reports a second are plenty
                last[0] = now
                hub.report.remote(name, step, total, loss)

        root = StorageRoot.open(root_uri)
        info = train_objective(root, objective, Budget(**budget), data, on_step=on_step, threads=1, device=device)
        return {**info, "placed": where(device, note)}

    return train_one


def _progress_hub():
    import ray

    @ray.remote(num_cpus=0)
    class ProgressHub:
        """Collects (step, loss) reports from the training tasks; the driver polls ``snapshot``."""

        def __init__(self, totals: dict[str, int]):
            self.state = {
                n: {"step": 0, "total": t, "loss": None, "losses": [], "state": "queued"} for n, t in totals.items()
            }

        def report(self, name: str, step: int, total: int, loss: float) -> None:
            entry = self.state[name]
            entry.update(step=step, total=total, loss=loss, state="training")
            entry["losses"].append(loss)

        def set_state(self, name: str, state: str) -> None:
            self.state[name]["state"] = state

        def snapshot(self) -> dict:
            return self.state

    return ProgressHub
