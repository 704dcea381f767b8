"""``partctl submit --limit N``: a smoke test on a fixed, class-stratified subset that every stage reads.

The subset rule on hand-made rows, the probe's check for too few items per class, the dry run, and one real
job on a local Ray whose spec.yaml, stage records and results all name the limit and the subset's version.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from _submit_specs import write_spec
from partaware.datasets.subset import choose_images


def _rows(split: str, classes: dict[int, int]) -> list[dict]:
    """``classes``: class id -> images of it in ``split`` (one object row and one part row per image)."""
    out = []
    for c, n in classes.items():
        for i in range(n):
            image = f"{split}-{c}-{i}"
            out += [{"image_id": image, "split": split, "object_label_id": c},
                    {"image_id": image, "split": split, "object_label_id": c}]  # fmt: skip
    return out


def test_the_subset_deals_each_split_round_robin_over_classes_and_is_fixed():
    rows = _rows("train", {0: 10, 1: 3, 2: 1}) + _rows("test", {0: 2, 5: 2})
    keep = choose_images(rows, 5)
    by = Counter((i.split("-")[0], int(i.split("-")[1])) for i in keep)
    assert by == {("train", 0): 2, ("train", 1): 2, ("train", 2): 1, ("test", 0): 2, ("test", 5): 2}
    assert choose_images(list(reversed(rows)), 5) == keep  # row order does not matter
    assert choose_images(rows, 1000) == {r["image_id"] for r in rows}
    unlabelled = [{"image_id": f"im{i}", "split": "val", "object_label_id": -1} for i in range(9)]
    assert len(choose_images(unlabelled, 4)) == 4  # label maps only: one class, a fixed hash order


def test_a_probe_with_too_few_items_per_class_errs_or_warns_in_one_line():
    import numpy as np

    from partaware.runs.stages.probe import NothingToProbe, _thin_classes

    with pytest.raises(NothingToProbe, match=r"too few training items.*1 over 1 class.*raise --limit"):
        _thin_classes({"train": np.array([3]), "test": np.array([3, 4])}, limit=1)
    warning = _thin_classes({"train": np.array([0, 0, 1]), "test": np.array([0, 1, 2])}, limit=2)
    assert "1 of 2 classes have fewer than 2 training items" in warning and "1 test classes never occur" in warning
    assert "limit keeps 2 images per split" in warning
    assert _thin_classes({"train": np.array([0, 0, 1, 1]), "test": np.array([0, 1])}, limit=None) is None


def test_dry_run_and_validate_show_the_limit(partctl, tmp_path):
    spec = write_spec(tmp_path)
    out = partctl("submit", str(spec), "--limit", "3", "--dry-run", "--json", "--storage", str(tmp_path / "s"))
    assert out.returncode == 0, out.stderr[-2000:]
    plan = json.loads(out.stdout)
    assert plan["limit"] == 3 and plan["datasets"][0]["limit"] == 3
    text = partctl("submit", str(spec), "--limit", "3", "--dry-run", "--storage", str(tmp_path / "s"))
    assert "limit: images per split (synthetic 3)" in text.stderr
    bad = partctl("submit", str(spec), "--limit", "0", "--dry-run")
    assert bad.returncode == 2 and "--limit" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "s").exists()  # a dry run writes nothing


@pytest.mark.ray
def test_a_limited_job_runs_every_stage_on_the_subset_and_records_it(partctl, tmp_path):
    from partaware.datasets.store import open_prepared
    from partaware.results import read_results
    from partaware.storage import StorageRoot

    spec, store = write_spec(tmp_path, size=16), tmp_path / "store"
    out = partctl("submit", str(spec), "--tasks", "retrieval,linear", "--limit", "2", "--storage", str(store))
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = (store / "runs").iterdir()
    assert yaml.safe_load((run / "spec.yaml").read_text())["limit"] == 2  # the resolved spec records it
    prepared = json.loads((run / "stages" / "prepare.json").read_text())["outputs"]["datasets"]["synthetic"]
    assert prepared["limit"] == 2 and prepared["version"] != prepared["full_version"]
    root = StorageRoot.open(str(store))
    subset = open_prepared(root, "synthetic", prepared["version"])
    images = {(r["split"], r["image_id"]) for r in subset.manifest().to_pylist()}
    assert set(Counter(s for s, _ in images).values()) == {2}  # two images in each split
    assert subset.info["subset"]["of"] == prepared["full_version"]
    assert open_prepared(root, "synthetic").version == prepared["full_version"]  # the subset is never "the" dataset
    extract = json.loads((run / "stages" / "extract.json").read_text())["outputs"]["feature_sets"]
    assert {f["dataset_version"] for f in extract} == {prepared["version"]}
    results = read_results(root.sub("runs", run.name))
    assert results and {r.dataset_version for r in results} == {prepared["version"]}
    assert all(r.protocol["subset"]["limit"] == 2 for r in results)  # provenance of every result
    probe = json.loads((run / "stages" / "probe.json").read_text())
    assert "warned" in probe["detail"] and "limit keeps 2 images per split" in (run / "driver.log").read_text()
