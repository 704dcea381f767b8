"""Attentive probe (protocol §3.4, from CAE): a learned query cross-attends over the encoder's tokens.

Variants (recorded as the result's ``feature``):
- ``tokens`` (default, the protocol): all tokens after the final LayerNorm, fp32;
- ``cls+last-block``: the CLS token plus the last block's patch tokens before the final norm, stored in
  fp16 (what this platform probed before the protocol was followed; kept to compare with old results).
"""

from __future__ import annotations

from partaware.probes.task import TRAIN_PARAMS, ProbeTask, register_task

VARIANTS = ("tokens", "cls+last-block")


class AttentiveTask(ProbeTask):
    def features(self, encoder, variant=None):
        return (variant or VARIANTS[0],)

    def taps(self, encoder, depth, variant=None):
        if (variant or VARIANTS[0]) == "tokens":
            return ("tokens",)
        return ("cls", f"patch:{depth}")


ATTENTIVE = register_task(AttentiveTask(
    name="attentive", summary="cross-attention query over all tokens, BatchNorm, linear (protocol 3.4)",
    needs="regions", metric="top1", report_metrics=("top1",), tuned=True, split_rule="held_out",
    protocol_version="2", paper="Table 1 (ImageNet attentive), Table 3 (part classification)",
    search_params=(*TRAIN_PARAMS, "num_heads", "eval_batch_stats"),
    search_defaults={"lr": {"type": "loguniform", "low": 0.001, "high": 0.1}}, variants=VARIANTS,
))  # fmt: skip
