"""The pretraining lab's compute core, on real tiny timm ViTs and the real synthetic dataset (no Ray).

Kept small: a 64-image dataset at 64 px and a handful of steps per objective.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from partaware.datasets import prepare_dataset
from partaware.encoders.loading import load_encoder
from partaware.encoders.registry import select_encoders
from partaware.errors import StorageError, UnknownNameError
from partaware.extract.crops import crop_regions
from partaware.lab import augment
from partaware.lab.backbone import (
    LAB_ARCH_KWARGS,
    LAB_MEAN,
    LAB_STD,
    create_backbone,
    forward_tokens,
    forward_visible,
    patchify_embed,
)
from partaware.lab.data import load_lab_data
from partaware.lab.objectives import objective_names
from partaware.lab.objectives.base import block_masking, random_masking
from partaware.lab.objectives.dino import Centre
from partaware.lab.train import Budget, bind_budget, fit, publish_weights, train_objective, weights_key
from partaware.lab.zoo import lab_spec
from partaware.storage import StorageRoot

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> StorageRoot:
    root = StorageRoot.open(str(tmp_path_factory.mktemp("lab") / "store"))
    prepare_dataset(root, "synthetic", options={"size": 64, "image_size": 64}, workers=1)
    return root


@pytest.fixture(scope="module")
def lab_data(lab_root):
    from partaware.datasets.store import open_prepared

    return load_lab_data(open_prepared(lab_root, "synthetic"), size=64)


def test_data_is_the_train_splits_object_crops(lab_root, lab_data):
    from partaware.datasets.store import open_prepared

    prepared = open_prepared(lab_root, "synthetic")
    table = prepared.manifest().to_pydict()
    columns = (table["image_uri"], table["split"], table["level"], table["box"], table["label_id"])
    train_objects = [  # object boxes only: the whole-image label-map rows (label id -1) are not crops
        (u, box)
        for u, s, lv, box, label in zip(*columns, strict=True)
        if s == "train" and lv == "object" and label >= 0
    ]
    assert len(lab_data) == len(train_objects)
    assert lab_data.images.dtype == torch.uint8 and lab_data.images.shape[1:] == (3, 64, 64)
    assert lab_data.class_names[:2] == ["dog", "bird"] and int(lab_data.labels.max()) < 8
    # the same crop the extraction cuts for the object-level probes
    uri, box = train_objects[3]
    expected = crop_regions(prepared.root.read_bytes(uri), [box], size=64).pixels[0]
    assert torch.equal(lab_data.images[3], torch.from_numpy(expected).permute(2, 0, 1))


def test_token_forward_matches_timm():
    torch.manual_seed(0)
    model = create_backbone().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = forward_tokens(model, x)
        theirs = model.forward_features(x)
        keep = torch.arange(64).expand(2, -1)
        visible_all = forward_visible(model, x, keep)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(visible_all, theirs)
    small = forward_tokens(model, torch.randn(2, 3, 32, 32))  # local crop: resampled positions
    assert small.shape == (2, 1 + 16, model.embed_dim)


def test_masked_pixels_never_reach_visible_tokens():
    """The conv stem sees across patch borders, so masked forwards blank masked pixels first: changing
    a masked patch changes no output of ``forward_visible`` and no visible token of ``forward_tokens``."""
    torch.manual_seed(0)
    model = create_backbone().eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[:, :, 8:16, 8:16] = 5.0  # patch (row 1, col 1) = index 9
    hidden = torch.zeros(1, 64, dtype=torch.bool)
    hidden[0, 9] = True
    keep = (~hidden[0]).nonzero().T
    mask_token = torch.zeros(1, 1, model.embed_dim)
    with torch.no_grad():
        torch.testing.assert_close(forward_visible(model, x, keep), forward_visible(model, y, keep))
        a = forward_tokens(model, x, mask=hidden, mask_token=mask_token)
        b = forward_tokens(model, y, mask=hidden, mask_token=mask_token)
        torch.testing.assert_close(a, b)
        # unblanked, the stem's embedding of the neighbouring patch 10 does see patch 9 (the test can fail)
        assert not torch.allclose(patchify_embed(model, x)[0][:, 10], patchify_embed(model, y)[0][:, 10])


def test_masks_have_exact_counts():
    gen = torch.Generator().manual_seed(0)
    m = block_masking(5, 8, 26, gen)
    assert m.shape == (5, 64) and m.sum(1).tolist() == [26] * 5
    keep, masked = random_masking(3, 64, 0.75, gen)
    assert keep.shape == (3, 16) and masked.shape == (3, 48)
    assert all(set(k.tolist()).isdisjoint(mk.tolist()) for k, mk in zip(keep, masked, strict=True))


def test_views_are_a_function_of_the_generator(lab_data):
    recipe = augment.ViewRecipe(32, jitter_p=0.8, gray_p=0.2, blur_p=0.5)
    batch = lab_data.images[:6]
    a = augment.make_views(batch, recipe, torch.Generator().manual_seed(3), mean=LAB_MEAN, std=LAB_STD)
    b = augment.make_views(batch, recipe, torch.Generator().manual_seed(3), mean=LAB_MEAN, std=LAB_STD)
    c = augment.make_views(batch, recipe, torch.Generator().manual_seed(4), mean=LAB_MEAN, std=LAB_STD)
    assert a.shape == (6, 3, 32, 32)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_hue_rotation_keeps_luma_and_greys_and_turns_colours():
    gen = torch.Generator().manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(5, 3, 4, 4, generator=gen)  # mid-range colours: a quarter turn stays in gamut
    luma = augment._YIQ[0].view(1, 3, 1, 1)
    turned = augment.rotate_hue(x, torch.full((5,), 0.1))
    torch.testing.assert_close((turned * luma).sum(1), (x * luma).sum(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(augment.rotate_hue(turned, torch.full((5,), -0.1)), x, atol=1e-5, rtol=0)
    assert (turned - x).abs().max() > 0.05
    grey = torch.full((1, 3, 2, 2), 0.4)
    torch.testing.assert_close(augment.rotate_hue(grey, torch.tensor([0.37])), grey)


def test_a_recipe_without_hue_draws_its_views_as_before(lab_data):
    """Hue is drawn only when a recipe sets it: every other objective's views (and released weights) stay."""
    batch, plain = lab_data.images[:4], augment.ViewRecipe(32, jitter_p=1.0)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    augment.make_views(batch, plain, gen_a, mean=LAB_MEAN, std=LAB_STD)
    augment.crop_grid(4, plain, gen_b)  # the draws by hand: crop grid, then jitter's on/off and three factors
    torch.rand(4, generator=gen_b)
    for _ in range(3):
        torch.rand(4, generator=gen_b)
    assert torch.equal(torch.rand(3, generator=gen_a), torch.rand(3, generator=gen_b))
    hue = augment.make_views(batch, replace(plain, hue=0.5), torch.Generator().manual_seed(5), mean=LAB_MEAN,
                             std=LAB_STD)  # fmt: skip
    same = augment.make_views(batch, plain, torch.Generator().manual_seed(5), mean=LAB_MEAN, std=LAB_STD)
    assert not torch.allclose(hue, same)


