"""Linear semantic segmentation, protocol §3.5: patch tokens of blocks 4, 6, 8 and 12 (no final norm),
resized and concatenated, one 1x1 conv, cross-entropy with ignore index 255; mIoU, mAcc, aAcc.

Variants (``variants: {segmentation: ...}``; recorded as ``protocol.segmentation_mode``):
- ``fast`` (the default): the head is trained on the cached maps of each dataset image (resized to the
  encoder's input), no augmentation, its hyperparameters searched like every tuned probe;
- ``paper``: the paper's schedule with the frozen encoder in the loop (augmented crops at the paper's crop
  sizes, AdamW 4e-4 with warmup and poly for ``segmentation_iterations``, sliding-window test), one Ray Train
  run per seed, nothing searched (``partaware.probes.segmentation_paper``, ``partaware.train``).

The blocks scale with the encoder's depth (a 6-block lab encoder uses 2, 3, 4, 6).
"""

from __future__ import annotations

from partaware.probes.task import TRAIN_PARAMS, ProbeTask, register_task

#: The paper's blocks for a 12-block ViT (1-based).
PAPER_BLOCKS = (4, 6, 8, 12)
VARIANTS = ("fast", "paper")


def segmentation_blocks(depth: int) -> tuple[int, ...]:
    """Blocks at the paper's relative depths (1/3, 1/2, 2/3, 1) of an encoder with ``depth`` blocks."""
    return tuple(sorted({max(1, round(b * depth / 12)) for b in PAPER_BLOCKS}))


class SegmentationTask(ProbeTask):
    def features(self, encoder, variant=None):
        return ("maps",)

    def taps(self, encoder, depth, variant=None):
        return tuple(f"patch:{b}" for b in segmentation_blocks(depth))


SEGMENTATION = register_task(SegmentationTask(
    name="segmentation", summary="1x1 conv on concatenated block 4/6/8/12 patch maps (protocol 3.5, fast)",
    needs="label_maps", metric="miou", report_metrics=("miou", "macc", "aacc"), tuned=True, split_rule="held_out",
    protocol_version="1", paper="Table 2 (ADE20K), Table 4 (part segmentation), Figure 6 (object vs part)",
    search_params=TRAIN_PARAMS,
    search_defaults={"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}, variants=VARIANTS,
))  # fmt: skip


class SegmentationNovelTask(SegmentationTask):
    def runs_on(self, dataset):
        return super().runs_on(dataset) and bool(getattr(dataset, "object_splits", False))

    def needs_text(self):
        return "label maps whose class list splits objects into base and novel (OV-PARTS)"


#: Across objects (``partaware.probes.novel_parts``): the head's classes are the base objects' part names; it
#: is trained on base objects and scored on novel objects' parts, with the base objects' score beside it.
SEGMENTATION_NOVEL = register_task(SegmentationNovelTask(
    name="segmentation_novel",
    summary="segmentation trained on base objects' parts, scored on novel objects' parts (OV-PARTS split)",
    needs="label_maps", metric="miou", report_metrics=("miou", "base_miou"), tuned=True, split_rule="held_out",
    protocol_version="1", paper="none (issue 19: across objects, beside the in-distribution score)",
    levels=("part",), search_params=TRAIN_PARAMS,
    search_defaults={"lr": {"type": "loguniform", "low": 1e-4, "high": 1e-2}}, compute="segmentation",
))  # fmt: skip
