"""Named lab budgets: what ``partctl pretrain --budget NAME`` and a spec's ``lab_budget`` select.

A preset fixes everything that makes two lab runs comparable except the seed: steps, batch, learning
rate and the data the objectives pretrain on. It is the unit a result names ("lab/dino under
``quickstart``"), and its name enters the budget key, so two presets never share weights.

- ``quickstart`` is sized for a 2-core laptop CPU inside the quickstart's time limit (docs/lab.md has
  the measurements); it pretrains on the job's own dataset (its training split).
- ``gpu`` is sized for one H100 and pretrains on its own synthetic draw (another seed, 10x the
  quickstart's images), so no quickstart test image is ever seen in pretraining; the released lab
  zoo (``lab-release/<objective>``) was trained under it, ``cpu-long`` and ``cpu-xl`` (docs/lab.md says which).

This module imports no torch: the CLI lists presets and the spec validates names cheaply.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from partaware.errors import UnknownNameError


@dataclass(frozen=True)
class BudgetPreset:
    """One named budget."""

    name: str
    description: str
    steps: int
    batch_size: int
    lr: float
    #: the dataset the objectives pretrain on: ``None`` = the job's first dataset (newest prepared version);
    #: else ``(name, options)`` of a dataset the preset prepares itself.
    data: tuple[str, dict[str, Any]] | None = None
    #: what the preset was sized for (shown by ``partctl pretrain --list-budgets`` and in reports)
    sized_for: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_seen(self) -> int:
        return self.steps * self.batch_size


#: The synthetic draw the ``gpu`` preset pretrains on: seed 1 never shares an image with the quickstart's seed 0.
GPU_PRETRAIN_DATA: tuple[str, dict[str, Any]] = ("synthetic", {"size": 10000, "image_size": 224, "seed": 1})

PRESETS: dict[str, BudgetPreset] = {
    p.name: p
    for p in (
        BudgetPreset(
            name="quickstart",
            description="live CPU pretraining inside the quickstart (all seven objectives in about a minute)",
            steps=60,
            batch_size=32,
            lr=1e-3,
            sized_for="2 CPU cores, one torch thread per objective",
        ),
        BudgetPreset(
            name="gpu",
            description="a larger budget on its own 10,000-image synthetic draw (seed 1); the released lab zoo",
            steps=3000,
            batch_size=256,
            lr=1e-3,
            data=GPU_PRETRAIN_DATA,
            sized_for="one H100, the seven objectives side by side (measured in docs/lab.md)",
        ),
        BudgetPreset(
            name="cpu-long",
            description="a long CPU run on the gpu preset's images: 10x the quickstart's images seen, per objective",
            steps=1000,
            batch_size=64,
            lr=1e-3,
            data=GPU_PRETRAIN_DATA,
            sized_for="2 CPU cores, about an hour for the five costliest objectives",
        ),
        BudgetPreset(
            name="cpu-xl",
            description="a longer CPU run on the gpu preset's images: 2.5x cpu-long, for the objectives it left "
            "near their control",
            steps=2500,
            batch_size=64,
            lr=1e-3,
            data=GPU_PRETRAIN_DATA,
            sized_for="2 CPU cores, one objective a core: about 35 minutes for MoCo v3, 44 for DINO, 49 for iBOT, "
            "13 for CAE",
        ),
    )
}
DEFAULT_PRESET = "quickstart"


def get_preset(name: str) -> BudgetPreset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise UnknownNameError("lab budget", name, sorted(PRESETS))
    return PRESETS[name]


def budget_digest(fields: dict[str, Any]) -> str:
    """A short digest of a budget's fields (``Budget.key``; a report groups lab rows by it without torch)."""
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
