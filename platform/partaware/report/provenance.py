"""Provenance: what produced a run's numbers, gathered from the run folder and its records.

Only what the run recorded is shown (spec.yaml, state.json, summary.json, optional machine.json /
ray_resources.json, and each record's digests, versions, seeds and protocol flags); nothing is guessed from the
machine that builds the report, except the report's own code version, labelled as such.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from partaware import __version__
from partaware.results import ResultRecord
from partaware.storage import StorageRoot

#: optional files a run may hold, with the section name they get
OPTIONAL_FILES = {"machine.json": "machine", "ray_resources.json": "Ray cluster resources", "cluster.json": "cluster"}


def _read_json(root: StorageRoot, name: str) -> Any:
    try:
        return root.read_json(name) if root.exists(name) else None
    except (ValueError, OSError):
        return None


def _placements(run_root: StorageRoot) -> dict[str, list[str]]:
    """Stage -> where its Ray work ran, a line per node type and device (the ``placement`` of its record)."""
    out: dict[str, list[str]] = {}
    names = sorted(n for n in run_root.listdir("stages") if n.endswith(".json")) if run_root.exists("stages") else []
    for name in names:
        record = _read_json(run_root.sub("stages"), name) or {}
        lines = [
            f"{p['count']} {p['unit']} on {len(p.get('nodes', []))} {p['node_type'] or 'unnamed'} node(s), computed on "
            f"{p['device']}, {p['gpus_asked']:g} GPU asked each" + (f" ({p['note']})" if p.get("note") else "")
            for p in record.get("placement") or []
        ]  # fmt: skip
        if lines:
            out[record.get("name", name.removesuffix(".json"))] = lines
    return out


def collect_provenance(run_root: StorageRoot, records: Sequence[ResultRecord]) -> dict[str, Any]:
    """Sections of provenance, each a plain JSON-able value (str, dict, list)."""
    out: dict[str, Any] = {}
    if run_root.exists("spec.yaml"):
        out["spec"] = run_root.read_bytes("spec.yaml").decode(errors="replace")
    state = _read_json(run_root, "state.json")
    if state:
        out["state"] = state
    summary = _read_json(run_root, "summary.json") or {}
    if summary.get("stages"):
        out["stages"] = [{k: s.get(k) for k in ("name", "status", "seconds", "detail")} for s in summary["stages"]]
    placed = _placements(run_root)
    if placed:
        out["where stages ran"] = placed
    for key in ("machine", "ray_resources", "cluster_resources", "code_version"):
        if key in summary:
            out[key.replace("_", " ")] = summary[key]
    for name, label in OPTIONAL_FILES.items():
        value = _read_json(run_root, name)
        if value is not None:
            out[label] = value
    weights = {r.encoder: r.weights_digest or ("random weights" if r.random_weights else "-") for r in records}
    if weights:
        out["encoder weights (sha256)"] = dict(sorted(weights.items()))
    datasets = sorted({(r.dataset, r.dataset_version) for r in records})
    if datasets:
        out["dataset versions"] = {d: v for d, v in datasets}
    seeds = sorted({s for r in records for s in r.seeds})
    if seeds:
        out["seeds"] = seeds
    protocols = sorted({json.dumps(r.protocol, sort_keys=True) for r in records if r.protocol})
    if protocols:
        out["protocol variants"] = [json.loads(p) for p in protocols]
    versions: dict[str, set[str]] = {}
    for r in records:
        for k, v in r.versions.items():
            versions.setdefault(k, set()).add(str(v))
    if versions:
        out["code and library versions (from records)"] = {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())}
    out["report built by"] = f"partaware {__version__}"
    return out
