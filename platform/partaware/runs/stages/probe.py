"""``probe``: one honest search per (dataset, encoder, level, task, feature), as result records.

What runs comes from the spec's plan (``JobSpec.plan``: dataset x level x task) and the task registry
(``ProbeTask.features``: which features of an encoder each task scores). Inputs are read from storage:
the dataset manifest (labels, splits, levels) and the feature sets the extract stage recorded. How data
is split is the task's rule and the dataset's declaration: ``held_out`` tasks select on data carved from
train (or the dataset's own val split when val is not the held-out one) and score the dataset's
held-out split once; retrieval scores the dataset's gallery splits. Every record is also cached under
``<root>/probes/<probe-key>.json``, keyed by the feature key, the task's protocol version and
everything that shapes the search, so a rerun re-probes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from partaware import __version__
from partaware.errors import PartawareError
from partaware.results import ResultRecord, write_results
from partaware.runs.driver import RunContext
from partaware.runs.records import (
    IN_THE_LOOP,
    ExtractOutput,
    FeatureSetRef,
    ProbeOutput,
    StageRecord,
    merge_placements,
)

if TYPE_CHECKING:
    from partaware.encoders.specs import EncoderSpec

PROBE_CACHE_VERSION = "2"
PROBES = "probes"


@dataclass(frozen=True)
class ProbePlan:
    """One search to run: which task on which feature of which encoder's features at which level."""

    dataset: str
    encoder: str
    level: str
    task: str
    feature: str


class NothingToProbe(Exception):
    """The plan's rows or splits are empty in this dataset version (named in the stage's detail)."""


def probe_key(feature_key: str, plan: ProbePlan, protocol_version: str, search_identity: dict[str, Any]) -> str:
    blob = json.dumps(
        {"v": PROBE_CACHE_VERSION, "features": feature_key, "level": plan.level, "task": plan.task,
         "feature": plan.feature, "task_version": protocol_version, **search_identity}, sort_keys=True, default=str,
    )  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def plan_job(ctx: RunContext, extracted: ExtractOutput) -> list[tuple[ProbePlan, FeatureSetRef]]:
    """Every search of the job, grouped by encoder and feature set so each feature set is read once."""
    from partaware.extract.pipeline import resolve_spec
    from partaware.probes.tasks import get_task

    spec, plans = ctx.spec, []
    for ref in spec.datasets:
        for encoder in ctx.encoders():
            for dataset, level, task in spec.plan():
                if dataset != ref.name:
                    continue
                features = extracted.find(ref.name, encoder, get_task(task).needs)
                for feature in get_task(task).features(resolve_spec(encoder), spec.variants.get(task)):
                    plans.append((ProbePlan(dataset, encoder, level, task, feature), features))
    return sorted(plans, key=lambda p: (p[0].dataset, p[0].encoder, p[1].kind))  # stable: same order per set


def run(ctx: RunContext) -> StageRecord:
    """Probe every planned (dataset, encoder, level, task, feature); write ``results.parquet``."""
    from partaware.probes.tasks import get_task

    spec, start = ctx.spec, time.perf_counter()
    search_identity = {
        "search": {k: {n: d.model_dump() for n, d in v.items()} for k, v in spec.search.items()},
        "settings": spec.search_settings.model_dump(), "seed": spec.seed, "seeds": spec.seeds,
    }  # fmt: skip
    plans = [
        (plan, features, probe_key(features.key, plan, get_task(plan.task).protocol_version,
                                   {**search_identity, **_variant_identity(spec, plan.task)}))
        for plan, features in plan_job(ctx, ctx.input(ExtractOutput))
    ]  # fmt: skip
    loaded: dict[Any, Any] = {}  # per stage: manifests, feature sets' ``_SUCCESS`` records, encoder specs
    check_memory(ctx, [(p, f) for p, f, key in plans if not ctx.root.exists(PROBES, f"{key}.json")], loaded)
    out, records, empty, placement = ProbeOutput(), [], [], []
    warned: list[str] = []  # probes that ran on too few items per class (a ``limit`` run's usual case)
    bar = ctx.progress("probe") if ctx.progress else nullcontext(None)
    with bar as update:
        for done, (plan, features, key) in enumerate(plans, start=1):
            cache = (PROBES, f"{key}.json")
            if ctx.root.exists(*cache):
                records.append(ResultRecord.model_validate({**ctx.root.read_json(*cache), "run_id": ctx.run_id}))
                out.cached += 1
            else:
                try:
                    record = _run_one(ctx, plan, features, loaded)
                except NothingToProbe as e:
                    empty.append(f"{plan.encoder}/{plan.dataset}/{plan.level}/{plan.task}: {e}")
                    continue
                ctx.root.write_json(record.model_dump(mode="json"), *cache)
                if record.protocol.get("warning"):
                    where = f"{plan.encoder}/{plan.dataset}/{plan.level}/{plan.task}"
                    warned.append(f"{where}: {record.protocol['warning']}")
                    ctx.note(f"warning: {warned[-1]}")
                records.append(record)
                placement += _placement(spec, record)
                out.searched += 1
            out.probe_keys.append(key)
            if update:
                update(done, len(plans))
    if empty:  # validation said these can run: an empty selection is a data problem, never a silent skip
        raise PartawareError("nothing to probe for " + "; ".join(empty))
    write_results(ctx.run_root, records)
    out.results = len(records)
    detail = f"{len(records)} results ({out.searched} searched, {out.cached} cached)"
    if warned:
        detail += f"; {len(warned)} warned: {warned[0]}" + (" (all in driver.log)" if len(warned) > 1 else "")
    return StageRecord.of(
        out,
        "ran" if out.searched else "cached",
        time.perf_counter() - start,
        detail,
        placement=merge_placements(placement),
    )


