"""One-line validation errors for pydantic models (job specs, converter options): a leaf module.

Datasets register their options models here, and the spec formats its errors here, so neither imports
the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T")


def format_validation_error(source: str, err: ValidationError, what: str = "job spec", *, prefix: str = "") -> str:
    """One line: ``source: invalid job spec: field.path: problem (got value); ...``.

    ``prefix`` goes before every field path: a nested model validated on its own (``datasets.0.options.``).
    """
    parts = []
    for e in err.errors(include_url=False):
        path = ".".join(str(x) for x in e["loc"])
        loc = prefix + path if path else prefix.rstrip(".")
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:  # a model-level check names its own field in the message
            parts.append(msg)
            continue
        if e["type"] == "extra_forbidden":
            msg = f"unknown field (valid fields: {_valid_fields(e['loc'], err.title)})"
        elif (
            e["type"] != "missing"
            and "input" in e
            and not isinstance(e["input"], dict | list)
            and repr(e["input"]) not in msg
        ):
            msg = f"{msg} (got {e['input']!r})"
        parts.append(f"{loc}: {msg}")
    return f"{source}: invalid {what}: " + "; ".join(parts)


def _valid_fields(loc: tuple, title: str) -> str:
    model = _MODELS_BY_TITLE.get(title)
    if model is None:
        return "see the model's documentation"
    for key in loc[:-1]:
        field = model.model_fields.get(str(key)) if isinstance(key, str) else None
        if field is None:
            continue
        ann = field.annotation
        for candidate in (ann, *getattr(ann, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return ", ".join(model.model_fields)


_MODELS_BY_TITLE: dict[str, type[BaseModel]] = {}


def register_options_model(model: type[BaseModel]) -> type[BaseModel]:
    """Let ``format_validation_error`` list the valid fields of other option models (converters)."""
    _MODELS_BY_TITLE[model.__name__] = model
    return model


def replace_fields(options: T, overrides: Mapping[str, Any], *, what: str, error: type[Exception]) -> T:
    """A copy of a frozen options dataclass with some fields replaced; an unknown name raises ``error``
    listing the valid ones (options given as keywords are checked, never silently dropped)."""
    valid = {f.name for f in dataclasses.fields(options)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise error(f"unknown {what} option(s) {unknown}; valid: {', '.join(sorted(valid))}")
    return dataclasses.replace(options, **overrides) if overrides else options
