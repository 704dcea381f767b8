"""Ray Tune searches on a real local Ray: the better learning rate wins, the test split is never seen
during selection, an interrupted (here: finished) search resumes from its storage, records are complete."""

from __future__ import annotations

import numpy as np
import pytest

from partaware.errors import SpecError
from partaware.probes.errors import ProbeInputError
from partaware.results import read_results, write_results
from partaware.spec import SearchSettings
from partaware.tune import run_probe_search


def _separable(n: int, seed: int, classes: int = 3, dim: int = 8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = np.random.default_rng(42).normal(size=(classes, dim)) * 3.0
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def _data(test_seed: int = 1, shuffle_test_labels: bool = False):
    x, y = _separable(240, 0)
    xt, yt = _separable(120, test_seed)
    if shuffle_test_labels:
        yt = np.random.default_rng(5).permutation(yt)
    return {"train": x, "test": xt}, {"train": y, "test": yt}


SETTINGS = SearchSettings(num_samples=1, max_epochs=4, grace_period=2, reduction_factor=2, val_fraction=0.25)
LR_GRID = {"lr": {"type": "grid", "values": [1e-6, 0.5]}}
FIXED = {"batch_size": 32, "device": "cpu"}


@pytest.mark.ray
def test_search_picks_the_better_learning_rate_and_fills_the_record(ray_local, tmp_path, store):
    feats, labels = _data()
    out = run_probe_search("linear", feats, labels, space=LR_GRID, settings=SETTINGS, fixed=FIXED, seed=0,
                           storage_path=str(tmp_path / "tune"), name="lin")  # fmt: skip
    assert out.best_config["lr"] == 0.5
    assert out.trials == 2 and len(out.trial_results) == 2
    by_lr = {t["config"]["lr"]: t["metric"] for t in out.trial_results}
    assert by_lr[0.5] > by_lr[1e-6] + 0.3
    assert out.value >= 95.0 and out.metric == "top1"
    assert (out.n_train, out.n_val, out.n_test) == (180, 60, 120)
    assert out.search_space["lr"]["type"] == "grid" and out.search_space["batch_size"] == {"fixed": 32}
    assert "test never seen" in out.protocol["selection"] and out.protocol["final_fit"].startswith("best")
    assert out.wall_seconds > 0 and out.cpu_hours > 0
    assert (tmp_path / "tune" / "lin").is_dir()
    record = out.to_record(run_id="r1", encoder="vit_tiny.test", family="supervised", dataset="synthetic",
                           dataset_version="v0", level="part", feature="cls", zoo="test")  # fmt: skip
    write_results(store, [record])
    assert read_results(store)[0].best_config["lr"] == 0.5


@pytest.mark.ray
def test_test_split_is_never_seen_during_selection(ray_local, tmp_path):
    """Two searches that differ only in the test split (true vs shuffled labels) select identically."""
    outcomes = []
    for i, shuffled in enumerate((False, True)):
        feats, labels = _data(shuffle_test_labels=shuffled)
        outcomes.append(run_probe_search("linear", feats, labels, space=LR_GRID, settings=SETTINGS, fixed=FIXED,
                                         storage_path=str(tmp_path / "tune"), name=f"s{i}"))  # fmt: skip
    a, b = outcomes
    assert a.best_config == b.best_config
    assert [t["metric"] for t in a.trial_results] == [t["metric"] for t in b.trial_results]
    assert a.value >= 95.0 and b.value < 60.0  # only the final score saw the (shuffled) test labels


@pytest.mark.ray
def test_finished_search_resumes_from_storage_without_new_trials(ray_local, tmp_path):
    feats, labels = _data()
    kwargs = dict(space=LR_GRID, settings=SETTINGS, fixed=FIXED, storage_path=str(tmp_path / "tune"), name="again")
    first = run_probe_search("linear", feats, labels, **kwargs)
    second = run_probe_search("linear", feats, labels, **kwargs)
    assert second.experiment_path == first.experiment_path
    assert sorted(t["metric"] for t in second.trial_results) == sorted(t["metric"] for t in first.trial_results)
    assert second.best_config == first.best_config


@pytest.mark.ray
def test_knn_search_over_k(ray_local, tmp_path):
    feats, labels = _data()
    out = run_probe_search("knn", feats, labels, space={"k": {"type": "grid", "values": [1, 15]}},
                           settings=SETTINGS, fixed={"temperature": 0.1}, storage_path=str(tmp_path / "t"),
                           name="knn", seeds=[0, 1])  # fmt: skip
    assert out.trials == 2 and out.value >= 95.0 and out.seeds == [0, 1] and out.std == 0.0


def test_retrieval_needs_no_search_and_uses_every_split():
    feats, labels = _data()
    out = run_probe_search("retrieval", feats, labels)
    assert out.metric == "ap" and out.n_test == 360 and out.trials == 0
    assert out.protocol["query_in_gallery"] is True and 0 < out.value <= 100
    taps = {s: {"cls": f, "mean": -f} for s, f in feats.items()}
    mean = run_probe_search("retrieval", taps, labels, fixed={"feature": "mean"}, exclude_self=True)
    assert mean.protocol["feature"] == "mean" and mean.protocol["query_in_gallery"] is False
    assert mean.value < out.value  # the query no longer finds itself


def test_bad_search_requests_fail_clearly(tmp_path):
    feats, labels = _data()
    with pytest.raises(ProbeInputError, match="Valid: attentive, knn, linear, retrieval, segmentation"):
        run_probe_search("linaer", feats, labels, storage_path=str(tmp_path))
    with pytest.raises(SpecError, match="absolute path or a URI"):
        run_probe_search("linear", feats, labels, space=LR_GRID, storage_path="relative/dir")
    with pytest.raises(ProbeInputError, match="'test' split"):
        run_probe_search("linear", {"train": feats["train"]}, {"train": labels["train"]}, storage_path=str(tmp_path))


@pytest.mark.ray
def test_many_heads_in_one_trial_pick_the_better_learning_rate(ray_local, tmp_path):
    feats, labels = _data()
    out = run_probe_search("linear", feats, labels, space=LR_GRID, settings=SETTINGS, fixed=FIXED,
                           storage_path=str(tmp_path / "tune"), name="heads", heads_per_trial=2)  # fmt: skip
    assert out.trials == 2 and {t["config"]["lr"] for t in out.trial_results} == {1e-6, 0.5}
    assert out.best_config["lr"] == 0.5 and "heads" not in out.best_config and out.value >= 95.0
    with pytest.raises(ProbeInputError, match="heads_per_trial"):
        run_probe_search("linear", feats, labels, space={"epochs": {"type": "grid", "values": [1, 2]}},
                         settings=SETTINGS, storage_path=str(tmp_path), heads_per_trial=2)  # fmt: skip


@pytest.mark.ray
@pytest.mark.s3
def test_search_results_go_to_object_storage(ray_local, s3_bucket, monkeypatch):
    import s3fs

    from partaware.storage import s3_endpoint

    feats, labels = _data()
    out = run_probe_search("knn", feats, labels, space={"k": {"type": "grid", "values": [1, 5]}}, settings=SETTINGS,
                           storage_path=f"s3://{s3_bucket}/runs/r1/tune", name="knn-s3")  # fmt: skip
    assert out.trials == 2 and out.value >= 95.0
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint()})
    assert fs.ls(f"{s3_bucket}/runs/r1/tune/knn-s3")  # Tune's experiment state lives in the bucket


