"""Encoder specs: what names, builds and loads one encoder. Pydantic only (no torch), so that job-spec
validation and ``partctl encoders list`` stay cheap.

``mean``/``std`` may be ``None`` for timm weights: the tag's own values, read from timm's pretrained
config only when something reads ``spec.mean``/``spec.std`` (extraction, the feature key), so listing
and validating never import timm and the numbers are never copied by hand.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partaware.errors import SpecError

Zoo = Literal["paper", "modern", "lab", "custom", "variants", "test", "control"]
#: ``control``: a random-initialisation copy of an architecture, added by a job as a baseline (never ranked)
Family = Literal["supervised", "contrastive", "mim", "contrastive+mim", "control"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PATCH_TAP = re.compile(r"^patch:(\d+)$")


class WeightsSource(BaseModel):
    """Where the weights come from and how they become a timm state dict.

    ``kind``: ``url`` (an official release, downloaded into ``<root>/weights/<cache_key>/``), ``timm`` (a
    timm pretrained tag such as ``vit_base_patch14_dinov2.lvd142m``), ``uri`` (any fsspec URI: a pre-staged
    file or a checkpoint the platform wrote), ``lab`` (pretrained by the platform's lab under the storage
    root; ``location`` names the objective), ``lab-release`` (the lab weights shipped in the package:
    ``partaware.lab.release``), ``random`` (explicitly random weights; reports label them).
    ``converter`` names a registered checkpoint converter (the spec names it: no layout sniffing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["url", "timm", "uri", "lab", "lab-release", "random"]
    location: str = ""
    #: expected sha256 of the file: all 64 hex digits, or a leading part (>= 8) as torch.hub file names carry
    sha256: str | None = None
    converter: str = "identity"
    filename: str | None = None  # name in the weight cache (defaults to the URL's basename)
    #: False where the release cannot be fetched by a plain GET (a Google-Drive folder): stage it by hand
    downloadable: bool = True
    #: folder under ``<root>/weights/``; defaults to the encoder name (variants share their base's file)
    cache_key: str | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{8,64}", value):
            raise ValueError(f"sha256 must be 8 to 64 lowercase hex digits (got {value!r})")
        return value

    def describe(self) -> str:
        """One short line for tables and messages."""
        if self.kind == "random":
            return "random (explicit)"
        return f"{self.kind}: {self.location}" if self.location else self.kind


class EncoderSpec(BaseModel):
    """Everything that names and builds one encoder; ``name`` is the stable id stored in records."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # one optional namespace (``lab/dino``, ``test/vit_tiny``); names become cache folder paths
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")
    family: Family
    zoo: Zoo = "custom"
    arch: str  # timm architecture (with a pretrained tag for kind="timm")
    arch_kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: WeightsSource
    input_size: int = 224
    #: None (``weights.kind == "timm"`` only): the tag's own, from timm's pretrained config when first read
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    has_projection: bool = False
    description: str = ""
    variant: str = ""  # protocol variant recorded with results (for example the MAE shuffle quirk)
    aliases: tuple[str, ...] = ()  # short names (``dino``); records always store ``name``

    @model_validator(mode="after")
    def _timm_norm_only_for_timm_weights(self) -> EncoderSpec:
        stored = self.__dict__  # the raw values: reading ``self.mean`` would resolve them
        if (stored["mean"] is None or stored["std"] is None) and self.weights.kind != "timm":
            raise ValueError("mean/std may be null (the tag's own) only for weights.kind 'timm'")
        return self

    def taps(self, depth: int) -> list[str]:
        base = ["cls", "mean", "tokens"] + (["proj"] if self.has_projection else [])
        return base + [f"patch:{k}" for k in range(1, depth + 1)]

    @property
    def cache_key(self) -> str:
        return self.weights.cache_key or self.name


class _TimmConfigDefault:
    """Reads a ``mean``/``std`` field; a stored None resolves to the timm tag's pretrained-config value.

    A data descriptor on the class wins over the instance ``__dict__`` where pydantic keeps field
    values, so only attribute reads resolve: validation, dumps, equality and pickling see the stored
    None (a spec round-trips as written).
    """

    def __init__(self, name: str):
        self.name = name

    def __get__(self, spec: EncoderSpec | None, owner: type | None = None) -> Any:
        if spec is None:
            return self
        value = spec.__dict__.get(self.name)
        if value is not None:
            return value
        return timm_preprocessing(spec.weights.location or spec.arch, encoder=spec.name)[self.name]

    def __set__(self, spec: EncoderSpec, value: Any) -> None:
        raise AttributeError(f"EncoderSpec is frozen: {self.name} cannot be set")


EncoderSpec.mean = _TimmConfigDefault("mean")  # type: ignore[assignment]
EncoderSpec.std = _TimmConfigDefault("std")  # type: ignore[assignment]


def timm_preprocessing(tag: str, *, encoder: str = "") -> dict[str, tuple[float, float, float]]:
    """``{"mean": ..., "std": ...}`` of a timm pretrained tag, from timm's registry (imports timm)."""
    try:
        return _timm_norm(tag)
    except (RuntimeError, LookupError) as e:
        raise SpecError(f"encoder {encoder!r}: timm has no pretrained config for {tag!r} ({e})") from None


@functools.cache
def _timm_norm(tag: str) -> dict[str, tuple[float, float, float]]:
    import timm

    cfg = timm.get_pretrained_cfg(tag, allow_unregistered=False)
    if cfg is None:  # an architecture without pretrained configs
        raise LookupError("no pretrained config")
    return {"mean": tuple(float(v) for v in cfg.mean), "std": tuple(float(v) for v in cfg.std)}


def parse_patch_tap(tap: str) -> int | None:
    """Block number of a ``patch:<k>`` tap, else None."""
    m = _PATCH_TAP.match(tap)
    return int(m.group(1)) if m else None
