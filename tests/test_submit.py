"""``partctl submit`` on the embedded default, the driver's run records and resume, and bad input.

The CLI tests run the real ``partctl`` in a subprocess, which starts its own embedded local Ray
(``address="local"``: never the session's ``ray_local`` nor a head another test started).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from _cli import PARTCTL, partctl_env
from _submit_specs import write_spec
from partaware.errors import SpecError, UnknownNameError
from partaware.runs.cluster import ClusterError, check_reachable, driver_entrypoint, job_runtime_env, package_dir
from partaware.runs.driver import run_job
from partaware.runs.folders import find_resumable, list_runs, read_run
from partaware.runs.records import PrepareOutput, StageOutput, StageRecord
from partaware.runs.stages import STAGES
from partaware.runs.stages import prepare as prepare_stage
from partaware.spec import load_spec
from partaware.storage import StorageRoot


@pytest.fixture
def prepare_only(monkeypatch):
    """The driver's mechanics with just the prepare stage (no encoder work): the driver runs whatever STAGES holds."""
    import partaware.runs.stages as stages

    monkeypatch.setattr(stages, "STAGES", [("prepare", prepare_stage.run)])


STAGE_NAMES = [name for name, _ in STAGES]


def run_dirs(store: Path) -> list[Path]:
    return sorted(p for p in (store / "runs").iterdir() if not p.name.startswith((".", "_")))


