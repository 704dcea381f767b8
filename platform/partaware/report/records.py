"""Result records as the report sees them: read from a run folder, one record per probe across seeds.

Why aggregate here: a probe may write one record per seed or one record with the mean and standard
deviation already in it. Every table, verdict and claim reads the same aggregated list, so the two
layouts give the same report. Controls (random-initialisation copies added by the job) are recognised
here once, so no part of the report ranks one by mistake.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from partaware.errors import StorageError
from partaware.results import RESULTS_FILE, ResultRecord, read_results
from partaware.storage import StorageRoot

#: what makes two records the same probe (seeds aside)
PROBE_KEY = ("encoder", "dataset", "level", "task", "feature", "metric")


def probe_key(r: ResultRecord) -> tuple[str, ...]:
    return tuple(str(getattr(r, k)) for k in PROBE_KEY)


def is_control(r: ResultRecord) -> bool:
    """A random-initialisation control added by the job (shown, labelled, never ranked)."""
    return r.control or r.family == "control"


def _mean_bound(values: list[float | None]) -> float | None:
    """Mean of the seeds' interval ends, None unless every seed has one."""
    return statistics.fmean(values) if values and all(v is not None for v in values) else None


def _mean_baselines(group: list[ResultRecord]) -> dict[str, float]:
    """Baselines every seed carries, averaged (they depend on the split, not on the seed, bar random features)."""
    names = set.intersection(*(set(r.baselines) for r in group))
    return {k: statistics.fmean(r.baselines[k] for r in group) for k in sorted(names)}


def load_records(run_root: StorageRoot) -> list[ResultRecord]:
    """The run's records; ``StorageError`` naming the folder when it has none (a run still in progress)."""
    if not run_root.exists(RESULTS_FILE):
        raise StorageError(f"{run_root.uri} has no {RESULTS_FILE}: the run wrote no results (yet)")
    return read_results(run_root)


def aggregate(records: Iterable[ResultRecord]) -> list[ResultRecord]:
    """One record per probe: records of the same probe with different seeds become their mean, with the
    standard deviation over seeds, the per-seed values, and the mean of the seeds' interval ends (the test
    items are the same for every seed; a seed changes the head); a lone record keeps its own ``std`` and
    interval. Order of first appearance."""
    groups: dict[tuple[str, ...], list[ResultRecord]] = defaultdict(list)
    for r in records:
        groups[probe_key(r)].append(r)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        values = [r.value for r in group]
        metric_names = set().union(*(r.metrics for r in group))
        metrics = {m: statistics.fmean(r.metrics[m] for r in group if m in r.metrics) for m in sorted(metric_names)}
        first = group[0]
        out.append(
            first.model_copy(
                update={
                    "value": statistics.fmean(values),
                    "std": statistics.stdev(values),
                    "per_seed": values,
                    "ci_low": _mean_bound([r.ci_low for r in group]),
                    "ci_high": _mean_bound([r.ci_high for r in group]),
                    "baselines": _mean_baselines(group),
                    "metrics": metrics,
                    "seeds": sorted({s for r in group for s in r.seeds}),
                    "trials": sum(r.trials for r in group),
                    "trials_stopped_early": sum(r.trials_stopped_early for r in group),
                    "trial_results": [t for r in group for t in r.trial_results],
                    "wall_seconds": sum(r.wall_seconds for r in group),
                    "cpu_hours": sum(r.cpu_hours for r in group),
                    "gpu_hours": sum(r.gpu_hours for r in group),
                }
            )
        )
    return out
