"""Autoscaling for real, on Ray's fake multi-node autoscaler: a head with no CPUs for work, a CPU worker type
and a GPU-typed worker type, both from 0 (tests/_fake_cluster.py). Jobs go through ``partctl submit
--address`` as a user submits them.

- A CPU-only job starts CPU nodes only; a job whose spec asks for GPUs (extraction actors, probe trials)
  makes GPU-typed nodes join, and its stage records say so: node type ``gpu``, computed on the CPU with the
  note that the GPU resource has no CUDA device (the one mocked thing: a fake GPU cannot be a real one).
- Lab pretraining tasks asked for a GPU run on a GPU-typed node too.
- Idle nodes are removed afterwards (``idle_timeout_minutes`` is fractional: a few seconds here).
- A GPU node killed in the middle of extraction: the job still finishes with every region exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _fake_cluster import fake_autoscaling_cluster
from _submit_specs import tiny_spec
from partaware.placement import NO_CUDA

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PLATFORM = str(Path(__file__).resolve().parents[1] / "platform")
NODE_TYPES = {"cpu": {"resources": {"CPU": 2}, "max_workers": 1},
              "gpu": {"resources": {"CPU": 2, "GPU": 1}, "max_workers": 2}}  # fmt: skip
IDLE_MINUTES = 0.1  # 6 s


@pytest.fixture(scope="module")
def cluster():
    with fake_autoscaling_cluster(NODE_TYPES, idle_timeout_minutes=IDLE_MINUTES) as c:
        yield c


def _gpu_nodes(cluster) -> list[dict]:
    return [n for n in cluster.workers() if n["resources_total"].get("GPU")]


def _spec(folder: Path, name: str, *, gpus: float, size: int = 12, **extra) -> Path:
    spec = tiny_spec(name, size)
    spec["tasks"] = ["retrieval", "linear"]
    spec["levels"] = ["object"]  # no part level: no gallery stage (its patches are CPU work of their own)
    spec["seeds"] = [0]
    spec["controls"] = False
    spec["search_settings"] = {"num_samples": 1, "max_epochs": 2, "grace_period": 1}
    spec["resources"] = {"extract_batch_size": 16, "max_actors": 1, "cpus_per_actor": 1, "gpus_per_actor": gpus,
                         "cpus_per_trial": 1, "gpus_per_trial": gpus}  # fmt: skip
    spec.update(extra)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(partctl, cluster, spec: Path, store: Path) -> tuple[str, Path]:
    """Submit, follow to the end; (job id, run folder)."""
    out = partctl("submit", str(spec), "--address", cluster.jobs_address, "--storage", str(store))
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    followed = partctl("logs", job_id, "--follow", "--address", cluster.jobs_address, timeout=400)
    assert followed.returncode == 0 and f"job {job_id}: SUCCEEDED" in followed.stderr, followed.stdout[-3000:]
    return job_id, store / "runs" / job_id


def _record(run: Path, stage: str) -> dict:
    return json.loads((run / "stages" / f"{stage}.json").read_text())


def _regions(store: Path) -> int:
    import pyarrow.parquet as pq

    (manifest,) = store.glob("datasets/synthetic/*/manifest.parquet")
    return sum(1 for label in pq.read_table(manifest, columns=["label_id"]).column("label_id").to_pylist()
               if label >= 0)  # fmt: skip


def test_cpu_stages_start_cpu_nodes_only_and_gpu_stages_make_gpu_nodes_join(cluster, partctl, tmp_path):
    start = time.monotonic()
    assert cluster.workers() == [], "a fresh cluster: the head alone"
    store = tmp_path / "store"
    _, run = _run(partctl, cluster, _spec(tmp_path, "cpujob", gpus=0), store)
    assert _gpu_nodes(cluster) == [], "a job that asks for no GPU started a GPU-typed node"
    assert cluster.workers(), "the CPU work ran on a CPU node the autoscaler added (the head has no CPUs)"
    for stage in ("extract", "probe"):
        (place,) = _record(run, stage)["placement"]
        assert place["node_type"] == "cpu" and place["device"] == "cpu" and place["gpus_asked"] == 0, place
    cpu_s = time.monotonic() - start

    submitted, submitted_at = time.monotonic(), time.time()
    store = tmp_path / "store2"  # nothing cached: the features and probes are computed again, on GPU-typed nodes
    _, run = _run(partctl, cluster, _spec(tmp_path, "gpujob", gpus=1), store)
    gpu_nodes = _gpu_nodes(cluster)
    assert gpu_nodes, "the job asked for GPUs and no GPU-typed node joined"
    joined_s = min(n["start_time_ms"] for n in gpu_nodes) / 1000 - submitted_at
    extract, probe = _record(run, "extract"), _record(run, "probe")
    (ref,) = extract["outputs"]["feature_sets"]
    assert ref["rows"] == _regions(store) and ref["errors"] == 0 and ref["device"] == "cpu"
    for stage, unit in ((extract, "regions"), (probe, "trials")):
        (place,) = stage["placement"]
        assert (place["node_type"], place["device"], place["gpus_asked"], place["unit"]) == ("gpu", "cpu", 1, unit)
        assert place["note"] == NO_CUDA and set(place["nodes"]) <= {n["node_id"] for n in gpu_nodes}
    assert probe["placement"][0]["count"] == 1  # the one linear trial
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"] if s["placement"]] == ["extract", "probe"]
    report = " ".join((run / "report.md").read_text().split())  # YAML in the provenance wraps long lines
    assert (
        "where stages ran" in report
        and f"1 trials on 1 gpu node(s), computed on cpu, 1 GPU asked each ({NO_CUDA})" in report
    )

    idle = time.monotonic()
    while cluster.workers(alive=True):
        assert time.monotonic() - idle < 90, f"idle nodes still up: {cluster.workers(alive=True)}"
        time.sleep(1)
    print(f"\ncpu job {cpu_s:.0f}s; gpu node joined {joined_s:.1f}s after submit; gpu job "
          f"{idle - submitted:.0f}s; idle nodes gone {time.monotonic() - idle:.0f}s later")  # fmt: skip


PRETRAIN = """
import json, os, sys
from partaware.lab.ray_tasks import pretrain
from partaware.runs.cluster import ray_session
from partaware.storage import StorageRoot
from partaware.datasets import prepare_dataset
root = StorageRoot.open(sys.argv[1])
prepare_dataset(root, "synthetic", options={"size": 8, "image_size": 64})
with ray_session(os.environ["TEST_RAY_ADDRESS"]):
    infos = pretrain(root, ["mae"], steps=2, batch_size=4, device="auto", resources={"num_cpus": 1, "num_gpus": 1})
