"""How far is each lab encoder from its random-initialisation control? A quick, in-process preview.

The quickstart's probes (Ray Tune searches, seeds, bootstrap intervals) are the real judge; this bench
answers the same question in seconds so a recipe or a budget can be chosen by measurement: every
encoder (live ``lab/<objective>`` of a storage root, the released ``lab-release/<objective>``, and the
lab architecture at random initialisation, all in this one process) encodes the object crops and the
part crops of a prepared dataset (cut by the extraction's own crop code), and an L2-regularised
logistic regression on the train split is scored on the test split, at object level (CLS and
mean-pooled tokens) and part level (mean-pooled). Printed: accuracy per encoder and feature, and the
margin in points over the random-initialisation control measured in the same run.

    .venv/bin/python bench/bench_lab_margins.py --storage DIR [--release] [--live] [--device cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np
import torch

from partaware.datasets import prepare_dataset
from partaware.encoders.loading import load_encoder
from partaware.extract.crops import crop_regions
from partaware.lab.augment import normalise
from partaware.lab.objectives import objective_names
from partaware.storage import StorageRoot, safe_relpath

PART_CAP = 3000  # part crops per split: enough for a stable accuracy, cheap on a CPU


def crops(prepared, level: str, split: str, size: int, cap: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 crops ``N x 3 x size x size`` and label ids of one level and split (image order, capped)."""
    t = prepared.manifest().to_pydict()
    by_image: dict[str, list[tuple[list[float], int]]] = defaultdict(list)
    n = 0
    for uri, sp, lv, box, label in zip(t["image_uri"], t["split"], t["level"], t["box"], t["label_id"], strict=True):
        if sp == split and lv == level and label is not None and label >= 0 and (cap is None or n < cap):
            by_image[uri].append((box, int(label)))
            n += 1
    pixels, labels = [], []
    for uri, rows in by_image.items():
        cut = crop_regions(prepared.root.read_bytes(safe_relpath(uri)), [b for b, _ in rows], size=size)
        for px, err, (_, label) in zip(cut.pixels, cut.errors, rows, strict=True):
            if not err:
                pixels.append(px.transpose(2, 0, 1))
                labels.append(label)
    return torch.from_numpy(np.stack(pixels)), np.asarray(labels)


def features(encoder, images: torch.Tensor, device: str) -> dict[str, np.ndarray]:
    spec = encoder.spec
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for i in range(0, len(images), 512):
        x = normalise(images[i : i + 512], mean=spec.mean, std=spec.std).to(device)
        for tap, v in encoder.encode(x, ["cls", "mean"]).items():
            out[tap].append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def probe(train_x, train_y, test_x, test_y) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=300, C=0.5).fit(scaler.transform(train_x), train_y)
    return 100.0 * float((clf.predict(scaler.transform(test_x)) == test_y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--size", type=int, default=1000, help="synthetic dataset size (the quickstart's)")
    ap.add_argument("--live", action="store_true", help="the storage root's lab/<objective> encoders")
    ap.add_argument("--release", action="store_true", help="the package's lab-release/<objective> encoders")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    root = StorageRoot.open(args.storage, writable=True)
    prepared, _ = prepare_dataset(root, "synthetic", options={"size": args.size, "image_size": 224})
    from partaware.lab.release import released_objectives
    from partaware.lab.zoo import lab_spec

    trained = [o for o in objective_names() if root.exists("weights", "lab", o, "latest.json")]
    names = [f"lab/{o}" for o in trained] if args.live else []
    names += [f"lab-release/{o}" for o in released_objectives()] if args.release else []
    from partaware.encoders.controls import control_spec

    control = control_spec(lab_spec("supervised"))
    t0 = time.perf_counter()
    data = {(lv, sp): crops(prepared, lv, sp, 64, PART_CAP if lv == "part" else None)
            for lv in ("object", "part") for sp in ("train", "test")}  # fmt: skip
    counts = ", ".join(f"{lv}/{sp} {len(v[1])}" for (lv, sp), v in data.items())
    print(f"crops: {counts} ({time.perf_counter() - t0:.1f} s)")
    rows: dict[str, dict[str, float]] = {}
    for name in [control.name, *names]:
        enc = load_encoder(control if name == control.name else name, root=root, device=args.device)
        feats = {key: features(enc, imgs, args.device) for key, (imgs, _) in data.items()}
        rows[name] = {
            "object cls": probe(feats["object", "train"]["cls"], data["object", "train"][1],
                                feats["object", "test"]["cls"], data["object", "test"][1]),
            "object mean": probe(feats["object", "train"]["mean"], data["object", "train"][1],
                                 feats["object", "test"]["mean"], data["object", "test"][1]),
            "part mean": probe(feats["part", "train"]["mean"], data["part", "train"][1],
                               feats["part", "test"]["mean"], data["part", "test"][1]),
        }  # fmt: skip
    base = rows[control.name]
    print(f"{'encoder':<26}" + "".join(f"{c:>22}" for c in base))
    for name, r in rows.items():
        cells = "".join(f"{v:>12.1f} ({v - base[c]:+5.1f})" for c, v in r.items())
        print(f"{name:<26}{cells}")
    print("(accuracy %, and the margin in points over the random-initialisation control, same run)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"control": control.name, "accuracy": rows}, f, indent=2)


if __name__ == "__main__":
    main()
