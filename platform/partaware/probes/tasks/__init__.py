"""The registered probe tasks, one module each; importing this package registers them all.

Add a task: one module here declaring a ``ProbeTask`` (subclass it where its features or taps differ)
and registering it with ``register_task``, plus its import below; the spec, the extract stage, the probe
plan, the report and the tests parametrised over ``PROBE_TASKS`` pick it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from partaware.probes.task import PROBE_TASKS, ProbeTask, register_task
from partaware.probes.tasks import attentive, knn, linear, retrieval, segmentation  # noqa: F401  (registration)

if TYPE_CHECKING:
    from partaware.encoders.specs import EncoderSpec

__all__ = ["PROBE_TASKS", "ProbeTask", "get_task", "job_taps", "register_task", "task_names", "tasks_for"]


def task_names() -> list[str]:
    return PROBE_TASKS.names()


def get_task(name: str) -> ProbeTask:
    return PROBE_TASKS.get(name)


def tasks_for(dataset: Any) -> tuple[str, ...]:
    """The registered tasks a dataset entry can feed (``ProbeTask.runs_on``)."""
    return tuple(n for n in PROBE_TASKS.names() if PROBE_TASKS.get(n).runs_on(dataset))


def job_taps(encoder: EncoderSpec, tasks: Sequence[str], variants: dict[str, str] | None = None) -> list[str]:
    """Every tap the job's tasks read from ``encoder``, in a stable order (the feature key depends on it)."""
    depth = int(encoder.arch_kwargs.get("depth", 12))
    wanted = {t for name in tasks for t in get_task(name).taps(encoder, depth, (variants or {}).get(name))}
    base = [t for t in ("cls", "mean", "proj", "tokens") if t in wanted or t in ("cls", "mean")]
    patches = sorted((t for t in wanted if t.startswith("patch:")), key=lambda t: int(t[6:]))
    return base + patches