def test_a_revised_recipe_moves_only_its_objectives_weights_key():
    budget = Budget(preset="quickstart", dataset="synthetic", dataset_version="v")
    keys = {o: weights_key(o, budget) for o in objective_names()}
    revised = {"mocov3", "dino", "ibot"}  # recipe version 2: hue rotation, no blur
    assert all(keys[o] != budget.key() for o in revised)
    assert len({keys[o] for o in revised}) == len(revised)
    assert all(k == budget.key() for o, k in keys.items() if o not in revised)


@pytest.mark.slow  # several seconds: kept out of the fast lane
@pytest.mark.parametrize("objective", objective_names())
def test_objective_loss_decreases(objective, lab_root, lab_data):
    """Every objective learns something on the synthetic data: mean loss of the last steps < first steps."""
    budget = bind_budget(Budget(steps=24, batch_size=16, lr=1e-3, seed=0), lab_data)
    fitted = fit(lab_root, objective, budget, lab_data, checkpoint_every=1000)
    assert all(torch.isfinite(torch.tensor(fitted.losses)))
    name = fitted.model.learning_curve  # "loss", or DINO/iBOT's student-teacher KL (see objectives/base.py)
    curve = fitted.losses if name == "loss" else fitted.metric_curves[name]
    first, last = sum(curve[:4]) / 4, sum(curve[-4:]) / 4
    assert last < first, f"{objective}: {name} {first:.4f} -> {last:.4f}"
    if objective in ("dino", "ibot"):  # no collapse: the teacher stays far from uniform (log K); it used not to
        entropy, k = fitted.metric_curves["teacher_entropy"], fitted.model.head.prototypes.shape[0]
        assert sum(entropy[-4:]) / 4 < 0.75 * math.log(k), entropy


