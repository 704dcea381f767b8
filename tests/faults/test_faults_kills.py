"""``kill -9`` mid-run, on a real local Ray: of an extraction actor, of an extraction driver, of a Tune trial's
worker. Each run still ends within bounds with every output complete and intact: one feature row per region,
none twice, finished shards kept byte for byte, every trial of a search reported.

The driver of a whole job (``partctl submit``) killed and resumed: tests/test_submit.py
(``test_a_killed_driver_reads_lost_and_is_resumed``, and ``test_ctrl_c_or_stop_leaves_a_resumable_run...``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from _faults import descendants_titled, folder_digests
from partaware.datasets import prepare_dataset
from partaware.encoders.base import EncoderSpec, WeightsSource
from partaware.extract.features import FEATURES, completed_shards, part_name, read_columns, read_features
from partaware.extract.pipeline import extract_features, verify_feature_set
from partaware.spec import SearchSettings
from partaware.storage import StorageRoot
from partaware.tune import run_probe_search

pytestmark = pytest.mark.ray

PLATFORM = str(Path(__file__).resolve().parents[2] / "platform")
SYNTH = {"size": 24, "image_size": 64}
# slower (ViT-S at 128 px) so a run lasts long enough to be interrupted part-way
SLOW = EncoderSpec(
    name="test/vit_small_rand_128",
    family="supervised",
    zoo="test",
    arch="vit_small_patch16_224",
    arch_kwargs={"img_size": 128},
    input_size=128,
    weights=WeightsSource(kind="random"),
)


@pytest.fixture(scope="module", autouse=True)
def _register_slow():
    from partaware.encoders.registry import ENCODERS, register_encoder

    if SLOW.name not in ENCODERS:
        register_encoder(SLOW)


def region_ids(prepared) -> list[str]:
    return sorted(r["region_id"] for r in prepared.manifest().to_pylist() if r["label_id"] >= 0)


def shard_rows(froot: StorageRoot, shard: int) -> list[str]:
    return read_columns(froot, part_name(shard), ["region_id"]).column("region_id").to_pylist()


def test_killing_an_actor_mid_run_still_gives_exactly_one_row_per_region(ray_local, store):
    prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    ids = region_ids(prepared)
    killed: list[int] = []
    stop = threading.Event()

    def chaos():
        # wait until the pipeline has written its first shard, then SIGKILL the encoder actor
        while not stop.is_set():
            features = store.sub(FEATURES)
            keys = [k for k in features.listdir() if not k.startswith(".")]
            if keys and completed_shards(features.sub(keys[0])):
                for pid in descendants_titled("FeatureExtractor")[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                if killed:
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        result = extract_features(
            store, "synthetic", SLOW, taps=["cls"], shard_regions=16, batch_size=8, min_actors=1, max_actors=1
        )
    finally:
        stop.set()
        thread.join(timeout=5)
    took = time.perf_counter() - start
    assert killed, "the chaos thread never found an actor to kill (run finished first?)"
    assert len(result.workers) >= 2, f"a replacement actor should have finished the run: {result.workers}"
    fs = read_features(store, result.key)
    assert sorted(fs.region_ids) == ids and len(fs) == len(ids) == result.rows
    assert np.isfinite(fs.features["cls"]).all()
    assert verify_feature_set(store.sub(FEATURES, result.key), ids) == (len(ids), 0, fs.info["taps"])
    assert took < 180, took


DRIVER = """
import os, sys
import ray
from partaware.encoders.base import EncoderSpec
from partaware.extract.pipeline import extract_features
from partaware.storage import StorageRoot
ray.init(address=os.environ["TEST_RAY_ADDRESS"], log_to_driver=False, configure_logging=False)
spec = EncoderSpec.model_validate_json(sys.argv[2])
extract_features(StorageRoot.open(sys.argv[1]), "synthetic", spec, taps=["cls"], shard_regions=16, batch_size=8,
                 min_actors=1, max_actors=1)
print("finished", flush=True)
"""


def test_a_killed_driver_resumes_and_computes_only_the_remainder(ray_local, store, tmp_path):
    prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    ids = region_ids(prepared)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": PLATFORM, "TEST_RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, str(script), store.uri, SLOW.model_dump_json()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 240
    froot = None
    while time.monotonic() < deadline and proc.poll() is None:
        keys = [k for k in store.listdir(FEATURES) if not k.startswith(".")]
        if keys:
            froot = store.sub(FEATURES, keys[0])
            if len(completed_shards(froot)) >= 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"driver ended before it could be killed: {proc.communicate()[0][-2000:]!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert froot is not None and not froot.is_complete()
    kept = completed_shards(froot)
    kept_rows = sum(len(shard_rows(froot, s)) for s in kept)
    before = {n: d for n, d in folder_digests(froot.path).items() if n.startswith("part-")}
    mtimes = {s: os.path.getmtime(froot.join(part_name(s))) for s in kept}
    assert 0 < kept_rows < len(ids)

    start = time.perf_counter()
    result = extract_features(store, "synthetic", SLOW, taps=["cls"], min_actors=1, max_actors=1)
    assert time.perf_counter() - start < 180
    assert result.status == "ran" and result.shards_kept == len(kept) and result.repaired == []
    assert result.regions_encoded == len(ids) - kept_rows  # only the remainder was computed
    assert result.waited_s < 1.0  # the dead driver's writer lock went with it
    assert {s: os.path.getmtime(froot.join(part_name(s))) for s in kept} == mtimes
    after = folder_digests(froot.path)
    assert all(after[n] == d for n, d in before.items()), "a finished shard was rewritten"
    fs = read_features(store, result.key)
    assert sorted(fs.region_ids) == ids and len(fs) == result.rows == len(ids)
    assert json.loads(json.dumps(result.to_dict()))["rows"] == len(ids)


def _separable(n: int, seed: int, dim: int = 64):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.random.default_rng(42).normal(size=(3, dim)) * 3.0
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def test_killing_a_tune_trial_retries_it_and_the_search_finishes(ray_local, tmp_path):
    """SIGKILL the Ray worker running a trial (its process runs ``ImplicitFunc.train``): Tune records the loss
    (``error.txt`` in the trial's folder names the pid), retries the trial (``FailureConfig(max_failures=2)``),
    and the search reports every trial with every epoch."""
    (x, y), (xt, yt) = _separable(4000, 0), _separable(400, 1)
    settings = SearchSettings(num_samples=1, max_epochs=8, grace_period=8, reduction_factor=2, val_fraction=0.25)
    killed: list[int] = []
    stop = threading.Event()

    def chaos():
        while not stop.is_set():
            pids = descendants_titled("ImplicitFunc.train")
            if pids:
                time.sleep(0.5)  # a few epochs in
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.02)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        out = run_probe_search("linear", {"train": x, "test": xt}, {"train": y, "test": yt},
                               space={"lr": {"type": "grid", "values": [1e-3, 0.1]}}, settings=settings,
                               fixed={"batch_size": 32, "device": "cpu"}, storage_path=str(tmp_path / "tune"),
                               name="killed")  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=5)
    took = time.perf_counter() - start
    assert killed, "no trial was running to be killed"
    errors = [p.read_text() for p in (tmp_path / "tune" / "killed").glob("*/error.txt")]
    assert len(errors) == 1 and f"pid: {killed[0]}" in errors[0], errors
    assert out.trials == 2 and sorted(t["config"]["lr"] for t in out.trial_results) == [1e-3, 0.1]
    assert all(t["iterations"] == 8 and np.isfinite(t["metric"]) for t in out.trial_results), out.trial_results
    assert out.value > 90.0 and out.n_test == 400
    assert took < 120, took
