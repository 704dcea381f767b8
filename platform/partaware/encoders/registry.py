"""The encoder registry and the selection grammar used by job specs and ``--encoders``.

Selectors: ``all`` (every registered encoder of the job's *zoo*: ``paper`` for the study's seven,
``lab`` for the encoders the platform pretrains itself), ``family:<family>`` (within the zoo, for
example ``family:mim``), or encoder names and aliases (any zoo). Unknown names raise with the valid list.
Encoder modules register their specs here at import (``register_encoder``); this module imports
nothing heavy so listing and validation stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from partaware.errors import UnknownNameError
from partaware.registry import Registry

FAMILIES = ("supervised", "contrastive", "mim", "contrastive+mim")

#: name -> spec object (an ``EncoderSpec``: it has ``name``, ``family`` and ``zoo``).
ENCODERS: Registry[Any] = Registry("encoder")


def register_encoder(spec: Any, *, aliases: Iterable[str] = ()) -> Any:
    if spec.family not in FAMILIES:
        raise ValueError(f"encoder {spec.name!r}: family {spec.family!r} is not one of {FAMILIES}")
    ENCODERS.register(spec.name, spec, aliases=aliases)
    return spec


def _load_builtin_encoders() -> None:
    """Import the modules that register encoders (kept lazy: they may import torch)."""
    import importlib

    for module in BUILTIN_ENCODER_MODULES:
        importlib.import_module(module)


#: Modules whose import registers encoders. An encoder family adds its module here.
BUILTIN_ENCODER_MODULES: list[str] = ["partaware.lab.zoo"]


def select_encoders(selectors: Iterable[str], *, zoo: str = "paper") -> list[str]:
    """Canonical encoder names for ``all`` / ``family:<f>`` / names, in registry order, deduplicated."""
    _load_builtin_encoders()
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
