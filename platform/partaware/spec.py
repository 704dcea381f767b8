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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from partaware.encoders.specs import EncoderSpec
from partaware.errors import PartawareError, SpecError, UnknownNameError
from partaware.storage import MAX_S3_ATTEMPTS, MAX_S3_TIMEOUT_S, S3Limits
from partaware.validation import format_validation_error, register_options_model  # noqa: F401  (re-exported)

SPEC_VERSION = 1
LEVELS = ("object", "part")
PAPER_SEGMENTATION_ITERATIONS = 160_000  # protocol §3.5
MAX_LIMIT = 10_000_000  # images per split a ``limit`` may name (more is every image of any dataset we know)
Level = Literal["object", "part"]


#: what heads of one linear trial may differ in: ``partaware.probes.linear.PER_HEAD_KEYS`` (kept here torch-free)
PER_HEAD_KEYS = ("lr", "weight_decay")


def task_names() -> list[str]:
    """The registered probe tasks (``partaware.probes.tasks``): the spec accepts exactly these."""
    from partaware.probes.tasks import task_names as names

    return names()


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
    #: linear probes only: this many sampled configurations trained as heads of one trial, in one pass over
    #: the data (``partaware.tune``; the per-trial overhead paid once); ASHA then stops whole trials
    heads_per_trial: int = Field(1, ge=1, le=64)


class DatasetRef(_Strict):
    """A dataset to prepare and use: a registered name, its source URI, converter options."""

    name: str
    source: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    #: this dataset's levels and tasks when they differ from the job's (ADE20K: segmentation only)
    levels: list[Level] | None = None
    tasks: list[str] | None = None
    #: at most this many images per split of this dataset (over the job's ``limit``); see ``JobSpec.limit``
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from partaware.datasets import DATASETS

        try:
            return DATASETS.resolve(name)
        except UnknownNameError as e:
            raise ValueError(str(e)) from None


class Resources(_Strict):
    """What each unit of Ray work asks the cluster for, whether or not such a node exists yet (an
    autoscaler adds one): an extraction *actor*, a probe search *trial*, a training *worker* (a lab
    pretraining task, a Ray Train worker of the paper's segmentation schedule). Memory is in GiB, 0 asks
    for none. Where the compute then runs is the spec's ``device``."""

    extract_batch_size: int = Field(64, ge=1)
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(2, ge=1)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    memory_per_actor: float = Field(0.0, ge=0)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    memory_per_trial: float = Field(0.0, ge=0)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    memory_per_worker: float = Field(0.0, ge=0)

    def gpu_fields(self) -> dict[str, float]:
        """The GPU requests by field name."""
        return {f"gpus_per_{unit}": getattr(self, f"gpus_per_{unit}") for unit in ("actor", "trial", "worker")}

    @model_validator(mode="after")
    def _pool(self) -> Resources:
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors ({self.min_actors}) exceeds max_actors ({self.max_actors})")
        return self


