"""Publishing that cannot race: two writers of one dataset recipe or one feature key at once, half-published
folders, writers killed or interrupted part-way. Each ends with one intact output (rows, digests), nothing
half-written visible, and the next run repairing what a dead writer left.

Real processes (``partctl`` and Ray drivers in subprocesses), real ``kill -9``; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _cli import PARTCTL, partctl_env
from _faults import folder_digests
from _tiny_encoder import TINY
from partaware.datasets import prepare_dataset
from partaware.datasets.store import STAGING_PREFIX, StagingLock, is_intact, list_versions, remove_stale_staging
from partaware.errors import StorageError
from partaware.extract.features import FEATURES, completed_shards, list_features, part_name, read_features
from partaware.extract.pipeline import extract_features, verify_feature_set
from partaware.storage import SUCCESS, StorageRoot

PLATFORM = str(Path(__file__).resolve().parents[2] / "platform")
SYNTH = {"size": 24, "image_size": 64}


@pytest.fixture(scope="module", autouse=True)
def _register_tiny():
    from partaware.encoders.registry import ENCODERS, register_encoder

    if TINY.name not in ENCODERS:
        register_encoder(TINY)


# --- dataset versions -------------------------------------------------------------------------------


def staging_dirs(store: Path) -> list[str]:
    """Staging entries (folders and their lock files) under the synthetic dataset's folder."""
    folder = store / "datasets" / "synthetic"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)) if folder.exists() else []


def prepare_cmd(store: Path, size: int = 48) -> list[str]:
    return [PARTCTL, "datasets", "prepare", "synthetic", "--size", str(size), "--image-size", "64", "--workers", "1",
            "--storage", str(store)]  # fmt: skip


def test_two_prepares_of_one_recipe_both_succeed_with_one_intact_version(tmp_path):
    store = tmp_path / "store"
    start = time.perf_counter()
    procs = [subprocess.Popen(prepare_cmd(store), env=partctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert time.perf_counter() - start < 120
    versions = list_versions(StorageRoot.open(str(store)), "synthetic")
    assert len(versions) == 1 and is_intact(versions[0].root)
    assert len(versions[0].manifest()) == versions[0].info["rows"] > 0
    digests = folder_digests(versions[0].root.path)
    assert all(digests[rel] == sha for rel, sha in versions[0].checksums().items())
    assert all(f"version {versions[0].version}" in err for _, err in outs)  # both name the one version
    assert (
        staging_dirs(store) == []
        and [p.name for p in (store / "datasets/synthetic").iterdir() if ".lock" in p.name] == []
    )


def test_a_half_published_version_is_repaired_by_the_next_prepare(store):
    """The replayed race: a version folder holding only ``_SUCCESS`` (and its recipe pointing there)."""
    opts = {"size": 8, "image_size": 64}
    prepared, _ = prepare_dataset(store, "synthetic", options=opts)
    folder = Path(prepared.root.path)
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.name != "_SUCCESS":
            path.rmdir() if path.is_dir() else path.unlink()
    assert [p.name for p in folder.iterdir()] == ["_SUCCESS"]
    assert list_versions(store, "synthetic") == []  # listing skips it instead of failing
    again, built = prepare_dataset(store, "synthetic", options=opts)
    assert built and again.version == prepared.version and is_intact(again.root)
    assert len(again.manifest()) == prepared.info["rows"]


def test_a_publish_that_finds_the_version_complete_discards_its_copy(store):
    from partaware.datasets.store import DatasetBuild

    first, _ = prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 64})
    before = folder_digests(first.root.path)
    with DatasetBuild(store, "synthetic", dict(first.info["recipe"])) as build:
        for rel in first.checksums():
            build.add_file(rel, (Path(first.root.path) / rel).read_bytes())
        second = build.publish(first.manifest().to_pylist(), {})
    assert second.version == first.version and not os.path.exists(build.staging)
    assert is_intact(first.root) and staging_dirs(Path(store.path)) == []
    assert folder_digests(first.root.path) == before  # the published version was not touched


def _some_staged_file(store: Path) -> bool:
    return any((store / "datasets" / "synthetic" / d).rglob("*.png") for d in staging_dirs(store))


