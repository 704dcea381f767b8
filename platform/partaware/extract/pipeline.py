"""Feature extraction as a Ray Data pipeline: manifest -> images -> crops -> encoder actors -> shards.

    manifest rows of the kinds asked for ─ grouped by image, cut into shards (plan.json, fixed at the first run)
      └─ from_items (one row per image; completed shards left out: resume)
          └─ map_batches(decode_images)          CPU tasks: one read per image (fsspec: local or s3://),
          │                                      decode once, crop every region, black outside the image
          └─ map_batches(FeatureExtractor,       actor pool min..max, each asking Ray for the spec's GPUs, CPUs
          │      compute=ActorPoolStrategy)      and memory (an autoscaler adds such nodes); the encoder is
          │                                      loaded once per actor, which names its node and device
          └─ iter_batches in the driver ─ ShardWriter: a shard's part file is written (atomically) when its
                                          last region arrives, so memory holds only the open shards
      └─ verify: exactly one row (feature or error) per selected region, then errors.parquet, _SUCCESS last

Exactly-once: Ray restarts a killed actor and retries its batches; the writer drops any region it has
already seen, and the verification fails the run (no ``_SUCCESS``) if a region is missing or doubled.
Resume: a part file exists only for a complete shard, so a rerun submits only the other shards.
Kinds (``select_rows``): ``regions`` for the classification probes, ``label_maps`` (whole images) for
segmentation; the kinds are in the feature key, and each feature row keeps its manifest row index.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import posixpath
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from pyarrow import ArrowException

from partaware.datasets.convert import is_label_map_row
from partaware.datasets.store import PreparedDataset, open_prepared
from partaware.encoders.base import PREPROCESS_VERSION, EncoderSpec
from partaware.encoders.digests import known_weights_digest, remember_weights_digest
from partaware.encoders.loading import load_encoder
from partaware.encoders.registry import ENCODERS
from partaware.errors import SpecError, StorageError
from partaware.extract.crops import crop_regions
from partaware.extract.features import (
    ERRORS_FILE,
    FEATURES,
    PLAN_FILE,
    ExtractionError,
    completed_shards,
    data_files,
    errors_name,
    errors_table,
    feature_key,
    part_name,
    publish_problem,
    read_columns,
    read_schema,
    shard_table,
    tap_info,
    write_table,
)
from partaware.locks import writer_lock
from partaware.parquet import parquet_bytes_to_table
from partaware.storage import (
    SUCCESS,
    StorageRoot,
    filesystem_for,
    s3_endpoint,
    s3_limits_env,
    safe_relpath,
    storage_error,
)
from partaware.validation import replace_fields

ProgressFn = Callable[[int, int], None]
PRECISIONS = ("fp32", "bf16", "fp16")
#: Which manifest rows an extraction encodes (``select_rows``); the probe tasks name the one they need.
KINDS = ("regions", "label_maps")
DEFAULT_SHARD_REGIONS = 512


# --- planning (pure) ---------------------------------------------------------------------------


@dataclass
class ImageJob:
    """One image and every region to cut from it."""

    shard: int
    image_uri: str
    rows: list[int]
    region_ids: list[str]
    boxes: list[list[float] | None]


def select_rows(manifest_rows: Sequence[dict[str, Any]], kinds: Sequence[str]) -> list[int]:
    """Indices of the manifest rows of ``kinds``, in manifest order.

    ``regions``: rows with a class (boxes, keypoint patches, labelled whole images); ``label_maps``: the
    whole-image rows whose labels are per pixel (``label_id`` -1, a ``label_map_uri``).
    """
    wanted = check_kinds(kinds)

    def kind_of(r: dict[str, Any]) -> str | None:
        if r["label_id"] >= 0:
            return "regions"
        return "label_maps" if is_label_map_row(r) else None

    return [i for i, r in enumerate(manifest_rows) if kind_of(r) in wanted]


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """The kinds sorted and deduplicated (their order never matters); ``SpecError`` for none or an unknown one."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise SpecError(f"kinds {list(kinds)}: need one or more of {', '.join(KINDS)}")
    return sorted(set(kinds))


