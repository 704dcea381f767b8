"""Probes and metrics read like the protocol: exact retrieval AP, heads that learn what is learnable
and nothing from noise, segmentation metrics equal to a hand-computed confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from partaware.probes.attentive import AttentiveHead, train_attentive_probe
from partaware.probes.errors import ProbeInputError
from partaware.probes.knn import knn_top1
from partaware.probes.linear import linear_input, train_linear_probe
from partaware.probes.metrics import confusion_matrix, segmentation_scores, top1_accuracy
from partaware.probes.retrieval import (
    average_precision_rows,
    cosine_similarity,
    retrieval_ap,
)
from partaware.probes.segmentation import train_segmentation_probe
from partaware.probes.splits import SplitError, random_validation_split, stratified_validation_split
from partaware.probes.training import TrainConfig

torch.set_num_threads(1)


def _tied_features(n: int = 240, dim: int = 6, classes: int = 5, seed: int = 0):
    """Small integer features: many exactly equal similarities, plus duplicated rows across classes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, (n, dim)).astype(np.float32)
    x[x.sum(1) == 0, 0] = 1.0  # no zero vector
    x[::9] = x[3]  # duplicates of one row, whatever their class
    labels = rng.integers(0, classes, n)
    labels[-1] = classes  # a singleton class: no positive once the query is excluded
    return x, labels


def _sklearn_per_query(x, labels, exclude_self: bool) -> np.ndarray:
    sim = cosine_similarity(torch.from_numpy(x), torch.from_numpy(x)).numpy()
    out = []
    for q in range(len(x)):
        keep = np.ones(len(x), bool)
        if exclude_self:
            keep[q] = False
        y = labels[keep] == labels[q]
        out.append(average_precision_score(y, sim[q][keep]) if y.any() else np.nan)
    return np.array(out)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_retrieval_equals_sklearn_per_query_with_ties(backend, exclude_self):
    x, labels = _tied_features()
    sim = cosine_similarity(torch.from_numpy(x), torch.from_numpy(x)).numpy()
    assert len(np.unique(sim)) < sim.size / 10  # the fixture really is full of ties
    result = retrieval_ap(x, labels, exclude_self=exclude_self, backend=backend, chunk_size=37)
    reference = _sklearn_per_query(x, labels, exclude_self)
    np.testing.assert_array_equal(np.isnan(result.per_query), np.isnan(reference))
    defined = ~np.isnan(reference)
    assert np.abs(result.per_query[defined] - reference[defined]).max() <= 1e-6
    assert result.ap == pytest.approx(reference[defined].mean(), abs=1e-9)
    per_class = [reference[(labels == c) & defined].mean() for c in np.unique(labels[defined])]
    assert result.map == pytest.approx(np.mean(per_class), abs=1e-9)
    assert result.n_undefined == (1 if exclude_self else 0)


def test_retrieval_on_continuous_features_and_outliers_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    x = rng.normal(size=(400, 32)).astype(np.float32) + 0.5 * np.eye(32, dtype=np.float32)[labels]
    x[5] = x[6] * 3.0  # same direction: similarity ties at 1.0 with the query itself
    sim = cosine_similarity(torch.from_numpy(x), torch.from_numpy(x))
    positive = torch.from_numpy(labels[:, None] == labels[None, :])
    ours = average_precision_rows(sim, positive)
    ref = [average_precision_score(positive[i].numpy(), sim[i].numpy()) for i in range(400)]
    assert np.abs(ours - np.array(ref)).max() <= 1e-6
    assert np.abs(average_precision_rows(sim, positive, backend="torch") - ours).max() <= 1e-9


def test_retrieval_rejects_bad_input():
    with pytest.raises(ProbeInputError, match="features"):
        retrieval_ap(np.zeros((4, 3)), np.zeros(5, int))
    with pytest.raises(ProbeInputError, match="NaN"):
        retrieval_ap(np.full((4, 3), np.nan), np.zeros(4, int))
    with pytest.raises(ProbeInputError, match="Valid: auto, numba, torch"):
        average_precision_rows(np.zeros((1, 2)), np.ones((1, 2), bool), backend="cuda")


