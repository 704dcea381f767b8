"""``partctl runs``, ``status``, ``logs``, ``stop``: follow jobs on the embedded default or a cluster.

With ``--address`` (or an http ``$RAY_ADDRESS``) the commands speak to the cluster's Ray Jobs API
and JOB is a job id; without, they read the run folders under the storage root and JOB is a run id.
"""

from __future__ import annotations

import sys
import time

import typer
from rich.table import Table

from partaware.cli import app
from partaware.progress import console
from partaware.runs.cluster import TERMINAL_JOB_STATES, JobsCluster, jobs_address
from partaware.runs.driver import SUCCEEDED, TERMINAL_STATES
from partaware.runs.folders import list_runs, read_run, request_stop, run_log
from partaware.storage import StorageRoot

_ADDRESS_HELP = "Ray Jobs address (http://<head>:8265; default $RAY_ADDRESS if http). Without: runs under --storage."
_STORAGE_HELP = "Storage root holding the runs (default $PARTAWARE_STORAGE or ./partaware-store)."


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def _duration(start: float | None, end: float | None) -> str:
    if not start:
        return "-"
    return f"{(end or time.time()) - start:.1f}s"


@app.command()
def runs(storage: str = typer.Option(None, help=_STORAGE_HELP)) -> None:
    """List the runs under the storage root: state, encoders, datasets, duration, report."""
    root = StorageRoot.open(storage)
    found = list_runs(root)
    if not found:
        console.print(f"no runs under {root.uri}", highlight=False)
        return
    table = Table(title=f"runs under {root.uri}")
    for col in ("run", "state", "encoders", "datasets", "started (UTC)", "duration", "report"):
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
    console.print(table)


@app.command()
def status(
    job: str = typer.Argument(None, help="Job id (cluster) or run id (local); none: list them all."),
    address: str = typer.Option(None, help=_ADDRESS_HELP),
    storage: str = typer.Option(None, help=_STORAGE_HELP),
) -> None:
    """The state of a job or run (exit code 0 running or succeeded, 1 failed or stopped)."""
    remote = jobs_address(address)
    if remote:
        cluster = JobsCluster(remote)
        if job is None:
            _print_jobs(cluster)
            return
        info = cluster.job(job)
        console.print(f"{job}: {info.status.value}", highlight=False)
        if info.message:
            console.print(f"  {info.message}", highlight=False)
        console.print(f"  started {_when((info.start_time or 0) / 1000)}; ended {_when((info.end_time or 0) / 1000)}")
        if info.status.value in ("FAILED", "STOPPED"):
            raise typer.Exit(1)
        return
    if job is None:
        runs(storage)
        return
    run = read_run(StorageRoot.open(storage), job)
    console.print(f"{job}: {run['state']}" + (f" (stage {run['stage']})" if run.get("stage") else ""), highlight=False)
    for s in run.get("stages", []):
        console.print(f"  {s['name']}: {s['status']} {s['seconds']:.1f}s {s.get('detail', '')}", highlight=False)
    if run.get("error"):
        console.print(f"  error: {run['error']}", highlight=False)
    if run.get("report"):
        console.print(f"  report: {run['report']}", highlight=False)
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


def _print_jobs(cluster: JobsCluster) -> None:
    jobs = cluster.jobs()
    if not jobs:
        console.print(f"no jobs on {cluster.address}", highlight=False)
        return
    table = Table(title=f"jobs on {cluster.address}")
    for col in ("job", "status", "run", "started (UTC)", "duration"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        start, end = (j.start_time or 0) / 1000, (j.end_time or 0) / 1000
        table.add_row(
            j.submission_id or j.job_id or "-",
            j.status.value,
            (j.metadata or {}).get("partaware_run", "-"),
            _when(start),
            _duration(start, end or None),
        )
    console.print(table)
