"""Ray Tune at the edge: one honest hyperparameter search per (encoder, dataset, level, task).

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
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from partaware.errors import PartawareError, SpecError
from partaware.probes.baselines import classification_baselines, retrieval_baselines, segmentation_baselines
from partaware.probes.errors import ProbeInputError
from partaware.probes.fit import (
    PRIMARY_METRIC,
    TRAINED,
    concat,
    fit_and_predict,
    fit_and_score,
    infer_num_classes,
    num_rows,
    subset,
)
from partaware.probes.linear import PER_HEAD_KEYS, linear_input, train_linear_heads
from partaware.probes.retrieval import retrieval_ap
from partaware.probes.splits import random_validation_split, stratified_validation_split
from partaware.probes.uncertainty import LEVEL, RESAMPLES, average_items, item_interval, mean_interval
from partaware.results import ResultRecord
from partaware.spec import Resources, SearchDim, SearchSettings

TASKS = ("retrieval", *PRIMARY_METRIC)


@dataclass
class SearchOutcome:
    """Everything a ``ResultRecord`` needs from a search; ``to_record`` adds the run's identity."""

    task: str
    metric: str
    value: float  # percent, mean over seeds
    std: float | None
    metrics: dict[str, float]
    seeds: list[int]
    n_train: int
    n_val: int
    n_test: int
    search_space: dict[str, Any] = field(default_factory=dict)
    best_config: dict[str, Any] = field(default_factory=dict)
    trials: int = 0
    trials_stopped_early: int = 0
    trial_results: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    protocol: dict[str, Any] = field(default_factory=dict)
    experiment_path: str = ""
    per_seed: list[float] = field(default_factory=list)
    ci_low: float | None = None
    ci_high: float | None = None
    ci: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    n_classes: int = 0

    def to_record(self, **identity: Any) -> ResultRecord:
        """A ``ResultRecord``; ``identity`` gives run_id, encoder, family, dataset, dataset_version, level,
        feature and any optional field (zoo, weights_digest, feature_key, random_weights, versions)."""
        return ResultRecord(
            task=self.task, metric=self.metric, value=self.value, std=self.std, metrics=self.metrics,
            seeds=self.seeds, n_train=self.n_train, n_val=self.n_val, n_test=self.n_test,
            search_space=self.search_space, best_config=self.best_config, trials=self.trials,
            trials_stopped_early=self.trials_stopped_early, trial_results=self.trial_results,
            wall_seconds=self.wall_seconds, cpu_hours=self.cpu_hours, gpu_hours=self.gpu_hours,
            protocol=self.protocol, per_seed=self.per_seed, ci_low=self.ci_low, ci_high=self.ci_high, ci=self.ci,
            baselines=self.baselines, n_classes=self.n_classes, **identity,
        )  # fmt: skip


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


def _split_train_val(task: str, features_by_split, labels_by_split, fraction: float, seed: int):
    """(train, val, how): the caller's val split, or one carved from train; never the test split."""
    if "val" in features_by_split:
        return ((features_by_split["train"], labels_by_split["train"]),
                (features_by_split["val"], labels_by_split["val"]), "given val split")  # fmt: skip
    x, y = features_by_split["train"], np.asarray(labels_by_split["train"])
    if task == "segmentation":
        tr, va = random_validation_split(len(y), fraction, seed=seed)
        how = f"random {fraction:.0%} of train (seed {seed})"
    else:
        tr, va = stratified_validation_split(y, fraction, seed=seed)
        how = f"stratified {fraction:.0%} of train (seed {seed})"
    return (subset(x, tr), y[tr]), (subset(x, va), y[va]), how


def _trial(config: dict[str, Any], *, data: dict[str, Any], task: str, num_classes: int, threads: int,
           device: str | None) -> None:  # fmt: skip
    """One Tune trial: fit on the selection-train part, report the validation metric every epoch."""
    import torch
    from ray import tune

    if set(data) != {"train", "val"}:  # selection must never see the test split
        raise ProbeInputError(f"a trial received splits {sorted(data)}; only train and val are allowed")
    torch.set_num_threads(threads)
    config = {**config, "device": device} if device else dict(config)

    def report(epoch: int, metrics: dict[str, float]) -> None:
        tune.report({f"val_{k}" if k not in ("epoch", "train_loss") else k: v for k, v in metrics.items()})

    if "heads" in config:  # several linear heads trained in one pass (heads_per_trial > 1)
        shared = {k: v for k, v in config.items() if k != "heads"}
        train_linear_heads(*data["train"], num_classes=num_classes, configs=[{**shared, **h} for h in config["heads"]],
                           x_eval=data["val"][0], y_eval=data["val"][1], on_epoch=report)  # fmt: skip
        return
    fit_and_score(task, data["train"], data["val"], config, num_classes=num_classes, on_epoch=report)


