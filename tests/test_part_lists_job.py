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