def _placement(spec, record: ResultRecord) -> list[dict[str, Any]]:
    """Where a search's trials ran (each trial names its node and device), or the paper schedule's workers."""
    from partaware.placement import summarise

    res = spec.resources
    if record.protocol.get("segmentation_mode") == "paper":
        places = [{"node_type": record.protocol.get("node_type", ""), "device": record.protocol.get("device", ""),
                   "count": len(record.seeds)}]  # fmt: skip
        return summarise(places, gpus=res.gpus_per_worker, unit="workers")
    places = [t for t in record.trial_results if t.get("device")]
    return summarise(places, gpus=res.gpus_per_trial, unit="trials") if places else []


class ProbeMemoryError(PartawareError):
    """Probes whose feature sets do not fit in the driver's memory (found before any search runs)."""


def plan_taps(
    plan: ProbePlan, info: dict[str, Any], encoder: EncoderSpec, variant: str | None = None
) -> tuple[str, ...]:
    """The taps of its feature set (``info``: the set's ``_SUCCESS`` record) that one plan reads: what its task
    reads from ``encoder`` (``ProbeTask.taps``, at the deepest stored block), only the plan's feature where that
    is itself a tap (retrieval scores each of its taps apart)."""
    from partaware.probes.tasks import get_task

    depth = max((int(t[6:]) for t in info["taps"] if t.startswith("patch:")), default=0)
    taps = tuple(get_task(plan.task).taps(encoder, depth, variant))
    return (plan.feature,) if plan.feature in taps else taps


def _plan_taps(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, loaded: dict) -> tuple[dict, tuple]:
    """(the feature set's ``_SUCCESS`` record, the plan's taps), the record and the encoder's spec looked up
    once per stage (a released lab encoder's spec takes milliseconds to build)."""
    from partaware.extract.features import feature_set_info
    from partaware.extract.pipeline import resolve_spec

    if ("info", features.key) not in loaded:
        loaded["info", features.key] = feature_set_info(ctx.root, features.key)
    if ("encoder", plan.encoder) not in loaded:
        loaded["encoder", plan.encoder] = resolve_spec(plan.encoder)
    info = loaded["info", features.key]
    return info, plan_taps(plan, info, loaded["encoder", plan.encoder], ctx.spec.variants.get(plan.task))


def probe_memory_need(info: dict[str, Any], taps: tuple[str, ...]) -> int:
    """About the peak bytes the probe stage holds for one plan: the taps as read, a float32 copy of those stored
    in fp16, and the probe splits (float32). The set is let go once split, so during the search the splits and
    the object store's copy of them take about as much. ``bench/bench_probe_memory.py`` measures the peak."""
    from partaware.extract.features import tap_bytes, tap_dtype

    def need(tap: str) -> int:
        as_float32 = tap_bytes(info, tap, "float32")
        return tap_bytes(info, tap) + (as_float32 if tap_dtype(tap) != "float32" else 0) + as_float32

    return sum(need(t) for t in taps)


