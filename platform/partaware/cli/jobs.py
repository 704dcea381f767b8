"""``partctl validate`` and ``partctl submit``: job specs in, runs out."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import deprecated, print_json, print_table
from partaware.errors import SpecError
from partaware.progress import console, progress_bar
from partaware.runs.cluster import jobs_address
from partaware.spec import JobSpec, check_local_sources, load_yaml_text

_PROJECT_JOBS = Path(__file__).resolve().parents[3] / "jobs"


def find_spec(name_or_path: str) -> Path:
    """A spec file by path, or by bare name in ``./jobs`` or the project's ``jobs/`` folder."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    for folder in (Path.cwd() / "jobs", _PROJECT_JOBS):
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.exists():
            return candidate
    known = sorted(
        {p.stem for folder in (Path.cwd() / "jobs", _PROJECT_JOBS) if folder.is_dir() for p in folder.glob("*.yaml")}
    )
    raise SpecError(f"no job spec {name_or_path!r} (a path, or one of: {', '.join(known) or 'none found'})")


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: str | None) -> list[int] | None:
    try:
        return [int(v) for v in _split(value)] if value else None
    except ValueError:
        raise SpecError(f"--seeds {value!r}: expected a comma list of integers such as 0,1,2") from None


def _sources(pairs: list[str]) -> dict[str, str]:
    """``--source NAME=URI`` pairs by canonical dataset name."""
    from partaware.datasets import DATASETS

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, uri = pair.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise SpecError(f"--source {pair!r}: expected NAME=URI (a folder, an archive or a URI such as s3://...)")
        out[DATASETS.resolve(name.strip())] = uri.strip()
    return out


