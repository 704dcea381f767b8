"""The job's probe stage: one honest search per (dataset, encoder, level, task, feature), as records.

Reads the dataset manifest (labels, splits, levels) and the feature cache (by the keys the extract
stage produced), runs ``partaware.tune.run_probe_search`` and turns each outcome into a
``ResultRecord``. Every record is also cached under ``<root>/probes/<probe-key>.json``, keyed by the
feature key and everything that shapes the search, so a rerun of the same job re-probes nothing.

Which features each task probes (protocol §3.3-3.4): retrieval scores the encoded features
(``mean`` = the paper's ``embedding``, and ``cls``) and, for encoders with a projection head, the
projected ones (``proj``, the part-to-whole evidence); linear and k-NN probe the CLS token; the
attentive probe attends over the CLS token and the last block's patch tokens.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from partaware import __version__
from partaware.driver import RunContext, StageResult
from partaware.results import ResultRecord, write_results

PROBE_CACHE_VERSION = "1"
PROBES = "probes"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ProbePlan:
    """One search to run: which task on which tap(s) of which encoder's features at which level."""

    dataset: str
    encoder: str
    level: str
    task: str
    feature: str  # "cls" | "mean" | "proj" | "tokens"


def plan_probes(tasks: list[str], levels: list[str], has_projection: bool) -> Iterator[tuple[str, str, str]]:
    """(level, task, feature) triples for one encoder and dataset."""
    for level in levels:
        for task in tasks:
            if task == "retrieval":
                yield from ((level, task, f) for f in ("mean", "cls", *(["proj"] if has_projection else [])))
            elif task in ("linear", "knn"):
                yield level, task, "cls"
            elif task == "attentive":
                yield level, task, "tokens"