def plan_shards(
    manifest_rows: Sequence[dict[str, Any]], shard_regions: int, *, indices: Sequence[int] | None = None
) -> list[list[ImageJob]]:
    """Group regions by image (first-appearance order) and cut the images into shards of about
    ``shard_regions`` regions; an image never spans two shards. Deterministic for a given manifest.

    ``indices``: each row's index in the manifest when ``manifest_rows`` is a selection (default: position).
    """
    by_image: dict[str, ImageJob] = {}
    for i, r in zip(range(len(manifest_rows)) if indices is None else indices, manifest_rows, strict=True):
        job = by_image.get(r["image_uri"])
        if job is None:
            job = by_image[r["image_uri"]] = ImageJob(-1, safe_relpath(r["image_uri"]), [], [], [])
        job.rows.append(i)
        job.region_ids.append(r["region_id"])
        job.boxes.append(list(r["box"]) if r["box"] is not None else None)
    shards: list[list[ImageJob]] = [[]]
    count = 0
    for job in by_image.values():
        if count >= shard_regions:
            shards.append([])
            count = 0
        job.shard = len(shards) - 1
        shards[-1].append(job)
        count += len(job.rows)
    return [s for s in shards if s]


# --- decode stage (runs in Ray tasks; plain function) ---------------------------------------------


@functools.lru_cache(maxsize=8)
def _filesystem(dataset_uri: str, endpoint: str | None):
    options = {"endpoint_url": endpoint} if endpoint and dataset_uri.startswith(("s3://", "s3a://")) else {}
    return filesystem_for(dataset_uri, **options)


def decode_images(
    batch: dict[str, np.ndarray], *, dataset_uri: str, endpoint: str | None, size: int, interpolation: str
) -> dict[str, np.ndarray]:
    """A batch of images (one row each) -> a batch of regions (one row each) with uint8 crops.

    A missing or undecodable image, or an out-of-bounds box, becomes an error row (reason set,
    pixels zero): the job goes on and the errors table records it.
    """
    fs, base = _filesystem(dataset_uri, endpoint)
    out: dict[str, list] = defaultdict(list)
    pixels = []
    for shard, uri, rows, ids, boxes in zip(
        batch["shard"], batch["image_uri"], batch["rows"], batch["region_ids"], batch["boxes"], strict=True
    ):
        n = len(rows)
        t0 = time.perf_counter()
        try:
            data = fs.cat_file(posixpath.join(base, safe_relpath(str(uri))))
            read_error = ""
        except Exception as e:  # noqa: BLE001 - any read failure is this image's error, not the job's
            data, read_error = b"", f"unreadable image {uri}: {type(e).__name__}: {e}"
        t1 = time.perf_counter()
        region_boxes = [None if b is None or len(b) == 0 else [float(v) for v in b] for b in boxes]
        crops = crop_regions(data, region_boxes, size=size, interpolation=interpolation)
        errors = [read_error] * n if read_error else [f"{e} ({uri})" if e else "" for e in crops.errors]
        t2 = time.perf_counter()
        pixels.append(crops.pixels)
        out["row"].extend(int(r) for r in rows)
        out["region_id"].extend(str(r) for r in ids)
        out["shard"].extend([int(shard)] * n)
        out["error"].extend(errors)
        out["t_read"].extend([(t1 - t0) / n] * n)
        out["t_decode"].extend([(t2 - t1) / n] * n)
    return {
        "row": np.asarray(out["row"], dtype=np.int64),
        "region_id": np.asarray(out["region_id"], dtype=object),
        "shard": np.asarray(out["shard"], dtype=np.int64),
        "error": np.asarray(out["error"], dtype=object),
        "t_read": np.asarray(out["t_read"], dtype=np.float64),
        "t_decode": np.asarray(out["t_decode"], dtype=np.float64),
        "pixels": np.concatenate(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8),
    }


# --- the driver-side writer ------------------------------------------------------------------------


@dataclass
class RunStats:
    regions: int = 0
    duplicates_dropped: int = 0
    t_read: float = 0.0
    t_decode: float = 0.0
    t_encode: float = 0.0
    t_write: float = 0.0
    bytes_written: int = 0
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    placements: dict[str, int] = field(default_factory=dict)  # placement (JSON) -> regions


