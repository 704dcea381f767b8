"""Any timm pretrained tag as an encoder, by name: ``vit_small_patch16_224.augreg_in21k`` or ``timm:<tag>``.

A selector that names no registered encoder but a timm pretrained tag becomes a custom encoder of weights kind
``timm`` (``timm/<tag>``, zoo ``custom``), declared in the job spec's ``custom_encoders`` so that the driver and
every Ray worker see it exactly as the command line did. Mean/std stay ``None``: the tag's own, read from timm's
pretrained config when extraction first needs them. The family is ``@<family>`` when given
(``timm:vit_base_patch16_224.mae@mim``), else guessed from the tag's name.

timm is imported only for a selector of that shape that is not registered: listing and validating specs that
name registered encoders never import it.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import ENCODERS, FAMILIES
from partaware.errors import SpecError, UnknownNameError

PREFIX = "timm:"
NAMESPACE = "timm/"
INPUT_SIZE = 224  # every encoder sees the same crops (modern.py: timm resamples position embeddings)
#: words in a tag that name its pretraining, most specific first (no word: supervised)
FAMILY_HINTS: tuple[tuple[str, str], ...] = (
    ("dinov2", "contrastive+mim"),
    ("ibot", "contrastive+mim"),
    ("mae", "mim"),
    ("beit", "mim"),
    ("mim", "mim"),
    ("dino", "contrastive"),
    ("clip", "contrastive"),
    ("siglip", "contrastive"),
    ("mocov3", "contrastive"),
)


def looks_like_timm_tag(selector: str) -> bool:
    """``timm:<tag>``, or ``<arch>.<tag>`` (timm's pretrained-tag form) that no registered encoder has."""
    if selector.startswith(PREFIX):
        return True
    tag = selector.partition("@")[0]
    return "." in tag and tag not in ENCODERS and not tag.startswith(NAMESPACE)


def guess_family(tag: str) -> str:
    """The family a tag's name suggests (``vit_base_patch16_224.mae``: mim); supervised when none does."""
    lowered = tag.lower()
    return next((family for word, family in FAMILY_HINTS if word in lowered), "supervised")


def timm_encoder(selector: str) -> dict[str, Any]:
    """The ``custom_encoders`` entry for a timm tag selector; ``UnknownNameError`` when timm has no such tag."""
    tag, _, family = selector.removeprefix(PREFIX).partition("@")
    if family and family not in FAMILIES:
        raise UnknownNameError("encoder family", family, FAMILIES)
    input_size = _pretrained_input_size(tag)
    return {
        "name": NAMESPACE + tag,
        "aliases": [tag],
        "family": family or guess_family(tag),
        "zoo": "custom",
        "arch": tag,
        "arch_kwargs": {} if input_size == INPUT_SIZE else {"img_size": INPUT_SIZE},
        "input_size": INPUT_SIZE,
        "weights": {"kind": "timm", "location": tag},
        "mean": None,  # the tag's own, from timm's pretrained config when first read
        "std": None,
        "description": f"timm pretrained tag {tag} (added by name)",
    }


def _pretrained_input_size(tag: str) -> int:
    import timm

    try:
        cfg = timm.get_pretrained_cfg(tag, allow_unregistered=False) if "." in tag else None
    except (RuntimeError, LookupError):  # an unknown architecture or tag
        cfg = None
    if cfg is None:
        close = timm.list_pretrained(f"{tag.split('.')[0]}*")[:20]
        hint = f"; timm's tags for that architecture: {', '.join(close)}" if close else ""
        raise SpecError(f"encoder {tag!r}: not a registered encoder nor a timm pretrained tag (arch.tag){hint}")
    return int(cfg.input_size[-1])
