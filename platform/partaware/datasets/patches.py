"""The paper's keypoint-centred part patches, as one pure function (protocol §3.3-3.4, §7.1).

Why a function of its own: Table 3 (part retrieval and classification on CUB and COCO) depends on
exactly which keypoints survive and how big their patches are, and the official code
(``moco/loader.py`` of the paper's repository) differs from the paper's text. Both rules live here:

``"code"`` (sample rule ``keypoint-code``, the default, what produced the paper's numbers)
    1. the caller keeps only the chosen keypoint classes, visible (CUB ``visible==1``; COCO ``v==2``
       and persons with at least two such keypoints, pooled per image);
    2. ``d`` = Euclidean distance to the nearest *other kept* keypoint of the same image. A distance
       of exactly 0 (the keypoint itself, or another one on the same pixel) counts as 999999. For
       COCO the distance is taken over ``(x, y, annotation_id)`` triples, so keypoints of different
       persons are further apart by ``|Δ annotation_id|`` (the official code's quirk: pass ``group``);
    3. ``s = d / 2``; the keypoint is kept only if ``20 < s < 1000``;
    4. the patch is the square of half-side ``r = round(s / 2)`` (Python's round: half to even)
       around ``(x, y)``: ``(x-r, y-r, x+r, y+r)``, rounded per coordinate as PIL's ``crop`` does.
       The side is therefore about ``d / 2``.

``"paper"`` (sample rule ``keypoint-paper``): the text's "d x d crop": same keypoints, same keep
    test, half-side ``s = d / 2`` (side ``d``), the box rounded the same way.

A box may extend past the image (a keypoint near the border): it is stored as is, with coordinates
outside ``[0, width] x [0, height]``; the crop at extraction time fills the outside with black, as
PIL's ``Image.crop`` does in the official code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: What the official code puts in place of a zero distance (self-distance or coincident keypoints).
ZERO_DISTANCE = 999999.0
#: Keep a keypoint only if MIN_S < s < MAX_S, with s = d / 2.
MIN_S, MAX_S = 20.0, 1000.0
RULES = {"code": "keypoint-code", "paper": "keypoint-paper"}


@dataclass(frozen=True)
class Keypoint:
    """One kept keypoint of an image. ``group`` is COCO's annotation id (enters distances), else None."""

    x: float
    y: float
    group: float | None = None


@dataclass(frozen=True)
class KeypointPatch:
    """A surviving keypoint: its index in the input, distances, and the integer pixel box to crop."""

    index: int
    x: float
    y: float
    d: float  # distance to the nearest other kept keypoint
    s: float  # d / 2, the value the official code stores
    half_side: float  # r: round(s / 2) for "code", s for "paper"
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), may lie partly outside the image


def nearest_distances(keypoints: Sequence[Keypoint]) -> np.ndarray:
    """d per keypoint: distance to the nearest other one, zero distances counted as ``ZERO_DISTANCE``.

    Keypoints with a ``group`` are compared on ``(x, y, group)``; all must have one or none.
    """
    if not keypoints:
        return np.zeros(0, dtype=np.float64)
    grouped = {k.group is not None for k in keypoints}
    if len(grouped) > 1:
        raise ValueError("either every keypoint has a group (COCO annotation id) or none has")
    coords = np.array([(k.x, k.y, k.group) if k.group is not None else (k.x, k.y) for k in keypoints], dtype=np.float64)
    dist = np.sqrt(((coords[:, None] - coords[None]) ** 2).sum(axis=2))
    dist[dist == 0] = ZERO_DISTANCE
    return dist.min(axis=1)


def patch_box(x: float, y: float, half_side: float) -> tuple[int, int, int, int]:
    """The integer box PIL's ``crop`` takes for ``(x-r, y-r, x+r, y+r)``: each coordinate rounded half to even."""
    return (round(x - half_side), round(y - half_side), round(x + half_side), round(y + half_side))


def keypoint_patches(keypoints: Sequence[Keypoint], *, rule: str = "code") -> list[KeypointPatch]:
    """The patches one image yields under ``rule`` ("code" or "paper"), in input order."""
    if rule not in RULES:
        raise ValueError(f"unknown keypoint patch rule {rule!r}; valid: {', '.join(RULES)}")
    out = []
    for i, d in enumerate(nearest_distances(keypoints).tolist()):
        s = d / 2
        if not MIN_S < s < MAX_S:
            continue
        half = float(round(s / 2)) if rule == "code" else s
        k = keypoints[i]
        out.append(KeypointPatch(i, k.x, k.y, d, s, half, patch_box(k.x, k.y, half)))
    return out