def check_memory(ctx: RunContext, plans: list[tuple[ProbePlan, FeatureSetRef]], loaded: dict) -> None:
    """``ProbeMemoryError`` naming every plan whose inputs exceed the memory this driver has, before any search:
    the probe stage holds a feature set's taps in memory, and an out-of-memory kill would say nothing."""
    from partaware.runs.cluster import machine_memory_available

    available = machine_memory_available()
    over = []
    for plan, features in plans:
        if ctx.spec.encoder_in_the_loop(plan.task):  # the paper's segmentation: reads images, not features
            continue
        info, taps = _plan_taps(ctx, plan, features, loaded)
        need = probe_memory_need(info, taps)
        if need > available:
            shapes = ", ".join(f"{t} {'x'.join(map(str, info['taps'][t]['shape']))}" for t in taps)
            over.append(f"{plan.encoder}/{plan.dataset}/{plan.level}/{plan.task} ({plan.feature}): about "
                        f"{need / 2**30:,.1f} GiB ({info.get('rows', 0):,} regions; {shapes})")  # fmt: skip
    if over:
        raise ProbeMemoryError(
            f"{len(over)} probe(s) need more memory than the {available / 2**30:,.1f} GiB this driver has free "
            "(the probe stage holds the taps it probes and their split into train and test): "
            + "; ".join(over)
            + ". Run the driver on a node with more memory, or probe fewer items (the dataset's `limit`)"
        )


def _variant_identity(spec, task: str) -> dict[str, Any]:
    """What a non-default variant adds to the probe key (the fast path's keys stay as they were)."""
    if not spec.encoder_in_the_loop(task):
        return {}
    from partaware.probes.segmentation_paper import PAPER_VERSION

    return {"variant": "paper", "paper_version": PAPER_VERSION, "iterations": spec.paper_segmentation_iterations}


def _dataset(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, loaded: dict):
    """(prepared dataset, manifest), each dataset opened once per stage."""
    from partaware.datasets.store import open_prepared

    if ("manifest", plan.dataset) not in loaded:
        prepared = open_prepared(ctx.root, plan.dataset, features.dataset_version)
        loaded["manifest", plan.dataset] = (prepared, prepared.manifest())
    return loaded["manifest", plan.dataset]


def _inputs(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, loaded: dict):
    """(prepared dataset, feature set, features by probe split, labels by probe split, roles, classes)."""
    from partaware.datasets import DATASETS
    from partaware.extract.features import read_features
    from partaware.probes.inputs import labelled_rows, role_splits, split_arrays
    from partaware.probes.tasks import get_task

    task, entry = get_task(plan.task), DATASETS.get(plan.dataset)
    prepared, manifest = _dataset(ctx, plan, features, loaded)
    # Only the plan's taps, read for this plan alone: the caller lets go of them once split, so a search holds
    # its splits (and the object store's copy of them), never a whole set of attentive tokens beside them.
    _, taps = _plan_taps(ctx, plan, features, loaded)
    fs = read_features(ctx.root, features.key, taps)
    present = sorted(set(manifest.column("split").to_pylist()))
    roles = role_splits(task.split_rule, entry.held_out, present, entry.gallery)
    if task.needs == "label_maps":
        from partaware.probes.label_maps import segmentation_arrays

        feats, labels, classes = segmentation_arrays(prepared, manifest, fs, level=plan.level, taps=list(taps),
                                                     splits=roles)  # fmt: skip
        if plan.task == "segmentation_novel":
            return _novel_parts(prepared, plan, fs, feats, labels, roles)
        return prepared, fs, feats, labels, roles, classes
    rows = labelled_rows(manifest, plan.level)
    if not rows:
        raise NothingToProbe(f"no labelled {plan.level} regions in {plan.dataset} {features.dataset_version}")
    depth_tap = max((t for t in fs.features if t.startswith("patch:")), key=lambda t: int(t[6:]), default=None)
    feats, labels = split_arrays(fs, rows, plan.feature, roles, depth_tap)
    return prepared, fs, feats, labels, roles, None


def _novel_parts(prepared, plan: ProbePlan, fs, feats: dict, labels: dict, roles: dict):
    """``segmentation_novel``'s inputs: labels in the base objects' part names (``probes.novel_parts``), the
    held-out maps twice (novel objects' parts as ``test``, base objects' as ``test:base``)."""
    from partaware.probes.novel_parts import BASE, part_transfer, transfer_labels, version_class_list

    list_name, entries = version_class_list(prepared, plan.level)
    transfer = part_transfer(entries)
    labels = transfer_labels(labels, transfer)
    if "test" in feats:
        feats = {**feats, f"test:{BASE}": feats["test"]}
    for role, y in labels.items():
        if not (y != 255).any():
            raise NothingToProbe(f"no {'novel' if role == 'test' else 'base'}-object part pixels in split {role}")
    roles = {**roles, f"test:{BASE}": roles.get("test", "")}
    return prepared, fs, feats, labels, roles, len(transfer.parts), transfer.record(list_name)