def run_probe_search(
    task: str,
    features_by_split: Mapping[str, Any],
    labels_by_split: Mapping[str, Any],
    *,
    space: Mapping[str, SearchDim | Mapping[str, Any]] | None = None,
    settings: SearchSettings | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    storage_path: str | None = None,
    name: str = "search",
    resources: Resources | None = None,
    fixed: Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    resume: bool = True,
    exclude_self: bool = False,
    heads_per_trial: int = 1,
) -> SearchOutcome:
    """Search ``task``'s configuration on train/val, train the best on train+val, score it once on test.

    ``features_by_split``/``labels_by_split``: ``train`` and ``test`` (``val`` optional) as described in
    ``partaware.probes.fit``. ``space``: the job spec's ``search[task]``; ``fixed``: settings every
    trial shares (``optimizer``, ``feature``, ``eval_batch_stats`` ...). ``seeds``: the final fit's seeds
    (default ``[seed]``); mean and std over them. Retrieval scores every split together (the paper's
    gallery is the whole dataset) and needs no ``storage_path``. ``heads_per_trial > 1`` (linear only,
    searching only ``lr``/``weight_decay``): the sampled configurations are trained that many heads
    per trial in one pass over the data, which saves the per-trial overhead; the record then counts
    heads as trials.
    """
    if task not in TASKS:
        raise ProbeInputError(f"unknown probe task {task!r}. Valid: {', '.join(sorted(TASKS))}")
    settings = settings or SearchSettings()
    resources = resources or Resources()
    seeds = list(seeds) if seeds else [seed]
    start = time.perf_counter()
    if task == "retrieval":
        return _retrieval(
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

    train, val, how = _split_train_val(task, features_by_split, labels_by_split, settings.val_fraction, seed)
    test = (features_by_split["test"], labels_by_split["test"])
    n_cls = num_classes or infer_num_classes(train[1], val[1], test[1])
    metric = PRIMARY_METRIC[task]
    fixed = dict(fixed or {})
    space = dict(space or {})
    grid = _search_grid(task, space, fixed, settings, seed)
    if heads_per_trial > 1:
        grid = _multi_head_grid(task, space, fixed, settings, seed, heads_per_trial)

    trial_results, best_config, trials_cpu_s, trials_gpu_s, experiment_path = _search(
        task, grid, train, val, n_cls, settings, resources, storage_path, name, resume, metric
    )

    # The only place the test split is touched: the chosen configuration, trained on train + val.
    full_train = (concat([train[0], val[0]]), np.concatenate([np.asarray(train[1]), np.asarray(val[1])]))
    final_start = time.perf_counter()
    fits = [fit_and_predict(task, full_train, test, {**best_config, "seed": s}, num_classes=n_cls, items=True)
            for s in seeds]  # fmt: skip
    final_s = time.perf_counter() - final_start
    per_seed = [m for m, _ in fits]
    keys = [k for k in per_seed[0] if k not in ("epoch", "train_loss")]
    means = {k: 100.0 * statistics.fmean(m[k] for m in per_seed) for k in keys}
    std = 100.0 * statistics.stdev(m[metric] for m in per_seed) if len(per_seed) > 1 else None
    low, high = item_interval(metric, average_items([items for _, items in fits]), seed=seed)
    units = "images" if task == "segmentation" else "test items"
    stopped = sum(1 for t in trial_results if t["stopped_early"])
    return SearchOutcome(
        task=task, metric=metric, value=means[metric], std=std, metrics=means, seeds=seeds,
        n_train=num_rows(train[0]), n_val=num_rows(val[0]), n_test=num_rows(test[0]),
        search_space={**_space_json(space), **{k: {"fixed": v} for k, v in fixed.items()}},
        best_config=best_config, trials=len(trial_results), trials_stopped_early=stopped,
        trial_results=trial_results, wall_seconds=time.perf_counter() - start,
        cpu_hours=(trials_cpu_s + final_s * resources.cpus_per_trial) / 3600.0, gpu_hours=trials_gpu_s / 3600.0,
        protocol=_protocol(task, how, settings, {**fixed, **best_config}, heads_per_trial),
        experiment_path=experiment_path, per_seed=[100.0 * m[metric] for m in per_seed],
        ci_low=_percent(low), ci_high=_percent(high), ci=_ci_record(units, seed),
        baselines=_baselines(task, train, val, test, n_cls), n_classes=n_cls,
    )  # fmt: skip


def _percent(fraction: float) -> float | None:
    return 100.0 * fraction if np.isfinite(fraction) else None


def _ci_record(units: str, seed: int) -> dict[str, Any]:
    return {"level": LEVEL, "method": "percentile bootstrap", "units": units, "resamples": RESAMPLES, "seed": seed}


def _baselines(task: str, train, val, test, n_cls: int) -> dict[str, float]:
    """Chance and majority on the scored split, the majority class taken from train + val."""
    y_fit = np.concatenate([np.asarray(train[1]), np.asarray(val[1])])
    if task == "segmentation":
        return segmentation_baselines(y_fit, test[1], n_cls)
    return classification_baselines(y_fit, test[1], n_cls)


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


def _resources(resources: Resources) -> tuple[dict[str, float], str | None]:
    import ray

    gpus = resources.gpus_per_trial if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    request = {"cpu": resources.cpus_per_trial, **({"gpu": gpus} if gpus else {})}
    return request, ("cuda" if gpus else "cpu")


def _search(task, grid, train, val, n_cls, settings, resources, storage_path, name, resume, metric):
    # Ray Tune's new console engine prints a configuration box per search even with verbose=0; the
    # classic reporter honours verbose=0, so a job with dozens of searches stays readable.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    request, device = _resources(resources)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, data={"train": train, "val": val}, task=task, num_classes=n_cls,
            threads=max(1, int(resources.cpus_per_trial)), device=device,
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
        raise PartawareError(f"{grid_result.num_errors} of {len(grid_result)} {task} trials failed; first error: "
                             f"{grid_result.errors[0]}")  # fmt: skip
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
            })  # fmt: skip
    best = max(trial_results, key=lambda t: -np.inf if np.isnan(t["metric"]) else t["metric"])
    return trial_results, best["config"], cpu_s, gpu_s, grid_result.experiment_path


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}


