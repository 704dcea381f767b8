"""Linear probe on the CLS token, protocol §3.4 (part classification) and §3.1 (ImageNet, object level)."""

from __future__ import annotations

from partaware.probes.task import TRAIN_PARAMS, ProbeTask, register_task

LINEAR = register_task(ProbeTask(
    name="linear", summary="linear head on the frozen CLS token (SGD, cosine; protocol 3.4)", needs="regions",
    metric="top1", report_metrics=("top1",), tuned=True, split_rule="held_out", protocol_version="1",
    paper="Table 1 (ImageNet linear), Table 3 (part classification)",
    search_params=(*TRAIN_PARAMS, "feature"),
    search_defaults={"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}},
))  # fmt: skip