class ShardWriter:
    """Collects region rows per shard and writes a shard's files once its last region arrives.

    Rows seen twice (a retried batch after an actor was lost) are dropped, so each region is written
    once. Errors go to ``errors-<shard>.parquet`` first, then ``part-<shard>.parquet``: the part file is
    the shard's completion marker.
    """

    def __init__(self, froot: StorageRoot, expected: dict[int, int], taps: Sequence[str], stats: RunStats):
        self.froot, self.expected, self.taps, self.stats = froot, dict(expected), list(taps), stats
        self.open: dict[int, dict[str, tuple]] = defaultdict(dict)  # shard -> region_id -> (row, error, taps)
        self.done: set[int] = set()

    def add(self, batch: dict[str, np.ndarray]) -> int:
        """Take one batch; returns how many new regions it brought."""
        new = 0
        for i in range(len(batch["region_id"])):
            shard, rid = int(batch["shard"][i]), str(batch["region_id"][i])
            if shard in self.done or rid in self.open[shard]:
                self.stats.duplicates_dropped += 1
                continue
            err = str(batch["error"][i])
            feats = None if err else {t: batch[t][i] for t in self.taps}
            self.open[shard][rid] = (int(batch["row"][i]), err, feats)
            new += 1
            self.stats.t_read += float(batch["t_read"][i])
            self.stats.t_decode += float(batch["t_decode"][i])
            self.stats.t_encode += float(batch["t_encode"][i])
            w = self.stats.workers.setdefault(str(batch["worker"][i]), {"regions": 0, "encode_s": 0.0})
            w["regions"] += 1
            w["encode_s"] += float(batch["t_encode"][i])
            if "placement" in batch:
                where = str(batch["placement"][i])
                self.stats.placements[where] = self.stats.placements.get(where, 0) + 1
            if len(self.open[shard]) == self.expected[shard]:
                self._flush(shard)
        self.stats.regions += new
        return new

    def _flush(self, shard: int) -> None:
        start = time.perf_counter()
        items = sorted(self.open.pop(shard).items(), key=lambda kv: kv[1][0])
        bad = [(row, rid, err) for rid, (row, err, _) in items if err]
        good = [(row, rid, feats) for rid, (row, err, feats) in items if not err]
        if bad:
            rows, ids, reasons = zip(*bad, strict=True)
            self.stats.bytes_written += write_table(self.froot, errors_table(rows, ids, reasons), errors_name(shard))
        elif self.froot.exists(errors_name(shard)):  # left by an interrupted run whose inputs have since healed
            self.froot.fs.rm(self.froot.join(errors_name(shard)))
        # a shard of only errors keeps its tap columns, with 0 rows and an unknown (empty) shape
        arrays = {t: np.stack([f[t] for _, _, f in good]) if good else np.zeros((0, 0)) for t in self.taps}
        table = shard_table(np.asarray([g[0] for g in good], np.int64), [g[1] for g in good], arrays)
        self.stats.bytes_written += write_table(self.froot, table, part_name(shard))
        self.done.add(shard)
        self.stats.t_write += time.perf_counter() - start

    @property
    def incomplete(self) -> dict[int, int]:
        """Shards still waiting for regions: shard -> regions received."""
        return {s: len(v) for s, v in self.open.items() if v}


# --- verification -------------------------------------------------------------------------------


def verify_feature_set(froot: StorageRoot, region_ids: Sequence[str]) -> tuple[int, int, dict[str, Any]]:
    """Exactly one row (a feature row or an error row) per region of ``region_ids`` (the manifest rows
    the extraction selected), across every shard, and none for any other region.

    Returns ``(feature rows, error rows, tap info)``; raises ``ExtractionError`` naming missing or
    duplicated regions. Reads only the id columns (and one schema) so it is cheap on any store.
    """
    seen: dict[str, int] = defaultdict(int)
    n_rows = n_err = 0
    taps: dict[str, Any] = {}
    for shard in sorted(completed_shards(froot)):
        table = read_columns(froot, part_name(shard), ["region_id"])
        for rid in table.column("region_id").to_pylist():
            seen[rid] += 1
        n_rows += table.num_rows
        if table.num_rows and not taps:
            taps = tap_info(read_schema(froot, part_name(shard)))
        if froot.exists(errors_name(shard)):
            for rid in read_columns(froot, errors_name(shard), ["region_id"]).column("region_id").to_pylist():
                seen[rid] += 1
                n_err += 1
    expected = set(region_ids)
    missing = sorted(expected - set(seen))
    doubled = sorted(r for r, c in seen.items() if c > 1)
    unknown = sorted(set(seen) - expected)
    if missing or doubled or unknown:
        raise ExtractionError(
            f"feature set {froot.uri} failed verification: {len(missing)} regions missing {missing[:5]}, "
            f"{len(doubled)} duplicated {doubled[:5]}, {len(unknown)} not in the manifest {unknown[:5]}"
        )
    return n_rows, n_err, taps


