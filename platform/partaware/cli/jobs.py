"""``partctl validate`` and ``partctl submit``: job specs in, runs out."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from partaware.cli import app
from partaware.errors import SpecError
from partaware.progress import console, progress_bar
from partaware.runs.cluster import jobs_address
from partaware.spec import JobSpec, check_local_sources, load_spec

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


def spec_with_overrides(
    spec_arg: str,
    *,
    encoders: str | None = None,
    datasets: str | None = None,
    levels: str | None = None,
    storage: str | None = None,
) -> JobSpec:
    """Load a spec and apply command-line overrides (flags win); validated as a whole."""
    path = find_spec(spec_arg)
    overrides: dict = {"encoders": _split(encoders), "levels": _split(levels), "storage": storage}
    if datasets:
        base = load_spec(path)
        by_name = {d.name: d.model_dump() for d in base.datasets}
        overrides["datasets"] = [by_name.get(n, {"name": n}) for n in _split(datasets)]
    return load_spec(path, overrides)


@app.command()
def validate(spec: str = typer.Argument(..., help="Job spec: a YAML path, or a name in jobs/.")) -> None:
    """Validate a job spec and print what it resolves to."""
    job = load_spec(find_spec(spec))
    encoders = job.resolved_encoders()
    console.print(f"[green]valid[/green]: {job.name}", highlight=False)
    console.print(f"  datasets: {', '.join(d.name for d in job.datasets)}", highlight=False)
    console.print(f"  encoders: {', '.join(encoders) or '(none registered)'}", highlight=False)
    console.print(f"  controls: {', '.join(job.control_encoders()) or 'none'}; seeds: {job.seeds}", highlight=False)
    import sys

    from rich.console import Console

    # the plan is data: stdout, at full width when piped (a table wrapped at 80 columns cannot be grepped)
    Console(width=None if sys.stdout.isatty() else 200).print(plan_table(job, encoders))


def plan_table(job: JobSpec, encoders: list[str]) -> Table:
    """The probe plan: one row per (dataset, level, task) with its split rule and search, x every encoder."""
    from partaware.datasets import DATASETS
    from partaware.probes.tasks import get_task

    table = Table(title=f"plan: {len(job.plan())} (dataset, level, task) x {len(encoders)} encoders")
    for col in ("dataset", "level", "task", "scored on", "metric", "search", "variant"):
        table.add_column(col, no_wrap=True)
    for dataset, level, name in job.plan():
        task, entry = get_task(name), DATASETS.get(dataset)
        scored = (f"{entry.held_out} (held out)" if task.split_rule == "held_out"
                  else f"{','.join(entry.gallery) if entry.gallery else 'all'} (gallery)")  # fmt: skip
        space = job.search.get(name) or task.search_defaults
        search = f"{job.search_settings.num_samples} x {','.join(space) or 'fixed'}" if task.tuned else "-"
        variant = job.variants.get(name) or (task.variants[0] if task.variants else "-")
        table.add_row(dataset, level, name, scored, task.metric, search, variant)
    return table


@app.command()
def submit(
    spec: str = typer.Argument("quickstart", help="Job spec: a YAML path, or a name in jobs/."),
    encoders: str = typer.Option(None, help="all | family:<f> | comma list of names (overrides the spec)."),
    datasets: str = typer.Option(None, help="Comma list of dataset names (overrides the spec)."),
    levels: str = typer.Option(None, help="object,part (overrides the spec)."),
    storage: str = typer.Option(None, help="Storage root (overrides the spec and $PARTAWARE_STORAGE)."),
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
    cluster through Ray Jobs; the command prints the job id and returns.
    """
    job = spec_with_overrides(spec, encoders=encoders, datasets=datasets, levels=levels, storage=storage)
    console.print(
        f"[bold]job[/bold] {job.name}: datasets {', '.join(d.name for d in job.datasets)}; "
        f"encoders {', '.join(job.resolved_encoders()) or '(none registered)'}; levels {', '.join(job.levels)}",
        highlight=False,
    )
    remote = None if in_cluster else jobs_address(address)
    if remote:
        _submit_remote(job, remote, storage=storage, resume=resume)
    else:
        _run_here(job, storage=storage, resume=resume or run_id, new=new, attach=in_cluster, create=bool(run_id))


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

    from partaware.runs.cluster import ray_session
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
    except Exception:
        console.print(f"[red]run {run_id} failed[/red]; submitting the same job again resumes it", highlight=False)
        raise
    table = Table(title=f"run {run_id}")
    for col in ("stage", "status", "seconds", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", r.detail)
    console.print(table)
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