def probe_key(feature_key: str, plan: ProbePlan, spec_search: dict[str, Any]) -> str:
    blob = json.dumps(
        {"v": PROBE_CACHE_VERSION, "features": feature_key, "level": plan.level, "task": plan.task,
         "feature": plan.feature, **spec_search}, sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _labelled_rows(manifest, level: str) -> dict[int, tuple[str, int]]:
    """manifest row -> (split, label id) for the level's classification rows (label maps excluded)."""
    cols = manifest.select(["split", "level", "label_id"]).to_pydict()
    return {
        i: (cols["split"][i], cols["label_id"][i])
        for i in range(len(cols["level"]))
        if cols["level"][i] == level and cols["label_id"][i] >= 0
    }


def _features_for(fs, feature: str, depth_tap: str | None) -> np.ndarray:
    if feature != "tokens":
        return fs.features[feature]
    maps = fs.features[depth_tap].astype(np.float32)  # (N, D, h, w): last block, no final norm
    tokens = maps.reshape(maps.shape[0], maps.shape[1], -1).transpose(0, 2, 1)
    return np.concatenate([fs.features["cls"][:, None, :], tokens], axis=1)


def split_arrays(fs, rows: dict[int, tuple[str, int]], feature: str, depth_tap: str | None):
    """Features and labels by split, for the rows of one level that were encoded."""
    keep = np.array([int(r) in rows for r in fs.rows])
    x = _features_for(fs, feature, depth_tap)[keep]
    manifest_rows = fs.rows[keep]
    splits = np.array([rows[int(r)][0] for r in manifest_rows])
    labels = np.array([rows[int(r)][1] for r in manifest_rows], dtype=np.int64)
    feats = {s: x[splits == s] for s in SPLITS if (splits == s).any()}
    labs = {s: labels[splits == s] for s in SPLITS if (splits == s).any()}
    return feats, labs


def stage_probe(ctx: RunContext) -> StageResult:
    """Probe every (dataset, encoder, level, task, feature) of the spec; write ``results.parquet``."""
    from partaware.datasets.store import open_prepared
    from partaware.extract.features import read_features
    from partaware.extract.pipeline import resolve_spec
    from partaware.tune import run_probe_search

    spec, start = ctx.spec, time.perf_counter()
    extracted = ctx.outputs.get("extract", {})
    search_identity = {
        "search": {k: {n: d.model_dump() for n, d in v.items()} for k, v in spec.search.items()},
        "settings": spec.search_settings.model_dump(), "seed": spec.seed,
    }  # fmt: skip
    plans = [
        (ProbePlan(ds, enc, level, task, feature), info)
        for ds, by_encoder in extracted.items()
        for enc, info in by_encoder.items()
        for level, task, feature in plan_probes(list(spec.tasks), list(spec.levels), resolve_spec(enc).has_projection)
    ]
    records: list[ResultRecord] = []
    ran = cached = 0
    skipped: list[str] = []
    bar = ctx.progress("probe") if ctx.progress else nullcontext(None)
    loaded: dict[str, Any] = {}  # one manifest per dataset, the current encoder's features
    with bar as update:
        for done, (plan, info) in enumerate(plans, start=1):
            key = probe_key(info["key"], plan, search_identity)
            cache = (PROBES, f"{key}.json")
            if ctx.root.exists(*cache):
                record = ResultRecord.model_validate({**ctx.root.read_json(*cache), "run_id": ctx.run_id})
                records.append(record)
                cached += 1
            else:
                record = _run_one(ctx, plan, info, loaded, open_prepared, read_features, run_probe_search)
                if record is None:
                    skipped.append(f"{plan.encoder}/{plan.dataset}/{plan.level}/{plan.task}")
                else:
                    ctx.root.write_json(record.model_dump(mode="json"), *cache)
                    records.append(record)
                    ran += 1
            if update:
                update(done, len(plans))
    write_results(ctx.run_root, records)
    detail = f"{len(records)} results ({ran} searched, {cached} cached)"
    if skipped:
        detail += f"; no labelled regions for {', '.join(skipped)}"
    status = "ran" if ran else "cached"
    return StageResult("probe", status, time.perf_counter() - start, detail, {"results": len(records)})


def _run_one(ctx: RunContext, plan: ProbePlan, info: dict, loaded: dict, open_prepared, read_features, search):
    from partaware.extract.pipeline import resolve_spec

    spec = ctx.spec
    if ("manifest", plan.dataset) not in loaded:
        prepared = open_prepared(ctx.root, plan.dataset, info["dataset_version"])
        loaded["manifest", plan.dataset] = (prepared, prepared.manifest())
    prepared, manifest = loaded["manifest", plan.dataset]
    rows = _labelled_rows(manifest, plan.level)
    if not rows:
        return None
    if loaded.get("features", (None,))[0] != info["key"]:  # plans come grouped by encoder: read each set once
        loaded["features"] = (info["key"], read_features(ctx.root, info["key"]))
    fs = loaded["features"][1]
    depth_tap = max((t for t in fs.features if t.startswith("patch:")), key=lambda t: int(t[6:]), default=None)
    if plan.feature == "tokens" and depth_tap is None:
        return None
    feats, labels = split_arrays(fs, rows, plan.feature, depth_tap)
    if plan.task != "retrieval" and ("train" not in feats or "test" not in feats):
        return None
    encoder = resolve_spec(plan.encoder)
    name = f"{plan.encoder}-{plan.dataset}-{plan.level}-{plan.task}-{plan.feature}".replace("/", "_")
    outcome = search(
        plan.task, feats, labels, space=spec.search.get(plan.task), settings=spec.search_settings, seed=spec.seed,
        storage_path=ctx.run_root.uri_of("tune"),
        name=name, resources=spec.resources, fixed={"feature": plan.feature} if plan.task == "retrieval" else None,
    )  # fmt: skip
    return outcome.to_record(
        run_id=ctx.run_id, encoder=plan.encoder, family=encoder.family, zoo=encoder.zoo, dataset=plan.dataset,
        dataset_version=prepared.version, level=plan.level, feature=plan.feature,
        weights_digest=fs.info.get("weights_digest", ""), feature_key=info["key"],
        random_weights=encoder.weights.kind == "random", versions=_versions(),
    )  # fmt: skip


def _versions() -> dict[str, str]:
    import ray
    import timm
    import torch

    return {"partaware": __version__, "torch": torch.__version__, "timm": timm.__version__, "ray": ray.__version__}