def _protocol(task: str, how: str, settings: SearchSettings, chosen: Mapping[str, Any], heads: int) -> dict[str, Any]:
    protocol = {
        "selection": f"hyperparameters chosen on a validation split: {how}; test never seen during selection",
        "best_config_by": "last reported validation metric of each trial",
        "final_fit": "best configuration retrained on train + val, scored once on test",
        "asha": {"max_t": settings.max_epochs, "grace_period": settings.grace_period,
                 "reduction_factor": settings.reduction_factor, "num_samples": settings.num_samples},
        "paper_quirk_best_epoch_on_eval": False,
        "heads_per_trial": heads,
    }  # fmt: skip
    if task == "attentive":
        protocol["attentive_eval_batch_stats"] = bool(chosen.get("eval_batch_stats", False))
    if task == "segmentation":
        protocol["segmentation_mode"] = "fast: cached feature maps, no augmentation"
    if task in ("linear", "knn"):
        protocol["feature"] = chosen.get("feature", "cls")
    return protocol


def _retrieval(features_by_split, labels_by_split, *, exclude_self: bool, start: float, feature: str) -> SearchOutcome:
    splits = list(features_by_split)
    if not splits:
        raise ProbeInputError(f"retrieval needs at least one split; got {sorted(features_by_split)}")
    feats = linear_input(concat([features_by_split[s] for s in splits]), feature)  # an array, or one tap of a mapping
    labels = np.concatenate([np.asarray(labels_by_split[s]) for s in splits])
    result = retrieval_ap(feats, labels, exclude_self=exclude_self)
    low, high = mean_interval(result.per_query)
    baselines = retrieval_baselines(labels, int(np.asarray(feats).shape[1]), exclude_self=exclude_self)
    wall = time.perf_counter() - start
    return SearchOutcome(
        task="retrieval", metric="ap", value=100.0 * result.ap, std=None, metrics=result.metrics(), seeds=[0],
        n_train=0, n_val=0, n_test=len(labels), wall_seconds=wall, cpu_hours=wall / 3600.0,
        protocol={"gallery": f"all items of splits {splits}", "feature": feature, "query_in_gallery": not exclude_self,
                  "similarity": "cosine", "ap": "sklearn average_precision_score per query (exact, ties grouped)",
                  "n_undefined_queries": result.n_undefined},
        per_seed=[100.0 * result.ap], ci_low=_percent(low), ci_high=_percent(high), ci=_ci_record("queries", 0),
        baselines=baselines, n_classes=len(np.unique(labels)),
    )  # fmt: skip