# --- the entry point -------------------------------------------------------------------------------


@dataclass
class ExtractionResult:
    """What one extraction did; ``timings`` are seconds summed over all workers (write: the driver)."""

    key: str
    uri: str
    status: str  # "ran" | "cached"
    encoder: str
    dataset: str
    dataset_version: str
    rows: int
    errors: int
    regions_encoded: int  # regions computed by this run (0 for a cache hit)
    shards_total: int = 0
    shards_kept: int = 0  # complete before this run started (resume)
    shards_written: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    duplicates_dropped: int = 0
    device: str = ""  # the devices the actors computed on ("cuda", "cpu", "cpu,cuda"); "" when nothing was encoded
    placement: list[dict[str, Any]] = field(default_factory=list)  # regions by node type and device
    waited_s: float = 0.0  # for another writer of the same key (it held the writer lock)
    repaired: list[str] = field(default_factory=list)  # what a half-published folder had that was removed

    @property
    def regions_per_s(self) -> float:
        return self.regions_encoded / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regions_per_s": self.regions_per_s}


def resolve_spec(encoder: str | EncoderSpec) -> EncoderSpec:
    if isinstance(encoder, EncoderSpec):
        return encoder
    return ENCODERS.get(encoder)


def key_for(
    prepared: PreparedDataset,
    spec: EncoderSpec,
    weights_digest: str,
    taps: Sequence[str],
    precision: str,
    kinds: Sequence[str] = ("regions",),
    regions_digest: str | None = None,
) -> str:
    return feature_key(
        dataset=prepared.name,
        dataset_version=prepared.version,
        encoder=spec.name,
        weights_digest=weights_digest,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        interpolation=spec.interpolation,
        preprocess_version=PREPROCESS_VERSION,
        precision=precision,
        taps=taps,
        kinds=check_kinds(kinds),
        regions_digest=regions_digest,
    )


def _weights_digest(spec: EncoderSpec, root: StorageRoot, seed: int):
    """(weights digest, the encoder if it had to be loaded to learn it): stored beside the weights, so a
    cache hit loads nothing."""
    digest = known_weights_digest(spec, root, seed=seed)
    if digest is not None:
        return digest, None
    loaded = load_encoder(spec, root=root, device="cpu", seed=seed)
    remember_weights_digest(spec, root, loaded.weights_digest)
    return loaded.weights_digest, loaded


def encoder_input_key(
    root: StorageRoot,
    dataset: str,
    encoder: str | EncoderSpec,
    *,
    dataset_version: str | None = None,
    kinds: Sequence[str] = ("regions",),
    precision: str = "fp32",
    seed: int = 0,
) -> tuple[str, str]:
    """(key, dataset version) of a feature set with no taps: the identity (weights, dataset version,
    preprocessing) of work that runs the encoder on the images itself, such as the paper's segmentation
    schedule. Nothing is encoded or written under it."""
    prepared = open_prepared(root, dataset, dataset_version)
    spec = resolve_spec(encoder)
    digest, _ = _weights_digest(spec, root, seed)
    return key_for(prepared, spec, digest, [], precision, kinds), prepared.version


def regions_digest(rows: Sequence[dict[str, Any]]) -> str:
    """What a region table's features depend on: each region's id, image and box, in order."""
    blob = [[r["region_id"], r["image_uri"], None if r["box"] is None else [float(v) for v in r["box"]]] for r in rows]
    return hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ExtractionOptions:
    """How an extraction runs: batching, the actor pool, its resources, errors allowed. Only ``precision``
    changes the features (it is in the feature key); the rest changes speed and placement.

    ``gpus_per_actor``, ``cpus_per_actor`` and ``memory_per_actor`` (GiB) are what each actor asks Ray for,
    whether or not the cluster has such a node now; ``device`` (``partaware.placement``) where it computes."""

    precision: str = "fp32"
    batch_size: int = 64
    min_actors: int = 1
    max_actors: int = 2
    cpus_per_actor: float | None = None
    gpus_per_actor: float = 0.0
    memory_per_actor: float = 0.0  # GiB; 0 asks for none
    device: str = "auto"  # auto | cuda | cpu
    threads_per_actor: int | None = None
    decode_cpus: float | None = None
    images_per_task: int = 8
    shard_regions: int = DEFAULT_SHARD_REGIONS
    max_error_rate: float = 0.01
    worker_env: dict[str, str] | None = None  # extra environment for the pipeline's workers (never logged)
    ray_progress: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        from partaware.placement import DEVICES

        if self.device not in DEVICES or self.gpus_per_actor < 0 or self.memory_per_actor < 0:
            raise SpecError(f"device {self.device!r} (one of {', '.join(DEVICES)}), gpus_per_actor "
                            f"{self.gpus_per_actor:g}, memory_per_actor {self.memory_per_actor:g} (>= 0)")  # fmt: skip
        if self.device == "cpu" and self.gpus_per_actor > 0:
            raise SpecError(f"device cpu with gpus_per_actor {self.gpus_per_actor:g}: CPU compute asks for no GPU")
        if self.precision == "fp16" and (self.device == "cpu" or self.gpus_per_actor <= 0):
            raise SpecError("precision fp16 runs only on CUDA: give the actors a GPU (gpus_per_actor), or use bf16")
        if not (0.0 <= self.max_error_rate <= 1.0 and 1 <= self.min_actors <= self.max_actors and self.batch_size >= 1):
            raise SpecError(
                f"need 0 <= max_error_rate <= 1, 1 <= min_actors <= max_actors, batch_size >= 1 (got "
                f"{self.max_error_rate}, {self.min_actors}, {self.max_actors}, {self.batch_size})"
            )

    def with_overrides(self, overrides: dict[str, Any]) -> ExtractionOptions:
        return replace_fields(self, overrides, what="extraction", error=SpecError)


