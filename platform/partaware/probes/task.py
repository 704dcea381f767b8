"""What a probe task is to the platform: one declaration that the spec, the extract stage, the probe
plan and the report all read (the way lm-evaluation-harness declares its tasks).

A ``ProbeTask`` says which taps of an encoder it reads and which of them it scores (each scored feature
is one result), which dataset kind it needs (``regions``: box regions or keypoint patches; ``label_maps``:
per-pixel labels), at which levels it runs, how it splits data (``gallery``: every item of the
dataset's gallery splits, nothing held out; ``held_out``: hyperparameters selected on data carved from
train, the dataset's held-out split scored once), its primary metric, whether it is searched, the
search parameters it accepts and their defaults, its protocol version (in every result and every probe
cache key) and its report columns.

This module and the task modules import no torch: the spec validates and ``partctl validate`` plans
with them. Tasks register themselves by import of ``partaware.probes.tasks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from partaware.registry import Registry

if TYPE_CHECKING:
    from partaware.encoders.specs import EncoderSpec

NEEDS = ("regions", "label_maps")
SPLIT_RULES = ("gallery", "held_out")
#: Settings every trained head accepts (``partaware.probes.training.TrainConfig``).
TRAIN_PARAMS = ("lr", "weight_decay", "epochs", "batch_size", "optimizer", "momentum", "schedule", "warmup_epochs",
                "eval_batch_size")  # fmt: skip


@dataclass(frozen=True)
class ProbeTask:
    """A registered probe task (subclass and override ``features``/``taps`` for what differs)."""

    name: str
    summary: str
    needs: str
    metric: str  # the primary metric's key in a record's ``metrics`` (percent)
    report_metrics: tuple[str, ...]  # every metric the report shows, primary first
    tuned: bool
    split_rule: str
    protocol_version: str
    paper: str  # where the paper uses it
    levels: tuple[str, ...] = ("object", "part")
    higher_is_better: bool = True
    search_params: tuple[str, ...] = ()
    search_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    variants: tuple[str, ...] = ()  # named input variants (the first is the default), recorded in results
    compute: str = ""  # the probe compute it runs (``partaware.probes.fit``); default: its own name

    def __post_init__(self) -> None:
        if self.needs not in NEEDS or self.split_rule not in SPLIT_RULES:
            raise ValueError(f"task {self.name}: needs must be one of {NEEDS}, split_rule one of {SPLIT_RULES}")
        if self.metric != self.report_metrics[0]:
            raise ValueError(f"task {self.name}: the primary metric must be the first report metric")

    @property
    def computes(self) -> str:
        return self.compute or self.name

    def runs_on(self, dataset: Any) -> bool:
        """Whether a dataset entry can feed this task: its ``kinds`` offer what the task ``needs``."""
        return self.needs in dataset.kinds

    def needs_text(self) -> str:
        """What ``runs_on`` asks of a dataset, in words (validation errors name it)."""
        return self.needs.replace("_", " ")

    def features(self, encoder: EncoderSpec, variant: str | None = None) -> tuple[str, ...]:
        """The features scored for ``encoder`` (each one result); the default is the CLS token."""
        return ("cls",)

    def taps(self, encoder: EncoderSpec, depth: int, variant: str | None = None) -> tuple[str, ...]:
        """The extraction taps this task reads from ``encoder``'s feature set."""
        return ("cls",)

    def unknown_search_params(self, names: Sequence[str]) -> list[str]:
        return sorted(set(names) - set(self.search_params))


PROBE_TASKS: Registry[ProbeTask] = Registry("probe task")


def register_task(task: ProbeTask) -> ProbeTask:
    PROBE_TASKS.register(task.name, task)
    return task