def test_centre_starts_at_the_first_batch_mean_then_moves_by_ema():
    centre = Centre(4, momentum=0.9)
    first, second = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    probs = centre.probs(first, 0.04)
    torch.testing.assert_close(centre.value, first.reshape(-1, 4).mean(0, keepdim=True))
    torch.testing.assert_close(probs, torch.softmax((first - centre.value) / 0.04, dim=-1))
    start = centre.value.clone()
    centre.update(first)
    centre.probs(second, 0.04)  # started: no second reset
    torch.testing.assert_close(centre.value, start)
    centre.update(second)
    torch.testing.assert_close(centre.value, 0.9 * start + 0.1 * second.reshape(-1, 4).mean(0, keepdim=True))
    assert bool(centre.state_dict()["started"])  # checkpointed: a resumed run does not restart it


def test_published_weights_load_through_the_zoo_with_identical_features(tmp_path, lab_root, lab_data):
    root = StorageRoot.open(str(tmp_path / "w"))
    budget = bind_budget(Budget(steps=2, batch_size=8, seed=1), lab_data)
    fitted = fit(root, "dino", budget, lab_data)
    info = publish_weights(root, "dino", budget, lab_data, fitted)
    enc = load_encoder("lab/dino", root=root)
    assert enc.weights_digest == info["weights_digest"] and enc.spec.family == "contrastive"
    x = augment.normalise(lab_data.images[:4], mean=LAB_MEAN, std=LAB_STD)
    exported = fitted.model.export_backbone().eval()
    with torch.no_grad():
        expected = exported.forward_features(x)
    last = f"patch:{LAB_ARCH_KWARGS['depth']}"
    feats = enc.encode(x, ["cls", "mean", last])
    torch.testing.assert_close(feats["cls"], expected[:, 0])
    torch.testing.assert_close(feats["mean"], expected[:, 1:].mean(1))
    assert feats[last].shape == (4, 96, 8, 8)
    # the teacher is what DINO exports, not the student
    assert not torch.equal(exported.pos_embed, fitted.model.backbone.pos_embed)
    # a pinned spec names one budget exactly
    pinned = load_encoder(lab_spec("dino", info["budget_key"]), root=root)
    assert pinned.weights_digest == enc.weights_digest


def test_resume_replays_an_uninterrupted_run(tmp_path, lab_data):
    budget = Budget(steps=6, batch_size=8, seed=2)
    a = StorageRoot.open(str(tmp_path / "a"))
    straight = train_objective(a, "supervised", budget, lab_data)
    b = StorageRoot.open(str(tmp_path / "b"))
    stopped = train_objective(b, "supervised", budget, lab_data, stop_after=3)
    assert stopped["stopped_at"] == 3 and not b.is_complete("weights", "lab", "supervised", straight["budget_key"])
    resumed = train_objective(b, "supervised", budget, lab_data)
    assert resumed["resumed_from_step"] == 3
    assert resumed["loss_curve"] == pytest.approx(straight["loss_curve"], rel=1e-4)
    wa = load_encoder("lab/supervised", root=a).model.state_dict()
    wb = load_encoder("lab/supervised", root=b).model.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)
    again = train_objective(b, "supervised", budget, lab_data)
    assert again["cached"] and again["weights_digest"] == resumed["weights_digest"]


def test_zoo_lists_lab_encoders_and_missing_weights_say_what_to_run(tmp_path):
    from partaware.lab.release import released_objectives

    names = select_encoders(["all"], zoo="lab")
    released = {f"lab-release/{o}" for o in released_objectives()}
    assert set(names) == {f"lab/{o}" for o in objective_names()} | released
    mim = {"lab/mae", "lab/beit", "lab/cae"} | {n for n in released if n.split("/")[1] in ("mae", "beit", "cae")}
    assert select_encoders(["family:mim"], zoo="lab") == [n for n in names if n in mim]
    with pytest.raises(StorageError, match="partctl pretrain --objectives mae"):
        load_encoder("lab/mae", root=StorageRoot.open(str(tmp_path / "empty")))
    with pytest.raises(UnknownNameError, match="supervised"):
        lab_spec("simclr")


def test_corrupt_weights_are_refused(tmp_path, lab_data):
    root = StorageRoot.open(str(tmp_path / "c"))
    info = train_objective(root, "mae", Budget(steps=1, batch_size=4), lab_data)
    path = root.join("weights", "lab", "mae", info["budget_key"], "backbone.pt")
    data = bytearray(root.fs.cat_file(path))
    data[-20] ^= 0xFF
    root.fs.pipe_file(path, bytes(data))
    with pytest.raises(StorageError, match="corrupt"):
        load_encoder("lab/mae", root=root)
