"""The encoder registries and the selection grammar used by job specs and ``--encoders``.

Selectors: ``all`` (every registered encoder of the job's *zoo*: ``paper`` for the study's seven,
``modern`` for the timm-tag encoders, ``lab`` for the encoders the platform pretrains itself),
``family:<family>`` (within the zoo, for example ``family:mim``), or encoder names and aliases (any
zoo). Unknown names raise with the valid list.

Every registry here is complete whenever it is used: its first lookup or listing imports
``BUILTIN_ENCODER_MODULES``, whose import registers the built-in specs, converters, heads, weight
resolvers, variants and project architectures (timm's and lm-eval's way: registration by import, no
"load the built-ins first" call to remember). None of those modules imports torch or timm at module
level, so listing and validation stay cheap; heavy code sits behind lazy ``"module:attr"`` rows.

Adding an encoder: write its ``EncoderSpec`` row (and, for a new checkpoint layout, a converter in
``CONVERTERS``) in the family's module, and list the module in ``BUILTIN_ENCODER_MODULES``; the
registry-parametrised tests pick it up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from partaware.encoders.specs import EncoderSpec
from partaware.errors import SpecError, UnknownNameError
from partaware.registry import Registry

if TYPE_CHECKING:
    import torch

    from partaware.storage import StorageRoot

    StateDict = dict[str, torch.Tensor]

FAMILIES = ("supervised", "contrastive", "mim", "contrastive+mim")
#: zoos only the package fills: ``all`` on them must mean exactly the built-in list (the paper's seven)
RESERVED_ZOOS = ("paper", "modern", "variants")

#: Modules whose import registers encoders (and their converters, heads, resolvers). A family adds its module here.
BUILTIN_ENCODER_MODULES: list[str] = [
    "partaware.encoders.deit",
    "partaware.encoders.mocov3",
    "partaware.encoders.dino",
    "partaware.encoders.beit",
    "partaware.encoders.mae",
    "partaware.encoders.cae",
    "partaware.encoders.ibot",
    "partaware.encoders.modern",
    "partaware.lab.zoo",
]


def _import_builtin_modules() -> None:
    """The registries' loader: import the modules whose import registers the built-in entries."""
    for module in BUILTIN_ENCODER_MODULES:
        importlib.import_module(module)


#: name -> ``EncoderSpec``
ENCODERS: Registry[EncoderSpec] = Registry("encoder", base=EncoderSpec, loader=_import_builtin_modules)
#: converter name -> function(checkpoint object) -> (backbone state dict, projection-head state dict or None)
CONVERTERS: Registry[Callable[[dict[str, Any]], tuple[StateDict, StateDict | None]]] = Registry(
    "checkpoint converter", base=Callable, loader=_import_builtin_modules
)
#: converter name -> builder(spec, head state dict) -> projection head module (the ``proj`` tap)
HEAD_BUILDERS: Registry[Callable[..., Any]] = Registry("projection head", base=Callable, loader=_import_builtin_modules)
#: ``weights.kind`` -> resolver(spec, root) returning a checkpoint object (``random`` needs none)
WEIGHT_RESOLVERS: Registry[Callable[[EncoderSpec, StorageRoot | None], dict[str, Any]]] = Registry(
    "weights resolver", base=Callable, loader=_import_builtin_modules
)
#: ``weights.kind`` -> digest(spec, root) of weights whose source records it (the lab's info.json), or None
WEIGHT_DIGESTS: Registry[Callable[[EncoderSpec, StorageRoot], str | None]] = Registry(
    "weights digest", base=Callable, loader=_import_builtin_modules
)
#: ``spec.variant`` -> installer(model, seed) returning the token transform it applies (a protocol quirk)
VARIANTS: Registry[Callable[..., Callable[..., Any]]] = Registry(
    "encoder variant", base=Callable, loader=_import_builtin_modules
)
#: timm architectures the project defines -> their model function, whose module registers it in timm on
#: import (a Ray worker that only unpickled a spec has not imported it yet)
TIMM_ARCHS: Registry[Callable[..., Any]] = Registry(
    "project architecture", base=Callable, loader=_import_builtin_modules
)


