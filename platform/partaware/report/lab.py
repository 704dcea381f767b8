"""The lab's pretraining record for a report: budget, time and loss curve of each lab encoder, live
(``lab/<objective>``, trained by the run or cached) and released (``lab-release/<objective>``, shipped in the
package; its release record, curves thinned to 200 points).

Read from what the run itself recorded, the ``pretrain`` stage's outputs (``stages/pretrain.json``:
each objective's weights ``info.json``, also when the stage was cached), so the report shows the
weights that produced its numbers, never a newer budget trained since.
"""

from __future__ import annotations

from typing import Any

from partaware.lab.presets import budget_digest
from partaware.storage import StorageRoot


def lab_pretraining(run_root: StorageRoot) -> list[dict[str, Any]]:
    """One row per lab encoder the run pretrained or reused, sorted by objective; [] when none."""
    if not run_root.exists("stages", "pretrain.json"):
        return []
    try:
        outputs = run_root.read_json("stages", "pretrain.json").get("outputs", {})
    except (ValueError, OSError):
        return []
    rows = []
    for objective, info in sorted(outputs.get("lab", {}).items()):
        if not isinstance(info, dict) or "budget" not in info:
            continue  # an objective that failed or stopped early has no published weights
        curve_name = info.get("learning_curve", "loss")
        curves = {"loss": info.get("loss_curve", []), **info.get("metric_curves", {})}
        rows.append(_row(f"lab/{objective}", info, curve_name, curves.get(curve_name, []),
                         cached=bool(info.get("cached", False)), released=None))  # fmt: skip
    for objective, entry in sorted(outputs.get("released", {}).items()):
        rows.append(_row(f"lab-release/{objective}", entry, entry.get("learning_curve", "loss"), entry.get("curve", []),
                         cached=True, released=entry.get("command", "released")))  # fmt: skip
    return rows


def _row(encoder: str, info: dict[str, Any], curve_name: str, curve: list[float], *, cached: bool,
         released: str | None) -> dict[str, Any]:  # fmt: skip
    """One lab row from a weights ``info.json`` (live) or a release entry (released): the same fields."""
    keys = ("images_seen", "views_per_image", "train_images", "seconds", "loss_first", "loss_last")
    return {
        "encoder": encoder,
        "family": info.get("family", ""),
        "budget": info.get("budget", {}),
        "budget_digest": budget_digest(info.get("budget", {})),  # not the weights key: that moves with the recipe
        "recipe_version": info.get("recipe_version"),
        **{k: info.get(k) for k in keys},
        "device": info.get("device", ""),
        "loss_curve": list(info.get("loss_curve", [])),
        "curve_name": curve_name,
        "curve": list(curve),
        "cached": cached,
        "released": released,
    }


def shared_budget(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The budget fields all rows agree on (all of them, under one budget)."""
    if not rows:
        return {}
    return {k: v for k, v in rows[0]["budget"].items() if all(r["budget"].get(k) == v for r in rows)}