class StorageOptions(_Strict):
    """Bounded waits for the run's S3 calls (``partaware.storage.S3Limits``: seconds to connect, seconds
    between bytes, attempts per call). A value set here wins over its ``$PARTAWARE_S3_*`` variable for the
    run; one left out keeps the variable, else the default shown."""

    connect_timeout: float = Field(S3Limits.connect_timeout, gt=0, le=MAX_S3_TIMEOUT_S)
    read_timeout: float = Field(S3Limits.read_timeout, gt=0, le=MAX_S3_TIMEOUT_S)
    max_attempts: int = Field(S3Limits.max_attempts, ge=1, le=MAX_S3_ATTEMPTS)

    def overrides(self) -> dict[str, float]:
        """The values the spec set (``partaware.storage.s3_limits_applied`` applies them)."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Write only what the spec set: a saved or submitted spec, read again, still leaves the rest to the
        environment (a default written out would read back as a setting that overrides it)."""
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class JobSpec(_Strict):
    """One study: which encoders, on which datasets, at which levels, with which probes."""

    version: Literal[1] = SPEC_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    seed: int = Field(0, ge=0)
    #: the final fit of every tuned probe is repeated once per seed: results are mean +- std over them
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=20)
    #: add a random-initialisation control of each architecture in the job (labelled, never ranked)
    controls: bool = True
    #: smoke tests: at most this many images per split of every dataset (``partctl submit --limit N``), a
    #: deterministic, class-stratified subset published as its own dataset version (``datasets/subset.py``) that
    #: every stage reads; results name its version and record the limit. Unset: every image.
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT)
    storage: str | None = None
    datasets: list[DatasetRef] = Field(min_length=1)
    zoo: Literal["paper", "modern", "lab", "custom"] = "paper"  # what ``all`` and ``family:`` select from
    #: user encoders (timm arch + checkpoint URI + converter), registered before ``encoders`` is checked
    custom_encoders: list[EncoderSpec] = Field(default_factory=list)
    encoders: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    levels: list[Level] = Field(default_factory=lambda: list(LEVELS), min_length=1)
    tasks: list[str] = Field(default_factory=lambda: ["retrieval", "linear", "knn"], min_length=1)
    #: a task's input variant, by task (``attentive: cls+last-block``); the default is the protocol's
    variants: dict[str, str] = Field(default_factory=dict)
    search: dict[str, dict[str, SearchDim]] = Field(default_factory=dict)
    #: iterations of the paper's segmentation schedule (``variants: {segmentation: paper}``; unset: the paper's 160k)
    segmentation_iterations: int | None = Field(None, ge=1, le=10_000_000)
    search_settings: SearchSettings = Field(default_factory=SearchSettings)
    resources: Resources = Field(default_factory=Resources)
    #: the encoders the patch-retrieval gallery shows (unset: every encoder of the job); a readable figure
    #: and a shorter gallery stage for jobs with many encoders
    gallery_encoders: list[str] | None = Field(None, min_length=1)
    #: the named budget the job's live lab encoders pretrain under (``partaware.lab.presets``)
    lab_budget: str = "quickstart"
    #: where compute runs: ``auto`` (CUDA where the stage's resources include a GPU), ``cuda``, ``cpu``
    device: Literal["auto", "cuda", "cpu"] = "auto"
    #: extraction autocast: bf16 runs on CUDA and on CPUs; fp16 only on CUDA (in the feature key)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    #: S3 timeouts and attempts for this run (over ``$PARTAWARE_S3_*``); see ``StorageOptions``
    storage_options: StorageOptions = Field(default_factory=StorageOptions)

    @field_validator("lab_budget")
    @classmethod
    def _known_lab_budget(cls, name: str) -> str:
        from partaware.lab.presets import PRESETS

        if name not in PRESETS:
            raise ValueError(f"unknown lab budget {name!r}; valid: {', '.join(sorted(PRESETS))}")
        return name

    @field_validator("custom_encoders")
    @classmethod
    def _register_custom(cls, specs: list[EncoderSpec]) -> list[EncoderSpec]:
        from partaware.encoders.registry import register_custom_encoders

        try:
            register_custom_encoders(specs)
        except PartawareError as e:
            raise ValueError(str(e)) from None
        return specs

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers (got {seeds})")
        return seeds

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = [t for t in tasks if t not in task_names()]
        if unknown:
            raise ValueError(f"unknown probe task(s) {unknown}; valid: {', '.join(task_names())}")
        return list(dict.fromkeys(tasks))

    @model_validator(mode="after")
    def _runnable(self) -> JobSpec:
        """Every (task, dataset, level) of the spec can run, and every search and variant names a job task."""
        from partaware.datasets import DATASETS
        from partaware.probes.tasks import get_task

        for name, params in self.search.items():
            if name not in self.all_tasks():
                raise ValueError(f"search.{name}: not a task of this job (tasks: {', '.join(self.all_tasks())})")
            task = get_task(name)
            bad = task.unknown_search_params(list(params))
            if bad:
                raise ValueError(f"search.{name}: unknown parameter(s) {bad}; valid: {', '.join(task.search_params)}")
        for name, variant in self.variants.items():
            if name not in self.all_tasks():
                raise ValueError(f"variants.{name}: not a task of this job (tasks: {', '.join(self.all_tasks())})")
            valid = get_task(name).variants
            if variant not in valid:
                raise ValueError(f"variants.{name}: unknown variant {variant!r}; valid: {', '.join(valid) or 'none'}")
        paper_segmentation = self.variants.get("segmentation") == "paper"
        if paper_segmentation and "segmentation" in self.search:
            raise ValueError("search.segmentation: the paper's segmentation schedule (variants.segmentation: paper) "
                             "searches nothing; remove it or use the fast variant")  # fmt: skip
        if self.search_settings.heads_per_trial > 1:
            if "linear" not in self.all_tasks():
                raise ValueError("search_settings.heads_per_trial: only the linear probe trains several heads per "
                                 "trial, and this job has no linear task")  # fmt: skip
            searched = set(self.search.get("linear") or get_task("linear").search_defaults)
            if not searched <= set(PER_HEAD_KEYS):
                raise ValueError(f"search_settings.heads_per_trial: heads of one trial may differ only in "
                                 f"{', '.join(PER_HEAD_KEYS)}; search.linear also searches "
                                 f"{', '.join(sorted(searched - set(PER_HEAD_KEYS)))}")  # fmt: skip
        if self.segmentation_iterations is not None and not paper_segmentation:
            raise ValueError("segmentation_iterations: only the paper's schedule (variants: {segmentation: paper}) "
                             "counts iterations; the fast one trains epochs (search_settings.max_epochs)")  # fmt: skip
        for ref in self.datasets:
            extra = sorted(set(ref.tasks or ()) - set(task_names()))
            if extra:
                valid = ", ".join(task_names())
                raise ValueError(f"datasets.{ref.name}.tasks: unknown task(s) {extra}; valid: {valid}")
        problems = []
        for ref in self.datasets:
            problems += plan_problems(DATASETS.get(ref.name), self.tasks_of(ref), self.levels_of(ref))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _selectable(self) -> JobSpec:
        from partaware.encoders.registry import select_encoders

        try:
            chosen = select_encoders(self.encoders, zoo=self.zoo)
            shown = select_encoders(self.gallery_encoders or [], zoo=self.zoo)
        except UnknownNameError as e:
            raise PydanticCustomError("unknown_encoder", "encoders: {msg}", {"msg": str(e)}) from None
        stray = [n for n in shown if n not in chosen]
        if stray:
            raise ValueError(f"gallery_encoders: {', '.join(stray)} not among the job's encoders ({', '.join(chosen)})")
        return self

    def encoders_in_gallery(self) -> list[str]:
        """The encoders the gallery shows, in the job's order."""
        from partaware.encoders.registry import select_encoders

        chosen = self.resolved_encoders()
        if not self.gallery_encoders:
            return chosen
        shown = set(select_encoders(self.gallery_encoders, zoo=self.zoo))
        return [n for n in chosen if n in shown]

    @model_validator(mode="after")
    def _placeable(self) -> JobSpec:
        """``device`` and the GPU requests agree for every stage that runs; fp16 has a GPU to run on."""
        problems = device_problems(self.device, self.precision, self.resources, self.gpu_stages())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def paper_segmentation_iterations(self) -> int:
        """The paper schedule's iterations: the spec's, else the paper's 160k."""
        return self.segmentation_iterations or PAPER_SEGMENTATION_ITERATIONS

    def gpu_stages(self) -> dict[str, str]:
        """GPU request field -> the work of this job that uses it (extraction unless every task runs the encoder
        itself; trials only for tuned tasks; workers for lab pretraining and the paper's segmentation schedule)."""
        from partaware.probes.tasks import get_task

        out = {"gpus_per_actor": "extraction"} if any(self.extracted_tasks_of(ref) for ref in self.datasets) else {}
        if any(get_task(t).tuned and not self.encoder_in_the_loop(t) for t in self.all_tasks()):
            out["gpus_per_trial"] = "probe search trials"
        lab = any(e.startswith("lab/") for e in self.resolved_encoders())
        paper = self.variants.get("segmentation") == "paper"
        workers = [w for w, used in (("lab pretraining", lab), ("paper segmentation", paper)) if used]
        if workers:
            out["gpus_per_worker"] = " and ".join(workers)
        return out

    def encoder_in_the_loop(self, task: str) -> bool:
        """The task runs the encoder itself on images (the paper's segmentation schedule), so it reads no
        extracted features and the extract stage encodes nothing for it."""
        return task == "segmentation" and self.variants.get(task) == "paper"

    def extracted_tasks_of(self, ref: DatasetRef) -> list[str]:
        """The dataset's tasks that read extracted features."""
        return [t for t in self.tasks_of(ref) if not self.encoder_in_the_loop(t)]

    def levels_of(self, ref: DatasetRef) -> list[str]:
        return list(ref.levels or self.levels)

    def limit_of(self, ref: DatasetRef) -> int | None:
        """Images per split this dataset is cut to (its own ``limit`` wins over the job's; None: all)."""
        return ref.limit if ref.limit is not None else self.limit

    def tasks_of(self, ref: DatasetRef) -> list[str]:
        return list(ref.tasks or self.tasks)

    def all_tasks(self) -> list[str]:
        """Every task some dataset of the job runs, in the job's order."""
        return list(dict.fromkeys(t for ref in self.datasets for t in self.tasks_of(ref)))

    def plan(self) -> list[tuple[str, str, str]]:
        """(dataset, level, task) triples the probe stage runs, in order."""
        return [(ref.name, level, task) for ref in self.datasets for level in self.levels_of(ref)
                for task in self.tasks_of(ref)]  # fmt: skip

    def resolved_encoders(self) -> list[str]:
        """The study's encoders (what is ranked), controls excluded."""
        from partaware.encoders.registry import select_encoders

        return select_encoders(self.encoders, zoo=self.zoo)

    def control_encoders(self) -> list[str]:
        """The random-initialisation controls the job adds: one per architecture of its encoders."""
        if not self.controls:
            return []
        from partaware.encoders.controls import control_name
        from partaware.encoders.registry import ENCODERS

        specs = [ENCODERS.get(n) for n in self.resolved_encoders()]
        return list(dict.fromkeys(control_name(s) for s in specs if s.weights.kind != "random"))

    def job_encoders(self) -> list[str]:
        """Every encoder the job extracts and probes: the study's, then the controls."""
        return [*self.resolved_encoders(), *self.control_encoders()]


