"""Does the lab's recipe learn? Supervised pretraining under one budget, old recipe vs new, same process.

The old recipe (lab version 1): timm's plain linear 8-px patch embedding, whole cluttered images.
The new one (lab version 2): the conv-stem ViT of ``partaware.lab.backbone`` on object crops. Both
train ``supervised`` for the same steps x batch with one torch thread on the quickstart's training
split, and both are scored the same way: a logistic-regression probe on the CLS token of the object
crops (what the object-level probes see; fitted on the training crops, scored on the test crops),
against the same architecture at random initialisation. The figures are
accuracies and their ratio to chance and to random init, all measured in this run.

    .venv/bin/python bench/bench_lab_recipe.py [--steps 100] [--batch 48] [--storage DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from unittest import mock

import numpy as np
import torch

from partaware.datasets import prepare_dataset
from partaware.extract.crops import crop_regions
from partaware.lab import backbone
from partaware.lab.augment import normalise
from partaware.lab.data import LabData, load_lab_data
from partaware.lab.train import Budget, bind_budget, fit
from partaware.storage import StorageRoot, safe_relpath


def plain_patch_backbone() -> torch.nn.Module:
    """The version-1 backbone: the same ViT with timm's linear patch embedding (no conv stem)."""
    import timm

    kwargs = {k: v for k, v in backbone.LAB_ARCH_KWARGS.items() if k != "stem_width"}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, **kwargs)


def whole_images(prepared, crops: LabData, split: str) -> LabData:
    """The same object rows as ``crops``, but each as its whole image (the version-1 data)."""
    table = prepared.manifest().to_pydict()
    uris = [u for u, s, lv, i in zip(table["image_uri"], table["split"], table["level"], table["label_id"], strict=True)
            if s == split and lv == "object" and i >= 0]  # fmt: skip
    pixels = [crop_regions(prepared.root.read_bytes(safe_relpath(u)), [None], size=64).pixels[0] for u in uris]
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    return LabData(images, crops.labels, crops.class_names, crops.dataset, crops.version)


def probe_accuracy(model: torch.nn.Module, train: LabData, test: LabData) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def cls(images):
        with torch.no_grad():
            x = normalise(images, mean=backbone.LAB_MEAN, std=backbone.LAB_STD)
            return backbone.forward_tokens(model.eval(), x)[:, 0].numpy()

    scaler = StandardScaler().fit(cls(train.images))
    clf = LogisticRegression(max_iter=3000).fit(scaler.transform(cls(train.images)), train.labels.numpy())
    return float(clf.score(scaler.transform(cls(test.images)), test.labels.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--storage", default=None, help="reuse a storage root holding the quickstart dataset")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = StorageRoot.open(args.storage or tmp)
        prepared, _ = prepare_dataset(root, "synthetic", options={"size": 1000, "image_size": 224})
        crops = {s: load_lab_data(prepared, size=64, split=s) for s in ("train", "test")}
        whole = {s: whole_images(prepared, crops[s], s) for s in ("train", "test")}
        scratch = StorageRoot.open(tmp).sub("bench-recipe")
        chance = 1 / crops["train"].num_classes
        print(f"{len(crops['train'])} training / {len(crops['test'])} test objects; {args.steps} steps x {args.batch}")
        print(f"{'recipe':<34}{'s/step':>8}{'random init':>13}{'trained':>9}{'x chance':>10}{'- random':>10}")
        rows = {
            "v1: linear patch embed, images": (plain_patch_backbone, whole),
            "v2: conv stem, object crops": (backbone.create_backbone, crops),
        }
        for i, (label, (make, data)) in enumerate(rows.items()):
            with mock.patch("partaware.lab.objectives.base.create_backbone", make):
                torch.manual_seed(0)
                random_acc = probe_accuracy(make(), crops["train"], crops["test"])
                budget = bind_budget(Budget(steps=args.steps, batch_size=args.batch, seed=0), data["train"])
                start = time.perf_counter()
                fitted = fit(scratch.sub(str(i)), "supervised", budget, data["train"], checkpoint_every=10**9)
                per_step = (time.perf_counter() - start) / args.steps
                acc = probe_accuracy(fitted.model.export_backbone(), crops["train"], crops["test"])
            print(f"{label:<34}{per_step:>8.3f}{random_acc:>13.3f}{acc:>9.3f}{acc / chance:>10.2f}"
                  f"{acc - random_acc:>+10.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
