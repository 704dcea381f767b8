"""``partctl validate`` and ``partctl submit``: job specs in, runs out."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from partaware.cli import app
from partaware.errors import SpecError
from partaware.progress import console, progress_bar
from partaware.spec import JobSpec, load_spec

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
    console.print(f"[green]valid[/green]: {job.name}", highlight=False)
    console.print(f"  datasets: {', '.join(d.name for d in job.datasets)}", highlight=False)
    console.print(f"  encoders: {', '.join(job.resolved_encoders()) or '(none registered)'}", highlight=False)
    console.print(f"  levels: {', '.join(job.levels)}; tasks: {', '.join(job.tasks)}", highlight=False)


@app.command()
def submit(
    spec: str = typer.Argument("quickstart", help="Job spec: a YAML path, or a name in jobs/."),
    encoders: str = typer.Option(None, help="all | family:<f> | comma list of names (overrides the spec)."),
    datasets: str = typer.Option(None, help="Comma list of dataset names (overrides the spec)."),
    levels: str = typer.Option(None, help="object,part (overrides the spec)."),
    storage: str = typer.Option(None, help="Storage root (overrides the spec and $PARTAWARE_STORAGE)."),
) -> None:
    """Run a job: its stages in order, each skipped when its output already exists."""
    from partaware.driver import run_job

    job = spec_with_overrides(spec, encoders=encoders, datasets=datasets, levels=levels, storage=storage)
    console.print(
        f"[bold]job[/bold] {job.name}: datasets {', '.join(d.name for d in job.datasets)}; "
        f"encoders {', '.join(job.resolved_encoders()) or '(none registered)'}",
        highlight=False,
    )
    run_id, results = run_job(job, storage=storage, progress=progress_bar)
    table = Table(title=f"run {run_id}")
    for col in ("stage", "status", "seconds", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, r.status, f"{r.seconds:.1f}", r.detail)
    console.print(table)
