"""Weighted k-NN classification on the CLS token (DINO's protocol): a training-free check of the
linear probe's ranking."""

from __future__ import annotations

from partaware.probes.task import ProbeTask, register_task

KNN = register_task(ProbeTask(
    name="knn", summary="weighted k-NN on the CLS token (DINO's protocol)", needs="regions",
    metric="top1", report_metrics=("top1",), tuned=True, split_rule="held_out", protocol_version="1",
    paper="not in the paper: a training-free companion of the linear probe",
    search_params=("k", "temperature", "feature"),
    search_defaults={"k": {"type": "choice", "values": [10, 20]}},
))  # fmt: skip
