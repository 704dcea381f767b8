"""Where work runs: the device a Ray worker computes on, and the node it ran on, for the run's records.

A stage asks Ray for the resources its spec names (``resources.gpus_per_actor`` ...) whether or not such
a node exists yet, so an autoscaler can add one; the spec's ``device`` then says where the compute goes:

- ``cpu``: on the CPU (the spec asks for no GPU);
- ``cuda``: on the worker's CUDA device; a worker without one fails (``DeviceError``);
- ``auto``: on CUDA when the worker was given a GPU and torch sees one, else on the CPU. A GPU resource
  with no device behind it (Ray's fake multi-node autoscaler; a node started with ``--num-gpus`` but no
  driver) computes on the CPU, and the placement says so.

Ray-free at import: ``where`` imports Ray inside, and runs in the Ray worker it describes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from partaware.errors import PartawareError

DEVICES = ("auto", "cuda", "cpu")
NO_CUDA = "GPU resource without a CUDA device: computed on the CPU"


class DeviceError(PartawareError, RuntimeError):
    """Compute was asked for on CUDA where torch sees no CUDA device."""


def compute_device(device: str, gpus: float) -> tuple[str, str]:
    """(torch device, note) for a worker that asked Ray for ``gpus`` GPUs under the spec's ``device``."""
    if device not in DEVICES:
        raise DeviceError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu" or (device == "auto" and gpus <= 0):
        return "cpu", ""
    import torch

    if torch.cuda.is_available():
        return "cuda", ""
    if device == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        raise DeviceError(f"device cuda: this worker has no CUDA device (torch sees none; CUDA_VISIBLE_DEVICES="
                          f"{visible}; {gpus:g} GPU asked of Ray); use device auto to compute on the CPU")  # fmt: skip
    return "cpu", NO_CUDA


def where(device: str, note: str = "") -> dict[str, str]:
    """This Ray worker's node (id, and type as the autoscaler or KubeRay named it) and its compute device."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "node_type": os.environ.get("RAY_NODE_TYPE_NAME", ""), "device": device,
            "note": note}  # fmt: skip


def summarise(places: Iterable[dict[str, Any]], *, gpus: float, unit: str) -> list[dict[str, Any]]:
    """Placements grouped by (node type, device, note), counting ``unit``s (regions, trials, tasks) each.

    A node the cluster did not name gets its shape from Ray (``gpu node``, ``cpu node``, ``head``)."""
    shapes = _node_shapes()
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in places:
        node_type = p.get("node_type") or shapes.get(p.get("node_id", ""), "")
        key = (node_type, p.get("device", ""), p.get("note", ""))
        g = groups.setdefault(key, {"node_type": node_type, "device": key[1], "gpus_asked": gpus, "unit": unit,
                                    "count": 0, "nodes": set(), "note": key[2]})  # fmt: skip
        g["count"] += int(p.get("count", 1))
        if p.get("node_id"):
            g["nodes"].add(p["node_id"])
    return [{**g, "nodes": sorted(g["nodes"])} for g in groups.values()]


def _node_shapes() -> dict[str, str]:
    """Node id -> ``head`` | ``gpu node`` | ``cpu node`` for the nodes Ray knows (empty without Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return {}
        return {n["NodeID"]: "head" if "node:__internal_head__" in n["Resources"] else
                ("gpu node" if n["Resources"].get("GPU") else "cpu node") for n in ray.nodes()}  # fmt: skip
    except Exception:  # noqa: BLE001 - a description of where work ran must never fail the run
        return {}
