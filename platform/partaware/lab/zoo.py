"""The lab encoders in the zoo ``lab``: ``lab/<objective>`` specs and the ``lab`` weights resolver.

Importing this module (one of the encoder registries' built-in modules) registers one ``EncoderSpec``
per objective (family from the objective's row), the ``lab`` weights resolver and the lab architecture;
it imports no torch (the resolver and the architecture are lazy rows). A spec's ``weights.location`` is
``<objective>`` (the budget ``latest.json`` points at: what ``partctl pretrain`` or the quickstart trained last) or
``<objective>/<budget-key>`` (one exact budget). Loading never trains: missing weights raise an
error that says which ``partctl pretrain`` command makes them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from partaware.encoders.registry import (
    CONVERTERS,
    ENCODERS,
    HEAD_BUILDERS,
    TIMM_ARCHS,
    WEIGHT_DIGESTS,
    WEIGHT_RESOLVERS,
    register_encoder,
)
from partaware.encoders.specs import EncoderSpec, WeightsSource
from partaware.errors import StorageError
from partaware.lab.arch import LAB_ARCH, LAB_ARCH_KWARGS, LAB_INPUT_SIZE, LAB_MEAN, LAB_STD
from partaware.lab.objectives import OBJECTIVE_ROWS

if TYPE_CHECKING:
    from partaware.storage import StorageRoot

PREFIX = "lab/"
RELEASE_PREFIX = "lab-release/"
#: objectives whose family has a projection head, exported beside the backbone (the ``proj`` tap)
WITH_HEAD = ("mocov3", "dino", "ibot")


def lab_spec(objective: str, budget_key: str | None = None, *, released: bool = False) -> EncoderSpec:
    """The spec of ``lab/<objective>`` (pinned to one budget when ``budget_key`` is given), or of
    ``lab-release/<objective>``, the weights shipped in the package (``partaware.lab.release``)."""
    row = next((r for r in OBJECTIVE_ROWS if r.name == objective), None)
    if row is None:
        from partaware.errors import UnknownNameError

        raise UnknownNameError("lab objective", objective, [r.name for r in OBJECTIVE_ROWS])
    location = f"{objective}/{budget_key}" if budget_key else objective
    what = (
        f"released lab ViT (trained by `partctl pretrain --budget gpu --release`): {row.description}"
        if released
        else f"lab-pretrained tiny ViT: {row.description}"
    )
    return EncoderSpec(
        name=f"{RELEASE_PREFIX if released else PREFIX}{objective}",
        family=row.family,
        zoo="lab",
        arch=LAB_ARCH,
        arch_kwargs=dict(LAB_ARCH_KWARGS),
        weights=WeightsSource(kind="lab-release" if released else "lab", location=location, converter="lab"),
        input_size=LAB_INPUT_SIZE,
        mean=LAB_MEAN,
        std=LAB_STD,
        interpolation="bicubic",
        has_projection=objective in WITH_HEAD,
        description=what,
    )


def convert_lab(checkpoint: dict[str, Any]) -> tuple[dict, dict | None]:
    """``CONVERTERS["lab"]``: the lab's ``{"model": ..., "head": ...}`` container."""
    return checkpoint["model"], checkpoint.get("head")


def build_lab_head(spec: EncoderSpec, state: dict | None) -> Any:
    """``HEAD_BUILDERS["lab"]``: the lab exports heads in their family's official layout, so the paper
    encoders' builders rebuild them (DINO/iBOT: ``mlp.*`` + ``last_layer``; MoCo v3: an indexed MLP)."""
    from partaware.encoders.heads import build_dino_head, build_mocov3_head

    if state is None:
        raise StorageError(
            f"encoder {spec.name!r}: its weights carry no projection head (trained before lab version 3?): "
            f"retrain with `partctl pretrain --objectives {spec.weights.location.split('/')[0]}`"
        )
    return (
        build_dino_head(spec, state)
        if any(k.startswith("last_layer.") for k in state)
        else build_mocov3_head(spec, state)
    )