def device_problems(device: str, precision: str, resources: Resources, used: dict[str, str]) -> list[str]:
    """Why ``device``/``precision`` cannot run with these GPU requests, one sentence each (empty: they can).

    ``used``: GPU request field -> the work that uses it (``JobSpec.gpu_stages``)."""
    gpus = resources.gpu_fields()
    if device == "cpu":
        asked = [f"resources.{f} is {gpus[f]:g}" for f in gpus if gpus[f] > 0]
        problems = [f"device cpu asks Ray for no GPU, but {', '.join(asked)}: set them to 0 or use device auto"
                    ] if asked else []  # fmt: skip
    else:
        bare = {f: what for f, what in used.items() if device == "cuda" and gpus[f] <= 0}
        problems = [f"device cuda: {', '.join(bare.values())} would run without a GPU (resources."
                    f"{', '.join(bare)} 0): give each a GPU or use device auto"] if bare else []  # fmt: skip
    if precision == "fp16" and (device == "cpu" or gpus["gpus_per_actor"] <= 0):
        problems.append("precision fp16 runs only on CUDA: give extraction a GPU (resources.gpus_per_actor) "
                        "with device auto or cuda, or use bf16 (CPUs too) or fp32")  # fmt: skip
    return problems


def plan_problems(entry: Any, tasks: list[str], levels: list[str]) -> list[str]:
    """Why a task cannot run on a dataset at a level, one sentence each (empty: all can run)."""
    from partaware.probes.tasks import get_task, tasks_for

    problems = []
    for level in levels:
        if level not in entry.levels:
            problems.append(f"dataset {entry.name} has no {level} level (it has: {', '.join(entry.levels)})")
            continue
        for name in tasks:
            task = get_task(name)
            if not task.runs_on(entry):
                valid = ", ".join(tasks_for(entry)) or "none"
                problems.append(f"task {name} cannot run on dataset {entry.name} at level {level}: it needs "
                                f"{task.needs_text()} (tasks for {entry.name}: {valid})")  # fmt: skip
            elif level not in task.levels:
                problems.append(f"task {name} has no {level} level (levels: {', '.join(task.levels)})")
    return problems


