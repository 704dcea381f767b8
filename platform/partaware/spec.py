"""Job specs: a typed, versioned description of one study, loaded from YAML and validated in full
before any Ray worker starts.

A spec names datasets, encoders (names, ``family:<f>`` or ``all``), granularity levels, probe tasks,
the hyperparameter search space per task, resources, the storage root and the seed. Errors name the
field, the bad value and the valid choices, in one line (``SpecError``; the CLI exits with code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from partaware.encoders.specs import EncoderSpec
from partaware.errors import PartawareError, SpecError, UnknownNameError

SPEC_VERSION = 1
LEVELS = ("object", "part")
TASKS = ("retrieval", "linear", "attentive", "knn", "segmentation")
Level = Literal["object", "part"]
Task = Literal["retrieval", "linear", "attentive", "knn", "segmentation"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchDim(_Strict):
    """One axis of a search space: ``loguniform``/``uniform`` over [low, high], or ``choice``/``grid``."""

    type: Literal["loguniform", "uniform", "choice", "grid"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchDim:
        if self.type in ("loguniform", "uniform"):
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"{self.type} needs low < high (got low={self.low}, high={self.high})")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError(f"loguniform needs low > 0 (got {self.low})")
        elif not self.values:
            raise ValueError(f"{self.type} needs a non-empty 'values' list")
        return self


class SearchSettings(_Strict):
    """How many trials and how aggressively ASHA stops them."""

    num_samples: int = Field(4, ge=1, le=10_000)
    max_epochs: int = Field(20, ge=1, le=10_000)
    grace_period: int = Field(2, ge=1)
    reduction_factor: int = Field(2, ge=2)
    val_fraction: float = Field(0.2, gt=0.0, lt=0.9)


class DatasetRef(_Strict):
    """A dataset to prepare and use: a registered name, its source URI, converter options."""

    name: str
    source: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from partaware.datasets import DATASETS

        try:
            return DATASETS.resolve(name)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None


class Resources(_Strict):
    """Per-actor and per-trial resources; GPUs are used when the cluster has them."""

    extract_batch_size: int = Field(64, ge=1)
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(2, ge=1)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _pool(self) -> Resources:
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors ({self.min_actors}) exceeds max_actors ({self.max_actors})")
        return self


class JobSpec(_Strict):
    """One study: which encoders, on which datasets, at which levels, with which probes."""

    version: Literal[1] = SPEC_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    seed: int = Field(0, ge=0)
    storage: str | None = None
    datasets: list[DatasetRef] = Field(min_length=1)
    zoo: Literal["paper", "modern", "lab", "custom"] = "paper"  # what ``all`` and ``family:`` select from
    #: user encoders (timm arch + checkpoint URI + converter), registered before ``encoders`` is checked
    custom_encoders: list[EncoderSpec] = Field(default_factory=list)
    encoders: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS), min_length=1)
    tasks: list[Task] = Field(default_factory=lambda: ["retrieval", "linear", "knn"], min_length=1)
    search: dict[Task, dict[str, SearchDim]] = Field(default_factory=dict)
    search_settings: SearchSettings = Field(default_factory=SearchSettings)
    resources: Resources = Field(default_factory=Resources)

    @field_validator("custom_encoders")
    @classmethod
    def _register_custom(cls, specs: list[EncoderSpec]) -> list[EncoderSpec]:
        from partaware.encoders.registry import register_custom_encoders

        try:
            register_custom_encoders(specs)
        except PartawareError as e:
            raise ValueError(str(e)) from None
        return specs

    @model_validator(mode="after")
    def _selectable(self) -> JobSpec:
        from partaware.encoders.registry import select_encoders

        try:
            select_encoders(self.encoders, zoo=self.zoo)
        except UnknownNameError as e:
            raise PydanticCustomError("unknown_encoder", "encoders: {msg}", {"msg": str(e)}) from None
        return self

    def resolved_encoders(self) -> list[str]:
        from partaware.encoders.registry import select_encoders

        return select_encoders(self.encoders, zoo=self.zoo)


def format_validation_error(source: str, err: ValidationError, what: str = "job spec") -> str:
    """One line: ``source: invalid job spec: field.path: problem (got value); ...``."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(x) for x in e["loc"])
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
    model: type[BaseModel] = _MODELS_BY_TITLE.get(title, JobSpec)
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


def parse_spec(data: Any, *, source: str = "<spec>") -> JobSpec:
    """Validate a spec mapping; ``SpecError`` (one line) on any problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(source, e)) from None
    except PartawareError as e:  # a validator's own error (an unknown encoder or dataset)
        raise SpecError(f"{source}: invalid job spec: {e}") from None


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML spec (``yaml.safe_load``: specs never run code), apply overrides, validate."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job spec") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    if isinstance(data, dict) and overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return parse_spec(data, source=str(path))


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML, saved beside every run's results."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