@pytest.mark.ray
def test_embedded_submit_runs_to_the_end_and_a_second_submit_is_cached(tmp_path, partctl):
    spec, store = write_spec(tmp_path), tmp_path / "store"
    first = partctl("submit", str(spec), "--storage", str(store))
    assert first.returncode == 0, first.stderr
    assert "embedded Ray: " in first.stderr and "ran prepare" in first.stderr
    (run,) = run_dirs(store)
    state = json.loads((run / "state.json").read_text())
    assert state["state"] == "succeeded" and state["datasets"] == ["synthetic"] and state["ray_address"]
    summary = json.loads((run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == STAGE_NAMES  # every stage of this version, in order
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert statuses["prepare"] == "ran" and statuses.get("extract", "ran") == "ran"
    assert statuses.get("pretrain", "skipped") == "skipped"  # the tiny spec has no lab encoders
    assert (run / "_SUCCESS").exists() and (run / "spec.yaml").exists() and (run / "stages" / "prepare.json").exists()
    assert "stage prepare: ran" in (run / "driver.log").read_text()
    assert "done in " in first.stderr and "report: " in first.stderr

    second = partctl("submit", str(spec), "--storage", str(store))
    assert second.returncode == 0, second.stderr
    # every computing stage is cached; only the new run's own report is written
    (done_line,) = [line for line in second.stderr.splitlines() if line.startswith("done in ")]
    assert "ran report; cached " in done_line, done_line
    cached = done_line.split("cached ", 1)[1].split(";")[0].split(", ")
    not_applicable = {name for name, status in statuses.items() if status == "skipped"}  # e.g. pretrain: no lab
    assert set(cached) == set(STAGE_NAMES) - {"report"} - not_applicable, done_line
    assert len(run_dirs(store)) == 2  # a finished run is never resumed: a new run, whose stages are cached

    listed = partctl("runs", "--storage", str(store))
    assert listed.returncode == 0 and all(r.name in listed.stdout for r in run_dirs(store)), listed.stderr
    status = partctl("status", run.name, "--storage", str(store))
    assert status.returncode == 0 and f"{run.name}: succeeded" in status.stdout
    logs = partctl("logs", run.name, "--storage", str(store))
    assert logs.returncode == 0 and "stage prepare: ran" in logs.stdout
    followed = partctl("logs", run.name, "--follow", "--storage", str(store), timeout=60)
    assert followed.returncode == 0 and f"run {run.name}: succeeded" in followed.stderr


def _wait_for_stage(store: Path, stage: str, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        for run in run_dirs(store) if (store / "runs").exists() else []:
            try:
                if json.loads((run / "state.json").read_text()).get("stage") == stage:
                    return run
            except (FileNotFoundError, json.JSONDecodeError):
                pass
        time.sleep(0.2)
    raise AssertionError(f"stage {stage} never started")


@pytest.mark.ray
def test_ctrl_c_or_stop_leaves_a_resumable_run_that_the_next_submit_finishes(tmp_path, partctl):
    """Interrupted in a working stage, the run resumes there: finished stages are not run again."""
    spec, store = write_spec(tmp_path, "slow", size=64), tmp_path / "store"  # extract lasts long enough to stop
    last_working = "extract"  # the stage that takes seconds here (Ray Data); later ones finish too fast to catch
    proc = subprocess.Popen(
        [PARTCTL, "submit", str(spec), "--storage", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=partctl_env(),
    )
    run = _wait_for_stage(store, last_working, proc)
    stop = partctl("stop", run.name, "--storage", str(store))  # = Ctrl-C: SIGINT to the driver on this host
    assert stop.returncode == 0 and f"asked run {run.name} (pid {proc.pid}) to stop" in stop.stderr
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"run {run.name} is resumable" in err
    state = json.loads((run / "state.json").read_text())
    assert state["state"] == "interrupted" and state["stage"] == last_working and not (run / "_SUCCESS").exists()
    finished = sorted(p.stem for p in (run / "stages").iterdir())
    assert last_working not in finished and "prepare" in finished

    again = partctl("submit", str(spec), "--storage", str(store))
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run.name}" in again.stderr
    for name in finished:  # restored from their records, not run again
        assert re.search(rf"cached {name} 0\.0s finished in an earlier attempt", again.stderr), again.stderr
        assert f"> {name} ..." not in again.stderr
    assert f"> {last_working} ..." in again.stderr
    assert run_dirs(store) == [run]  # the same run, finished
    assert json.loads((run / "state.json").read_text())["state"] == "succeeded" and (run / "_SUCCESS").exists()


class Seen(StageOutput):
    """A test stage's typed output: what it read from the prepare stage's record."""

    stage = "flaky"
    seen: int


def test_a_resumed_run_does_not_recompute_its_finished_stages(tmp_path, monkeypatch):
    """A run killed after ``prepare`` finished resumes at the next stage; prepare is restored, not called."""
    import partaware.runs.stages as stages

    calls: list[str] = []

    def prepare(ctx):
        calls.append("prepare")
        return prepare_stage.run(ctx)

    def flaky(ctx):
        calls.append("flaky")
        if calls.count("flaky") == 1:
            raise KeyboardInterrupt  # what Ctrl-C (or a stop) does in the middle of the second stage
        return StageRecord.of(Seen(seen=ctx.input(PrepareOutput).datasets["synthetic"].rows), "ran", 0.0, "done")

    monkeypatch.setattr(stages, "STAGES", [("prepare", prepare), ("flaky", flaky)])
    spec = load_spec(write_spec(tmp_path))
    store = str(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        run_job(spec, storage=store, run_id="tiny-1")
    root = StorageRoot.open(store)
    assert read_run(root, "tiny-1")["state"] == "interrupted"
    assert find_resumable(root, spec) == "tiny-1"

    run_id, results = run_job(spec, storage=store, run_id="tiny-1")
    assert calls == ["prepare", "flaky", "flaky"]  # prepare ran once, in the first attempt
    assert [(r.name, r.status) for r in results] == [("prepare", "cached"), ("flaky", "ran")]
    assert results[1].outputs["seen"] == results[0].outputs["datasets"]["synthetic"]["rows"] > 0
    assert read_run(root, run_id)["state"] == "succeeded" and find_resumable(root, spec) is None


def test_a_killed_driver_reads_lost_and_is_resumed(prepare_only, tmp_path):
    """SIGKILL leaves state.json saying "running" with a dead pid: read as lost, picked for resume."""
    spec = load_spec(write_spec(tmp_path))
    store = str(tmp_path / "store")
    run_job(spec, storage=store, run_id="tiny-killed")
    root = StorageRoot.open(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = root.read_json("runs", "tiny-killed", "state.json")
    root.write_json({**state, "state": "running", "pid": dead.pid}, "runs", "tiny-killed", "state.json")
    root.fs.rm(root.join("runs", "tiny-killed", "_SUCCESS"))
    assert read_run(root, "tiny-killed")["state"] == "lost"
    assert find_resumable(root, spec) == "tiny-killed"
    _, results = run_job(spec, storage=store, run_id="tiny-killed")
    assert [r.status for r in results] == ["cached"]


def test_resuming_with_another_spec_is_refused(prepare_only, tmp_path):
    store = str(tmp_path / "store")
    run_job(load_spec(write_spec(tmp_path)), storage=store, run_id="tiny-a")
    other = load_spec(write_spec(tmp_path, size=13))
    with pytest.raises(SpecError, match="different spec"):
        run_job(other, storage=store, run_id="tiny-a")
    assert find_resumable(StorageRoot.open(store), other) is None
    assert [r["run_id"] for r in list_runs(StorageRoot.open(store))] == ["tiny-a"]


def test_unknown_run_ids_list_the_known_ones(prepare_only, tmp_path, partctl):
    spec, store = write_spec(tmp_path), tmp_path / "store"
    run_job(load_spec(spec), storage=str(store), run_id="tiny-known")
    with pytest.raises(UnknownNameError, match="tiny-known"):
        read_run(StorageRoot.open(str(store)), "tiny-nope")
    for args in (["status", "tiny-nope"], ["logs", "tiny-nope"], ["stop", "tiny-nope"]):
        out = partctl(*args, "--storage", str(store))
        assert out.returncode == 2 and "unknown run 'tiny-nope'" in out.stderr and "tiny-known" in out.stderr
    out = partctl("submit", str(spec), "--resume", "tiny-nope", "--storage", str(store))
    assert out.returncode == 2 and "Valid: tiny-known" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_fails_fast_and_names_it(tmp_path, partctl):
    address = f"http://127.0.0.1:{_free_port()}"
    start = time.time()
    out = partctl("submit", str(write_spec(tmp_path)), "--address", address, "--storage", str(tmp_path / "s"))
    assert out.returncode == 1 and f"cannot reach the Ray cluster at {address}" in out.stderr, out.stderr
    assert time.time() - start < 30
    for args in (["status"], ["logs", "x"], ["stop", "x"]):
        out = partctl(*args, "--address", address)
        assert out.returncode == 1 and address in out.stderr
    gcs = f"127.0.0.1:{_free_port()}"  # a Ray (GCS) address attaches the driver; ray.init alone retries for minutes
    start = time.time()
    out = partctl("submit", str(write_spec(tmp_path)), "--storage", str(tmp_path / "s"), env={"RAY_ADDRESS": gcs})
    assert out.returncode == 1 and f"cannot reach the Ray cluster at {gcs}" in out.stderr, out.stderr
    assert time.time() - start < 30


def test_a_silent_server_fails_within_the_timeout(tmp_path):
    """A host that accepts the connection and never answers (a hung proxy, a firewall) is bounded too."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    address = f"http://127.0.0.1:{server.getsockname()[1]}"
    start = time.time()
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address} within 1s"):
        check_reachable(address, timeout=1.0)
    assert time.time() - start < 5
    server.close()


def test_bad_input_fails_before_contacting_the_cluster(tmp_path, partctl):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "b", "datasets": [{"name": "synthetic"}], "encoders": ["nope"]}))
    address = f"http://127.0.0.1:{_free_port()}"  # nobody listens: reaching it would be a connection error
    out = partctl("submit", str(bad), "--address", address)
    assert out.returncode == 2 and "unknown encoder 'nope'" in out.stderr and "cannot reach" not in out.stderr
    out = partctl("submit", str(tmp_path / "missing.yaml"), "--address", address)
    assert out.returncode == 2 and "no such job spec" in out.stderr


def test_runtime_env_carries_the_package_and_the_spec_only(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-example")
    monkeypatch.setenv("PARTAWARE_S3_ENDPOINT", "http://minio:9000")
    (tmp_path / "spec.yaml").write_text("name: x\n")
    env = job_runtime_env(tmp_path)
    assert env["working_dir"] == str(tmp_path) and env["py_modules"] == [str(package_dir())]
    assert (package_dir() / "runs" / "driver.py").exists()
    assert env["env_vars"] == {"PARTAWARE_S3_ENDPOINT": "http://minio:9000", **_forwarded_defaults()}
    assert "example" not in json.dumps(env)
    entry = driver_entrypoint("spec.yaml", run_id="x-1")
    assert entry == "python -m partaware submit spec.yaml --in-cluster --run-id x-1"


def _forwarded_defaults() -> dict[str, str]:
    return {k: os.environ[k] for k in ("AWS_DEFAULT_REGION", "HF_HUB_OFFLINE", "AWS_ENDPOINT_URL") if os.environ.get(k)}


def test_cluster_commands_say_what_is_missing(tmp_path, partctl):
    no_aws = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **dict.fromkeys(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")),
    }
    env = no_aws
    out = partctl("cluster", "up", "--yes", env=env)
    assert out.returncode == 1 and "no AWS credentials found" in out.stderr, out.stderr
    out = partctl("cluster", "status", "--config", str(tmp_path / "nope.yaml"), env=env)
    assert out.returncode == 2 and "no cluster config" in out.stderr


@pytest.mark.s3
def test_run_records_live_on_object_storage(prepare_only, s3_bucket, tmp_path):
    """A run on an S3 root: records written over HTTP to moto, read back, resumed by id."""
    store = f"s3://{s3_bucket}/pa"
    spec = load_spec(write_spec(tmp_path, "s3run", size=8))
    run_id, results = run_job(spec, storage=store, run_id="s3run-1")
    root = StorageRoot.open(store)
    (run,) = list_runs(root)
    assert run["run_id"] == run_id and run["state"] == "succeeded" and run["complete"]
    assert (
        root.exists("runs", run_id, "stages", "prepare.json")
        and "succeeded" in root.read_bytes("runs", run_id, "driver.log").decode()
    )
    _, again = run_job(spec, storage=store, run_id=run_id)
    assert [r.status for r in again] == ["cached"] and [r.status for r in results] == ["ran"]


@pytest.mark.ray
def test_the_driver_runs_on_a_ray_already_started_in_process(ray_local, tmp_path):
    """ray_session reuses a Ray this process started (tests, notebooks) and leaves it running."""
    from partaware.runs.cluster import ray_session

    with ray_session() as address:
        run_id, results = run_job(load_spec(write_spec(tmp_path)), storage=str(tmp_path / "s"), ray_address=address)
    assert ray_local.is_initialized() and address == ray_local.get_runtime_context().gcs_address
    assert read_run(StorageRoot.open(str(tmp_path / "s")), run_id)["ray_address"] == address
    assert [r.name for r in results] == STAGE_NAMES and results[0].status == "ran"
    if "extract" in STAGE_NAMES:  # the extract stage's actors ran on this Ray
        assert dict((r.name, r.status) for r in results)["extract"] == "ran"


def test_a_failing_stage_marks_the_run_failed_with_its_error(tmp_path, monkeypatch):
    import partaware.runs.stages as stages

    def broken(ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(stages, "STAGES", [("prepare", prepare_stage.run), ("broken", broken)])
    spec, store = load_spec(write_spec(tmp_path)), str(tmp_path / "store")
    with pytest.raises(RuntimeError, match="disk on fire"):
        run_job(spec, storage=store, run_id="tiny-f")
    run = read_run(StorageRoot.open(store), "tiny-f")
    assert run["state"] == "failed" and run["error"] == "RuntimeError: disk on fire" and run["stage"] == "broken"
    assert [s["name"] for s in run["stages"]] == ["prepare"] and not run["complete"]
    assert find_resumable(StorageRoot.open(store), spec) == "tiny-f"
