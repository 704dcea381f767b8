"""``partctl runs``, ``status``, ``logs``, ``stop``: follow jobs on the embedded default or a cluster.

With ``--address`` (or an http ``$RAY_ADDRESS``) the commands speak to the cluster's Ray Jobs API
and JOB is a job id; without, they read the run folders under the storage root and JOB is a run id.
Tables and ``--json`` go to stdout; messages to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import iso_time, print_json, print_table
from partaware.errors import SpecError, UnknownNameError
from partaware.progress import console
from partaware.runs.cluster import TERMINAL_JOB_STATES, JobsCluster, jobs_address
from partaware.runs.driver import SUCCEEDED, TERMINAL_STATES
from partaware.runs.folders import list_runs, read_run, request_stop, run_ids, run_log
from partaware.storage import StorageRoot

_ADDRESS_HELP = "Ray Jobs address (http://<head>:8265; default $RAY_ADDRESS if http). Without: runs under --storage."
_STORAGE_HELP = "Storage root holding the runs (default $PARTAWARE_STORAGE or ./partaware-store)."
_JSON_HELP = "Print JSON on stdout instead of a table (keys: README, 'Machine-readable output')."
#: columns of the combined table in the terminal and in Markdown (the CSV and JSON hold every column)
COMBINED_COLUMNS = ("run_id", "encoder", "family", "dataset", "level", "task", "feature", "metric", "value", "std",
                    "ci_low", "ci_high")  # fmt: skip


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _duration(start: float | None, end: float | None) -> str:
    if not start:
        return "-"
    return f"{(end or time.time()) - start:.1f}s"


def run_json(r: dict[str, Any], *, stages: bool = False) -> dict[str, Any]:
    """A run record with the documented keys (times ISO-8601 UTC)."""
    started, finished = r.get("started"), r.get("finished")
    out = {
        "run_id": r["run_id"],
        "spec": r.get("spec"),
        "state": r["state"],
        "stage": r.get("stage"),
        "encoders": list(r.get("encoders") or []),
        "datasets": list(r.get("datasets") or []),
        "levels": list(r.get("levels") or []),
        "started": iso_time(started),
        "finished": iso_time(finished),
        "seconds": _seconds(started, finished, running=r["state"] == "running"),
        "report": r.get("report"),
        "error": r.get("error"),
        "complete": bool(r.get("complete")),
    }
    if stages:
        out["stages"] = [{k: s.get(k) for k in ("name", "status", "seconds", "detail")} for s in r.get("stages", [])]
    return out


def _seconds(started: float | None, finished: float | None, *, running: bool) -> float | None:
    """Seconds from start to end (so far while running; None when the end was never recorded)."""
    if not started or not (finished or running):
        return None
    return round((finished or time.time()) - started, 3)


@app.command()
def runs(
    storage: str = typer.Option(None, help=_STORAGE_HELP),
    json_: bool = typer.Option(False, "--json", help=_JSON_HELP),
    combine: str = typer.Option(
        None, "--combine", help="Comma list of runs (ids or run folders): their results as one long table."
    ),
    output: Path = typer.Option(
        None, "--output", help="With --combine: write the table to this .csv or .md file instead of stdout."
    ),
) -> None:
    """List the runs under the storage root: state, encoders, datasets, duration, report (read-only)."""
    root = StorageRoot.open(storage)
    if combine:
        _combine(root, [r.strip() for r in combine.split(",") if r.strip()], output=output, as_json=json_)
        return
    if output is not None:
        raise SpecError("--output: only with --combine RUN1,RUN2 (the runs' results as one table)")
    found = list_runs(root)
    if json_:
        print_json([run_json(r) for r in found])
        return
    if not found:
        console.print(f"no runs under {root.uri}", highlight=False)
        return
    table = Table(title=f"runs under {root.uri}")
    table.add_column("run", no_wrap=True)
    for col in ("state", "encoders", "datasets", "started (UTC)", "duration", "report"):
        table.add_column(col, overflow="fold")
    for r in found:
        encoders = r.get("encoders") or []
        shown = ", ".join(encoders[:4]) + (f" +{len(encoders) - 4}" if len(encoders) > 4 else "")
        table.add_row(
            r["run_id"],
            r["state"],
            shown or "-",
            ", ".join(r.get("datasets") or []) or "-",
            _when(r.get("started")),
            _duration(r.get("started"), r.get("finished")),
            r.get("report") or "-",
        )
    print_table(table)


def run_folder(root: StorageRoot, run: str) -> StorageRoot:
    """A run's folder by id under the storage root (an unknown id lists the known ones: bad input), or by path/URI."""
    from partaware.report.build import run_root_of

    if "/" not in run and "://" not in run and not root.exists("runs", run):
        raise UnknownNameError("run", run, run_ids(root))
    return run_root_of(root, run)


def combined_rows(root: StorageRoot, runs: list[str]) -> list[dict[str, Any]]:
    """One row per probe result of every run (seeds aggregated, as in each run's ``results.csv``), run by run."""
    from partaware.report.records import aggregate, load_records
    from partaware.report.tables import records_csv_rows

    rows: list[dict[str, Any]] = []
    for run in runs:
        rows += records_csv_rows(aggregate(load_records(run_folder(root, run))))
    return rows


