"""Pretraining objectives, one module per published method, each on the shared lab backbone.

To add one: a module with an ``Objective`` subclass (``loss``, optional ``setup`` and ``after_step``),
plus one row in ``OBJECTIVE_ROWS``. Listing names and families imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from partaware.registry import Registry


@dataclass(frozen=True)
class ObjectiveRow:
    name: str
    family: str  # the encoder family the lab encoder is registered with
    target: str  # "module:Class"
    description: str


OBJECTIVE_ROWS: tuple[ObjectiveRow, ...] = (
    ObjectiveRow(
        "supervised",
        "supervised",
        "partaware.lab.objectives.supervised:Supervised",
        "cross-entropy on object labels (the DeiT role)",
    ),
    ObjectiveRow(
        "mocov3",
        "contrastive",
        "partaware.lab.objectives.mocov3:MoCoV3",
        "MoCo v3: momentum encoder, projector + predictor, symmetric InfoNCE",
    ),
    ObjectiveRow(
        "dino",
        "contrastive",
        "partaware.lab.objectives.dino:DINO",
        "DINO: EMA teacher, centering + sharpening, multi-crop self-distillation",
    ),
    ObjectiveRow(
        "mae",
        "mim",
        "partaware.lab.objectives.mae:MAE",
        "MAE: 75% random masking, light decoder, normalised-pixel reconstruction",
    ),
    ObjectiveRow(
        "beit",
        "mim",
        "partaware.lab.objectives.beit:BEiT",
        "BEiT: blockwise masking, masked visual-token prediction (k-means patch tokenizer learned in the lab)",
    ),
    ObjectiveRow(
        "cae",
        "mim",
        "partaware.lab.objectives.cae:CAE",
        "CAE: encoder on visible patches, latent regressor + alignment, masked visual-token prediction",
    ),
    ObjectiveRow(
        "ibot",
        "contrastive+mim",
        "partaware.lab.objectives.ibot:IBOT",
        "iBOT: DINO's objective plus masked-patch self-distillation",
    ),
)

OBJECTIVES: Registry[type] = Registry("lab objective")
for _row in OBJECTIVE_ROWS:
    OBJECTIVES.register(_row.name, _row.target)

ROWS_BY_NAME = {r.name: r for r in OBJECTIVE_ROWS}


def objective_names() -> list[str]:
    """Objective names in a fixed, meaningful order (supervised, contrastive, MIM, both)."""
    return [r.name for r in OBJECTIVE_ROWS]