register_options_model(JobSpec)


def parse_spec(data: Any, *, source: str = "<spec>") -> JobSpec:
    """Validate a spec mapping; ``SpecError`` (one line) on any problem.

    Complete before any Ray process or run folder exists: the model, then each dataset's converter
    options (typed by the converter's own model) and the bounds on sizes and counts.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a job spec must be a YAML mapping, got {type(data).__name__}")
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(source, e)) from None
    except PartawareError as e:  # a validator's own error (an unknown encoder or dataset)
        raise SpecError(f"{source}: invalid job spec: {e}") from None
    except RecursionError:
        raise SpecError(f"{source}: invalid job spec: nested too deeply") from None
    check_dataset_refs(spec, source)
    check_spec_bounds(spec, source)
    return spec


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML spec (bounded size, no anchors or aliases: specs never run code or expand), apply
    overrides, validate."""
    path = Path(path)
    data = load_yaml_text(read_spec_text(path), source=str(path))
    if isinstance(data, dict) and overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return parse_spec(data, source=str(path))


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML, saved beside every run's results (no anchors: ``load_spec`` refuses them)."""
    return yaml.dump(
        spec.model_dump(mode="json", exclude_none=True), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True
    )


# --- reading specs safely -----------------------------------------------------------------------

#: A spec names datasets, encoders and settings; anything larger is a mistake (or an attack).
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_DEPTH = 32
MAX_SPEC_NODES = 200_000