def test_segmentation_metrics_equal_hand_computed_confusion_matrix():
    # 3 classes; truth rows, predictions columns. 255 pixels are ignored.
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, 255, 255])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 0])
    cm = confusion_matrix(pred, target, 3)
    # truth 0: predicted 0,0,1 ; truth 1: 1,2 ; truth 2: 2,2,0
    np.testing.assert_array_equal(cm.numpy(), [[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    scores = segmentation_scores(cm)
    iou = [2 / (3 + 3 - 2), 1 / (2 + 2 - 1), 2 / (3 + 3 - 2)]  # tp / (gt + pred - tp)
    acc = [2 / 3, 1 / 2, 2 / 3]
    assert scores["miou"] == pytest.approx(np.mean(iou))
    assert scores["macc"] == pytest.approx(np.mean(acc))
    assert scores["aacc"] == pytest.approx(5 / 8)


def test_segmentation_metrics_skip_absent_classes_like_mmseg():
    cm = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 3]])  # class 1 never in truth nor predicted
    scores = segmentation_scores(cm)
    assert scores["miou"] == pytest.approx(np.mean([4 / 5, 3 / 4]))
    assert scores["macc"] == pytest.approx(np.mean([1.0, 3 / 4]))


def test_top1_and_label_range_checks():
    assert top1_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])) == 0.5
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0]), np.array([7]), 3)


def test_stratified_split_is_seeded_disjoint_and_keeps_every_class():
    labels = np.repeat(np.arange(4), [50, 30, 10, 2])
    tr, va = stratified_validation_split(labels, 0.2, seed=3)
    tr2, va2 = stratified_validation_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert set(tr) | set(va) == set(range(len(labels))) and not set(tr) & set(va)
    assert sorted(set(labels[va])) == [0, 1, 2, 3] and sorted(set(labels[tr])) == [0, 1, 2, 3]
    assert [int((labels[va] == c).sum()) for c in range(4)] == [10, 6, 2, 1]
    assert not np.array_equal(va, stratified_validation_split(labels, 0.2, seed=4)[1])
    with pytest.raises(SplitError):
        stratified_validation_split(labels, 1.5, seed=0)
    tr, va = random_validation_split(10, 0.3, seed=0)
    assert len(va) == 3 and not set(tr) & set(va)


