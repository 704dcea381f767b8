"""The released lab zoo: weights trained by ``partctl pretrain --budget gpu --release``, shipped in the package.

Why: the quickstart's live CPU budget is too small for the self-supervised objectives to move away from
their random initialisation, so on its own the quickstart cannot say anything about the families. The
released weights were trained by the project's own lab code under a named preset on a GPU, and are
evaluated by the quickstart as ``lab-release/<objective>`` beside the live-trained ``lab/<objective>``.

Layout (``partaware/lab/release/``, package data)::

    release.json            the record, per objective: the file, its sha256, the weights digest, the preset
                            and budget it was trained under (objectives may differ), the command that
                            reproduces it, device, seconds, loss first -> last and the thinned curves
                            (and the objective's recipe version: its views and settings, revised apart)
    <objective>.safetensors ``model.*`` (the backbone) and ``head.*`` (projection head, where the family
                            has one), float16; loaded as float32

A file whose sha256 differs from its record is refused (tests check every shipped file). This module
imports no torch at import time: listing encoders reads only ``release.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from partaware.errors import StorageError

RELEASE_PACKAGE = "partaware.lab"
RELEASE_FOLDER = "release"
RECORD_FILE = "release.json"
#: what the shipped tensors are stored as (half the bytes; the digest is of the float32 tensors loaded back)
STORED_DTYPE = "float16"


def release_dir() -> Path:
    """The package folder the release lives in (``--release`` writes here)."""
    return Path(str(resources.files(RELEASE_PACKAGE))) / RELEASE_FOLDER


@lru_cache(maxsize=1)
def release_record() -> dict[str, Any] | None:
    """The shipped ``release.json``, or None when the package carries no release."""
    path = release_dir() / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def released_objectives() -> list[str]:
    record = release_record()
    return sorted(record["objectives"]) if record else []


def thin(curve: list[float], points: int = 200) -> list[float]:
    """A curve cut to at most ``points`` bucket means (the record stays small; the shape stays)."""
    if len(curve) <= points:
        return [float(v) for v in curve]
    step = len(curve) / points
    return [float(sum(b) / len(b)) for i in range(points) if (b := curve[int(i * step) : int((i + 1) * step)])]


def release_rows(objectives: list[str]) -> dict[str, dict[str, Any]]:
    """What a run records about the released encoders it evaluates: their release entries (budget included),
    each with the recipe version it was trained with (entries written before that field derive it)."""
    from partaware.lab.train import trained_recipe_version

    entries = (release_record() or {}).get("objectives", {})
    return {o: {**e, "recipe_version": trained_recipe_version(o, e)} for o in objectives if (e := entries.get(o))}


def canonical_safetensors(blob: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors writes the header from a hash map, so
    two saves of the same tensors can differ in bytes; a release must be reproducible bit for bit."""
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8-byte alignment with spaces
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


def _to_float32(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_release_file(objective: str, folder: Path | None = None) -> dict[str, Any]:
    """``{"model": backbone state, "head": head state or None}`` (float32) of a released objective,
    after checking the file against its recorded sha256."""
    from safetensors.torch import load

    folder = folder or release_dir()
    record = json.loads((folder / RECORD_FILE).read_text()) if folder != release_dir() else release_record()
    entry = (record or {}).get("objectives", {}).get(objective)
    if entry is None:
        raise StorageError(f"lab-release/{objective}: not in the release record {folder / RECORD_FILE}")
    path = folder / entry["file"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["file_sha256"]:
        raise StorageError(f"lab-release/{objective}: {path} does not match its recorded sha256 (corrupt or replaced)")
    tensors = _to_float32(load(data))
    model = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    head = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
    return {"model": model, "head": head or None}


def write_release(
    root: Any, infos: dict[str, dict[str, Any]], *, preset: str, folder: Path | None = None
) -> dict[str, Any]:
    """Write the published lab weights of ``infos`` (from ``pretrain`` under ``preset``) into the release.

    Objectives not in ``infos`` keep their entries: a release may hold objectives trained under different
    presets (each entry names its own budget and the command that reproduces it). Returns the record,
    with ``reproduced`` per written objective: whether its file is bit-identical to the one the previous
    record named (None when there was none, or it was trained under another weights key: another budget or
    recipe, so nothing to reproduce).
    """
    import torch
    from safetensors.torch import save

    from partaware.encoders.base import state_dict_digest
    from partaware.lab.train import WEIGHTS_FILE, _load_torch, trained_recipe_version, weights_dir

    folder = folder or release_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old = json.loads((folder / RECORD_FILE).read_text()) if (folder / RECORD_FILE).is_file() else {}
    objectives: dict[str, Any] = dict(old.get("objectives", {}))
    for objective, info in sorted(infos.items()):
        state = _load_torch(root.read_bytes(*weights_dir(objective, info["budget_key"]), WEIGHTS_FILE))
        flat = {f"model.{k}": v for k, v in state["model"].items()}
        flat.update({f"head.{k}": v for k, v in (state.get("head") or {}).items()})
        stored = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in flat.items()}
        blob = canonical_safetensors(
            save(stored, metadata={"objective": objective, "budget_key": info["budget_key"], "preset": preset})
        )
        name = f"{objective}.safetensors"
        (folder / name).write_bytes(blob)
        loaded = _to_float32(stored)
        sha = hashlib.sha256(blob).hexdigest()
        before = objectives.get(objective, {})
        previous = before.get("file_sha256") if before.get("budget_key") == info["budget_key"] else None
        curve_name = info.get("learning_curve", "loss")
        objectives[objective] = {
            "file": name,
            "file_sha256": sha,
            "weights_digest": state_dict_digest({k[6:]: v for k, v in loaded.items() if k.startswith("model.")}),
            "has_head": any(k.startswith("head.") for k in stored),
            "family": info["family"],
            "preset": preset,
            "budget": info["budget"],
            "budget_key": info["budget_key"],
            "recipe_version": trained_recipe_version(objective, info),
            "command": f"partctl pretrain --budget {preset} --objectives {objective} --release",
            "loss_first": info["loss_first"],
            "loss_last": info["loss_last"],
            "learning_curve": curve_name,
            "loss_curve": thin(info["loss_curve"]),
            "curve": thin(info["loss_curve"] if curve_name == "loss" else info["metric_curves"].get(curve_name, [])),
            "seconds": info["seconds"],
            "device": info.get("device"),
            "torch": torch.__version__,
            "images_seen": info["images_seen"],
            "views_per_image": info["views_per_image"],
            "train_images": info["train_images"],
            "reproduced": None if previous is None else previous == sha,
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    record = {"stored_dtype": STORED_DTYPE, "objectives": objectives}
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    release_record.cache_clear()
    return record