print(json.dumps(infos["mae"]["placed"]))
"""


def test_lab_pretraining_asked_for_a_gpu_runs_on_a_gpu_typed_node(cluster, tmp_path):
    script = tmp_path / "pretrain.py"
    script.write_text(PRETRAIN)
    env = {**os.environ, "PYTHONPATH": PLATFORM, "TEST_RAY_ADDRESS": cluster.gcs_address}
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    placed = json.loads(out.stdout.strip().splitlines()[-1])
    assert placed["node_type"] == "gpu" and placed["device"] == "cpu" and placed["note"] == NO_CUDA
    assert placed["node_id"] in {n["node_id"] for n in _gpu_nodes(cluster)}


def _node_processes(cluster, node_id: str) -> list[int]:
    """Pids of one fake node: the processes the autoscaler started with that node id in their environment."""
    marker = f"RAY_OVERRIDE_NODE_ID_FOR_TESTING={node_id}".encode()
    pids = []
    for pid in cluster.descendants():
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def test_a_gpu_node_killed_mid_extraction_loses_and_doubles_no_row(cluster, partctl, tmp_path):
    """About 930 regions: two shards of the feature set (512 regions each at most). The GPU node encoding
    them is killed, all its processes, as soon as the first shard's part file is written; a replacement
    GPU node joins and the job finishes with every region once, encoded on the two nodes."""
    store = tmp_path / "store"
    slow = {**tiny_spec()["custom_encoders"][0], "name": "custom/vit_tiny_rand_96", "arch_kwargs": {"img_size": 96},
            "input_size": 96}  # fmt: skip
    spec = _spec(tmp_path, "killjob", gpus=1, size=170, custom_encoders=[slow], encoders=[slow["name"]],
                 tasks=["retrieval"])  # fmt: skip
    out = partctl("submit", str(spec), "--address", cluster.jobs_address, "--storage", str(store))
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    killed, deadline = [], time.monotonic() + 240
    while not killed:  # the first shard is written: end the GPU node whose actor is encoding the rest
        assert time.monotonic() < deadline, partctl("logs", job_id, "--address", cluster.jobs_address).stdout[-3000:]
        if list(store.glob("features/*/part-*.parquet")):
            for node in cluster.workers(alive=True):
                pids = _node_processes(cluster, node["node_id"]) if node["resources_total"].get("GPU") else []
                if any("FeatureExtractor" in cluster.title(p) for p in pids):
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):  # a worker that ended meanwhile
                            os.kill(pid, signal.SIGKILL)
                    killed.append(node["node_id"])
        time.sleep(0.1)
    followed = partctl("logs", job_id, "--follow", "--address", cluster.jobs_address, timeout=400)
    assert followed.returncode == 0 and f"job {job_id}: SUCCEEDED" in followed.stderr, followed.stdout[-3000:]
    run = store / "runs" / job_id
    extract = _record(run, "extract")
    (ref,) = extract["outputs"]["feature_sets"]
    from partaware.extract.features import read_features
    from partaware.storage import StorageRoot

    features = read_features(StorageRoot.open(str(store)), ref["key"])
    assert len(features) == ref["rows"] == _regions(store) > 512 and len(set(features.region_ids)) == len(features)
    (place,) = extract["placement"]  # every region counted once, on the killed node or its replacement
    assert place["count"] == ref["rows"] and killed[0] in place["nodes"] and len(place["nodes"]) == 2, place
    deadline = time.monotonic() + 60  # the GCS marks a node dead after its missed health checks
    while [n["state"] for n in cluster.workers() if n["node_id"] == killed[0]] != ["DEAD"]:
        assert time.monotonic() < deadline, cluster.workers()
        time.sleep(1)
