"""The paper's segmentation schedule (protocol §3.5): its lr schedule, its augmentation, sliding-window
inference, position embeddings at the crop, a deterministic and resumable run, and a job that runs it
through Ray Train (``variants: {segmentation: paper}``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _submit_specs import TINY_ENCODER
from partaware.encoders.loading import load_encoder
from partaware.encoders.specs import EncoderSpec
from partaware.probes.metrics import IGNORE_INDEX
from partaware.probes.segmentation import upsampled_logits
from partaware.probes.segmentation_augment import (
    pad_to,
    random_crop,
    random_flip,
    random_resize,
    rescale_size,
    train_sample,
)
from partaware.probes.segmentation_paper import (
    GEOMETRY,
    FrozenBackbone,
    PaperJob,
    Schedule,
    batch_items,
    geometry_for,
    map_images,
    median_short_side,
    slide_logits,
    train_paper_segmentation,
    window_boxes,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


# --- the schedule -----------------------------------------------------------------------------------------


def test_warmup_then_poly_matches_mmcv_at_chosen_iterations():
    s = Schedule(160_000)
    assert s.lr_at(0) == pytest.approx(4e-4 * 1e-6)  # warmup starts at ratio 1e-6
    # half-way through warmup: the decayed regular lr times (1 - k), k = (1 - 750/1500)(1 - 1e-6)
    assert s.lr_at(750) == pytest.approx(4e-4 * (1 - 750 / 160_000) * (1 - 0.5 * (1 - 1e-6)))
    assert s.lr_at(1499) == pytest.approx(4e-4 * (1 - 1499 / 160_000) * (1 - (1 / 1500) * (1 - 1e-6)))
    assert s.lr_at(1500) == pytest.approx(4e-4 * (1 - 1500 / 160_000))  # warmup over: plain poly
    assert s.lr_at(80_000) == pytest.approx(2e-4)
    assert s.lr_at(159_999) == pytest.approx(4e-4 / 160_000)
    lrs = [s.lr_at(i) for i in range(0, 160_000, 500)]
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(s.lr_at(1500)) and all(np.diff(lrs[peak:]) < 0)  # up, then down to 0


def test_batches_are_seeded_permutations_without_repeats_inside_an_epoch():
    first = [i for it in range(3) for i in batch_items(48, 16, seed=0, iteration=it)]
    assert sorted(first) == list(range(48))  # three batches of 16 = one epoch over 48 items
    assert batch_items(48, 16, 0, 1) == batch_items(48, 16, 0, 1) != batch_items(48, 16, 1, 1)


# --- the augmentation -------------------------------------------------------------------------------------


def _coded_pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """An image whose pixels spell their own coordinates and a label map that is a function of them."""
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)
    label = ((xs // 7 + 3 * (ys // 5)) % 6).astype(np.uint8)
    return image, label


def _label_of(image: np.ndarray) -> np.ndarray:
    xs, ys = image[..., 0].astype(int), image[..., 1].astype(int)
    return ((xs // 7 + 3 * (ys // 5)) % 6).astype(np.uint8)


@pytest.mark.parametrize("seed", range(6))
def test_crop_and_flip_keep_every_label_on_its_pixel(seed):
    image, label = _coded_pair(90, 120)
    rng = np.random.default_rng(seed)
    image, label = random_crop(image, label, 64, rng)
    image, label = random_flip(image, label, rng)
    assert image.shape[:2] == label.shape == (64, 64)
    np.testing.assert_array_equal(_label_of(image), label)


def test_flip_mirrors_image_and_labels_together():
    image, label = _coded_pair(20, 30)
    flipped = next(random_flip(image, label, np.random.default_rng(s)) for s in range(50)
                   if np.random.default_rng(s).random() < 0.5)  # fmt: skip
    np.testing.assert_array_equal(flipped[0], image[:, ::-1])
    np.testing.assert_array_equal(flipped[1], label[:, ::-1])


def test_crop_avoids_a_dominant_class_when_it_can():
    label = np.zeros((200, 200), np.uint8)
    label[:, 150:] = 1  # class 1 only near the right edge: most 64-crops see class 0 alone
    image = np.zeros((200, 200, 3), np.uint8)
    for seed in range(5):
        _, crop = random_crop(image, label, 64, np.random.default_rng(seed))
        counts = np.bincount(crop.ravel(), minlength=2)
        assert counts.max() / counts.sum() < 0.75


def test_resize_keeps_the_ratio_and_labels_nearest():
    assert rescale_size(683, 512, (2048, 512)) == (683, 512)
    assert rescale_size(3000, 500, (2048, 512)) == (2048, 341)  # the long edge binds
    image, label = _coded_pair(40, 60)
    big_image, big_label = random_resize(image, label, (240, 80), np.random.default_rng(0))
    assert big_image.shape[:2] == big_label.shape
    assert set(np.unique(big_label)) <= set(np.unique(label))  # nearest: no new values


def test_padding_fills_the_image_with_zero_and_the_labels_with_255():
    image = torch.ones(3, 20, 30)
    label = np.full((20, 30), 2, np.uint8)
    padded_image, padded_label = pad_to(image, label, 48)
    assert padded_image.shape == (3, 48, 48) and padded_label.shape == (48, 48)
    assert (padded_label[:20, :30] == 2).all() and (padded_label[20:] == IGNORE_INDEX).all()
    assert (padded_label[:, 30:] == IGNORE_INDEX).all() and padded_image[:, 20:].abs().sum() == 0
    assert (padded_image[:, :20, :30] == 1).all()


def test_a_training_sample_is_one_crop_with_padding_ignored():
    image, label = _coded_pair(40, 40)
    for seed in range(4):  # scale (160, 40): ratios below 1 give images smaller than the crop, padded
        x, y = train_sample(image, label, scale=(160, 40), crop=48, mean=MEAN, std=STD,
                            rng=np.random.default_rng(seed))  # fmt: skip
        assert x.shape == (3, 48, 48) and y.shape == (48, 48) and y.dtype == torch.uint8
        padded = (x == 0).all(0)
        assert (y[padded] == IGNORE_INDEX).all()
        assert set(torch.unique(y).tolist()) <= set(range(6)) | {IGNORE_INDEX}


# --- inference and position embeddings -------------------------------------------------------------------


def test_windows_tile_the_image_and_end_flush_with_it():
    boxes = window_boxes(100, 150, 64, 42)
    cover = np.zeros((100, 150), int)
    for y0, y1, x0, x1 in boxes:
        assert y1 - y0 == 64 and x1 - x0 == 64
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1 and boxes[-1][1] == 100 and boxes[-1][3] == 150
    assert window_boxes(40, 50, 64, 42) == [(0, 40, 0, 50)]  # smaller than the crop: one window


@pytest.fixture(scope="module")
def tiny_encoder():
    return load_encoder(EncoderSpec(**TINY_ENCODER), seed=0)


def test_sliding_window_equals_a_whole_image_forward_when_one_window_covers_it(tiny_encoder):
    torch.manual_seed(0)
    backbone = FrozenBackbone(tiny_encoder, 64, (4, 6, 8, 12))
    head = torch.nn.Conv2d(4 * 192, 5, 1)
    image = torch.randn(3, 64, 64)
    with torch.no_grad():
        whole = upsampled_logits(head(backbone.maps(image[None])), (64, 64))[0]
    slid = slide_logits(lambda x: head(backbone.maps(x)), image, crop=64, stride=42, num_classes=5)
    torch.testing.assert_close(slid, whole)


def test_overlapping_windows_average_to_the_whole_image_for_a_pointwise_model():
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(3, 4, 1)  # no context: every window agrees on every pixel it sees
    image = torch.randn(3, 100, 150)
    slid = slide_logits(pointwise, image, crop=64, stride=42, num_classes=4)
    with torch.no_grad():
        torch.testing.assert_close(slid, pointwise(image[None])[0], rtol=1e-5, atol=1e-5)


def test_position_embeddings_are_interpolated_to_a_crop_other_than_224(tiny_encoder):
    encoder = load_encoder(EncoderSpec(**TINY_ENCODER), seed=0)  # its own copy: the crop changes the model
    backbone = FrozenBackbone(encoder, 96, (4, 6, 8, 12))
    assert encoder.model.pos_embed.shape == (1, 1 + 6 * 6, 192)
    maps = backbone.maps(torch.randn(2, 3, 96, 96))
    assert maps.shape == (2, 4 * 192, 6, 6) and torch.isfinite(maps).all() and not maps.requires_grad


def test_the_paper_geometry_table_and_the_default():
    assert (GEOMETRY["ade20k"].crop, GEOMETRY["ade20k"].stride) == (512, 341)
    assert (GEOMETRY["pascal-part"].crop, GEOMETRY["pascal-part"].test_scale) == (480, (3840, 480))
    assert (GEOMETRY["lip"].crop, GEOMETRY["lip"].stride) == (320, 161)
    default = geometry_for("synthetic", 64)
    assert default.crop == 64 and default.test_scale == (256, 64) and "default" in default.source
    assert geometry_for("synthetic", 70).for_patch(16).crop == 64


# --- one run: deterministic and resumable ------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_job(tmp_path_factory):
    from partaware.datasets.synthetic import prepare_synthetic
    from partaware.probes.label_maps import label_convention
    from partaware.storage import StorageRoot

    root = StorageRoot.open(str(tmp_path_factory.mktemp("paper") / "store"))
    prepared, _ = prepare_synthetic(root, options={"size": 16, "image_size": 64}, workers=1)
    manifest = prepared.manifest()
    train, test = map_images(manifest, "part", "train,val"), map_images(manifest, "part", "test")
    return PaperJob(
        encoder=EncoderSpec(**TINY_ENCODER), storage_uri=root.uri, dataset_uri=prepared.uri, dataset="synthetic",
        level="part", train=tuple(train), test=tuple(test), convention=label_convention(prepared, "part"),
        geometry=geometry_for("synthetic", median_short_side(manifest, train + test)), iterations=4,
        batch_size=4,
    )  # fmt: skip


def _run(job, **kwargs):
    states = []
    out = train_paper_segmentation(job, on_checkpoint=states.append, **kwargs)
    return out, states


def test_a_run_is_deterministic_on_the_cpu_and_resumes_onto_the_same_weights(synthetic_job, one_torch_thread):
    out, states = _run(synthetic_job, checkpoint_every=2)
    again, states_again = _run(synthetic_job, checkpoint_every=2)
    assert [s["iteration"] for s in states] == [2, 4]
    for a, b in zip(states[-1]["head"].values(), states_again[-1]["head"].values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k in ("inter", "gt", "pred"):
        np.testing.assert_array_equal(out["counts"][k], again["counts"][k])
    resumed, resumed_states = _run(synthetic_job, checkpoint_every=2, resume=states[0])
    assert resumed["resumed_from"] == 2 and [s["iteration"] for s in resumed_states] == [4]
    for a, b in zip(states[-1]["head"].values(), resumed_states[-1]["head"].values(), strict=True):
        torch.testing.assert_close(a, b)
    assert out["counts"]["gt"].shape == (len(synthetic_job.test), synthetic_job.convention.num_classes)
    assert 0.0 <= out["metrics"]["miou"] <= 1.0 and out["geometry"]["crop"] == 64 and out["blocks"] == [4, 6, 8, 12]


def test_the_loop_sets_the_scheduled_lr_each_iteration(synthetic_job, one_torch_thread):
    seen = []
    train_paper_segmentation(synthetic_job, on_progress=seen.append, report_every=1)
    schedule = Schedule(synthetic_job.iterations)
    assert [p["iteration"] for p in seen] == [1, 2, 3, 4]
    assert [p["lr"] for p in seen] == pytest.approx([schedule.lr_at(i) for i in range(4)])


# --- a job: Ray Train workers -----------------------------------------------------------------------------


@pytest.mark.ray
def test_a_job_runs_the_paper_schedule_through_ray_train(ray_local, tmp_path):
    from partaware.results import read_results
    from partaware.runs.driver import run_job
    from partaware.spec import parse_spec
    from partaware.storage import StorageRoot

    spec = parse_spec({
        "name": "paper-seg", "datasets": [{"name": "synthetic", "options": {"size": 16, "image_size": 64}}],
        "zoo": "custom", "custom_encoders": [TINY_ENCODER], "encoders": [TINY_ENCODER["name"]],
        "tasks": ["segmentation"], "levels": ["object", "part"], "variants": {"segmentation": "paper"},
        "segmentation_iterations": 3, "controls": False,
        "resources": {"extract_batch_size": 32, "max_actors": 1, "cpus_per_actor": 0.5, "cpus_per_trial": 1},
    })  # fmt: skip
    store = StorageRoot.open(str(tmp_path / "store"))
    run_id, stages = run_job(spec, storage=store.uri, run_id="paper-seg")
    status, detail = {s.name: s.status for s in stages}, {s.name: s.detail for s in stages}
    assert status["probe"] == "ran"
    # the schedule runs the encoder on the images itself: nothing is extracted for it, nothing is stored
    assert status["extract"] == "skipped" and "nothing to extract: encoder in the loop" in detail["extract"]
    stored = [store.sub("features", k).completion_info() for k in store.listdir("features")]  # the gallery's
    assert not any(t.startswith("patch:") for info in stored for t in info["taps"])
    run_root = store.sub("runs", run_id)
    records = [r for r in read_results(run_root) if r.task == "segmentation"]
    assert {r.level for r in records} == {"object", "part"}
    for r in records:
        assert r.metric == "miou" and 0.0 <= r.value <= 100.0 and {"miou", "macc", "aacc"} <= set(r.metrics)
        assert r.protocol["segmentation_mode"] == "paper" and r.protocol["iterations"] == 3
        assert r.protocol["crop"] == 64 and r.protocol["slide"] == {"window": 64, "stride": 42}
        assert r.protocol["selection_split"] == "none: the paper's fixed schedule"
        assert r.protocol["scored_split"] == "test" and r.protocol["split_rule"] == "held_out"
        assert r.trials == 0 and r.n_train > 0 and r.n_test > 0 and r.n_val == 0
        assert set(r.baselines) == {"majority"} and r.ci["units"] == "images" and r.weights_digest == "random:0"
        assert r.ci_low is not None and r.ci_low - 1e-9 <= r.value <= r.ci_high + 1e-9 and r.feature_key == ""
        (train_run,) = r.protocol["ray_train"]["runs"]
        assert train_run.startswith(run_root.uri_of("train"))
    train_dir = tmp_path / "store" / "runs" / run_id / "train"
    runs = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    assert len(runs) == 2 and all(name.endswith("-segmentation-paper-seed0") for name in runs)
    assert all(any((train_dir / name).glob("checkpoint_*")) for name in runs)  # the trained head is kept
