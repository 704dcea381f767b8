"""The probe protocol as plain functions: how data is split for selection, how the chosen configuration is
fit and scored once on the held-out split, and what the outcome records (intervals, baselines, protocol).

No Ray here: ``partaware.tune`` runs the search on Ray Tune and calls these; ``partaware.train`` (the paper's
segmentation schedule on Ray Train) builds the same ``SearchOutcome``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from partaware.probes.baselines import classification_baselines, retrieval_baselines, segmentation_baselines
from partaware.probes.errors import ProbeInputError
from partaware.probes.fit import PRIMARY_METRIC, concat, fit_and_predict, subset
from partaware.probes.linear import linear_input
from partaware.probes.retrieval import retrieval_ap
from partaware.probes.splits import random_validation_split, stratified_validation_split
from partaware.probes.uncertainty import LEVEL, RESAMPLES, average_items, item_interval, mean_interval
from partaware.results import ResultRecord

if TYPE_CHECKING:  # the spec validates task names against probes: a type only, never an import cycle
    from partaware.spec import SearchSettings


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


def split_train_val(task: str, features_by_split, labels_by_split, fraction: float, seed: int):
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


@dataclass
class FinalFit:
    """The chosen configuration fit on train + val once per seed and scored once on the held-out split."""

    means: dict[str, float]  # percent, mean over seeds
    std: float | None
    per_seed: list[float]
    ci_low: float | None
    ci_high: float | None
    ci: dict[str, Any]
    seconds: float


def final_fit(task: str, train, val, test, best_config: Mapping[str, Any], seeds: Sequence[int], n_cls: int, *,
              seed: int, also: Mapping[str, tuple] | None = None) -> FinalFit:  # fmt: skip
    """The only place the test split is touched: the chosen configuration, trained on train + val. ``also``:
    further held-out splits scored once by the same heads (``secondary_tests``), their metrics prefixed."""
    metric = PRIMARY_METRIC[task]
    full_train = (concat([train[0], val[0]]), np.concatenate([np.asarray(train[1]), np.asarray(val[1])]))
    start = time.perf_counter()
    fits = [fit_and_predict(task, full_train, test, {**best_config, "seed": s}, num_classes=n_cls, items=True,
                            also=also) for s in seeds]  # fmt: skip
    seconds = time.perf_counter() - start
    per_seed = [m for m, _ in fits]
    keys = [k for k in per_seed[0] if k not in ("epoch", "train_loss")]
    means = {k: 100.0 * statistics.fmean(m[k] for m in per_seed) for k in keys}
    std = 100.0 * statistics.stdev(m[metric] for m in per_seed) if len(per_seed) > 1 else None
    items = average_items([items for _, items in fits])
    low, high = item_interval(metric, items, seed=seed)
    units = "images" if task == "segmentation" else "test items"
    ci = ci_record(units, seed)
    for name in also or {}:  # each further split's interval, from its own re-summed counts
        lo, hi = item_interval(metric, {k: items[f"{name}:{k}"] for k in ("inter", "gt", "pred")}, seed=seed)
        ci.setdefault("secondary", {})[f"{name}_{metric}"] = {"low": percent(lo), "high": percent(hi)}
    return FinalFit(means, std, [100.0 * m[metric] for m in per_seed], percent(low), percent(high), ci,
                    seconds)  # fmt: skip


def secondary_tests(features_by_split: Mapping[str, Any], labels_by_split: Mapping[str, Any]) -> dict[str, tuple]:
    """Held-out splits named ``test:<name>`` (e.g. ``test:base``), scored once beside ``test`` by the same heads."""
    return {role[5:]: (features_by_split[role], labels_by_split[role]) for role in features_by_split
            if role.startswith("test:")}  # fmt: skip


def percent(fraction: float) -> float | None:
    return 100.0 * fraction if np.isfinite(fraction) else None


def ci_record(units: str, seed: int) -> dict[str, Any]:
    return {"level": LEVEL, "method": "percentile bootstrap", "units": units, "resamples": RESAMPLES, "seed": seed}


def baselines_for(task: str, train, val, test, n_cls: int) -> dict[str, float]:
    """Chance and majority on the scored split, the majority class taken from train + val."""
    y_fit = np.concatenate([np.asarray(train[1]), np.asarray(val[1])])
    if task == "segmentation":
        return segmentation_baselines(y_fit, test[1], n_cls)
    return classification_baselines(y_fit, test[1], n_cls)


def protocol_record(
    task: str, how: str, settings: SearchSettings, chosen: Mapping[str, Any], heads: int
) -> dict[str, Any]:
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


def retrieval_outcome(
    features_by_split, labels_by_split, *, exclude_self: bool, start: float, feature: str
) -> SearchOutcome:
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
        per_seed=[100.0 * result.ap], ci_low=percent(low), ci_high=percent(high), ci=ci_record("queries", 0),
        baselines=baselines, n_classes=len(np.unique(labels)),
    )  # fmt: skip
