"""Ray Tune at the edge: one honest hyperparameter search per (encoder, dataset, level, task).

The protocol itself (the split, the final fit, the interval, the baselines, the record) is plain code in
``partaware.probes.protocol``; this module samples configurations, runs the trials on Ray Tune and picks
the best.

Selection never sees the test split: trials get only ``train`` and ``val`` (a stratified split carved
from train with a seed, unless the caller gives one) through the object store
(``tune.with_parameters``), report the validation metric each epoch (``tune.report``) and ASHA stops
the weak ones. The best configuration (its last reported validation metric) is then trained again on
the full train split (train + val) once per seed, and scored once on test. Retrieval has nothing to
tune and is scored directly. The compute is in ``partaware.probes``; this module only spreads it.

Results live under ``storage_path/name`` (an absolute path or a URI such as ``s3://bucket/run/tune``);
an interrupted search resumes from there (``Tuner.restore``), keeping its finished trials.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from partaware.errors import PartawareError, SpecError
from partaware.probes.errors import ProbeInputError
from partaware.probes.fit import PRIMARY_METRIC, TRAINED, fit_and_score, infer_num_classes, num_rows
from partaware.probes.linear import PER_HEAD_KEYS, train_linear_heads
from partaware.probes.protocol import (  # noqa: F401  (SearchOutcome re-exported: callers build records from it)
    SearchOutcome,
    baselines_for,
    final_fit,
    protocol_record,
    retrieval_outcome,
    secondary_tests,
    split_train_val,
)
from partaware.spec import Resources, SearchDim, SearchSettings
from partaware.validation import replace_fields

TASKS = ("retrieval", *PRIMARY_METRIC)


def tune_space(space: Mapping[str, SearchDim | Mapping[str, Any]]) -> dict[str, Any]:
    """Job-spec search dimensions as Ray Tune domains."""
    from ray import tune

    out = {}
    for name, dim in space.items():
        dim = dim if isinstance(dim, SearchDim) else SearchDim.model_validate(dim)
        if dim.type == "loguniform":
            out[name] = tune.loguniform(dim.low, dim.high)
        elif dim.type == "uniform":
            out[name] = tune.uniform(dim.low, dim.high)
        elif dim.type == "choice":
            out[name] = tune.choice(list(dim.values))
        else:
            out[name] = tune.grid_search(list(dim.values))
    return out


def _space_json(space: Mapping[str, SearchDim | Mapping[str, Any]]) -> dict[str, Any]:
    return {k: (v.model_dump(exclude_none=True) if isinstance(v, SearchDim) else dict(v)) for k, v in space.items()}


def _storage(storage_path: str) -> tuple[str, Any]:
    """(path for Ray, pyarrow filesystem or None): an S3 URI goes through the configured endpoint."""
    from partaware.storage import s3_endpoint

    if storage_path.startswith(("s3://", "s3a://")) and s3_endpoint():
        from pyarrow import fs as pafs

        endpoint = s3_endpoint()
        scheme, _, host = endpoint.partition("://")
        filesystem = pafs.S3FileSystem(
            endpoint_override=host or endpoint, scheme=scheme if host else "https",
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )  # fmt: skip
        return storage_path.split("://", 1)[1], filesystem
    if "://" not in storage_path and not os.path.isabs(storage_path):
        raise SpecError(f"tune storage_path must be an absolute path or a URI, got {storage_path!r}")
    return storage_path, None


def _trial(config: dict[str, Any], *, data: dict[str, Any], task: str, num_classes: int, threads: int,
           device: str, gpus: float) -> None:  # fmt: skip
    """One Tune trial: fit on the selection-train part, report the validation metric every epoch, and where
    it ran (its device is picked here, on the node Ray placed it on: ``partaware.placement``)."""
    import torch
    from ray import tune

    from partaware.placement import compute_device, where

    if set(data) != {"train", "val"}:  # selection must never see the test split
        raise ProbeInputError(f"a trial received splits {sorted(data)}; only train and val are allowed")
    torch.set_num_threads(threads)
    on, note = compute_device(device, gpus)
    config = {**config, "device": on}
    placed = {f"placed_{k}": v for k, v in where(on, note).items()}

    def report(epoch: int, metrics: dict[str, float]) -> None:
        tune.report({**{f"val_{k}" if k not in ("epoch", "train_loss") else k: v for k, v in metrics.items()},
                     **placed})  # fmt: skip

    if "heads" in config:  # several linear heads trained in one pass (heads_per_trial > 1)
        shared = {k: v for k, v in config.items() if k != "heads"}
        train_linear_heads(*data["train"], num_classes=num_classes, configs=[{**shared, **h} for h in config["heads"]],
                           x_eval=data["val"][0], y_eval=data["val"][1], on_epoch=report)  # fmt: skip
        return
    fit_and_score(task, data["train"], data["val"], config, num_classes=num_classes, on_epoch=report)


@dataclass(frozen=True)
class SearchOptions:
    """What shapes a search besides its data: the space and budget, the seeds, where Tune keeps its state.

    ``space``: the job spec's ``search[task]``; ``fixed``: settings every trial shares (``optimizer``,
    ``feature``, ``eval_batch_stats`` ...). ``seeds``: the final fit's seeds (default ``[seed]``); mean and
    std over them. ``heads_per_trial > 1`` (linear only, searching only ``lr``/``weight_decay``): the sampled
    configurations are trained that many heads per trial in one pass over the data, which saves the per-trial
    overhead; the record then counts heads as trials.
    """

    space: Mapping[str, SearchDim | Mapping[str, Any]] | None = None
    settings: SearchSettings | None = None
    seed: int = 0
    seeds: Sequence[int] | None = None
    storage_path: str | None = None  # absolute path or URI; Tune resumes an interrupted search from it
    name: str = "search"
    resources: Resources | None = None
    device: str = "auto"  # where trials compute (``partaware.placement``); they ask for ``gpus_per_trial``
    fixed: Mapping[str, Any] | None = None
    num_classes: int | None = None
    resume: bool = True
    exclude_self: bool = False  # retrieval: leave the query out of its own gallery
    heads_per_trial: int = 1

    def with_overrides(self, overrides: dict[str, Any]) -> SearchOptions:
        return replace_fields(self, overrides, what="search", error=ProbeInputError)


def run_probe_search(
    task: str,
    features_by_split: Mapping[str, Any],
    labels_by_split: Mapping[str, Any],
    *,
    options: SearchOptions | None = None,
    **option_overrides: Any,
) -> SearchOutcome:
    """Search ``task``'s configuration on train/val, train the best on train+val, score it once on test.

    ``features_by_split``/``labels_by_split``: ``train`` and ``test`` (``val`` optional) as described in
    ``partaware.probes.fit``. How to search is ``options`` (a ``SearchOptions``; single fields may be given
    as keywords, e.g. ``seed=1``). Retrieval scores every split together (in a job: the dataset's gallery)
    and needs no ``storage_path``.
    """
    if task not in TASKS:
        raise ProbeInputError(f"unknown probe task {task!r}. Valid: {', '.join(sorted(TASKS))}")
    o = (options or SearchOptions()).with_overrides(option_overrides)
    space, fixed, seed, storage_path, name = o.space, o.fixed, o.seed, o.storage_path, o.name
    num_classes, resume, exclude_self, heads_per_trial = o.num_classes, o.resume, o.exclude_self, o.heads_per_trial
    settings = o.settings or SearchSettings()
    resources = o.resources or Resources()
    seeds = list(o.seeds) if o.seeds else [seed]
    start = time.perf_counter()
    if task == "retrieval":
        return retrieval_outcome(
            features_by_split,
            labels_by_split,
            exclude_self=exclude_self,
            start=start,
            feature=(fixed or {}).get("feature", "cls"),
        )
    for split in ("train", "test"):
        if split not in features_by_split or split not in labels_by_split:
            raise ProbeInputError(f"{task} search needs a {split!r} split; got {sorted(features_by_split)}")
    if storage_path is None:
        raise ProbeInputError("a search needs storage_path (an absolute path or a URI)")

    train, val, how = split_train_val(task, features_by_split, labels_by_split, settings.val_fraction, seed)
    test = (features_by_split["test"], labels_by_split["test"])
    n_cls = num_classes or infer_num_classes(train[1], val[1], test[1])
    metric = PRIMARY_METRIC[task]
    fixed = dict(fixed or {})
    space = dict(space or {})
    grid = _search_grid(task, space, fixed, settings, seed)
    if heads_per_trial > 1:
        grid = _multi_head_grid(task, space, fixed, settings, seed, heads_per_trial)

    trial_results, best_config, trials_cpu_s, trials_gpu_s, experiment_path = _search(
        task, grid, train, val, n_cls, settings, resources, storage_path, name, resume, metric, o.device
    )

    final = final_fit(task, train, val, test, best_config, seeds, n_cls, seed=seed,
                      also=secondary_tests(features_by_split, labels_by_split))  # fmt: skip
    stopped = sum(1 for t in trial_results if t["stopped_early"])
    return SearchOutcome(
        task=task, metric=metric, value=final.means[metric], std=final.std, metrics=final.means, seeds=seeds,
        n_train=num_rows(train[0]), n_val=num_rows(val[0]), n_test=num_rows(test[0]),
        search_space={**_space_json(space), **{k: {"fixed": v} for k, v in fixed.items()}},
        best_config=best_config, trials=len(trial_results), trials_stopped_early=stopped,
        trial_results=trial_results, wall_seconds=time.perf_counter() - start,
        cpu_hours=(trials_cpu_s + final.seconds * resources.cpus_per_trial) / 3600.0,
        gpu_hours=trials_gpu_s / 3600.0,
        protocol=protocol_record(task, how, settings, {**fixed, **best_config}, heads_per_trial),
        experiment_path=experiment_path, per_seed=final.per_seed, ci_low=final.ci_low, ci_high=final.ci_high,
        ci=final.ci, baselines=baselines_for(task, train, val, test, n_cls), n_classes=n_cls,
    )  # fmt: skip


def _search_grid(task: str, space: dict, fixed: dict, settings: SearchSettings, seed: int) -> dict[str, Any]:
    overlap = set(space) & set(fixed)
    if overlap:
        raise SpecError(f"settings {sorted(overlap)} are both searched and fixed")
    grid = {**fixed, **tune_space(space), "seed": seed}
    if task in TRAINED and "epochs" not in grid:
        grid["epochs"] = settings.max_epochs
    return grid


def _sample_configs(space: Mapping[str, Any], num_samples: int, seed: int) -> list[dict[str, Any]]:
    """Tune's semantics on the driver: every grid combination, ``num_samples`` times, other axes drawn."""
    rng = np.random.default_rng(seed)
    dims = {k: v if isinstance(v, SearchDim) else SearchDim.model_validate(v) for k, v in space.items()}
    grids = [dict(zip([k for k, d in dims.items() if d.type == "grid"], combo, strict=True)) for combo in
             itertools.product(*[d.values for d in dims.values() if d.type == "grid"])]  # fmt: skip
    out = []
    for _ in range(num_samples):
        for g in grids:
            config = dict(g)
            for k, d in dims.items():
                if d.type == "loguniform":
                    config[k] = float(np.exp(rng.uniform(np.log(d.low), np.log(d.high))))
                elif d.type == "uniform":
                    config[k] = float(rng.uniform(d.low, d.high))
                elif d.type == "choice":
                    config[k] = d.values[int(rng.integers(len(d.values)))]
            out.append(config)
    return out


def _multi_head_grid(task, space, fixed, settings, seed, heads_per_trial) -> dict[str, Any]:
    from ray import tune

    if task != "linear" or not set(space) <= set(PER_HEAD_KEYS):
        raise ProbeInputError(f"heads_per_trial > 1 needs the linear task searching only {', '.join(PER_HEAD_KEYS)} "
                              f"(got task {task!r}, searched {sorted(space)})")  # fmt: skip
    configs = _sample_configs(space, settings.num_samples, seed)
    chunks = [configs[i : i + heads_per_trial] for i in range(0, len(configs), heads_per_trial)]
    return {**fixed, "seed": seed, "epochs": fixed.get("epochs", settings.max_epochs),
            "heads": tune.grid_search(chunks)}  # fmt: skip


def _resources(resources: Resources) -> dict[str, float]:
    """What each trial asks Ray for: the spec's CPUs, GPUs and memory, whether or not the cluster has such a
    node now (an autoscaler adds one)."""
    gpus, memory = resources.gpus_per_trial, resources.memory_per_trial
    return {"cpu": resources.cpus_per_trial, **({"gpu": gpus} if gpus else {}),
            **({"memory": int(memory * 2**30)} if memory else {})}  # fmt: skip


def _search(task, grid, train, val, n_cls, settings, resources, storage_path, name, resume, metric, device):
    # Ray Tune's new console engine prints a configuration box per search even with verbose=0; the
    # classic reporter honours verbose=0, so a job with dozens of searches stays readable.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    request = _resources(resources)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, data={"train": train, "val": val}, task=task, num_classes=n_cls,
            threads=max(1, int(resources.cpus_per_trial)), device=device, gpus=resources.gpus_per_trial,
        ),
        request,
    )  # fmt: skip
    path, filesystem = _storage(storage_path)
    experiment = f"{path.rstrip('/')}/{name}"
    if resume and tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, restart_errored=True,
                                   storage_filesystem=filesystem)  # fmt: skip
    else:
        max_t = settings.max_epochs if task in TRAINED else 1
        scheduler = (
            ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                          grace_period=min(settings.grace_period, max_t), reduction_factor=settings.reduction_factor)
            if max_t > 1 else None
        )  # fmt: skip
        tuner = tune.Tuner(
            trainable,
            param_space=grid,
            tune_config=tune.TuneConfig(metric=f"val_{metric}", mode="max", scheduler=scheduler,
                                        num_samples=1 if "heads" in grid else settings.num_samples,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=path, storage_filesystem=filesystem, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=2)),  # a lost worker: retried
        )  # fmt: skip
    grid_result = tuner.fit()
    if grid_result.num_errors:
        first = next((line for line in reversed(str(grid_result.errors[0]).splitlines()) if line.strip()), "?")
        raise PartawareError(f"{grid_result.num_errors} of {len(grid_result)} {task} trials failed; last line of "
                             f"the first error: {first.strip()}; see {grid_result.experiment_path}")  # fmt: skip
    trial_results, cpu_s, gpu_s = [], 0.0, 0.0
    for result in grid_result:
        planned = int(result.config.get("epochs", 1)) if task in TRAINED else 1
        iterations = int(result.metrics.get("training_iteration", 0))
        seconds = float(result.metrics.get("time_total_s", 0.0))
        cpu_s += seconds * request["cpu"]
        gpu_s += seconds * request.get("gpu", 0.0)
        config = {k: v for k, v in _plain(result.config).items() if k not in ("device", "heads")}
        heads = result.config.get("heads") or [{}]
        for i, head in enumerate(heads):  # one entry per configuration (per head when heads share a trial)
            key = f"val_{metric}_head{i}" if "heads" in result.config else f"val_{metric}"
            trial_results.append({
                "config": {**config, **_plain(head)}, "metric": float(result.metrics.get(key, float("nan"))),
                "metric_unit": "fraction", "split": "validation",
                "iterations": iterations, "stopped_early": iterations < planned,
                "seconds": seconds / len(heads),
                **{k: str(result.metrics.get(f"placed_{k}", "")) for k in ("node_id", "node_type", "device", "note")},
            })  # fmt: skip
    best = max(trial_results, key=lambda t: -np.inf if np.isnan(t["metric"]) else t["metric"])
    return trial_results, best["config"], cpu_s, gpu_s, grid_result.experiment_path


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