def read_spec_text(path: Path) -> str:
    """The spec file's text: ``SpecError`` naming the file for a folder, an unreadable, oversized or
    non-UTF-8 file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such job spec") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a folder, not a job spec; pass a .yaml file") from None
    except OSError as e:
        why = e.strerror or e
        raise SpecError(f"{path}: cannot read the job spec ({why}); check the path and its permissions") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: job spec is larger than {MAX_SPEC_BYTES >> 20} MiB; a spec names data, it holds none")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        byte = f"byte {raw[e.start]:#04x} at offset {e.start}"
        raise SpecError(f"{path}: line {line}: not UTF-8 text ({byte}); save the spec as UTF-8") from None


class _RefusedYAML(yaml.MarkedYAMLError):
    """YAML that is valid but refused in a spec (an anchor or alias, too deep, too many nodes)."""


class _SpecLoader(yaml.SafeLoader):
    """``SafeLoader`` without anchors or aliases (a few lines of aliases expand to gigabytes once dumped or
    validated), with bounded nesting and node count."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            sign = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            _refuse(event, f"YAML {sign}{event.anchor} refused: job specs may not use anchors or aliases; write it out")
        self._nodes += 1
        if self._nodes > MAX_SPEC_NODES:
            _refuse(event, f"refused: more than {MAX_SPEC_NODES} values")
        self._depth += 1
        try:
            if self._depth > MAX_SPEC_DEPTH:
                _refuse(event, f"refused: nested deeper than {MAX_SPEC_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _refuse(event: yaml.Event, problem: str) -> None:
    raise _RefusedYAML(problem=problem, problem_mark=event.start_mark)


def load_yaml_text(text: str, *, source: str) -> Any:
    """YAML from user input (a spec, a ``--set`` value) with ``_SpecLoader``: ``SpecError`` naming the
    place on any problem."""
    loader = _SpecLoader(text)
    try:
        return loader.get_single_data()
    except _RefusedYAML as e:
        raise SpecError(f"{source}:{_where(e)} {e.problem}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{source}:{_where(e)} not valid YAML: {getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()


def _where(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    return f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""


class _NoAliasDumper(yaml.SafeDumper):
    """Write every value out: a shared object would otherwise come back as an anchor the loader refuses."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# --- checks after the model ---------------------------------------------------------------------


def check_dataset_refs(spec: JobSpec, source: str) -> None:
    """Each dataset's options typed by its converter's model, and a source where one is needed (no torch)."""
    from partaware.datasets import DATASETS, options_model

    for i, ref in enumerate(spec.datasets):
        entry = DATASETS.get(ref.name)
        if entry.generated and ref.source:
            raise SpecError(
                f"{source}: invalid job spec: datasets.{i}.source: {ref.name} is generated and takes no source "
                f"(got {ref.source!r}); remove it"
            )
        if not entry.generated and not ref.source:
            raise SpecError(
                f"{source}: invalid job spec: datasets.{i}.source: dataset {ref.name} needs a source "
                f"(expected: {entry.source}); set it to a folder, an archive or a URI such as s3://..."
            )
        try:
            options_model(ref.name)(**ref.options)
        except ValidationError as e:
            raise SpecError(format_validation_error(source, e, prefix=f"datasets.{i}.options.")) from None


#: (what, value of the spec, most allowed) for what the model leaves open: a typo of 10**9 is refused here.
def _bounded_values(spec: JobSpec) -> list[tuple[str, float, float]]:
    res, search = spec.resources, spec.search_settings
    grid = 1
    for dims in spec.search.values():
        for dim in dims.values():
            if dim.type == "grid":
                grid *= len(dim.values or ())
    values = [
        ("datasets", len(spec.datasets), 64),
        ("encoders", len(spec.encoders), 1024),
        ("custom_encoders", len(spec.custom_encoders), 1024),
        ("description (characters)", len(spec.description), 20_000),
        ("storage (characters)", len(spec.storage or ""), 4096),
        ("resources.extract_batch_size", res.extract_batch_size, 65_536),
        ("resources.max_actors", res.max_actors, 4096),
        ("resources.cpus_per_actor", res.cpus_per_actor, 1024),
        ("resources.gpus_per_actor", res.gpus_per_actor, 64),
        ("resources.cpus_per_trial", res.cpus_per_trial, 1024),
        ("resources.gpus_per_trial", res.gpus_per_trial, 64),
        ("resources.cpus_per_worker", res.cpus_per_worker, 1024),
        ("resources.gpus_per_worker", res.gpus_per_worker, 64),
        ("resources.memory_per_actor (GiB)", res.memory_per_actor, 65_536),
        ("resources.memory_per_trial (GiB)", res.memory_per_trial, 65_536),
        ("resources.memory_per_worker (GiB)", res.memory_per_worker, 65_536),
        ("search_settings.grace_period", search.grace_period, search.max_epochs),
        ("search_settings.reduction_factor", search.reduction_factor, 1000),
        ("trials per task (num_samples x grid size)", search.num_samples * grid, 100_000),
    ]
    values += [(f"datasets.{i}.source (characters)", len(r.source or ""), 4096) for i, r in enumerate(spec.datasets)]
    for task, dims in spec.search.items():
        values += [(f"search.{task}.{name}.values", len(d.values or ()), 10_000) for name, d in dims.items()]
    return values


def check_spec_bounds(spec: JobSpec, source: str) -> None:
    """Sizes and counts within sane bounds (``SpecError`` naming the field and the bound)."""
    over = [f"{what}: {_num(value)} is above the limit {_num(limit)}" for what, value, limit in _bounded_values(spec)
            if value > limit]  # fmt: skip
    if over:
        raise SpecError(f"{source}: invalid job spec: " + "; ".join(over))


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_local_sources(spec: JobSpec) -> None:
    """Every local dataset source exists: a run here reads them, so a typo fails before Ray starts
    (URIs are checked when opened; on a cluster, paths are the nodes')."""
    import os

    for i, ref in enumerate(spec.datasets):
        if not ref.source or ("://" in ref.source and not ref.source.startswith("file://")):
            continue
        path = os.path.abspath(os.path.expanduser(ref.source.removeprefix("file://")))
        if not os.path.exists(path):
            raise SpecError(f"job {spec.name}: datasets.{i}.source: {path} does not exist; check the path")
