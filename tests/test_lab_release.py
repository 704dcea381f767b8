"""The released lab zoo, named budgets and the lab's projection heads (no Ray; tiny real timm ViTs).

The shipped files are checked against their records; writing a release is checked to be bit for bit
reproducible, and a changed file to be refused.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from partaware.datasets import prepare_dataset
from partaware.encoders.base import state_dict_digest
from partaware.encoders.loading import load_encoder
from partaware.encoders.registry import ENCODERS, select_encoders
from partaware.errors import StorageError, UnknownNameError
from partaware.lab import release as lab_release
from partaware.lab.objectives import OBJECTIVES
from partaware.lab.presets import PRESETS, get_preset
from partaware.lab.ray_tasks import make_budget, pretrain
from partaware.lab.train import Budget, trained_recipe_version, weights_key
from partaware.lab.zoo import WITH_HEAD, build_lab_head, lab_spec
from partaware.storage import StorageRoot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[StorageRoot, dict]:
    """Three objectives (one per head layout, and one without a head), two steps each."""
    root = StorageRoot.open(str(tmp_path_factory.mktemp("release") / "store"))
    prepare_dataset(root, "synthetic", options={"size": 48, "image_size": 64}, workers=1)
    infos = pretrain(root, ["mae", "mocov3", "dino"], steps=2, batch_size=8, use_ray=False)
    return root, infos


def test_every_shipped_file_matches_its_record():
    record = lab_release.release_record()
    assert record is not None and record["objectives"], "the package ships a release"
    for objective, entry in record["objectives"].items():
        blob = (lab_release.release_dir() / entry["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["file_sha256"], objective
        state = lab_release.load_release_file(objective)
        assert state_dict_digest(state["model"]) == entry["weights_digest"], objective
        assert (state["head"] is not None) == entry["has_head"] == (objective in WITH_HEAD), objective
        assert entry["budget"]["preset"] == entry["preset"] and entry["command"].startswith("partctl pretrain")
        assert lab_release.canonical_safetensors(blob) == blob  # what --release writes, byte for byte


def test_every_shipped_objective_was_trained_with_its_current_recipe():
    """A revised recipe (``Objective.recipe_version``) moves the weights key; the shipped weights must follow."""
    for objective, entry in lab_release.release_record()["objectives"].items():
        assert entry["budget_key"] == weights_key(objective, Budget(**entry["budget"])), objective
        assert trained_recipe_version(objective, entry) == OBJECTIVES.get(objective).recipe_version, objective


def test_released_encoders_load_in_the_lab_zoo():
    released = lab_release.released_objectives()
    names = [f"lab-release/{o}" for o in released]
    assert set(names) <= set(select_encoders(["all"], zoo="lab"))
    encoder = load_encoder(names[0])
    assert encoder.weights_digest == lab_release.release_record()["objectives"][released[0]]["weights_digest"]
    feats = encoder.encode(torch.zeros(2, 3, 64, 64), ["cls", "mean"])
    assert feats["cls"].shape == (2, 96)
    assert ENCODERS.get(names[0]).weights.kind == "lab-release"


def test_writing_a_release_is_bit_for_bit_reproducible(trained, tmp_path):
    root, infos = trained
    first = lab_release.write_release(root, infos, preset="quickstart", folder=tmp_path)
    again = lab_release.write_release(root, infos, preset="quickstart", folder=tmp_path)
    assert all(e["reproduced"] is None for e in first["objectives"].values())
    assert all(e["reproduced"] is True for e in again["objectives"].values())
    record = json.loads((tmp_path / "release.json").read_text())
    record["objectives"]["mae"]["budget_key"] = "an-older-recipe"  # the shipped file came from other weights
    (tmp_path / "release.json").write_text(json.dumps(record))
    third = lab_release.write_release(root, infos, preset="quickstart", folder=tmp_path)["objectives"]
    assert third["mae"]["reproduced"] is None and third["dino"]["reproduced"] is True  # nothing to reproduce
    for objective, entry in again["objectives"].items():
        assert entry["file_sha256"] == first["objectives"][objective]["file_sha256"]
        assert entry["has_head"] == (objective in ("mocov3", "dino"))


def test_a_release_keeps_other_objectives_and_refuses_a_changed_file(trained, tmp_path):
    root, infos = trained
    lab_release.write_release(root, {"mae": infos["mae"]}, preset="quickstart", folder=tmp_path)
    record = lab_release.write_release(root, {"dino": infos["dino"]}, preset="gpu", folder=tmp_path)
    assert set(record["objectives"]) == {"mae", "dino"}
    assert record["objectives"]["dino"]["preset"] == "gpu" and record["objectives"]["mae"]["preset"] == "quickstart"
    state = lab_release.load_release_file("dino", tmp_path)
    head = build_lab_head(lab_spec("dino", released=True), state["head"])
    assert head(torch.zeros(3, 96)).shape[0] == 3
    blob = bytearray((tmp_path / "dino.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "dino.safetensors").write_bytes(bytes(blob))
    with pytest.raises(StorageError, match="sha256"):
        lab_release.load_release_file("dino", tmp_path)
    with pytest.raises(StorageError, match="not in the release record"):
        lab_release.load_release_file("ibot", tmp_path)
    assert json.loads((tmp_path / "release.json").read_text())["stored_dtype"] == "float16"


@pytest.mark.parametrize("objective", ["mocov3", "dino"])
def test_live_lab_encoders_keep_their_projection_head(trained, objective):
    root, _ = trained
    encoder = load_encoder(f"lab/{objective}", root=root)
    assert encoder.spec.has_projection and "proj" in encoder.available_taps
    out = encoder.encode(torch.zeros(2, 3, 64, 64), ["cls", "proj"])
    assert out["proj"].shape[0] == 2 and out["proj"].shape[1] != out["cls"].shape[1]


def test_a_lab_encoder_without_head_has_no_proj_tap(trained):
    root, _ = trained
    assert "proj" not in load_encoder("lab/mae", root=root).available_taps


def test_budget_presets_name_the_budget():
    assert {"quickstart", "gpu"} <= set(PRESETS)
    with pytest.raises(UnknownNameError, match="quickstart"):
        get_preset("huge")
    named = make_budget(preset="gpu", seed=0, dataset="synthetic", dataset_version="v")
    assert (named.preset, named.steps, named.batch_size) == ("gpu", PRESETS["gpu"].steps, PRESETS["gpu"].batch_size)
    hand_set = make_budget(preset="gpu", steps=7, seed=0, dataset="synthetic", dataset_version="v")
    assert hand_set.preset == "" and hand_set.key() != named.key()
    assert (
        make_budget(preset="quickstart", seed=0, dataset="s", dataset_version="v").key()
        != make_budget(preset="gpu", seed=0, dataset="s", dataset_version="v").key()
    )


def test_a_spec_names_a_known_lab_budget():
    from partaware.errors import SpecError
    from partaware.spec import parse_spec

    base = {"version": 1, "name": "t", "datasets": [{"name": "synthetic"}], "zoo": "lab"}
    assert parse_spec({**base, "lab_budget": "gpu"}).lab_budget == "gpu"
    with pytest.raises(SpecError, match="unknown lab budget 'huge'"):
        parse_spec({**base, "lab_budget": "huge"})
