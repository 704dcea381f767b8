"""Part segmentation across objects (``segmentation_novel``): the label tables built from the shipped OV-PARTS
lists, one head scored on a further held-out split, and the spec refusing datasets without base/novel objects."""

import numpy as np
import pytest

from partaware.datasets.classlists import load_class_list
from partaware.errors import SpecError
from partaware.probes.fit import counts_scores, fit_and_predict
from partaware.probes.metrics import IGNORE_INDEX
from partaware.probes.novel_parts import part_transfer, transfer_labels
from partaware.probes.protocol import final_fit, secondary_tests
from partaware.probes.tasks import get_task, tasks_for
from partaware.report.tables import Column
from partaware.spec import parse_spec


def test_the_head_classes_are_the_base_objects_part_names():
    entries = load_class_list("ov-parts-pascal-part-116").entries
    transfer = part_transfer(entries)
    index = {p: i for i, p in enumerate(transfer.parts)}
    by_name = {c["name"]: c["id"] for c in entries}
    # car is novel, bus base: a car's wheel is scored as the wheel the head learnt on buses (and others)
    assert transfer.novel[by_name["car's wheel"]] == index["wheel"] == transfer.base[by_name["bus's wheel"]]
    assert transfer.train[by_name["car's wheel"]] == IGNORE_INDEX  # novel objects never train the head
    assert transfer.base[by_name["car's wheel"]] == IGNORE_INDEX and transfer.novel[by_name["bus's wheel"]] == 255
    assert transfer.novel[by_name["bird's wing"]] == index["wing"]  # learnt on aeroplanes
    assert transfer.unscored == ("bird's beak",) and transfer.novel[by_name["bird's beak"]] == IGNORE_INDEX
    assert transfer.train[IGNORE_INDEX] == IGNORE_INDEX
    assert "beak" not in transfer.parts and "wheel" in transfer.parts


def test_labels_by_role_put_the_held_out_maps_twice():
    entries = load_class_list("ov-parts-pascal-part-116").entries
    transfer = part_transfer(entries)
    y = np.array([[[0, 11], [83, 255]]], dtype=np.uint8)  # aeroplane's body, bird's wing, person's head, ignored
    out = transfer_labels({"train": y, "test": y}, transfer)
    assert set(out) == {"train", "test", "test:base"}
    assert out["train"][0, 0, 1] == IGNORE_INDEX and out["test"][0, 0, 1] != IGNORE_INDEX  # the bird's wing
    assert out["test"][0, 0, 0] == IGNORE_INDEX and out["test:base"][0, 0, 0] == out["train"][0, 0, 0]


def test_a_class_list_without_base_novel_splits_is_refused():
    with pytest.raises(Exception, match="part and base/novel split"):
        part_transfer(load_class_list("lip-19").entries)


def _maps(n, seed):
    """(N, 3, 2, 2) one-hot maps of a 2x2 grid of classes, and their 8x8 label maps."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 3, size=(n, 2, 2))
    maps = np.eye(3, dtype=np.float32)[grid].transpose(0, 3, 1, 2)
    return maps, grid.repeat(4, 1).repeat(4, 2).astype(np.uint8)


def test_one_head_scores_a_further_split_and_its_interval():
    train, test = _maps(12, 0), _maps(6, 1)
    config = {"lr": 0.05, "epochs": 3, "batch_size": 4, "seed": 0}
    metrics, counts = fit_and_predict("segmentation", train, test, config, num_classes=3, items=True,
                                      also={"again": test})  # fmt: skip
    assert metrics["again_miou"] == pytest.approx(metrics["miou"]) and "again:inter" in counts
    assert counts_scores({k: counts[k] for k in ("inter", "gt", "pred")})["miou"] == pytest.approx(metrics["miou"])
    split = {"train": train[0], "test": test[0], "test:again": test[0]}
    also = secondary_tests(split, {"train": train[1], "test": test[1], "test:again": test[1]})
    assert set(also) == {"again"}
    fit = final_fit("segmentation", train, (train[0][:0], train[1][:0]), test, config, [0], 3, seed=0, also=also)
    assert fit.means["again_miou"] == pytest.approx(fit.means["miou"])
    assert fit.ci["secondary"]["again_miou"] == {"low": fit.ci_low, "high": fit.ci_high}
    with pytest.raises(Exception, match="further evaluation splits are for segmentation"):
        fit_and_predict("knn", (np.zeros((2, 3)), [0, 1]), (np.zeros((1, 3)), [0]), {}, num_classes=2, also=also)


def test_the_spec_runs_it_only_on_datasets_with_base_and_novel_objects():
    task = get_task("segmentation_novel")
    assert task.computes == "segmentation" and task.levels == ("part",)
    from partaware.datasets import DATASETS

    assert "segmentation_novel" in tasks_for(DATASETS.get("ade20k-part-234"))
    assert "segmentation_novel" not in tasks_for(DATASETS.get("lip"))
    base = {"name": "t", "encoders": ["deit"], "tasks": ["segmentation", "segmentation_novel"], "levels": ["part"]}
    parse_spec({**base, "datasets": [{"name": "ade20k-part-234", "source": "/data/ADE20K-Part-234"}]})
    with pytest.raises(SpecError, match="segmentation_novel cannot run on dataset lip .* base and novel"):
        parse_spec({**base, "datasets": [{"name": "lip", "source": "/data/LIP"}]})
    with pytest.raises(SpecError, match="segmentation_novel has no object level"):
        parse_spec({**base, "levels": ["object"], "datasets": [{"name": "pascal-part-116", "source": "/d"}]})


def test_the_report_labels_both_columns():
    novel = Column("ade20k-part-234", "part", "segmentation_novel", "maps", "miou")
    assert novel.label == "ade20k-part-234 novel objects' parts mIoU"
    assert "in-distribution" in Column(**{**novel.__dict__, "metric": "base_miou"}).label