def _wait_for_staging(store: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _some_staged_file(store):
        assert proc.poll() is None, "the prepare ended before it could be stopped"
        time.sleep(0.1)
    assert _some_staged_file(store), "the prepare never started staging"


def test_kill_9_during_prepare_leaves_a_staging_folder_that_the_next_prepare_removes(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(prepare_cmd(store, size=3000), env=partctl_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        _wait_for_staging(store, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert [Path(n).suffix for n in staging_dirs(store)] == ["", ".lock"]  # left behind, hidden, not a version
    assert list_versions(StorageRoot.open(str(store)), "synthetic") == []
    done = subprocess.run(prepare_cmd(store, size=8), env=partctl_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert staging_dirs(store) == []
    [version] = list_versions(StorageRoot.open(str(store)), "synthetic")
    assert len(version.manifest()) == version.info["rows"] > 0


def test_staging_of_a_live_writer_is_kept_and_unlocked_old_ones_go(tmp_path, monkeypatch):
    parent = tmp_path / "datasets" / "x"
    parent.mkdir(parents=True)
    live = StagingLock.create(str(parent))
    os.makedirs(live.folder)
    orphan = parent / f"{STAGING_PREFIX}0123abcd"  # an older layout: no lock file
    orphan.mkdir()
    assert remove_stale_staging(str(parent)) == []  # the orphan is too young, the live one is held
    monkeypatch.setenv("PARTAWARE_STALE_STAGING_S", "0")
    time.sleep(0.01)
    assert remove_stale_staging(str(parent)) == [orphan.name]
    assert os.path.isdir(live.folder)
    live.release()  # its writer is done: no lock file, an orphan once old
    assert remove_stale_staging(str(parent)) == [Path(live.folder).name]


def test_interrupting_prepare_exits_130_and_leaves_nothing_half_written(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(prepare_cmd(store, size=3000), env=partctl_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for_staging(store, proc)
    start = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert time.perf_counter() - start < 30
    assert staging_dirs(store) == [] and list_versions(StorageRoot.open(str(store)), "synthetic") == []


# --- feature sets -----------------------------------------------------------------------------------

EXTRACTOR = """
import json, os, sys
import ray
from partaware.encoders.base import EncoderSpec
from partaware.extract.pipeline import extract_features
from partaware.storage import StorageRoot
ray.init(address=os.environ["TEST_RAY_ADDRESS"], log_to_driver=False, configure_logging=False)
spec = EncoderSpec.model_validate_json(sys.argv[2])
r = extract_features(StorageRoot.open(sys.argv[1]), "synthetic", spec, taps=["cls"], shard_regions=16, batch_size=8,
                     min_actors=1, max_actors=1)
print(json.dumps({"status": r.status, "key": r.key, "rows": r.rows, "waited_s": r.waited_s}), flush=True)
"""


def region_ids(prepared) -> list[str]:
    return sorted(r["region_id"] for r in prepared.manifest().to_pylist() if r["label_id"] >= 0)


def assert_intact(store: StorageRoot, key: str, ids: list[str]) -> None:
    """One feature row per manifest region, none twice, and the parts agree with ``_SUCCESS``."""
    fs = read_features(store, key)
    assert sorted(fs.region_ids) == ids and len(set(fs.rows)) == len(fs) == fs.info["rows"]
    assert verify_feature_set(store.sub(FEATURES, key), ids)[0] == len(ids)


@pytest.mark.ray
def test_two_extractions_of_one_key_at_once_publish_it_once(ray_local, store, tmp_path):
    """Two drivers (processes) extract the same key together: one computes it, the other waits for the writer
    lock and then reads it from the cache; ``_SUCCESS`` is written once, after every part."""
    prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    script = tmp_path / "extract.py"
    script.write_text(EXTRACTOR)
    env = {**os.environ, "PYTHONPATH": PLATFORM, "TEST_RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), store.uri, TINY.model_dump_json()], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=240) for p in procs]
    took = time.perf_counter() - start
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    results = sorted((json.loads(out.strip().splitlines()[-1]) for out, _ in outs), key=lambda r: r["status"])
    assert [r["status"] for r in results] == ["cached", "ran"], results
    assert results[0]["waited_s"] > 0, results  # the second one really waited for the first
    assert results[0]["key"] == results[1]["key"]
    assert results[0]["rows"] == results[1]["rows"] == len(region_ids(prepared))
    froot = Path(store.join(FEATURES, results[1]["key"]))
    parts = [froot / part_name(s) for s in completed_shards(store.sub(FEATURES, results[1]["key"]))]
    assert max(p.stat().st_mtime_ns for p in parts) <= (froot / SUCCESS).stat().st_mtime_ns  # _SUCCESS last
    assert_intact(store, results[1]["key"], region_ids(prepared))
    assert sorted(p.name for p in froot.iterdir() if p.name.startswith(".")) == [".writer.lock"]  # no temporaries
    assert took < 180, took


def _break(froot: Path, *, corrupt: int, remove: int, stray_from: int) -> None:
    (froot / part_name(remove)).unlink()
    (froot / part_name(corrupt)).write_bytes(b"PAR1 not really parquet")
    (froot / "part-00099.parquet").write_bytes((froot / part_name(stray_from)).read_bytes())


@pytest.mark.ray
def test_a_half_published_feature_set_is_repaired_by_the_next_extraction(ray_local, store):
    """Parts without ``_SUCCESS`` (one missing, one corrupt, one stray), then a ``_SUCCESS`` that disagrees with
    the parts: readers refuse it, and the next extraction recomputes only the bad shards."""
    prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    ids = region_ids(prepared)
    first = extract_features(store, "synthetic", TINY, taps=["cls"], shard_regions=16, batch_size=16, max_actors=1)
    froot = Path(store.join(FEATURES, first.key))
    good = folder_digests(froot)
    assert first.shards_total >= 4

    (froot / SUCCESS).unlink()
    _break(froot, corrupt=1, remove=2, stray_from=0)
    again = extract_features(store, "synthetic", TINY, taps=["cls"], batch_size=16, max_actors=1)
    assert again.status == "ran" and again.shards_written == 2, again  # shards 1 and 2, nothing else
    assert sorted(again.repaired) == [
        "part-00001.parquet removed: unreadable (ArrowInvalid)",
        "part-00099.parquet removed: its shard is not in the plan",
    ]
    kept = {n: d for n, d in folder_digests(froot).items() if n not in (part_name(1), part_name(2))}
    assert all(good[n] == d for n, d in kept.items() if n.startswith("part-")), "a good part was rewritten"
    assert_intact(store, again.key, ids)

    (froot / part_name(3)).unlink()  # complete-marked, but a part is gone: the marker disagrees
    with pytest.raises(StorageError, match=r"where its _SUCCESS says \d+: rerun the extraction to repair it"):
        read_features(store, again.key)
    third = extract_features(store, "synthetic", TINY, taps=["cls"], batch_size=16, max_actors=1)
    assert third.status == "ran" and third.shards_written == 1
    assert third.repaired == ["_SUCCESS removed: its files differ from what _SUCCESS lists: part-00003.parquet"]
    assert_intact(store, third.key, ids)
    assert extract_features(store, "synthetic", TINY, taps=["cls"]).status == "cached"
    [listed] = list_features(store)
    assert listed.rows == len(ids) and listed.bytes > 0
