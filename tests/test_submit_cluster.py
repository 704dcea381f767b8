"""``partctl submit --address``, ``status``, ``logs --follow`` and ``stop`` against a real Ray head.

The module starts ``ray start --head --block`` on 127.0.0.1 (dashboard and Jobs API over HTTP) with
its own temp dir and free ports, so it never meets the in-process ``ray_local`` of other modules:
``ray.init()`` there finds no ``ray_current_cluster`` of ours and starts its own. Teardown stops the
head by signalling the process group it started, never with ``ray stop`` (which would end every Ray
on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from _submit_specs import write_spec
from partaware.runs.folders import find_resumable, read_run
from partaware.spec import load_spec
from partaware.storage import StorageRoot

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head node on 127.0.0.1; yields its Jobs API address (the dashboard)."""
    venv_bin = str(Path(sys.executable).parent)
    temp_dir = tempfile.mkdtemp(prefix="pa-ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # the job's `python` is this venv's
    }
    env.pop("RAY_ADDRESS", None)
    dashboard = _free_port()
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dashboard,
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--ray-client-server-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
    }
    cmd = [os.path.join(venv_bin, "ray"), "start", "--head", "--block", "--num-cpus", "2", "--disable-usage-stats"]
    cmd += ["--dashboard-host", "127.0.0.1", "--include-dashboard", "true", "--temp-dir", temp_dir]
    cmd += [str(x) for kv in ports.items() for x in kv]
    log = open(os.path.join(temp_dir, "head.log"), "w")  # noqa: SIM115 (closed in teardown)
    head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2).read()
            break
        except OSError:
            if head.poll() is not None or time.time() > deadline:
                _stop_group(head)
                raise RuntimeError(f"ray head did not start: {Path(log.name).read_text()[-2000:]}") from None
            time.sleep(0.5)
    yield address
    _stop_group(head)
    log.close()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(head: subprocess.Popen) -> None:
    """SIGTERM the head's process group (``ray start --block`` then stops its children), SIGKILL leftovers."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=10)


def test_a_job_submitted_over_http_runs_and_is_followed_to_the_end(ray_head, tmp_path, partctl):
    store = tmp_path / "store"
    out = partctl("submit", str(write_spec(tmp_path, "remote", 12)), "--address", ray_head, "--storage", str(store))
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    assert job_id.startswith("remote-") and f"partctl logs {job_id} --follow --address {ray_head}" in out.stderr

    followed = partctl("logs", job_id, "--follow", "--address", ray_head)
    assert followed.returncode == 0, followed.stderr
    assert "attached to cluster" in followed.stdout and "ran prepare" in followed.stdout
    assert f"job {job_id}: SUCCEEDED" in followed.stderr

    status = partctl("status", job_id, "--address", ray_head)
    assert status.returncode == 0 and f"{job_id}: SUCCEEDED" in status.stdout
    listed = partctl("status", "--address", ray_head)
    assert listed.returncode == 0 and job_id in listed.stdout
    one = json.loads(partctl("status", job_id, "--json", "--address", ray_head).stdout)
    assert one["job_id"] == job_id and one["status"] == "SUCCEEDED" and one["run_id"] == job_id
    assert job_id in {j["job_id"] for j in json.loads(partctl("status", "--json", "--address", ray_head).stdout)}
    logs = partctl("logs", job_id, "--address", ray_head)
    assert logs.returncode == 0 and "ran prepare" in logs.stdout

    # the driver ran on the cluster and wrote the run folder under the storage root it was given
    state = json.loads((store / "runs" / job_id / "state.json").read_text())
    assert state["state"] == "succeeded" and state["ray_address"].startswith("127.0.0.1:")
    assert (store / "runs" / job_id / "_SUCCESS").exists()

    unknown = partctl("status", "no-such-job", "--address", ray_head)
    assert unknown.returncode == 2 and "'no-such-job'" in unknown.stderr and job_id in unknown.stderr


def test_stop_ends_a_running_job_and_leaves_its_run_resumable(ray_head, tmp_path, partctl):
    store = tmp_path / "store"
    out = partctl("submit", str(write_spec(tmp_path, "long", 100_000)), "--address", ray_head, "--storage", str(store))
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip().splitlines()[-1]
    state_file = store / "runs" / job_id / "state.json"
    deadline = time.time() + 120
    while not (state_file.exists() and json.loads(state_file.read_text()).get("stage") == "prepare"):
        assert time.time() < deadline, partctl("logs", job_id, "--address", ray_head).stdout
        time.sleep(0.5)

    stopped = partctl("stop", job_id, "--address", ray_head)
    assert stopped.returncode == 0 and f"stop requested for job {job_id}" in stopped.stderr
    deadline = time.time() + 60
    while "STOPPED" not in (status := partctl("status", job_id, "--address", ray_head)).stdout:
        assert time.time() < deadline, status.stdout + status.stderr
        time.sleep(1)
    assert status.returncode == 1
    # Ray sends SIGTERM, then SIGKILL after a few seconds: the driver records "interrupted" if it gets
    # there in time, else its record reads "lost" (a dead pid on this host). Either way it is resumable.
    root, deadline = StorageRoot.open(str(store)), time.time() + 30
    while (state := read_run(root, job_id)["state"]) == "running":
        assert time.time() < deadline, state
        time.sleep(0.5)
    assert state in ("interrupted", "lost") and not (store / "runs" / job_id / "_SUCCESS").exists()
    spec = load_spec(tmp_path / "long.yaml", {"storage": str(store)})
    assert find_resumable(root, spec) == job_id
    again = partctl("stop", job_id, "--address", ray_head)
    assert again.returncode == 0 and "already ended: STOPPED" in again.stderr


def test_resubmitting_a_run_to_the_cluster_resumes_it(ray_head, tmp_path, partctl):
    store, spec = tmp_path / "store", write_spec(tmp_path, "again", 12)
    first = partctl("submit", str(spec), "--address", ray_head, "--storage", str(store))
    run_id = first.stdout.strip().splitlines()[-1]
    assert partctl("logs", run_id, "--follow", "--address", ray_head).returncode == 0

    second = partctl("submit", str(spec), "--address", ray_head, "--storage", str(store), "--resume", run_id)
    assert second.returncode == 0, second.stderr
    job_id = second.stdout.strip().splitlines()[-1]
    assert job_id == f"{run_id}-attempt2" and f"(run {run_id})" in second.stderr
    followed = partctl("logs", job_id, "--follow", "--address", ray_head)
    assert followed.returncode == 0, followed.stdout
    assert f"resuming run {run_id}" in followed.stdout and "finished in an earlier attempt" in followed.stdout
    assert [p.name for p in (store / "runs").iterdir()] == [run_id]
