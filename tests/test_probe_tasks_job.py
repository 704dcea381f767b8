"""Every registered probe task runs in a real job (local Ray, a tiny random ViT, the synthetic set), and
datasets' declared splits decide what is selected on, what is scored and what retrieval searches."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from _submit_specs import TINY_ENCODER
from partaware.datasets import DATASETS
from partaware.probes.tasks import PROBE_TASKS, get_task, tasks_for
from partaware.results import read_results
from partaware.runs.driver import run_job
from partaware.spec import parse_spec
from partaware.storage import StorageRoot

pytestmark = pytest.mark.ray

TINY_SEARCH = {"num_samples": 1, "max_epochs": 2, "grace_period": 1}
TINY_RESOURCES = {"extract_batch_size": 32, "max_actors": 1, "cpus_per_actor": 0.5}


def job(name: str, datasets: list[dict], tasks: list[str], levels: list[str]) -> dict:
    return {
        "name": name, "datasets": datasets, "zoo": "custom", "custom_encoders": [TINY_ENCODER],
        "encoders": [TINY_ENCODER["name"]], "tasks": tasks, "levels": levels,
        "search_settings": TINY_SEARCH, "resources": TINY_RESOURCES,
    }  # fmt: skip


#: the tasks the synthetic set can feed: all but those needing a dataset kind it does not have
ON_SYNTHETIC = list(tasks_for(DATASETS.get("synthetic")))
#: registered tasks the synthetic set cannot feed, each run end to end by a job test of its own
ELSEWHERE = {"segmentation_novel": "tests/test_part_lists_job.py (an OV-PARTS tree: base/novel object split)"}


def test_every_registered_task_is_run_by_a_job_test():
    assert set(PROBE_TASKS.names()) == set(ON_SYNTHETIC) | set(ELSEWHERE)


@pytest.fixture(scope="module")
def every_task_run(ray_local, tmp_path_factory):
    """One job with every task the synthetic set feeds, at both levels: (records, storage root)."""
    store = StorageRoot.open(str(tmp_path_factory.mktemp("tasks") / "store"))
    spec = parse_spec(job("every-task", [{"name": "synthetic", "options": {"size": 40, "image_size": 64}}],
                          ON_SYNTHETIC, ["object", "part"]))  # fmt: skip
    run_id, stages = run_job(spec, storage=store.uri, run_id="every-task")
    assert [s.status for s in stages if s.name in ("extract", "probe", "report")] == ["ran", "ran", "ran"]
    return read_results(store.sub("runs", run_id)), store.sub("runs", run_id)


@pytest.mark.parametrize("name", ON_SYNTHETIC)
def test_every_registered_task_gives_results_at_both_levels(every_task_run, name):
    records, _ = every_task_run
    task = get_task(name)
    mine = [r for r in records if r.task == name]
    assert {r.level for r in mine} == {"object", "part"}
    for r in mine:
        assert r.metric == task.metric and np.isfinite(r.value)
        assert r.protocol["task_version"] == task.protocol_version and r.protocol["split_rule"] == task.split_rule
        if task.split_rule == "held_out":  # the synthetic set holds out its test split; val selects
            assert r.protocol["scored_split"] == "test" and r.protocol["selection_split"] == "val"
            assert r.n_test > 0 and r.n_train > 0
        for metric in task.report_metrics:
            assert metric in {k.lower() for k in r.metrics} or metric == r.metric
        # every score carries its interval and its baselines, on the same split and metric
        assert r.ci_low is not None and r.ci_low - 1e-9 <= r.value <= r.ci_high + 1e-9 and r.ci["level"] == 0.95
        expected = {"retrieval": {"chance", "random_features"}, "segmentation": {"majority"}}.get(
            name, {"chance", "majority"})  # fmt: skip
        assert set(r.baselines) == expected and r.n_classes >= 2
        assert len(r.per_seed) == len(r.seeds) and not r.control


def test_the_report_shows_segmentation_and_the_attentive_input(every_task_run):
    records, run_root = every_task_run
    seg = [r for r in records if r.task == "segmentation"]
    assert all(0.0 <= r.metrics["miou"] <= 100.0 and "macc" in r.metrics and "aacc" in r.metrics for r in seg)
    (attentive,) = {r.feature for r in records if r.task == "attentive"}
    assert attentive == "tokens"  # the protocol's input: every token after the final norm
    report = run_root.read_bytes("report.md").decode()
    assert "mIoU" in report and "segmentation" in report


# --- a COCO-format dataset: classification scored on val2017, retrieval over train2017 only -----------


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _coco_split(first_id: int, n_images: int) -> dict:
    """Images with one person each: nose, right wrist and left ankle (ids 1, 11, 16) 120 px apart."""
    images, annotations = [], []
    for i in range(n_images):
        image_id = first_id + i
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": 320, "height": 240})
        points = {1: (60, 60, 2), 11: (180, 60, 2), 16: (180, 180, 2)}
        keypoints = [v for k in range(1, 18) for v in points.get(k, (0, 0, 0))]
        annotations.append({"id": 1000 + image_id, "image_id": image_id, "category_id": 1, "keypoints": keypoints,
                            "num_keypoints": 3, "bbox": [40.0, 40.0, 160.0, 160.0], "area": 25600.0,
                            "iscrowd": 0})  # fmt: skip
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}  # fmt: skip


def test_coco_scores_classification_on_val2017_and_retrieves_over_train2017(ray_local, tmp_path):
    src = tmp_path / "coco"
    for split, first, n in (("train2017", 1, 12), ("val2017", 100, 5)):
        data = _coco_split(first, n)
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        (src / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
        (src / split).mkdir()
        for im in data["images"]:
            (src / split / im["file_name"]).write_bytes(_jpeg(im["id"]))
    spec = parse_spec(job("coco-splits", [{"name": "coco", "source": str(src)}], ["retrieval", "linear"], ["part"]))
    store = str(tmp_path / "store")
    run_id, _ = run_job(spec, storage=store, run_id="coco-splits")
    records = read_results(StorageRoot.open(store).sub("runs", run_id))
    linear = next(r for r in records if r.task == "linear")
    assert linear.protocol["scored_split"] == "val" and linear.n_test == 5 * 3  # val2017: 5 persons x 3 parts
    assert linear.protocol["selection_split"] == "carved from train" and linear.n_train + linear.n_val == 12 * 3
    for r in (r for r in records if r.task == "retrieval"):
        assert r.protocol["scored_split"] == "train" and r.n_test == 12 * 3  # the gallery: train2017 only


def test_each_probe_reads_only_its_taps_and_its_memory_need_counts_them(every_task_run, monkeypatch):
    """The probe stage reads a plan's own taps (a linear probe never loads the attentive probe's tokens), and its
    memory estimate is those arrays as read plus their split (and a float32 copy of what is stored in fp16)."""
    from partaware.extract import features as feature_io
    from partaware.extract.pipeline import resolve_spec
    from partaware.runs.stages.probe import ProbePlan, plan_taps, probe_memory_need

    _, run_root = every_task_run
    storage = run_root.uri.rsplit("/runs/", 1)[0]
    real_read, read = feature_io.read_features, []

    def recording_read(root, key, taps=None):  # the real reader, noting what each read asked for
        read.append((key, tuple(taps) if taps is not None else None))
        return real_read(root, key, taps)

    monkeypatch.setattr(feature_io, "read_features", recording_read)
    fresh = job("every-task", [{"name": "synthetic", "options": {"size": 40, "image_size": 64}}],
                ["retrieval", "linear", "attentive"], ["part"])  # fmt: skip
    fresh["search_settings"] = {**TINY_SEARCH, "max_epochs": 1}  # a new search: nothing cached
    run_job(parse_spec(fresh), storage=storage, run_id="own-taps")
    store = StorageRoot.open(storage)
    (probed,) = [f["key"] for f in store.read_json("runs", "own-taps", "stages", "extract.json")["outputs"]
                 ["feature_sets"]]  # fmt: skip
    by_probes = sorted(taps for key, taps in read if key == probed)  # the gallery reads a set of its own
    assert by_probes == sorted([("mean",), ("cls",), ("cls",), ("tokens",)])  # retrieval x2, linear, attentive
    regions = next(f for f in feature_io.list_features(store) if "tokens" in f.taps)
    info = feature_io.feature_set_info(store, regions.key)
    encoder = resolve_spec(TINY_ENCODER["name"])
    shapes = {"cls": [8], "patch:4": [8, 2, 2], "patch:12": [8, 2, 2]}
    stored = {"rows": 10, "taps": {t: {"shape": shape} for t, shape in shapes.items()}}
    last_block = ProbePlan("synthetic", encoder.name, "part", "attentive", "cls+last-block")
    assert plan_taps(last_block, stored, encoder, "cls+last-block") == ("cls", "patch:12")
    # as stored, then float32 (a copy only for the fp16 patch map), then the split: float32 again
    assert probe_memory_need(stored, ("cls", "patch:12")) == 10 * (8 * 4 * 2 + 32 * 2 + 2 * 32 * 4)
    assert plan_taps(ProbePlan("synthetic", encoder.name, "part", "attentive", "tokens"), info, encoder) == ("tokens",)
    array = real_read(store, regions.key, ["tokens"]).features["tokens"]
    assert probe_memory_need(info, ("tokens",)) == 2 * array.nbytes and array.dtype == np.float32


def test_probes_that_cannot_fit_in_memory_fail_before_any_search_naming_each(every_task_run, monkeypatch):
    """A driver with less free memory than a probe's inputs stops the probe stage in one message, before any
    search. The machine's memory is the one thing mocked: no machine here is small enough."""
    from partaware.runs.stages import probe

    _, run_root = every_task_run
    storage = run_root.uri.rsplit("/runs/", 1)[0]
    monkeypatch.setattr("partaware.runs.cluster.machine_memory_available", lambda: 4096)
    fresh = job("every-task", [{"name": "synthetic", "options": {"size": 40, "image_size": 64}}],
                ["linear", "attentive"], ["part"])  # fmt: skip
    fresh["search_settings"] = {**TINY_SEARCH, "max_epochs": 3}  # a new search: nothing cached
    before = set(StorageRoot.open(storage).listdir(probe.PROBES))
    with pytest.raises(probe.ProbeMemoryError) as err:
        run_job(parse_spec(fresh), storage=storage, run_id="too-small")
    message = str(err.value)
    assert "2 probe(s) need more memory than the 0.0 GiB this driver has free" in message
    assert f"{TINY_ENCODER['name']}/synthetic/part/linear (cls): about" in message
    assert "/synthetic/part/attentive (tokens): about" in message and "tokens 17x192" in message
    assert "regions" in message and "limit" in message
    assert set(StorageRoot.open(storage).listdir(probe.PROBES)) == before  # no search ran