def extract_features(
    root: StorageRoot,
    dataset: str,
    encoder: str | EncoderSpec,
    *,
    taps: Sequence[str] = ("cls", "mean"),
    kinds: Sequence[str] = ("regions",),
    regions: Any = None,
    dataset_version: str | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    options: ExtractionOptions | None = None,
    **option_overrides: Any,
) -> ExtractionResult:
    """Extract ``taps`` of ``encoder`` for every manifest row of ``kinds`` (``select_rows``) into the cache.

    A complete key is a cache hit (no Ray, no encoding). Otherwise only the shards without a part
    file are computed, on the Ray cluster this process is connected to (a local one is started if
    none is). Each actor asks for ``gpus_per_actor`` GPUs whether or not the cluster has one now (an
    autoscaler adds the node); with no GPU and no ``cpus_per_actor`` each actor takes a fraction of a CPU
    so the decode stage can always run (2-core deadlock, stack notes).
    ``worker_env`` adds environment variables for the pipeline's workers (for example S3 credentials
    for a local Ray started before they were set); values are never logged. Raises
    ``ExtractionError`` if more than ``max_error_rate`` of the regions fail, or verification fails.
    The feature set's ``rows`` are manifest row indices, whichever rows ``kinds`` selected.

    How it runs is ``options`` (an ``ExtractionOptions``; single fields may be given as keywords, e.g.
    ``batch_size=16``): none of it changes the features except ``precision``, which is in the key.

    ``regions`` (a table of unified-manifest columns ``region_id``, ``image_uri``, ``box`` on the
    dataset's images) replaces the manifest: the gallery's windows and patches are encoded this way, on
    the same actors and into the same cache as every other feature set; ``rows`` then index ``regions``.
    """
    start = time.perf_counter()
    opts = (options or ExtractionOptions()).with_overrides(option_overrides)
    precision, shard_regions = opts.precision, opts.shard_regions
    taps = list(dict.fromkeys(taps))
    kinds = check_kinds(kinds)
    prepared = open_prepared(root, dataset, dataset_version)
    spec = resolve_spec(encoder)
    digest, loaded = _weights_digest(spec, root, seed)
    region_rows = _region_rows(regions) if regions is not None else None
    extra = regions_digest(region_rows) if region_rows is not None else None
    key = key_for(prepared, spec, digest, taps, precision, kinds, extra)
    froot = root.sub(FEATURES, key)
    base = {"key": key, "uri": froot.uri, "encoder": spec.name, "dataset": prepared.name}
    base["dataset_version"] = prepared.version
    cached = _published(froot, base, start)
    if cached is not None:
        return cached

    loaded = loaded or load_encoder(spec, root=root, device="cpu", seed=seed)
    loaded.check_taps(taps)  # before Ray: a tap the encoder does not have is a spec error, not an actor crash
    if loaded.weights_digest != digest:
        raise ExtractionError(f"encoder {spec.name}: its weights changed since their digest was stored; rerun")
    del loaded
    if region_rows is not None:
        manifest_rows, indices = region_rows, list(range(len(region_rows)))
    else:
        manifest_rows, indices = _selected(prepared, kinds)
    plan = {"shard_regions": shard_regions, "encoder": spec.name, "dataset": prepared.name,
            "dataset_version": prepared.version, "taps": taps, "weights_digest": digest, "precision": precision,
            "kinds": kinds}  # fmt: skip
    with writer_lock(root, FEATURES, key) as waited:  # one writer per key; a second one waits, then hits the cache
        cached = _published(froot, base, start)
        if cached is not None:
            return replace(cached, waited_s=waited)
        repaired = _unpublish(froot)
        shards = plan_shards(manifest_rows, _plan(froot, plan), indices=indices)
        repaired += _drop_bad_parts(froot, shards)
        kept = completed_shards(froot)
        todo = [s for s in shards if s[0].shard not in kept]
        stats = RunStats()
        device, placement = "", []
        if todo:
            device, placement = _run_pipeline(froot, prepared, spec, todo, taps=taps, digest=digest, seed=seed,
                                              options=opts, progress=progress, stats=stats,
                                              root_uri=root.uri)  # fmt: skip
        n_rows, n_err = _publish(froot, manifest_rows, taps, opts, stats, {
            **base, "weights_digest": digest, "input_size": spec.input_size, "preprocess_version": PREPROCESS_VERSION,
            "precision": precision, "kinds": kinds, "shards": len(shards),
        })  # fmt: skip
    if n_rows is None:  # another writer (object stores: no lock) published first; its set is the one
        theirs = _published(froot, base, start)
        if theirs is None:
            raise StorageError(f"{froot.uri}: another writer published this feature set at the same time and its "
                               "files disagree; rerun the extraction to repair it")  # fmt: skip
        return theirs
    return ExtractionResult(
        **base, status="ran", rows=n_rows, errors=n_err, regions_encoded=stats.regions,
        shards_total=len(shards), shards_kept=len(kept), shards_written=len(todo),
        seconds=time.perf_counter() - start,
        timings={"read": stats.t_read, "decode": stats.t_decode, "encode": stats.t_encode, "write": stats.t_write},
        workers={
            w: {**v, "regions_per_s": v["regions"] / v["encode_s"] if v["encode_s"] else 0.0}
            for w, v in stats.workers.items()
        },
        duplicates_dropped=stats.duplicates_dropped, device=device, placement=placement, waited_s=waited,
        repaired=repaired,
    )  # fmt: skip


