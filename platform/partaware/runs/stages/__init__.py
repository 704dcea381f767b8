"""The stages of a job, in order: one module each, a plain function ``run(ctx) -> StageRecord``.

Each stage reads what earlier stages produced from their records in the run folder
(``ctx.input(PrepareOutput)``), skips work whose output already exists under the storage root (a
cached stage reports ``cached``) and returns its typed output in a ``StageRecord``. Stage modules
import torch, Ray and the compute packages inside ``run`` only: listing or validating a job imports
neither.
"""

from __future__ import annotations

from collections.abc import Callable

from partaware.runs.driver import RunContext
from partaware.runs.records import StageRecord
from partaware.runs.stages import extract, gallery, prepare, pretrain, probe, report

#: The stages a job runs, in order.
STAGES: list[tuple[str, Callable[[RunContext], StageRecord]]] = [
    ("prepare", prepare.run),
    ("pretrain", pretrain.run),
    ("extract", extract.run),
    ("probe", probe.run),
    ("gallery", gallery.run),
    ("report", report.run),
]