def _combine(root: StorageRoot, runs: list[str], *, output: Path | None, as_json: bool) -> None:
    if not runs:
        raise SpecError("--combine: name at least one run (RUN1,RUN2,...)")
    if output is not None and output.suffix not in (".csv", ".md"):
        got = output.suffix or "no suffix"
        raise SpecError(f"--output {output}: the table is written as .csv or .md (got {got!r})")
    from partaware.report.build import rows_csv

    rows = combined_rows(root, runs)
    if output is not None:
        text = rows_csv(rows) if output.suffix == ".csv" else _markdown(rows)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"{len(rows)} results of {len(runs)} runs: {output}", highlight=False)
    elif as_json:
        print_json(rows)
    else:
        table = Table(title=f"results of {', '.join(runs)}")
        for col in COMBINED_COLUMNS:
            table.add_column(col, no_wrap=col in ("run_id", "encoder"))
        for row in rows:
            table.add_row(*[_cell(row.get(c)) for c in COMBINED_COLUMNS])
        print_table(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COMBINED_COLUMNS) + " |", "|" + "---|" * len(COMBINED_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in COMBINED_COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@app.command()
def status(
    job: str = typer.Argument(None, help="Job id (cluster) or run id (local); none: list them all."),
    address: str = typer.Option(None, help=_ADDRESS_HELP),
    storage: str = typer.Option(None, help=_STORAGE_HELP),
    json_: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """The state of a job or run (exit code 0 running or succeeded, 1 failed or stopped)."""
    remote = jobs_address(address)
    if remote:
        cluster = JobsCluster(remote)
        if job is None:
            _print_jobs(cluster, as_json=json_)
            return
        info = _job_json(cluster.job(job))
        if json_:
            print_json(info)
        else:
            typer.echo(f"{job}: {info['status']}")
            if info["message"]:
                typer.echo(f"  {info['message']}")
            typer.echo(f"  started {info['started'] or '-'}; ended {info['ended'] or '-'}")
        if info["status"] in ("FAILED", "STOPPED"):
            raise typer.Exit(1)
        return
    if job is None:
        runs(storage, json_=json_, combine=None, output=None)
        return
    run = read_run(StorageRoot.open(storage), job)
    if json_:
        print_json(run_json(run, stages=True))
    else:
        typer.echo(f"{job}: {run['state']}" + (f" (stage {run['stage']})" if run.get("stage") else ""))
        for s in run.get("stages", []):
            typer.echo(f"  {s['name']}: {s['status']} {s['seconds']:.1f}s {s.get('detail', '')}")
        if run.get("error"):
            typer.echo(f"  error: {run['error']}")
        if run.get("report"):
            typer.echo(f"  report: {run['report']}")
    if run["state"] not in ("running", SUCCEEDED):
        raise typer.Exit(1)


@app.command()
def logs(
    job: str = typer.Argument(..., help="Job id (cluster) or run id (local)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    address: str = typer.Option(None, help=_ADDRESS_HELP),
    storage: str = typer.Option(None, help=_STORAGE_HELP),
) -> None:
    """Print a job's logs (cluster: the driver's output; local: the run's driver.log)."""
    remote = jobs_address(address)
    if remote:
        cluster = JobsCluster(remote)
        if not follow:
            sys.stdout.write(cluster.logs(job))
            return
        final = cluster.follow(job, lambda chunk: (sys.stdout.write(chunk), sys.stdout.flush()))
        console.print(f"job {job}: {final}", highlight=False)
        if final != "SUCCEEDED":
            raise typer.Exit(1)
        return
    root = StorageRoot.open(storage)
    shown = 0
    while True:
        text = run_log(root, job)
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        state = read_run(root, job)["state"]
        if not follow or state in (*TERMINAL_STATES, "lost"):
            break
        time.sleep(1.0)
    if follow:
        console.print(f"run {job}: {state}", highlight=False)
        if state != SUCCEEDED:
            raise typer.Exit(1)


@app.command()
def stop(
    job: str = typer.Argument(..., help="Job id (cluster) or run id (local)."),
    address: str = typer.Option(None, help=_ADDRESS_HELP),
    storage: str = typer.Option(None, help=_STORAGE_HELP),
) -> None:
    """Stop a job; its run is recorded as interrupted and the next submit resumes it."""
    remote = jobs_address(address)
    if remote:
        cluster = JobsCluster(remote)
        current = cluster.status(job)
        if current in TERMINAL_JOB_STATES:
            console.print(f"job {job} already ended: {current}", highlight=False)
            return
        cluster.stop(job)
        console.print(f"stop requested for job {job} on {remote}", highlight=False)
        return
    console.print(request_stop(StorageRoot.open(storage), job), highlight=False)


def _job_json(j: Any) -> dict[str, Any]:
    """A Ray Jobs job with the documented keys."""
    start, end = (j.start_time or 0) / 1000, (j.end_time or 0) / 1000
    return {
        "job_id": j.submission_id or j.job_id,
        "status": j.status.value,
        "message": j.message or "",
        "run_id": (j.metadata or {}).get("partaware_run"),
        "started": iso_time(start),
        "ended": iso_time(end),
        "seconds": round((end or time.time()) - start, 3) if start else None,
    }


def _print_jobs(cluster: JobsCluster, *, as_json: bool) -> None:
    jobs = [_job_json(j) for j in cluster.jobs()]
    if as_json:
        print_json(jobs)
        return
    if not jobs:
        console.print(f"no jobs on {cluster.address}", highlight=False)
        return
    table = Table(title=f"jobs on {cluster.address}")
    table.add_column("job", no_wrap=True)
    for col in ("status", "run", "started (UTC)", "duration"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        seconds = f"{j['seconds']:.1f}s" if j["seconds"] is not None else "-"
        table.add_row(j["job_id"] or "-", j["status"], j["run_id"] or "-", j["started"] or "-", seconds)
    print_table(table)