def _run_one(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, loaded: dict) -> ResultRecord:
    from partaware.probes.tasks import get_task
    from partaware.tune import run_probe_search

    spec, task = ctx.spec, get_task(plan.task)
    if spec.encoder_in_the_loop(plan.task):
        return _run_paper(ctx, plan, features, loaded)
    prepared, fs, feats, labels, roles, classes, *transfer = _inputs(ctx, plan, features, loaded)
    digest = fs.info.get("weights_digest", "")
    del fs  # the splits are copies: the whole set need not stay in memory during the search
    missing = [r for r in roles if task.split_rule == "held_out" and r in ("train", "test") and r not in feats]
    if missing or not feats:
        raise NothingToProbe(f"no {', '.join(missing) or 'gallery'} items (splits {roles})")
    warning = _thin_classes(labels, limit=_limit_of(spec, plan.dataset)) if task.split_rule == "held_out" else None
    name = f"{plan.encoder}-{plan.dataset}-{plan.level}-{plan.task}-{plan.feature}".replace("/", "_")
    outcome = run_probe_search(
        task.computes, feats, labels, space=spec.search.get(plan.task) or task.search_defaults,
        settings=spec.search_settings, seed=spec.seed, seeds=spec.seeds, storage_path=ctx.run_root.uri_of("tune"),
        name=name, resources=spec.resources, fixed={"feature": plan.feature} if plan.task == "retrieval" else None,
        num_classes=classes, device=spec.device,
        heads_per_trial=spec.search_settings.heads_per_trial if plan.task == "linear" else 1,
    )  # fmt: skip
    outcome.protocol.update(
        task_version=task.protocol_version, input=plan.feature, split_rule=task.split_rule,
        scored_split=roles.get("test") or roles.get("gallery"), selection_split=roles.get("val", "carved from train"),
    )  # fmt: skip
    if transfer:
        outcome.task, outcome.protocol["part_transfer"] = plan.task, transfer[0]
    if task.split_rule == "gallery":
        outcome.protocol["gallery"] = f"every item of split(s) {roles['gallery']}"
    if warning:
        outcome.protocol["warning"] = warning
    return _record(ctx, plan, features, outcome, prepared, digest)


#: fewest training items per class for a tuned classification probe to mean anything (below: a warning)
MIN_TRAIN_PER_CLASS = 2


def _limit_of(spec, dataset: str) -> int | None:
    return next((spec.limit_of(ref) for ref in spec.datasets if ref.name == dataset), None)


def _thin_classes(labels: dict, *, limit: int | None) -> str | None:
    """A classification probe's labels checked before any search: ``NothingToProbe`` (a one-line error) when
    train cannot fit a classifier (fewer than two items or classes), else a warning when classes have fewer than
    ``MIN_TRAIN_PER_CLASS`` training items or test classes never occur in train; None when all is well."""
    import numpy as np

    if "train" not in labels or "test" not in labels or np.asarray(labels["train"]).ndim != 1:
        return None  # label maps (segmentation) and galleries: checked elsewhere
    train = np.asarray(labels["train"])
    seen = np.concatenate([train, np.asarray(labels.get("val", train[:0]))])
    counts = dict(zip(*np.unique(train, return_counts=True), strict=True))
    hint = f" (the job's limit keeps {limit} images per split: raise --limit or drop it)" if limit else ""
    if len(train) < 2 or len(counts) < 2:
        raise NothingToProbe(f"too few training items to fit a classifier: {len(train)} over {len(counts)} "
                             f"class(es){hint}")  # fmt: skip
    thin = sorted(int(c) for c, n in counts.items() if n < MIN_TRAIN_PER_CLASS)
    unseen = sorted(set(np.unique(labels["test"]).tolist()) - set(np.unique(seen).tolist()))
    if not thin and not unseen:
        return None
    few = f"{len(thin)} of {len(counts)} classes have fewer than {MIN_TRAIN_PER_CLASS} training items"
    parts = [few] if thin else []
    parts += [f"{len(unseen)} test classes never occur in train (scored as errors)"] if unseen else []
    return "; ".join(parts) + hint + ": the score is not comparable to a full run's"