def spec_with_overrides(
    spec_arg: str,
    *,
    encoders: str | None = None,
    datasets: str | None = None,
    levels: str | None = None,
    storage: str | None = None,
    zoo: str | None = None,
    tasks: str | None = None,
    seeds: str | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> JobSpec:
    """Load a spec, apply command-line overrides (flags win) and resolve its encoders to names; validated whole.

    ``--datasets`` keeps each named dataset's entry from the spec (source, options); ``--source NAME=URI`` sets a
    dataset's source; ``--limit N`` sets the job's ``limit`` (images per split; a dataset's own limit stays).
    ``--device cpu`` also sets every GPU request of the spec to 0 (CPU compute asks for none).
    Encoder selectors that name a timm pretrained tag become ``custom_encoders`` entries
    (``encoders/timm_tags.py``). The returned spec lists its encoders by name (``all`` and ``family:`` resolved),
    which is what ``spec.yaml`` records and what a resumed run is matched on.
    """
    from partaware.datasets import DATASETS
    from partaware.spec import parse_spec, read_spec_text

    path = find_spec(spec_arg)
    source = str(path)
    data = load_yaml_text(read_spec_text(path), source=source)
    if not isinstance(data, dict):
        return parse_spec(data, source=source)  # the one-line "must be a mapping" error
    overrides = {"encoders": _split(encoders), "levels": _split(levels), "storage": storage, "zoo": zoo,
                 "tasks": _split(tasks), "seeds": _seeds(seeds), "limit": limit}  # fmt: skip
    data.update({k: v for k, v in overrides.items() if v is not None})
    _apply_device(data, device, precision)
    refs = [dict(d) if isinstance(d, dict) else d for d in data.get("datasets") or []]
    if datasets:
        by_name = {_canonical(d.get("name")): d for d in refs if isinstance(d, dict)}
        refs = [by_name.get(DATASETS.resolve(n), {"name": n}) for n in _split(datasets)]
    by_source = _sources(sources or [])
    for name, uri in by_source.items():
        ref = next((d for d in refs if isinstance(d, dict) and _canonical(d.get("name")) == name), None)
        if ref is None:
            names = ", ".join(str(d.get("name")) for d in refs if isinstance(d, dict))
            raise SpecError(f"--source {name}=...: {name} is not a dataset of this job (datasets: {names})")
        ref["source"] = uri
    _require_sources(refs, source)
    data["datasets"] = refs
    data["encoders"], data["custom_encoders"] = _timm_selectors(data)
    if (encoders is not None or zoo is not None) and data.get("gallery_encoders"):
        _narrow_gallery(data)
    job = parse_spec(data, source=source)
    resolved = job.resolved_encoders()
    if resolved and resolved != job.encoders:
        job = parse_spec({**data, "encoders": resolved}, source=source)
    return job


def _narrow_gallery(data: dict) -> None:
    """``--encoders``/``--zoo`` keep only the spec's ``gallery_encoders`` still in the job (every encoder when
    none is), so a spec's gallery choice never blocks another selection on the command line."""
    from partaware.encoders.registry import select_encoders

    try:
        chosen = set(select_encoders(data["encoders"], zoo=data.get("zoo", "paper")))
        kept = [g for g in select_encoders(data["gallery_encoders"], zoo=data.get("zoo", "paper")) if g in chosen]
    except Exception:  # noqa: BLE001 (an unknown or custom name: the spec's validation reports the encoders)
        kept = []
    if kept:
        data["gallery_encoders"] = kept
    else:
        data.pop("gallery_encoders")


def _apply_device(data: dict, device: str | None, precision: str | None) -> None:
    """``--device``/``--precision`` into the spec; ``--device cpu`` drops the spec's GPU requests with it."""
    for flag, value, valid in (("--device", device, ("auto", "cuda", "cpu")), ("--precision", precision,
                                                                                ("fp32", "bf16", "fp16"))):  # fmt: skip
        if value is not None and value not in valid:
            raise SpecError(f"{flag} {value!r}: expected one of {', '.join(valid)}")
    if precision is not None:
        data["precision"] = precision
    if device is None:
        return
    data["device"] = device
    resources = data.get("resources")
    if device == "cpu" and isinstance(resources, dict):
        data["resources"] = {**resources, **{f"gpus_per_{u}": 0 for u in ("actor", "trial", "worker")}}


def _canonical(name) -> str | None:
    from partaware.datasets import DATASETS

    try:
        return DATASETS.resolve(str(name))
    except Exception:  # noqa: BLE001 (an unknown name: the spec's validation names it)
        return None


def _require_sources(refs: list, source: str) -> None:
    """Every dataset that is not generated has a source: the error names the flag that gives one."""
    from partaware.datasets import DATASETS

    for i, ref in enumerate(refs):
        name = _canonical(ref.get("name")) if isinstance(ref, dict) else None
        if name is None or ref.get("source"):
            continue
        entry = DATASETS.get(name)
        if not entry.generated:
            raise SpecError(
                f"{source}: datasets.{i}.source: dataset {name} needs a source (expected: {entry.source}); "
                f"give it with --source {name}=URI or in the spec"
            )


def _timm_selectors(data: dict) -> tuple[list, list]:
    """The spec's encoders with timm-tag selectors replaced by their ``custom_encoders`` entries' names."""
    from partaware.encoders.timm_tags import looks_like_timm_tag, timm_encoder

    selectors = data.get("encoders") or ["all"]
    custom = list(data.get("custom_encoders") or [])
    if not isinstance(selectors, list) or not isinstance(custom, list):
        return selectors, custom  # the spec's validation says what is wrong
    declared = {c.get("name") for c in custom if isinstance(c, dict)} | {
        a for c in custom if isinstance(c, dict) for a in c.get("aliases") or ()
    }
    out = []
    for sel in selectors:
        if isinstance(sel, str) and sel not in declared and looks_like_timm_tag(sel.strip()):
            entry = timm_encoder(sel.strip())
            if entry["name"] not in {c.get("name") for c in custom if isinstance(c, dict)}:
                custom.append(entry)
                console.print(f"encoder {entry['name']}: a timm tag, family {entry['family']} (another: "
                              f"--encoders {entry['arch']}@<family>)", highlight=False)  # fmt: skip
            sel = entry["name"]
        out.append(sel)
    return out, custom


def plan_json(job: JobSpec) -> dict:
    """What ``validate --json`` and ``submit --dry-run --json`` print (keys documented in the README)."""
    encoders, controls = job.resolved_encoders(), job.control_encoders()
    return {
        "name": job.name,
        "zoo": job.zoo,
        "datasets": [
            {
                "name": d.name,
                "source": d.source,
                "levels": job.levels_of(d),
                "tasks": job.tasks_of(d),
                "limit": job.limit_of(d),
            }
            for d in job.datasets
        ],  # fmt: skip
        "encoders": encoders,
        "controls": controls,
        "seeds": list(job.seeds),
        "limit": job.limit,
        "plan": [dict(zip(PLAN_COLUMNS, row, strict=True)) for row in plan_rows(job)],
        "work": work_estimate(job),
    }


def work_estimate(job: JobSpec) -> dict[str, int]:
    """Units of work the job implies (each cached one costs nothing on a rerun)."""
    from partaware.probes.tasks import get_task

    n_enc = len(job.job_encoders())
    feature_sets = sum(len({get_task(t).needs for t in job.extracted_tasks_of(d)}) for d in job.datasets) * n_enc
    searched = [t for _, _, t in job.plan() if not job.encoder_in_the_loop(t)]
    tuned = sum(1 for t in searched if get_task(t).tuned) * n_enc
    return {
        "feature_sets": feature_sets,
        "probes": len(job.plan()) * n_enc,
        "tuned_probes": tuned,
        "trials": tuned * job.search_settings.num_samples,
        "final_fits": tuned * len(job.seeds),
        "encoder_in_the_loop_runs": (len(job.plan()) - len(searched)) * n_enc * len(job.seeds),
    }


@app.command()
def validate(
    spec: str = typer.Argument(..., help="Job spec: a YAML path, or a name in jobs/."),
    json_: bool = typer.Option(False, "--json", help="Print the resolved plan as JSON on stdout (keys: README)."),
) -> None:
    """Validate a job spec and print what it resolves to (the plan on stdout)."""
    job = spec_with_overrides(spec)
    if json_:
        print_json(plan_json(job))
        return
    print_plan(job)


def print_plan(job: JobSpec) -> None:
    """The resolved spec in words on stderr, the plan table on stdout."""
    encoders = job.resolved_encoders()
    console.print(f"[green]valid[/green]: {job.name}", highlight=False)
    console.print(f"  datasets: {', '.join(d.name for d in job.datasets)}", highlight=False)
    if any(job.limit_of(d) is not None for d in job.datasets):
        cuts = ", ".join(f"{d.name} {job.limit_of(d) or 'all'}" for d in job.datasets)
        console.print(f"  limit: images per split ({cuts}): a smoke test on a fixed class-stratified subset",
                      highlight=False)  # fmt: skip
    console.print(f"  encoders: {', '.join(encoders) or '(none registered)'}", highlight=False)
    console.print(f"  controls: {', '.join(job.control_encoders()) or 'none'}; seeds: {job.seeds}", highlight=False)
    work = work_estimate(job)
    runs = work["encoder_in_the_loop_runs"]
    in_loop = f"; {runs} paper segmentation runs, encoder in the loop" if runs else ""
    console.print(
        f"  work: {work['feature_sets']} feature sets, {work['probes']} probes ({work['tuned_probes']} tuned: "
        f"{work['trials']} trials, {work['final_fits']} final fits{in_loop}); cached ones cost nothing",
        highlight=False,
    )
    console.print(f"  compute: {compute_line(job)}", highlight=False)
    print_table(plan_table(job, encoders))


def compute_line(job: JobSpec) -> str:
    """What the job asks of the cluster and where it computes, in words."""
    res, units = job.resources, {"gpus_per_actor": "actor", "gpus_per_trial": "trial", "gpus_per_worker": "worker"}
    asks = [f"{what} {getattr(res, f):g} GPU per {units[f]}" for f, what in job.gpu_stages().items()]
    return f"device {job.device}, precision {job.precision}; asks {'; '.join(asks)}"


PLAN_COLUMNS = ("dataset", "level", "task", "scored_on", "metric", "search", "variant")


def plan_rows(job: JobSpec) -> list[tuple[str, ...]]:
    """One row per (dataset, level, task): its split rule, metric, search and variant."""
    from partaware.datasets import DATASETS
    from partaware.probes.tasks import get_task

    rows = []
    for dataset, level, name in job.plan():
        task, entry = get_task(name), DATASETS.get(dataset)
        scored = (f"{entry.held_out} (held out)" if task.split_rule == "held_out"
                  else f"{','.join(entry.gallery) if entry.gallery else 'all'} (gallery)")  # fmt: skip
        space = job.search.get(name) or task.search_defaults
        variant = job.variants.get(name) or (task.variants[0] if task.variants else "-")
        search = f"{job.search_settings.num_samples} x {','.join(space) or 'fixed'}" if task.tuned else "-"
        if name == "segmentation" and variant == "paper":  # the paper's fixed schedule: nothing searched
            search = f"none: {job.paper_segmentation_iterations} iterations, lr 4e-4"
        rows.append((dataset, level, name, scored, task.metric, search, variant))
    return rows


def plan_table(job: JobSpec, encoders: list[str]) -> Table:
    """The probe plan: one row per (dataset, level, task) with its split rule and search, x every encoder."""
    table = Table(title=f"plan: {len(job.plan())} (dataset, level, task) x {len(encoders)} encoders")
    for col in PLAN_COLUMNS:
        table.add_column(col.replace("_", " "), no_wrap=True)
    for row in plan_rows(job):
        table.add_row(*row)
    return table


@app.command()
def submit(
    spec: str = typer.Argument("quickstart", help="Job spec: a YAML path, or a name in jobs/."),
    encoders: str = typer.Option(
        None, help="all | family:<f> | comma list of names or timm tags (arch.tag, arch.tag@family); overrides spec."
    ),
    datasets: str = typer.Option(None, help="Comma list of dataset names (overrides the spec)."),
    dataset: str = typer.Option(None, "--dataset", hidden=True, help="Deprecated spelling of --datasets."),
    source: list[str] = typer.Option(
        [], "--source", help="A dataset's source, NAME=URI (folder, archive or s3://...); repeatable."
    ),
    levels: str = typer.Option(None, help="object,part (overrides the spec)."),
    tasks: str = typer.Option(None, help="Comma list of probe tasks (overrides the spec)."),
    seeds: str = typer.Option(None, help="Comma list of seeds for the final fits, e.g. 0,1,2 (overrides the spec)."),
    zoo: str = typer.Option(None, help="Zoo that `all` and `family:` select from: paper, modern, lab, custom."),
    storage: str = typer.Option(None, help="Storage root (overrides the spec and $PARTAWARE_STORAGE)."),
    limit: int = typer.Option(
        None, "--limit", min=1, help="Smoke test: at most N images per split of each dataset (a fixed subset)."
    ),
    device: str = typer.Option(
        None,
        help="auto | cuda | cpu: where compute runs (auto: CUDA where a stage asks for GPUs; cpu also sets "
        "the spec's GPU requests to 0). Overrides the spec.",
    ),
    precision: str = typer.Option(None, help="fp32 | bf16 | fp16: extraction autocast (fp16 on CUDA only)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate, print the resolved plan and the run it would resume; start nothing."
    ),
    json_: bool = typer.Option(False, "--json", help="With --dry-run: the plan as JSON on stdout (keys: README)."),
    address: str = typer.Option(
        None,
        help="Ray Jobs address of a cluster (http://<head>:8265; default $RAY_ADDRESS if http). "
        "Without one, the job runs here on an embedded local Ray.",
    ),
    resume: str = typer.Option(None, help="Resume this run id (default: the newest unfinished run of the same spec)."),
    new: bool = typer.Option(False, "--new", help="Start a new run even if an unfinished one of this spec exists."),
    in_cluster: bool = typer.Option(False, "--in-cluster", hidden=True, help="Run the driver on the cluster it is in."),
    run_id: str = typer.Option(None, "--run-id", hidden=True, help="Run id to create or resume (Ray Jobs entrypoint)."),
) -> None:
    """Run a job: its stages in order, each skipped when its output already exists.

    With no address the job runs here and this command follows it to the end (exit code 0 when it
    succeeds; Ctrl-C leaves a run that the next submit resumes). With --address it is handed to the
    cluster through Ray Jobs; the command prints the job id and returns. The run's spec.yaml records
    the spec as resolved here (flags applied, encoders by name).
    """
    if dataset is not None:
        deprecated("--dataset", "--datasets")
    if json_ and not dry_run:
        raise SpecError("--json: only with --dry-run (a run's state as JSON: partctl status RUN --json)")
    job = spec_with_overrides(spec, encoders=encoders, datasets=dataset or datasets, levels=levels, storage=storage,
                              zoo=zoo, tasks=tasks, seeds=seeds, sources=source, limit=limit, device=device,
                              precision=precision)  # fmt: skip
    remote = None if in_cluster else jobs_address(address)
    if dry_run:
        _dry_run(job, storage=storage, remote=remote, resume=resume or run_id, new=new, as_json=json_)
        return
    console.print(
        f"[bold]job[/bold] {job.name}: datasets {', '.join(d.name for d in job.datasets)}; "
        f"encoders {', '.join(job.resolved_encoders()) or '(none registered)'}; levels {', '.join(job.levels)}",
        highlight=False,
    )
    from partaware.storage import s3_limits_applied

    # the spec's S3 limits hold from the storage check on, and travel with a submitted job (FORWARDED_ENV)
    with s3_limits_applied(job.storage_options.overrides()):
        if remote:
            _submit_remote(job, remote, storage=storage, resume=resume)
        else:
            _run_here(job, storage=storage, resume=resume or run_id, new=new, attach=in_cluster, create=bool(run_id))


def _dry_run(job: JobSpec, *, storage: str | None, remote: str | None, resume: str | None, new: bool,
             as_json: bool) -> None:  # fmt: skip
    """Everything submit checks before starting work, then the plan; no Ray, no run folder, no cluster call."""
    from partaware.runs.folders import find_resumable, read_run
    from partaware.storage import StorageRoot, resolve_storage_uri

    where = f"on the cluster at {remote}" if remote else "here, on an embedded local Ray"
    if remote:
        root_uri, run = resolve_storage_uri(storage or job.storage), resume
    else:
        check_local_sources(job)
        root = StorageRoot.open(storage or job.storage)
        root_uri = root.uri
        job = job.model_copy(update={"storage": root.uri})
        if resume:
            read_run(root, resume)  # an unknown run id fails here, listing the known ones
        run = resume or (None if new else find_resumable(root, job))
    if as_json:
        print_json({**plan_json(job), "storage": root_uri, "runs_on": remote or "local", "resume": run})
        return
    print_plan(job)
    console.print(f"dry run: would run {where}, storage {root_uri}; "
                  f"{f'resuming run {run}' if run else 'a new run'}; nothing was started", highlight=False)  # fmt: skip


def _submit_remote(job: JobSpec, address: str, *, storage: str | None, resume: str | None) -> None:
    """Hand the job to a cluster: upload the package and the resolved spec, print the job id, return."""
    import tempfile

    from partaware.runs.cluster import JobsCluster, driver_entrypoint, job_runtime_env
    from partaware.runs.driver import new_run_id
    from partaware.spec import dump_spec
    from partaware.storage import resolve_storage_uri

    cluster = JobsCluster(address)
    root_uri = resolve_storage_uri(storage or job.storage)
    job = job.model_copy(update={"storage": root_uri})
    run_id = resume or new_run_id(job)
    known = set(cluster.job_ids())
    job_id, attempt = run_id, 1
    while job_id in known:  # a resumed run gets a fresh job id per attempt
        attempt += 1
        job_id = f"{run_id}-attempt{attempt}"
    with tempfile.TemporaryDirectory(prefix="partaware-job-") as tmp:
        (Path(tmp) / "spec.yaml").write_text(dump_spec(job))
        job_id = cluster.submit(
            driver_entrypoint("spec.yaml", run_id=run_id),
            runtime_env=job_runtime_env(Path(tmp)),
            job_id=job_id,
            metadata={"partaware_run": run_id, "spec": job.name},
        )
    console.print(f"submitted job [bold]{job_id}[/bold] (run {run_id}) to {address}", highlight=False)
    if "://" not in root_uri:
        console.print(f"  storage {root_uri} is a path on the cluster's nodes", highlight=False)
    console.print(f"  follow: partctl logs {job_id} --follow --address {address}", highlight=False)
    console.print(f"  status: partctl status {job_id} --address {address}", highlight=False)
    print(job_id)


def _run_here(job: JobSpec, *, storage: str | None, resume: str | None, new: bool, attach: bool, create: bool) -> None:
    """Run the driver in this process on an embedded Ray (or the cluster it runs in), to the end."""
    import os
    import signal

    from partaware.runs.cluster import ClusterError, check_gpus_here, ray_session
    from partaware.runs.driver import new_run_id, report_uri, run_job
    from partaware.runs.folders import find_resumable, read_run
    from partaware.storage import StorageRoot

    check_local_sources(job)  # these and the storage root are refused before Ray or a run folder
    root = StorageRoot.open(storage or job.storage, writable=True)
    job = job.model_copy(update={"storage": root.uri})  # the run records where it ran, however it was given
    if resume and not create:
        read_run(root, resume)  # an unknown run id fails here, listing the known ones
    elif not resume and not new:
        resume = find_resumable(root, job)
    if resume and root.exists("runs", resume, "spec.yaml"):
        console.print(f"resuming run {resume}", highlight=False)

    def _terminate(signum, frame):  # Ray Jobs' stop sends SIGTERM: record the run as interrupted
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)

    def on_start(name: str) -> None:
        console.print(f"[bold]>[/bold] {name} ...", highlight=False)

    def on_stage(r) -> None:
        colour = "green" if r.status == "ran" else "cyan"
        console.print(f"  [{colour}]{r.status}[/{colour}] {r.name} {r.seconds:.1f}s {r.detail}", highlight=False)

    address = os.environ.get("RAY_ADDRESS") or ("auto" if attach else None)
    t0 = time.perf_counter()
    run_id = resume or new_run_id(job)
    try:
        with ray_session(address, log=lambda m: console.print(m, highlight=False)) as ray_address:
            if address is None:  # embedded: what the job asks must fit this machine
                check_gpus_here({f: getattr(job.resources, f) for f in job.gpu_stages()})
            run_id, results = run_job(
                job,
                storage=storage,
                progress=progress_bar,
                on_start=on_start,
                on_stage=on_stage,
                run_id=run_id,
                ray_address=ray_address,
            )
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/yellow]: run {run_id} is resumable: submit the same job again "
            f"(or `partctl submit ... --resume {run_id}`)",
            highlight=False,
        )
        raise typer.Exit(130) from None
    except Exception as e:
        if not isinstance(e, ClusterError):  # a cluster refused before the run started: there is no run to resume
            console.print(f"[red]run {run_id} failed[/red]; submitting the same job again resumes it", highlight=False)
        raise
    table = Table(title=f"run {run_id}")
    for col in ("stage", "status", "seconds", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", r.detail)
    print_table(table)
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r.name)
    ran, cached = by_status.pop("ran", []), by_status.pop("cached", [])
    others = "".join(f"; {status} {', '.join(names)}" for status, names in by_status.items())
    console.print(
        f"done in {time.perf_counter() - t0:.1f}s: ran {', '.join(ran) or 'nothing'}; "
        f"cached {', '.join(cached) or 'nothing'}{others}",
        highlight=False,
    )
    console.print(f"run folder: {root.uri_of('runs', run_id)}", highlight=False)
    report = report_uri(results)
    why = next((f" ({r.detail})" for r in results if r.name == "report" and r.detail), "")
    console.print(f"report: {report}" if report else f"report: none{why}", highlight=False)