def resolve_budget_key(objective: str, root: StorageRoot) -> str:
    """The budget ``lab/<objective>`` means now: the one ``latest.json`` names."""
    from partaware.lab.train import LATEST_FILE

    if not root.exists("weights", "lab", objective, LATEST_FILE):
        raise StorageError(
            f"lab encoder {PREFIX}{objective} has no trained weights under {root.uri_of('weights', 'lab', objective)}: "
            f"run `partctl pretrain --objectives {objective} --storage {root.uri}` "
            "(or `partctl submit`, which pretrains the lab encoders it needs)"
        )
    return root.read_json("weights", "lab", objective, LATEST_FILE)["budget_key"]


def resolve_lab_weights(spec: EncoderSpec, root: StorageRoot | None) -> dict[str, Any]:
    """``WEIGHT_RESOLVERS["lab"]``: the trained backbone checkpoint, checked against its recorded sha256."""
    from partaware.lab.train import INFO_FILE, WEIGHTS_FILE, _load_torch, weights_dir

    if root is None:
        raise StorageError(f"encoder {spec.name!r}: lab weights live under a storage root; pass root=")
    objective, _, key = spec.weights.location.partition("/")
    key = key or resolve_budget_key(objective, root)
    folder = weights_dir(objective, key)
    if not root.is_complete(*folder):
        raise StorageError(
            f"lab encoder {spec.name}: weights {root.uri_of(*folder)} are missing or incomplete: "
            f"run `partctl pretrain --objectives {objective} --storage {root.uri}`"
        )
    info = root.read_json(*folder, INFO_FILE)
    data = root.read_bytes(*folder, WEIGHTS_FILE)
    digest = hashlib.sha256(data).hexdigest()
    if digest != info["file_sha256"]:
        raise StorageError(
            f"lab encoder {spec.name}: {root.uri_of(*folder, WEIGHTS_FILE)} is corrupt (sha256 mismatch)"
        )
    return _load_torch(data)


def lab_weights_digest(spec: EncoderSpec, root: StorageRoot) -> str | None:
    """``WEIGHT_DIGESTS["lab"]``: the digest the lab recorded for the weights ``spec`` resolves to now."""
    from partaware.lab.train import INFO_FILE, weights_dir

    objective, _, key = spec.weights.location.partition("/")
    try:
        key = key or resolve_budget_key(objective, root)
    except StorageError:
        return None
    folder = weights_dir(objective, key)
    return root.read_json(*folder, INFO_FILE).get("weights_digest") if root.is_complete(*folder) else None


def lab_weights_info(objective: str, root: StorageRoot) -> dict[str, Any]:
    """``info.json`` of the weights ``lab/<objective>`` resolves to (budget, loss curve, timing)."""
    from partaware.lab.train import INFO_FILE, weights_dir

    key = resolve_budget_key(objective, root)
    return root.read_json(*weights_dir(objective, key), INFO_FILE)


def resolve_release_weights(spec: EncoderSpec, root: StorageRoot | None) -> dict[str, Any]:
    """``WEIGHT_RESOLVERS["lab-release"]``: the shipped file, checked against its recorded sha256."""
    from partaware.lab.release import load_release_file

    return load_release_file(spec.weights.location)


def release_weights_digest(spec: EncoderSpec, root: StorageRoot | None) -> str | None:
    """``WEIGHT_DIGESTS["lab-release"]``: the digest the release record names (no file is read)."""
    from partaware.lab.release import release_record

    entry = (release_record() or {}).get("objectives", {}).get(spec.weights.location)
    return entry["weights_digest"] if entry else None


def _register() -> None:
    from partaware.lab.release import released_objectives

    for row in OBJECTIVE_ROWS:
        name = f"{PREFIX}{row.name}"
        if name not in ENCODERS:
            register_encoder(lab_spec(row.name))
    for objective in released_objectives():
        if f"{RELEASE_PREFIX}{objective}" not in ENCODERS:
            register_encoder(lab_spec(objective, released=True))
    WEIGHT_RESOLVERS.register("lab", "partaware.lab.zoo:resolve_lab_weights")
    WEIGHT_RESOLVERS.register("lab-release", "partaware.lab.zoo:resolve_release_weights")
    WEIGHT_DIGESTS.register("lab", lab_weights_digest)
    WEIGHT_DIGESTS.register("lab-release", release_weights_digest)
    CONVERTERS.register("lab", "partaware.lab.zoo:convert_lab")
    HEAD_BUILDERS.register("lab", "partaware.lab.zoo:build_lab_head")
    TIMM_ARCHS.register(LAB_ARCH, "partaware.lab.backbone:partaware_lab_vit")


_register()