# --- publishing: the cache hit, the plan, repairs, the one _SUCCESS -------------------------------


def _published(froot: StorageRoot, base: dict[str, Any], start: float) -> ExtractionResult | None:
    """The cache hit: a complete feature set whose files agree with its ``_SUCCESS`` (None otherwise)."""
    if not froot.is_complete():
        return None
    info = froot.completion_info()
    if publish_problem(froot, info) is not None:
        return None  # half-published: the writer that takes the lock repairs it
    return ExtractionResult(
        **base, status="cached", rows=info["rows"], errors=info["errors"], regions_encoded=0,
        shards_total=info.get("shards", 0), shards_kept=info.get("shards", 0), seconds=time.perf_counter() - start,
    )  # fmt: skip


def _unpublish(froot: StorageRoot) -> list[str]:
    """Remove a ``_SUCCESS`` that disagrees with the files it describes (held under the writer lock):
    the parts are then checked one by one and only the bad ones recomputed."""
    if not froot.is_complete():
        return []
    problem = publish_problem(froot, froot.completion_info()) or "it disagrees with the files"
    froot.fs.rm_file(froot.join(SUCCESS))
    return [f"_SUCCESS removed: {problem}"]


def _plan(froot: StorageRoot, plan: dict[str, Any]) -> int:
    """The shard size fixed by the first run of this key (created once: a rerun resumes with it)."""
    with contextlib.suppress(FileExistsError):
        froot.write_json(plan, PLAN_FILE, exclusive=True)
    return int(froot.read_json(PLAN_FILE)["shard_regions"])


