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

from partaware.encoders.registry import ENCODERS, TIMM_ARCHS, WEIGHT_DIGESTS, WEIGHT_RESOLVERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource
from partaware.errors import StorageError
from partaware.lab.arch import LAB_ARCH, LAB_ARCH_KWARGS, LAB_INPUT_SIZE, LAB_MEAN, LAB_STD
from partaware.lab.objectives import OBJECTIVE_ROWS

if TYPE_CHECKING:
    from partaware.storage import StorageRoot

PREFIX = "lab/"


def lab_spec(objective: str, budget_key: str | None = None) -> EncoderSpec:
    """The spec of ``lab/<objective>``; pinned to one budget when ``budget_key`` is given."""
    row = next((r for r in OBJECTIVE_ROWS if r.name == objective), None)
    if row is None:
        from partaware.errors import UnknownNameError

        raise UnknownNameError("lab objective", objective, [r.name for r in OBJECTIVE_ROWS])
    location = f"{objective}/{budget_key}" if budget_key else objective
    return EncoderSpec(
        name=f"{PREFIX}{objective}",
        family=row.family,
        zoo="lab",
        arch=LAB_ARCH,
        arch_kwargs=dict(LAB_ARCH_KWARGS),
        weights=WeightsSource(kind="lab", location=location, converter="identity"),
        input_size=LAB_INPUT_SIZE,
        mean=LAB_MEAN,
        std=LAB_STD,
        interpolation="bicubic",
        has_projection=False,
        description=f"lab-pretrained tiny ViT: {row.description}",
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


def _register() -> None:
    for row in OBJECTIVE_ROWS:
        name = f"{PREFIX}{row.name}"
        if name not in ENCODERS:
            register_encoder(lab_spec(row.name))
    WEIGHT_RESOLVERS.register("lab", "partaware.lab.zoo:resolve_lab_weights")
    WEIGHT_DIGESTS.register("lab", lab_weights_digest)
    TIMM_ARCHS.register(LAB_ARCH, "partaware.lab.backbone:partaware_lab_vit")


_register()