def _separable(n: int, dim: int, classes: int, seed: int, margin: float = 4.0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    x = margin * centers[y] + torch.randn(n, dim, generator=gen)
    return x, y


FAST = {"lr": 0.5, "epochs": 15, "batch_size": 64, "device": "cpu"}


def test_linear_probe_learns_separable_features_and_not_noise():
    x, y = _separable(600, 16, 4, seed=0)
    xt, yt = _separable(400, 16, 4, seed=1)
    fit = train_linear_probe(x, y, num_classes=4, config=FAST, x_eval=xt, y_eval=yt)
    assert fit.metrics["top1"] >= 0.98
    noise = torch.randn(600, 16)
    fit = train_linear_probe(
        noise, y, num_classes=4, config=FAST, x_eval=torch.randn(2000, 16), y_eval=torch.randint(0, 4, (2000,))
    )
    assert abs(fit.metrics["top1"] - 0.25) < 0.05
    assert len(fit.history) == FAST["epochs"]


def test_linear_input_picks_cls_mean_or_both_and_names_missing_taps():
    taps = {"cls": np.ones((3, 2), np.float32), "mean": np.zeros((3, 4), np.float32)}
    assert linear_input(taps, "cls").shape == (3, 2)
    assert linear_input(taps, "cls+mean").shape == (3, 6)
    with pytest.raises(ProbeInputError, match="Valid: cls, mean, cls\\+mean"):
        linear_input(taps, "proj")
    with pytest.raises(ProbeInputError, match="available: cls"):
        linear_input({"cls": taps["cls"]}, "mean")
    with pytest.raises(ProbeInputError, match="unknown probe setting"):
        TrainConfig.from_mapping({"lr": 0.1, "momentun": 0.9})


def _tokens(n: int, seed: int, signal: bool = True):
    """Class evidence sits in one token at a random position among noise tokens."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    tokens = torch.randn(n, 6, 16, generator=gen)
    if signal:
        centers = 5.0 * torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
        pos = torch.randint(0, 6, (n,), generator=gen)
        tokens[torch.arange(n), pos] += centers[y]
    return tokens, y


def test_attentive_probe_learns_and_stays_at_chance_on_noise():
    cfg = {"lr": 0.05, "epochs": 25, "batch_size": 32, "device": "cpu", "num_heads": 2}
    x, y = _tokens(500, 0)
    xt, yt = _tokens(300, 1)
    assert train_attentive_probe(x, y, num_classes=3, config=cfg, tokens_eval=xt, y_eval=yt).metrics["top1"] >= 0.95
    x, y = _tokens(500, 0, signal=False)
    xt, yt = _tokens(1500, 1, signal=False)
    fit = train_attentive_probe(x, y, num_classes=3, config=cfg, tokens_eval=xt, y_eval=yt)
    assert abs(fit.metrics["top1"] - 1 / 3) < 0.06


def test_attentive_eval_batch_stats_option_uses_the_batch():
    head = AttentiveHead(8, 3, num_heads=2, eval_batch_stats=True).eval()
    tokens = torch.randn(10, 4, 8)
    pooled = head.pooled(tokens)
    expected = head.fc((pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + head.bn.eps))
    torch.testing.assert_close(head(tokens), expected)
    head.eval_batch_stats = False  # running statistics (fresh: mean 0, var 1)
    torch.testing.assert_close(head(tokens), head.fc(pooled / torch.sqrt(torch.tensor(1.0 + head.bn.eps))))


def test_knn_learns_separable_features_and_not_noise():
    x, y = _separable(500, 16, 5, seed=0)
    xt, yt = _separable(300, 16, 5, seed=1)
    assert knn_top1(x, y, xt, yt, k=10, temperature=0.1, device="cpu") >= 0.98
    acc = knn_top1(torch.randn(500, 16), y, torch.randn(3000, 16), torch.randint(0, 5, (3000,)), k=10, device="cpu")
    assert abs(acc - 0.2) < 0.04
    with pytest.raises(ProbeInputError):
        knn_top1(x, y, xt, yt, k=0)


def _seg_data(n: int, seed: int, signal: bool = True):
    """Per-location class evidence on a 4x4 grid; labels at 16x16 (nearest), a border of 255."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 3, (n, 4, 4), generator=gen)
    centers = 4.0 * torch.randn(3, 8, generator=torch.Generator().manual_seed(5))
    maps = torch.randn(n, 8, 4, 4, generator=gen)
    if signal:
        maps += centers[grid].permute(0, 3, 1, 2)
    labels = grid.repeat_interleave(4, 1).repeat_interleave(4, 2)
    labels[:, 0, :] = 255
    return maps, labels


def test_segmentation_probe_learns_and_stays_low_on_noise():
    cfg = {"lr": 0.05, "epochs": 20, "batch_size": 8, "device": "cpu", "schedule": "cosine"}
    maps, labels = _seg_data(64, 0)
    maps_t, labels_t = _seg_data(32, 1)
    fit = train_segmentation_probe(maps, labels, num_classes=3, config=cfg, maps_eval=maps_t, labels_eval=labels_t)
    # bilinear upsampling blurs class borders inside a 4x4 cell, so not exactly 1.0
    assert fit.metrics["aacc"] >= 0.85 and fit.metrics["miou"] >= 0.75
    maps, labels = _seg_data(64, 0, signal=False)
    maps_t, labels_t = _seg_data(64, 1, signal=False)
    fit = train_segmentation_probe(maps, labels, num_classes=3, config=cfg, maps_eval=maps_t, labels_eval=labels_t)
    assert fit.metrics["aacc"] < 0.45
    # a list of per-block maps is concatenated, as the paper's resize_concat
    fit = train_segmentation_probe([maps[:, :4], maps[:, 4:]], labels, num_classes=3, config={**cfg, "epochs": 1})
    assert fit.model.conv.in_channels == 8


def test_linear_heads_trained_together_equal_separate_training():
    from partaware.probes.linear import train_linear_heads

    x, y = _separable(300, 8, 3, seed=0)
    xt, yt = _separable(200, 8, 3, seed=1)
    base = {"epochs": 3, "batch_size": 50, "device": "cpu", "seed": 4}
    seen = []
    together = train_linear_heads(x, y, num_classes=3, configs=[{**base, "lr": 0.2}, {**base, "lr": 1e-6}],
                                  x_eval=xt, y_eval=yt, on_epoch=lambda e, m: seen.append(m))  # fmt: skip
    alone = train_linear_probe(x, y, num_classes=3, config={**base, "lr": 0.2}, x_eval=xt, y_eval=yt)
    assert together[0]["top1"] == pytest.approx(alone.metrics["top1"], abs=1e-9)
    assert together[0]["top1"] > together[1]["top1"] + 0.2
    assert seen[-1]["best_head"] == 0 and seen[-1]["top1"] == together[0]["top1"]
    with pytest.raises(ProbeInputError, match="may differ only in lr, weight_decay"):
        train_linear_heads(x, y, num_classes=3, configs=[{**base, "lr": 0.1}, {**base, "lr": 0.1, "epochs": 2}])


def test_retrieval_with_a_whole_class_tied_stays_exact():
    """Every positive of a row has the same score: one crowded bucket, still exact (and not O(N * P))."""
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], [300, 900])
    x = rng.normal(size=(1200, 16)).astype(np.float32)
    x[labels == 0] = x[0]  # class 0: identical features
    result = retrieval_ap(x, labels)
    reference = _sklearn_per_query(x, labels, exclude_self=False)
    assert np.abs(result.per_query - reference).max() <= 1e-6
    with pytest.raises(ProbeInputError, match="NaN"):
        average_precision_rows(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