@pytest.mark.ray
def test_segmentation_and_attentive_searches_run_end_to_end(ray_local, tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 2, (40, 2, 2))
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0]], np.float32)
    maps = (centers[grid].transpose(0, 3, 1, 2) + 0.3 * rng.normal(size=(40, 4, 2, 2))).astype(np.float32)
    labels = grid.repeat(4, 1).repeat(4, 2)
    settings = SearchSettings(num_samples=1, max_epochs=3, grace_period=1, val_fraction=0.25)
    seg = run_probe_search("segmentation", {"train": maps[:30], "test": maps[30:]},
                           {"train": labels[:30], "test": labels[30:]},
                           space={"lr": {"type": "grid", "values": [0.05]}}, settings=settings,
                           fixed={"batch_size": 8, "device": "cpu"}, storage_path=str(tmp_path),
                           name="seg")  # fmt: skip
    assert seg.metric == "miou" and set(seg.metrics) == {"miou", "macc", "aacc"} and seg.value > 50
    assert (seg.n_train, seg.n_val, seg.n_test) == (22, 8, 10)
    assert seg.protocol["segmentation_mode"].startswith("fast")

    y = rng.integers(0, 2, 60)
    tokens = rng.normal(size=(60, 3, 8)).astype(np.float32)
    tokens[:, 1] += 4.0 * np.eye(8, dtype=np.float32)[y]
    att = run_probe_search("attentive", {"train": tokens[:45], "test": tokens[45:]}, {"train": y[:45], "test": y[45:]},
                           space={"lr": {"type": "grid", "values": [0.05]}}, settings=settings,
                           fixed={"batch_size": 16, "device": "cpu", "num_heads": 2, "eval_batch_stats": True},
                           storage_path=str(tmp_path), name="att")  # fmt: skip
    assert att.metric == "top1" and att.protocol["attentive_eval_batch_stats"] is True
    assert att.best_config["eval_batch_stats"] is True