def _identity(checkpoint: dict[str, Any]) -> tuple[StateDict, StateDict | None]:
    """A timm state dict as is; a ``{"model": ..., "head": ...}`` container is unwrapped."""
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return checkpoint["model"], checkpoint.get("head")
    return checkpoint, None


CONVERTERS.register("identity", _identity)
WEIGHT_RESOLVERS.register("uri", "partaware.encoders.weights:resolve_uri")
WEIGHT_RESOLVERS.register("url", "partaware.encoders.weights:resolve_url")
WEIGHT_RESOLVERS.register("timm", "partaware.encoders.weights:resolve_timm")


def register_encoder(spec: EncoderSpec, *, aliases: Iterable[str] = ()) -> EncoderSpec:
    """Register ``spec`` under its name and aliases (``spec.aliases`` plus ``aliases``).

    Registering an equal spec again is a no-op (a job spec may be validated twice); a different spec
    under a taken name raises.
    """
    ENCODERS.check(getattr(spec, "name", "?"), spec)
    if spec.family not in (*FAMILIES, "control"):
        raise ValueError(f"encoder {spec.name!r}: family {spec.family!r} is not one of {FAMILIES}")
    all_aliases = list(dict.fromkeys([*spec.aliases, *aliases]))
    if spec.name in ENCODERS and ENCODERS.resolve(spec.name) == spec.name:
        if ENCODERS.get(spec.name) == spec:
            return ENCODERS.get(spec.name)
        raise SpecError(f"encoder name {spec.name!r} is already registered with a different spec")
    try:
        ENCODERS.register(spec.name, spec, aliases=all_aliases)
    except ValueError as e:  # a name or alias already taken by another encoder
        raise SpecError(f"encoder {spec.name!r}: {e}") from None
    return spec


def aliases_of(name: str) -> list[str]:
    """The aliases of encoder ``name`` (none for an unknown name)."""
    return ENCODERS.aliases(name) if name in ENCODERS else []


def register_custom_encoders(specs: Iterable[EncoderSpec]) -> list[str]:
    """Register user encoders (from Python or a job spec's ``custom_encoders``); returns their names."""
    ENCODERS.load()  # builtin names first, so a clash is caught whichever is used first
    specs = list(specs)
    for spec in specs:
        if spec.zoo in RESERVED_ZOOS:
            raise SpecError(f"encoder {spec.name!r}: zoo {spec.zoo!r} is reserved for the built-in encoders")
        CONVERTERS.resolve(spec.weights.converter)  # unknown converter: the error lists the valid ones
        if spec.has_projection and spec.weights.converter not in HEAD_BUILDERS:
            raise SpecError(
                f"encoder {spec.name!r}: has_projection needs a converter with a projection head "
                f"({', '.join(HEAD_BUILDERS.names())}), not {spec.weights.converter!r}"
            )
    return [register_encoder(spec).name for spec in specs]


def select_encoders(selectors: Iterable[str], *, zoo: str = "paper") -> list[str]:
    """Canonical encoder names for ``all`` / ``family:<f>`` / names, in registry order, deduplicated."""
    chosen: list[str] = []
    for sel in selectors:
        sel = sel.strip()
        if sel == "all":
            names = [n for n in ENCODERS.names() if ENCODERS.get(n).zoo == zoo]
        elif sel.startswith("family:"):
            family = sel.split(":", 1)[1]
            if family not in FAMILIES:
                raise UnknownNameError("encoder family", family, FAMILIES)
            names = [n for n in ENCODERS.names() if ENCODERS.get(n).family == family and ENCODERS.get(n).zoo == zoo]
        else:
            names = [ENCODERS.resolve(sel)]
        chosen.extend(n for n in names if n not in chosen)
    return chosen