def _drop_bad_parts(froot: StorageRoot, shards: list[list[ImageJob]]) -> list[str]:
    """Remove every part file that does not hold exactly its shard's regions (a stray shard, another plan's,
    an unreadable file), with its errors table: those shards are computed again. Returns what went, and why.

    Each part was written whole, so this finds only what something else left (a half-published folder).
    A storage failure while reading is raised, never taken for a bad part.
    """
    expected = {shard[0].shard: sorted(rid for job in shard for rid in job.region_ids) for shard in shards}
    dropped = []
    for s in sorted(completed_shards(froot)):
        why = None if s in expected else "its shard is not in the plan"
        if why is None:
            try:
                ids = read_columns(froot, part_name(s), ["region_id"]).column("region_id").to_pylist()
                if froot.exists(errors_name(s)):
                    ids += read_columns(froot, errors_name(s), ["region_id"]).column("region_id").to_pylist()
            except FileNotFoundError:
                continue
            except (OSError, ValueError, ArrowException) as e:
                if storage_error(e, froot.uri) is not None:
                    raise
                why = f"unreadable ({type(e).__name__})"
            else:
                why = None if sorted(ids) == expected[s] else "it holds other regions than its shard"
        if why is not None:
            for name in (part_name(s), errors_name(s)):
                if froot.exists(name):
                    froot.fs.rm_file(froot.join(name))
            dropped.append(f"{part_name(s)} removed: {why}")
    return dropped


