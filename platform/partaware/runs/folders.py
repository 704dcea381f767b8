"""Reading run folders: list runs, show one, find one to resume, stop a local one.

The driver (``partaware.runs.driver``) writes ``<root>/runs/<run-id>/``; everything here only reads it
(``request_stop`` signals the driver process, which records the interruption itself). This is what
``partctl runs``, ``status``, ``logs`` and ``stop`` use for runs on the embedded cluster.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from partaware.errors import UnknownNameError
from partaware.runs.driver import FAILED, INTERRUPTED, RUNNING
from partaware.spec import JobSpec, dump_spec
from partaware.storage import StorageRoot


def run_ids(root: StorageRoot) -> list[str]:
    """The ids of every run folder under the root (by name; ``list_runs`` orders them by start time)."""
    return [name for name in root.listdir("runs") if not name.startswith((".", "_"))]


def read_run(root: StorageRoot, run_id: str) -> dict[str, Any]:
    """The run's state record, with its effective state (a dead driver's "running" reads "lost")."""
    if run_id not in run_ids(root):
        raise UnknownNameError("run", run_id, run_ids(root))
    run_root = root.sub("runs", run_id)
    state = run_root.read_json("state.json") if run_root.exists("state.json") else {"run_id": run_id}
    state.setdefault("run_id", run_id)  # the folder names it, whatever state.json holds
    state.setdefault("state", "unknown")
    if state["state"] == RUNNING and _driver_gone(state):
        state["state"] = "lost"  # killed without a chance to record it; resumable
    if run_root.exists("summary.json"):
        summary = run_root.read_json("summary.json")
        state["stages"] = summary.get("stages", [])
        state.setdefault("report", summary.get("report"))
    elif run_root.exists("stages"):
        state["stages"] = [run_root.read_json("stages", n) for n in run_root.listdir("stages") if n.endswith(".json")]
    state["complete"] = run_root.is_complete()
    return state


def list_runs(root: StorageRoot) -> list[dict[str, Any]]:
    """Every run's record, oldest first."""
    runs = [read_run(root, rid) for rid in run_ids(root)]
    return sorted(runs, key=lambda r: (r.get("started") or 0, r["run_id"]))


def run_log(root: StorageRoot, run_id: str) -> str:
    read_run(root, run_id)  # unknown ids fail with the list of known ones
    run_root = root.sub("runs", run_id)
    return run_root.read_bytes("driver.log").decode() if run_root.exists("driver.log") else ""


def find_resumable(root: StorageRoot, spec: JobSpec) -> str | None:
    """The newest unfinished run (interrupted, failed or lost) started with exactly this resolved spec."""
    spec_text = dump_spec(spec)
    for run in reversed(list_runs(root)):
        if run["state"] not in (INTERRUPTED, FAILED, "lost") or run["complete"]:
            continue
        run_root = root.sub("runs", run["run_id"])
        if run_root.exists("spec.yaml") and run_root.read_bytes("spec.yaml").decode() == spec_text:
            return run["run_id"]
    return None


def request_stop(root: StorageRoot, run_id: str) -> str:
    """Ask a running driver on this host to stop (SIGINT: it records ``interrupted`` and exits).

    Returns what happened, in words. A driver on another host cannot be signalled from here: stop it
    through the cluster it runs on (``partctl stop JOB --address ...``).
    """
    run = read_run(root, run_id)
    if run["state"] != RUNNING:
        return f"run {run_id} is not running (state: {run['state']})"
    if run.get("host") != socket.gethostname():
        return f"run {run_id} runs on host {run.get('host')}; stop it through its cluster's address"
    os.kill(int(run["pid"]), signal.SIGINT)
    return f"asked run {run_id} (pid {run['pid']}) to stop; it will be recorded as interrupted"


def _driver_gone(state: dict[str, Any]) -> bool:
    """True when the recorded driver ran on this host and its process no longer exists."""
    if state.get("host") != socket.gethostname() or not state.get("pid"):
        return False
    try:
        os.kill(int(state["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
