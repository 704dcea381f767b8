"""A segmentation job on a tiny OV-PARTS ADE20K-Part-234 tree (local Ray, a tiny random ViT): it scores the
release's val split over the 234 named classes, and its dataset version names the class list used."""

from __future__ import annotations

import numpy as np
import pytest

from _part_releases import make_ade20k_part_234
from _submit_specs import TINY_ENCODER
from partaware.datasets.convert import class_list_of, level_label_map_info
from partaware.datasets.store import open_prepared
from partaware.results import read_results
from partaware.runs.driver import run_job
from partaware.spec import parse_spec
from partaware.storage import StorageRoot

pytestmark = pytest.mark.ray


def test_segmentation_job_on_ade20k_part_234_names_its_class_list(ray_local, tmp_path):
    src = make_ade20k_part_234(tmp_path / "src", train=8, val=4, size=64)
    spec = parse_spec({
        "name": "ovparts-seg", "zoo": "custom",
        "datasets": [{"name": "ade20k-part-234", "source": str(src)}],
        "custom_encoders": [TINY_ENCODER], "encoders": [TINY_ENCODER["name"]], "tasks": ["segmentation"],
        "levels": ["part"], "search_settings": {"num_samples": 1, "max_epochs": 2, "grace_period": 1},
        "resources": {"extract_batch_size": 32, "max_actors": 1, "cpus_per_actor": 0.5},
    })  # fmt: skip
    store = StorageRoot.open(str(tmp_path / "store"))
    run_id, stages = run_job(spec, storage=store.uri, run_id="ovparts-seg")
    assert [s.status for s in stages if s.name in ("extract", "probe")] == ["ran", "ran"]
    [record] = [r for r in read_results(store.sub("runs", run_id)) if r.dataset == "ade20k-part-234"]
    assert record.task == "segmentation" and record.level == "part" and np.isfinite(record.value)
    assert record.n_classes == 234 and record.n_test == 4 and record.protocol["scored_split"] == "val"
    info = open_prepared(store, "ade20k-part-234", record.dataset_version).info
    used = class_list_of(info, "part")
    assert used["name"] == "ov-parts-ade20k-part-234" and len(used["sha256"]) == 64 and used["named"]
    assert level_label_map_info(info, "part")["classes"][141] == "bus's wheel"
    assert record.protocol["class_list"] == {k: used[k] for k in ("name", "sha256", "named", "version")}
    assert dict((s.name, s.status) for s in stages)["gallery"] == "skipped"  # no part boxes: no gallery


def test_segmentation_novel_scores_novel_objects_parts_beside_the_base_ones(ray_local, tmp_path):
    """Across objects: one head on the base objects' part names, scored on the bus's wheel (a novel object) of
    the val split, with the base objects' parts of val beside it; the report shows the two columns side by side."""
    from partaware.report.records import aggregate
    from partaware.report.tables import build_tables

    src = make_ade20k_part_234(tmp_path / "src", train=6, val=3, size=64)
    spec = parse_spec({
        "name": "ovparts-novel", "zoo": "custom",
        "datasets": [{"name": "ade20k-part-234", "source": str(src)}],
        "custom_encoders": [TINY_ENCODER], "encoders": [TINY_ENCODER["name"]], "tasks": ["segmentation_novel"],
        "levels": ["part"], "search_settings": {"num_samples": 1, "max_epochs": 2, "grace_period": 1},
        "resources": {"extract_batch_size": 32, "max_actors": 1, "cpus_per_actor": 0.5},
    })  # fmt: skip
    store = StorageRoot.open(str(tmp_path / "store"))
    run_id, _ = run_job(spec, storage=store.uri, run_id="ovparts-novel")
    [record] = read_results(store.sub("runs", run_id))
    assert record.task == "segmentation_novel" and record.metric == "miou" and np.isfinite(record.value)
    transfer = record.protocol["part_transfer"]
    assert record.n_classes == len(transfer["head_classes"]) == 83 and "wheel" in transfer["head_classes"]
    assert transfer["class_list"] == "ov-parts-ade20k-part-234" and record.protocol["scored_split"] == "val"
    assert np.isfinite(record.metrics["base_miou"]) and "base_miou" in record.ci["secondary"]
    [table] = [t for t in build_tables(aggregate([record])) if t.id == "part-transfer"]
    assert [c.metric for c in table.columns] == ["miou", "base_miou"]
    assert table.cell(record.encoder, table.columns[1]).value == record.metrics["base_miou"]
