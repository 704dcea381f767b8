"""Signs that the lab's pipeline learns (not claims about the paper): MAE beats a mean-patch
reconstruction baseline on held-out images, and a supervised lab encoder's linear object probe beats
the same architecture at random initialisation by a wide margin. Real tiny ViTs, real synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from partaware.datasets import prepare_dataset
from partaware.datasets.store import open_prepared
from partaware.encoders.loading import load_encoder
from partaware.lab.augment import normalise
from partaware.lab.backbone import LAB_MEAN, LAB_STD, create_backbone, forward_tokens, patchify_pixels
from partaware.lab.data import load_lab_data
from partaware.lab.objectives.mae import normalised_patches
from partaware.lab.train import Budget, bind_budget, fit, train_objective
from partaware.storage import StorageRoot

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]  # about a minute of training


@pytest.fixture(scope="module")
def learn_root(tmp_path_factory) -> StorageRoot:
    root = StorageRoot.open(str(tmp_path_factory.mktemp("learn") / "store"))
    prepare_dataset(root, "synthetic", options={"size": 600, "image_size": 128}, workers=1)
    return root


def _split(root: StorageRoot, split: str):
    return load_lab_data(open_prepared(root, "synthetic"), size=64, split=split)


def test_mae_reconstructs_masked_patches_better_than_the_mean_patch(learn_root):
    train, held_out = _split(learn_root, "train"), _split(learn_root, "test")
    budget = bind_budget(Budget(steps=200, batch_size=32, seed=0), train)
    mae = fit(learn_root, "mae", budget, train, checkpoint_every=1000).model.eval()
    x_train = normalise(train.images, mean=LAB_MEAN, std=LAB_STD)
    mean_patch = normalised_patches(x_train).mean(dim=(0, 1))  # the best constant guess
    x = normalise(held_out.images, mean=LAB_MEAN, std=LAB_STD)
    with torch.no_grad():
        _, targets, masked = mae.masked_error(x, torch.Generator().manual_seed(123))
        pred, masked_again = mae.reconstruct(x, torch.Generator().manual_seed(123))
    assert torch.equal(masked, masked_again)
    pred = torch.gather(pred, 1, masked.unsqueeze(-1).expand(-1, -1, pred.shape[-1]))
    # Back to pixels with each patch's own mean and variance (as MAE's visualisations do): flat, noisy
    # background patches then weigh little and structured ones (parts, edges) count.
    pixels = torch.gather(patchify_pixels(x), 1, masked.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
    var = pixels.var(dim=-1, keepdim=True)
    model_mse = float((((pred - targets) ** 2) * var).mean())
    baseline_mse = float((((mean_patch - targets) ** 2) * var).mean())
    assert model_mse < 0.95 * baseline_mse, (model_mse, baseline_mse)


def _cls_features(model, images) -> np.ndarray:
    with torch.no_grad():
        return forward_tokens(model.eval(), normalise(images, mean=LAB_MEAN, std=LAB_STD))[:, 0].numpy()


def _probe_accuracy(model, train, test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(_cls_features(model, train.images))
    clf = LogisticRegression(max_iter=3000, C=1.0)
    clf.fit(scaler.transform(_cls_features(model, train.images)), train.labels.numpy())
    return float(clf.score(scaler.transform(_cls_features(model, test.images)), test.labels.numpy()))


def test_supervised_lab_encoder_probe_beats_random_init(learn_root):
    train, test = _split(learn_root, "train"), _split(learn_root, "test")
    info = train_objective(learn_root, "supervised", Budget(steps=250, batch_size=32, seed=0), train)
    trained = load_encoder("lab/supervised", root=learn_root).model
    torch.manual_seed(0)
    random_init = create_backbone()
    acc_trained = _probe_accuracy(trained, train, test)
    acc_random = _probe_accuracy(random_init, train, test)
    print(f"linear probe on CLS, test split: trained {acc_trained:.3f}, random init {acc_random:.3f}")
    assert info["loss_last"] < info["loss_first"]
    assert acc_trained >= acc_random + 0.15, (acc_trained, acc_random)