def _publish(
    froot: StorageRoot,
    manifest_rows: list[dict[str, Any]],
    taps: list[str],
    opts: ExtractionOptions,
    stats: RunStats,
    info: dict[str, Any],
) -> tuple[int | None, int]:
    """Verify every shard, merge the errors, then write ``_SUCCESS`` (last, and only if there is none yet).

    Returns (rows, errors); rows is None when another writer's ``_SUCCESS`` was there first.
    """
    t0 = time.perf_counter()
    n_rows, n_err, shapes = verify_feature_set(froot, [r["region_id"] for r in manifest_rows])
    error_parts = [
        parquet_bytes_to_table(froot.read_bytes(errors_name(s))).to_pylist()
        for s in sorted(completed_shards(froot))
        if froot.exists(errors_name(s))
    ]
    all_errors = [e for part in error_parts for e in part]
    write_table(
        froot,
        errors_table([e["row"] for e in all_errors], [e["region_id"] for e in all_errors],
                     [e["reason"] for e in all_errors]),
        ERRORS_FILE,
    )  # fmt: skip
    stats.t_write += time.perf_counter() - t0
    total = len(manifest_rows)
    rate = n_err / total if total else 0.0
    if rate > opts.max_error_rate:
        sample = "; ".join(f"{e['region_id']}: {e['reason']}" for e in all_errors[:3])
        raise ExtractionError(
            f"{n_err} of {total} regions ({rate:.1%}) could not be encoded, above the allowed "
            f"{opts.max_error_rate:.1%}; see {froot.uri_of(ERRORS_FILE)} (first: {sample})"
        )
    if not shapes:  # every region failed (allowed by the threshold): shapes unknown
        shapes = {t: {"shape": [], "dtype": "float32"} for t in taps}
    files = data_files(froot)
    info = {**info, "taps": shapes, "rows": n_rows, "errors": n_err, "bytes": sum(files.values()), "files": files,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    try:
        froot.mark_complete(info=info, exclusive=True)
    except FileExistsError:
        return None, 0
    return n_rows, n_err


def _region_rows(regions: Any) -> list[dict[str, Any]]:
    """Rows of a region table (a pyarrow table or a list of dicts); paths must stay inside the dataset."""
    rows = regions.select(["region_id", "image_uri", "box"]).to_pylist() if hasattr(regions, "select") else regions
    if not rows:
        raise SpecError("an empty region table: nothing to encode")
    for r in rows:
        safe_relpath(r["image_uri"])
    return [{"region_id": r["region_id"], "image_uri": r["image_uri"], "box": r.get("box")} for r in rows]


def _selected(prepared: PreparedDataset, kinds: Sequence[str]) -> tuple[list[dict[str, Any]], list[int]]:
    """The manifest rows ``kinds`` select and their manifest indices; ``SpecError`` when there are none."""
    columns = ["region_id", "image_uri", "box", "label_id", "sample_rule", "label_map_uri"]
    rows = prepared.manifest().select(columns).to_pylist()
    indices = select_rows(rows, kinds)
    if not indices:
        raise SpecError(f"dataset {prepared.name} {prepared.version} has no rows of kind(s) {', '.join(kinds)}")
    return [rows[i] for i in indices], indices


def _run_pipeline(
    froot: StorageRoot,
    prepared: PreparedDataset,
    spec: EncoderSpec,
    todo: list[list[ImageJob]],
    *,
    taps: list[str],
    digest: str,
    seed: int,
    options: ExtractionOptions,
    progress: ProgressFn | None,
    stats: RunStats,
    root_uri: str,
) -> tuple[str, list[dict[str, Any]]]:
    """Run the Ray Data pipeline over the shards in ``todo``; returns the devices the actors computed on and
    where the regions were encoded (``partaware.placement.summarise``)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    from partaware.placement import summarise

    o = options
    if not ray.is_initialized():  # Ray is started in one place only: the caller's partaware.runs.cluster.ray_session
        raise SpecError("extraction needs a running Ray: call it inside partaware.runs.cluster.ray_session()")
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = o.ray_progress
    ctx.print_on_execution_start = o.ray_progress
    resources = ray.cluster_resources()
    total_cpus = float(resources.get("CPU", 1.0))
    gpu = o.gpus_per_actor > 0  # asked for whether or not a GPU node exists yet: the autoscaler adds one
    share = max(0.25, min(1.0, total_cpus / (o.max_actors + 1)))
    actor_cpus = o.cpus_per_actor if o.cpus_per_actor is not None else (1.0 if gpu else share)
    task_cpus = o.decode_cpus if o.decode_cpus is not None else share
    threads = o.threads_per_actor or (max(1, int(actor_cpus)) if gpu else max(1, int(total_cpus // o.max_actors)))
    memory = {"memory": int(o.memory_per_actor * 2**30)} if o.memory_per_actor else {}

    items = [asdict(job) for shard in todo for job in shard]
    for it in items:  # Arrow needs one type per column: an absent box becomes an empty list
        it["boxes"] = [b if b is not None else [] for b in it["boxes"]]
    expected = {shard[0].shard: sum(len(j.rows) for j in shard) for shard in todo}
    total = sum(expected.values())
    endpoint = s3_endpoint()
    # the run's S3 limits (a spec's storage_options) reach workers of a Ray started before they were set
    worker_env = {**(s3_limits_env() if "://" in prepared.uri else {}), **(o.worker_env or {})}
    remote_env = {"runtime_env": {"env_vars": worker_env}} if worker_env else {}

    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / o.images_per_task)))
    ds = ds.map_batches(
        decode_images,
        fn_kwargs={
            "dataset_uri": prepared.uri, "endpoint": endpoint, "size": spec.input_size,
            "interpolation": spec.interpolation,
        },
        batch_size=o.images_per_task, batch_format="numpy", num_cpus=task_cpus, **remote_env,
    )  # fmt: skip
    ds = ds.map_batches(
        _placed_extractor(),
        fn_constructor_kwargs={
            "encoder": spec, "taps": taps, "want": o.device, "gpus": o.gpus_per_actor, "seed": seed,
            "root_uri": root_uri, "expected_digest": digest, "threads": threads, "precision": o.precision,
        },
        batch_size=o.batch_size, batch_format="numpy",
        compute=ActorPoolStrategy(min_size=o.min_actors, max_size=o.max_actors),
        num_cpus=actor_cpus, num_gpus=o.gpus_per_actor, **memory, **remote_env,
    )  # fmt: skip
    writer = ShardWriter(froot, expected, taps, stats)
    done = 0
    if progress:
        progress(0, total)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        done += writer.add(batch)
        if progress:
            progress(done, total)
    if writer.incomplete:
        raise ExtractionError(f"the pipeline ended with incomplete shards (shard: regions got) {writer.incomplete}")
    places = [{**json.loads(p), "count": n} for p, n in stats.placements.items()]
    placement = summarise(places, gpus=o.gpus_per_actor, unit="regions")
    return ",".join(sorted({p["device"] for p in places})) or "cpu", placement


def _placed_extractor():
    """``FeatureExtractor`` that picks its device inside the actor (``partaware.placement.compute_device``:
    a GPU resource without a CUDA device computes on the CPU) and names its node and device on every row."""
    from partaware.extract.worker import FeatureExtractor
    from partaware.placement import compute_device, where

    class PlacedFeatureExtractor(FeatureExtractor):
        def __init__(self, encoder: EncoderSpec | str, taps: Sequence[str], *, want: str, gpus: float,
                     **kwargs: Any) -> None:  # fmt: skip
            device, note = compute_device(want, gpus)
            super().__init__(encoder, taps, device, **kwargs)
            self.placement = json.dumps(where(device, note), sort_keys=True)

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            out = super().__call__(batch)
            out["placement"] = np.full(len(out["worker"]), self.placement, dtype=object)
            return out

    return PlacedFeatureExtractor