def _record(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, outcome, prepared, weights_digest: str):
    """The outcome as a ``ResultRecord`` of this run, with the class list that named the labels."""
    from partaware.datasets.convert import class_list_of
    from partaware.extract.pipeline import resolve_spec

    encoder = resolve_spec(plan.encoder)
    names = class_list_of(prepared.info, plan.level)
    if names:  # which class list named the labels (and its digest): results on two lists never mix
        outcome.protocol["class_list"] = {k: names.get(k) for k in ("name", "sha256", "named", "version")}
    if prepared.info.get("subset"):  # a ``limit`` run: scored on a subset, never to be read as the full set's
        outcome.protocol["subset"] = dict(prepared.info["subset"])
    return outcome.to_record(
        run_id=ctx.run_id, encoder=plan.encoder, family=encoder.family, zoo=encoder.zoo, dataset=plan.dataset,
        dataset_version=prepared.version, level=plan.level, feature=plan.feature,
        weights_digest=weights_digest, feature_key=features.key if features.status != IN_THE_LOOP else "",
        random_weights=encoder.weights.kind == "random", control=encoder.family == "control",
        control_of=encoder.arch if encoder.family == "control" else "", versions=_versions(),
    )  # fmt: skip


def _run_paper(ctx: RunContext, plan: ProbePlan, features: FeatureSetRef, loaded: dict) -> ResultRecord:
    """The paper's segmentation schedule (``variants: {segmentation: paper}``): one Ray Train run per seed,
    the encoder in the loop, trained on train (+ the dataset's own val when val is not held out), scored
    once on the held-out split. No selection, so no search."""
    from partaware.datasets import DATASETS
    from partaware.extract.pipeline import resolve_spec
    from partaware.probes.inputs import role_splits
    from partaware.probes.label_maps import label_convention
    from partaware.probes.segmentation_paper import (
        PairReader,
        PaperJob,
        class_histogram,
        geometry_for,
        map_images,
        median_short_side,
    )
    from partaware.probes.tasks import get_task
    from partaware.train import run_paper_segmentation

    spec, task, entry = ctx.spec, get_task(plan.task), DATASETS.get(plan.dataset)
    prepared, manifest = _dataset(ctx, plan, features, loaded)
    roles = role_splits(task.split_rule, entry.held_out, sorted(set(manifest.column("split").to_pylist())),
                        entry.gallery)  # fmt: skip
    train_splits = ",".join(roles[r] for r in ("train", "val") if r in roles)
    train, test = map_images(manifest, plan.level, train_splits), map_images(manifest, plan.level, roles["test"])
    if not train or not test:
        raise NothingToProbe(f"no {'train' if not train else 'test'} label maps (splits {roles})")
    convention = label_convention(prepared, plan.level)
    job = PaperJob(
        encoder=resolve_spec(plan.encoder), storage_uri=ctx.root.uri, dataset_uri=prepared.uri, dataset=plan.dataset,
        level=plan.level, train=tuple(train), test=tuple(test), convention=convention,
        geometry=geometry_for(plan.dataset, median_short_side(manifest, train + test)),
        iterations=spec.paper_segmentation_iterations, seed=spec.seed, encoder_seed=spec.seed,
    )  # fmt: skip
    where = f"dataset {prepared.name} {prepared.version}"
    train_pixels = class_histogram(PairReader(prepared.root, convention, where), train, convention.num_classes)
    name = f"{plan.encoder}-{plan.dataset}-{plan.level}-segmentation-paper".replace("/", "_")
    outcome, digest = run_paper_segmentation(
        job, seeds=spec.seeds, storage_path=ctx.run_root.uri_of("train"), name=name, resources=spec.resources,
        train_pixels=train_pixels, train_splits=train_splits, device=spec.device,
    )  # fmt: skip
    outcome.protocol.update(
        task_version=task.protocol_version, input=plan.feature, split_rule=task.split_rule,
        scored_split=roles["test"], selection_split="none: the paper's fixed schedule",
    )  # fmt: skip
    return _record(ctx, plan, features, outcome, prepared, digest)


def _versions() -> dict[str, str]:
    import ray
    import timm
    import torch

    return {"partaware": __version__, "torch": torch.__version__, "timm": timm.__version__, "ray": ray.__version__}
