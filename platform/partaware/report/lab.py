"""The lab's pretraining record for a report: budget, time and loss curve of each lab encoder, live
(``lab/<objective>``, trained by the run or cached) and released (``lab-release/<objective>``, shipped in the
package; its release record, curves thinned to 200 points).

Read from what the run itself recorded, the ``pretrain`` stage's outputs (``stages/pretrain.json``:
each objective's weights ``info.json``, also when the stage was cached), so the report shows the
weights that produced its numbers, never a newer budget trained since.
"""

from __future__ import annotations

from typing import Any

from partaware.storage import StorageRoot


def lab_pretraining(run_root: StorageRoot) -> list[dict[str, Any]]:
    """One row per lab encoder the run pretrained or reused, sorted by objective; [] when none."""
    if not run_root.exists("stages", "pretrain.json"):
        return []
    try:
        outputs = run_root.read_json("stages", "pretrain.json").get("outputs", {})
    except (ValueError, OSError):
        return []
    infos = outputs.get("lab", {})
    rows = []
    for objective, info in sorted(infos.items()):
        if not isinstance(info, dict) or "budget" not in info:
            continue  # an objective that failed or stopped early has no published weights
        curve_name = info.get("learning_curve", "loss")
        curves = {"loss": info.get("loss_curve", []), **info.get("metric_curves", {})}
        curve = curves.get(curve_name, [])
        rows.append(
            {
                "encoder": f"lab/{objective}",
                "family": info.get("family", ""),
                "budget_key": info.get("budget_key", ""),
                "budget": info["budget"],
                "images_seen": info.get("images_seen"),
                "views_per_image": info.get("views_per_image"),
                "train_images": info.get("train_images"),
                "seconds": info.get("seconds"),
                "device": info.get("device", ""),
                "loss_first": info.get("loss_first"),
                "loss_last": info.get("loss_last"),
                "loss_curve": list(info.get("loss_curve", [])),
                "curve_name": curve_name,
                "curve": list(curve),
                "cached": bool(info.get("cached", False)),
                "released": None,
            }
        )
    for objective, entry in sorted(outputs.get("released", {}).items()):
        rows.append(
            {
                "encoder": f"lab-release/{objective}",
                "family": entry.get("family", ""),
                "budget_key": entry.get("budget_key", ""),
                "budget": entry.get("budget", {}),
                "images_seen": entry.get("images_seen"),
                "views_per_image": entry.get("views_per_image"),
                "train_images": entry.get("train_images"),
                "seconds": entry.get("seconds"),
                "device": entry.get("device", ""),
                "loss_first": entry.get("loss_first"),
                "loss_last": entry.get("loss_last"),
                "loss_curve": list(entry.get("loss_curve", [])),
                "curve_name": entry.get("learning_curve", "loss"),
                "curve": list(entry.get("curve", [])),
                "cached": True,
                "released": entry.get("command", "released"),
            }
        )
    return rows


def shared_budget(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The budget fields all rows agree on (all of them, under one budget key)."""
    if not rows:
        return {}
    return {k: v for k, v in rows[0]["budget"].items() if all(r["budget"].get(k) == v for r in rows)}
