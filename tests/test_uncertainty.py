"""Intervals, baselines and controls: what every score is read against (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from partaware.encoders.controls import control_name, control_spec
from partaware.encoders.specs import EncoderSpec, WeightsSource
from partaware.probes.baselines import classification_baselines, retrieval_baselines, segmentation_baselines
from partaware.probes.fit import fit_and_predict
from partaware.probes.metrics import confusion_matrix, segmentation_scores
from partaware.probes.uncertainty import average_items, mean_interval, miou, miou_interval


def test_the_mean_interval_covers_the_mean_and_narrows_with_more_items():
    rng = np.random.default_rng(0)
    small = (rng.random(100) < 0.6).astype(float)
    large = (rng.random(10_000) < 0.6).astype(float)
    lo_s, hi_s = mean_interval(small)
    lo_l, hi_l = mean_interval(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5  # 100x the items: about a tenth of the width
    # the binomial standard error of 100 items at 0.6 is 0.049: a 95% interval spans about 4 of them
    assert 0.14 < hi_s - lo_s < 0.25
    assert mean_interval(small, seed=1) != mean_interval(small, seed=2) and mean_interval(small) == (lo_s, hi_s)
    assert all(np.isnan(mean_interval(np.array([1.0]))))


def test_miou_from_counts_equals_the_confusion_matrix_scores_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    k, images = 4, 30
    truth = rng.integers(0, k, size=(images, 16, 16))
    pred = np.where(rng.random(truth.shape) < 0.7, truth, rng.integers(0, k, size=truth.shape))
    counts = {"inter": np.zeros((images, k)), "gt": np.zeros((images, k)), "pred": np.zeros((images, k))}
    for i in range(images):
        counts["gt"][i] = np.bincount(truth[i].ravel(), minlength=k)
        counts["pred"][i] = np.bincount(pred[i].ravel(), minlength=k)
        counts["inter"][i] = np.bincount(truth[i][truth[i] == pred[i]], minlength=k)
    whole = segmentation_scores(confusion_matrix(pred, truth, k))["miou"]
    summed = miou(counts["inter"].sum(0), counts["gt"].sum(0), counts["pred"].sum(0))
    assert summed == pytest.approx(whole)
    lo, hi = miou_interval(counts)
    assert lo <= whole <= hi and hi - lo < 0.1


def test_classification_baselines_are_chance_and_the_train_majority():
    y_train = np.array([0, 0, 0, 1, 2])
    y_test = np.array([0, 1, 1, 2])
    assert classification_baselines(y_train, y_test, 4) == {"chance": 25.0, "majority": 25.0}


def test_retrieval_baselines_chance_is_the_class_prevalence_and_random_features_sit_near_it():
    labels = np.repeat(np.arange(4), 50)  # 4 balanced classes: chance AP = 25 %
    base = retrieval_baselines(labels, dim=64)
    assert base["chance"] == pytest.approx(25.0)
    assert 20.0 < base["random_features"] < 35.0  # noise features: near chance (the query itself is a hit)


def test_segmentation_majority_baseline():
    train = np.zeros((2, 4, 4), dtype=np.int64)
    test = np.array([[[0, 0], [1, 255]]])
    # majority class 0 everywhere: IoU(0) = 2/3, IoU(1) = 0 -> mIoU 1/3
    assert segmentation_baselines(train, test, 2)["majority"] == pytest.approx(100.0 / 3)


@pytest.mark.parametrize("task", ["linear", "knn"])
def test_per_item_outcomes_agree_with_the_reported_score(task):
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((3, 8)) * 3
    y = rng.integers(0, 3, 120)
    x = (centres[y] + rng.standard_normal((120, 8))).astype(np.float32)
    config = {"epochs": 5, "lr": 0.5} if task == "linear" else {"k": 5}
    metrics, items = fit_and_predict(task, (x[:80], y[:80]), (x[80:], y[80:]), config, num_classes=3, items=True)
    assert items.shape == (40,) and set(np.unique(items)) <= {0.0, 1.0}
    assert items.mean() == pytest.approx(metrics["top1"])
    assert average_items([items, 1 - items]) == pytest.approx(np.full(40, 0.5))


def test_a_control_is_the_same_architecture_with_random_weights():
    spec = EncoderSpec(name="test/with_weights", family="mim", arch="vit_tiny_patch16_224.augreg_in21k",
                       arch_kwargs={"img_size": 64}, input_size=64,
                       weights=WeightsSource(kind="uri", location="/ckpt.pth"))  # fmt: skip
    control = control_spec(spec)
    assert control.name == control_name(spec) and control.name.startswith("control/vit_tiny_patch16_224-")
    assert control.arch == "vit_tiny_patch16_224" and control.weights.kind == "random"
    assert (control.input_size, control.mean, control.std, control.arch_kwargs) == (64, spec.mean, spec.std,
                                                                                    {"img_size": 64})  # fmt: skip
    other = spec.model_copy(update={"name": "test/other", "weights": WeightsSource(kind="uri", location="/b.pth")})
    assert control_name(other) == control.name  # one control per architecture, whatever the weights
    assert control_name(spec.model_copy(update={"input_size": 96})) != control.name
