"""The lab as Ray work and as a command: each objective its own Ray task on a real local Ray,
cached on rerun; ``partctl pretrain`` run as a subprocess the way a user runs it."""

from __future__ import annotations

import pytest

from partaware.datasets import prepare_dataset
from partaware.encoders.loading import load_encoder
from partaware.errors import UnknownNameError
from partaware.lab.ray_tasks import pretrain, resolve_objectives
from partaware.lab.zoo import lab_weights_info
from partaware.storage import StorageRoot


@pytest.fixture
def tiny_root(tmp_path) -> StorageRoot:
    root = StorageRoot.open(str(tmp_path / "store"))
    prepare_dataset(root, "synthetic", options={"size": 32, "image_size": 64}, workers=1)
    return root


def test_objective_selection():
    assert resolve_objectives("all")[:2] == ["supervised", "mocov3"]
    assert resolve_objectives("mae, lab/dino,mae") == ["mae", "dino"]
    with pytest.raises(UnknownNameError, match="ibot"):
        resolve_objectives("simclr")


@pytest.mark.ray
def test_pretrain_runs_each_objective_as_a_ray_task_then_caches(ray_local, tiny_root):
    snapshots = []
    first = pretrain(tiny_root, "supervised,mae", steps=3, batch_size=8, progress=snapshots.append)
    assert list(first) == ["supervised", "mae"]
    assert not any(info["cached"] for info in first.values())
    assert snapshots[-1]["mae"]["state"] == "done" and snapshots[-1]["supervised"]["step"] == 3
    assert first["mae"]["budget"]["dataset_version"] == first["supervised"]["budget"]["dataset_version"]
    assert first["mae"]["budget_key"] == first["supervised"]["budget_key"]  # one equal budget
    again = pretrain(tiny_root, ["mae"], steps=3, batch_size=8)
    assert again["mae"]["cached"] and again["mae"]["weights_digest"] == first["mae"]["weights_digest"]
    enc = load_encoder("lab/mae", root=tiny_root)
    assert enc.weights_digest == first["mae"]["weights_digest"] and enc.spec.family == "mim"
    assert lab_weights_info("supervised", tiny_root)["images_seen"] == 24


@pytest.mark.slow  # trains twice in a subprocess (about 10 s)
def test_partctl_pretrain_trains_and_reports(tiny_root, partctl):
    args = ["pretrain", "--objectives", "mae", "--steps", "2", "--batch-size", "4", "--no-ray"]
    out = partctl(*args, "--storage", tiny_root.uri)
    assert out.returncode == 0, out.stderr
    assert "lab/mae" in out.stdout and "trained" in out.stdout  # the final table: stdout
    out = partctl(*args, "--storage", tiny_root.uri)
    assert out.returncode == 0 and "cached" in out.stdout
    bad = partctl("pretrain", "--objectives", "simclr")
    assert bad.returncode == 2 and "unknown lab objective 'simclr'" in bad.stderr
