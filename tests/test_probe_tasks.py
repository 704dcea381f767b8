"""The probe-task registry: what each task declares, and what the spec, extraction and splits derive from it."""

from __future__ import annotations

import pytest

from _tiny_encoder import TINY
from partaware.datasets import DATASETS
from partaware.encoders.specs import EncoderSpec
from partaware.probes.inputs import GALLERY, role_splits
from partaware.probes.task import NEEDS, SPLIT_RULES, ProbeTask
from partaware.probes.tasks import PROBE_TASKS, get_task, job_taps, tasks_for
from partaware.probes.tasks.segmentation import segmentation_blocks

WITH_HEAD = TINY.model_copy(update={"name": "test/with_head", "has_projection": True})


def test_the_five_tasks_of_the_paper_and_the_cross_object_one_are_registered():
    assert PROBE_TASKS.names() == ["attentive", "knn", "linear", "retrieval", "segmentation", "segmentation_novel"]


@pytest.mark.parametrize("name", PROBE_TASKS.names())
def test_every_task_declares_a_complete_protocol(name):
    task = get_task(name)
    assert isinstance(task, ProbeTask) and task.needs in NEEDS and task.split_rule in SPLIT_RULES
    assert task.metric == task.report_metrics[0] and task.protocol_version and task.paper
    assert task.tuned == (task.split_rule == "held_out")  # what is trained is selected, then scored once
    assert not task.unknown_search_params(list(task.search_defaults))  # its defaults are searchable
    taps = set(job_taps(WITH_HEAD, [name], {}))
    depth = WITH_HEAD.arch_kwargs.get("depth", 12)
    assert set(task.taps(WITH_HEAD, depth)) <= taps <= set(WITH_HEAD.taps(depth))


def test_taps_follow_the_tasks_so_large_maps_are_extracted_only_when_read():
    assert job_taps(TINY, ["retrieval", "linear", "knn"]) == ["cls", "mean"]
    assert job_taps(WITH_HEAD, ["retrieval"]) == ["cls", "mean", "proj"]
    assert job_taps(TINY, ["attentive"]) == ["cls", "mean", "tokens"]
    assert job_taps(TINY, ["attentive"], {"attentive": "cls+last-block"}) == ["cls", "mean", "patch:12"]
    assert job_taps(TINY, ["segmentation"]) == ["cls", "mean", "patch:4", "patch:6", "patch:8", "patch:12"]
    lab = EncoderSpec.model_validate({**TINY.model_dump(), "name": "test/six", "arch_kwargs": {"depth": 6}})
    assert segmentation_blocks(6) == (2, 3, 4, 6) and job_taps(lab, ["segmentation"])[2:] == [
        "patch:2", "patch:3", "patch:4", "patch:6"]  # fmt: skip


def test_retrieval_scores_encoded_and_projected_features():
    assert get_task("retrieval").features(TINY) == ("mean", "cls")
    assert get_task("retrieval").features(WITH_HEAD) == ("mean", "cls", "proj")
    assert get_task("attentive").features(TINY) == ("tokens",)


def test_datasets_declare_their_held_out_split_and_the_tasks_follow_from_their_kinds():
    coco, cub, ade = DATASETS.get("coco"), DATASETS.get("cub"), DATASETS.get("ade20k")
    assert (coco.held_out, coco.gallery, cub.held_out, cub.gallery) == ("val", ("train",), "test", None)
    assert tasks_for(ade) == ("segmentation",) and "segmentation" not in tasks_for(cub)
    # every task but the one that needs base and novel objects (OV-PARTS lists)
    assert set(tasks_for(DATASETS.get("synthetic"))) == set(PROBE_TASKS.names()) - {"segmentation_novel"}
    assert tasks_for(DATASETS.get("pascal-part-116")) == ("segmentation", "segmentation_novel")


def test_roles_select_on_train_or_the_datasets_own_val_and_score_the_held_out_split():
    # COCO: val2017 is held out, so selection is carved from train
    assert role_splits("held_out", "val", ["train", "val"], ("train",)) == {"train": "train", "test": "val"}
    # the synthetic set: test is held out, its own val selects
    assert role_splits("held_out", "test", ["test", "train", "val"], None) == {
        "train": "train", "test": "test", "val": "val"}  # fmt: skip
    assert role_splits("gallery", "val", ["train", "val"], ("train",)) == {GALLERY: "train"}
    assert role_splits("gallery", "test", ["test", "train"], None) == {GALLERY: "test,train"}
