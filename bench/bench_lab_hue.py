"""Does rotating hue stop a view-invariance objective learning colour? Its views under several hue and blur
settings, in one process (MoCo v3, DINO or iBOT).

The synthetic images colour every part at random, so two images differ in their colour layout above all, and
instance discrimination can succeed on colour alone. Each variant trains the objective (the lab's own ``fit``)
for the same steps x batch on the ``gpu`` preset's 10,000-image draw (seed 1), with its views' hue rotated by
up to ``hue`` of the colour circle (0: none, 0.1: torchvision's usual setting, 0.5: the whole circle) and
blurred with probability ``blur`` (the rest of the recipe is the objective's own); then the CLS and mean-pooled
tokens of object and part crops of another draw (seed 2, 2,000 images) are scored by a logistic probe as in
``bench_lab_margins.py``, against the same architecture at random initialisation, measured in this run.

    .venv/bin/python bench/bench_lab_hue.py [--objective mocov3|dino|ibot] [--steps 400] [--batch 64]
                                            [--variants 0:0.5,0.5:0.5,0:0,0.5:0] [--storage DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from unittest import mock

import numpy as np
import torch

from bench_lab_margins import PART_CAP, crops, probe
from partaware.datasets import prepare_dataset
from partaware.lab.augment import ViewRecipe, normalise
from partaware.lab.backbone import LAB_MEAN, LAB_STD, forward_tokens
from partaware.lab.data import load_lab_data
from partaware.lab.presets import GPU_PRETRAIN_DATA
from partaware.lab.train import Budget, bind_budget, build_objective, fit
from partaware.storage import StorageRoot

EVAL_DATA = {"size": 2000, "image_size": 224, "seed": 2}
#: the module whose ``ViewRecipe`` builds each objective's views (iBOT inherits DINO's)
VIEWS_MODULE = {"mocov3": "mocov3", "dino": "dino", "ibot": "dino"}


def recipe_with(hue: float, blur: float):
    """``ViewRecipe`` with its ``hue`` and ``blur_p`` replaced: the objective's own recipe, two fields changed."""

    def make(*args, **kwargs) -> ViewRecipe:
        return ViewRecipe(*args, **{**kwargs, "hue": hue, "blur_p": blur})

    return make


def tokens(model: torch.nn.Module, images: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = [forward_tokens(model.eval(), normalise(images[i : i + 512], mean=LAB_MEAN, std=LAB_STD))
               for i in range(0, len(images), 512)]  # fmt: skip
    t = torch.cat(out)
    return {"cls": t[:, 0].numpy(), "mean": t[:, 1:].mean(1).numpy()}


def scores(model: torch.nn.Module, sets: dict) -> dict[str, float]:
    feats = {k: tokens(model, imgs) for k, (imgs, _) in sets.items()}
    return {f"{lv} {tap}": probe(feats[lv, "train"][tap], sets[lv, "train"][1], feats[lv, "test"][tap],
                                 sets[lv, "test"][1])
            for lv in ("object", "part") for tap in ("cls", "mean")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", choices=sorted(VIEWS_MODULE), default="mocov3")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--variants", default="0:0.5,0.1:0.5,0.5:0.5,0:0,0.5:0",
                    help="hue:blur pairs (hue range as a fraction of the circle, blur probability)")  # fmt: skip
    ap.add_argument("--storage", default=None, help="where the two synthetic draws are prepared (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as a lab task trains

    root = StorageRoot.open(args.storage or tempfile.mkdtemp(prefix="pa-hue-"), writable=True)
    pretrain_set, _ = prepare_dataset(root, GPU_PRETRAIN_DATA[0], options=GPU_PRETRAIN_DATA[1])
    eval_set, _ = prepare_dataset(root, "synthetic", options=EVAL_DATA)
    data = load_lab_data(pretrain_set, size=64)
    budget = bind_budget(Budget(steps=args.steps, batch_size=args.batch), data)
    sets = {(lv, sp): crops(eval_set, lv, sp, 64, PART_CAP) for lv in ("object", "part") for sp in ("train", "test")}
    control = build_objective(args.objective, num_classes=data.num_classes, total_steps=args.steps, seed=budget.seed)
    rows = {"control (random init)": scores(control.backbone, sets)}
    for hue, blur in ((float(h), float(b)) for h, b in (v.split(":") for v in args.variants.split(","))):
        name, start = f"hue {hue:g}, blur {blur:g}", time.perf_counter()
        with mock.patch(f"partaware.lab.objectives.{VIEWS_MODULE[args.objective]}.ViewRecipe", recipe_with(hue, blur)):
            fitted = fit(StorageRoot.open(tempfile.mkdtemp(prefix="pa-hue-run-"), writable=True), args.objective,
                         budget, data, checkpoint_every=10**9)  # fmt: skip
        seconds = time.perf_counter() - start
        rows[name] = scores(fitted.model.export_backbone(), sets)
        print(f"{name}: {args.steps} x {args.batch} in {seconds:.0f} s, loss {fitted.losses[0]:.3f} -> "
              f"{np.mean(fitted.losses[-25:]):.3f}", flush=True)  # fmt: skip
    base = rows["control (random init)"]
    print(f"\n{args.objective + ' views':<24}" + "".join(f"{c:>20}" for c in base))
    for name, r in rows.items():
        print(f"{name:<24}" + "".join(f"{v:>10.1f} ({v - base[c]:+5.1f})" for c, v in r.items()))
    print(f"(logistic-probe accuracy %, and points over the random-initialisation control; eval draw seed 2: "
          f"{len(sets['object', 'test'][1])} test objects, {len(sets['part', 'test'][1])} test parts)")  # fmt: skip


if __name__ == "__main__":
    main()
