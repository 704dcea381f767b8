"""Probe inputs from a feature set: which rows, which splits, which array (pure numpy).

The probe splits are named for their role, not for the dataset's split names: ``train`` (selection is
carved from it, the final head is fit on it), ``val`` (a selection split the dataset itself offers,
when it is not the held-out one) and ``test`` (the dataset's held-out split, scored once). Retrieval
uses the dataset's gallery splits, all together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Retrieval pools its gallery under one name: nothing is held out.
GALLERY = "gallery"


def role_splits(
    split_rule: str, held_out: str, present: Sequence[str], gallery: Sequence[str] | None
) -> dict[str, str]:
    """Probe split -> dataset split names for a task's split rule (``gallery`` | ``held_out``)."""
    if split_rule == "gallery":
        return {GALLERY: ",".join(s for s in present if gallery is None or s in gallery)}
    roles = {"train": "train", "test": held_out}
    if "val" in present and held_out != "val":
        roles["val"] = "val"
    return roles


def labelled_rows(manifest, level: str) -> dict[int, tuple[str, int]]:
    """manifest row -> (split, label id) for the level's classification rows (label-map rows excluded)."""
    cols = manifest.select(["split", "level", "label_id"]).to_pydict()
    return {
        i: (cols["split"][i], cols["label_id"][i])
        for i in range(len(cols["level"]))
        if cols["level"][i] == level and cols["label_id"][i] >= 0
    }


def feature_array(fs, feature: str, depth_tap: str | None = None) -> np.ndarray:
    """The array a feature name stands for: a tap, or ``cls+last-block`` (CLS then the last block's tokens)."""
    if feature != "cls+last-block":
        return fs.features[feature].astype(np.float32, copy=False)
    maps = fs.features[depth_tap].astype(np.float32)  # (N, D, h, w): last block, no final norm
    tokens = maps.reshape(maps.shape[0], maps.shape[1], -1).transpose(0, 2, 1)
    return np.concatenate([fs.features["cls"][:, None, :], tokens], axis=1)


def split_arrays(
    fs, rows: dict[int, tuple[str, int]], feature: str, roles: dict[str, str], depth_tap: str | None = None
):
    """Features and labels by probe split (``roles``: probe split -> comma list of dataset splits).

    Each split is one selection from the whole array (no intermediate copy of the kept rows): the probe
    stage's peak is the feature set plus the splits."""
    keep = np.flatnonzero([int(r) in rows for r in fs.rows])
    x = feature_array(fs, feature, depth_tap)
    splits = np.array([rows[int(fs.rows[i])][0] for i in keep])
    labels = np.array([rows[int(fs.rows[i])][1] for i in keep], dtype=np.int64)
    feats, labs = {}, {}
    for role, names in roles.items():
        mask = np.isin(splits, names.split(","))
        if mask.any():
            feats[role], labs[role] = x[keep[mask]], labels[mask]
    return feats, labs
