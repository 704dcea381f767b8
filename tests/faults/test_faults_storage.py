"""Storage faults: a root that is a file or read-only, S3 endpoints on 127.0.0.1 that refuse, never answer, or
fail every second request (moto behind ``FlakyS3Proxy``), and single files written in one atomic step.

Each bad root or endpoint is one ``error:`` line naming it (exit 2) within a bound set by the limits; the
flaky endpoint is survived through botocore's retries with every byte intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from _cli import PARTCTL, partctl_env
from _faults import FlakyS3Proxy, closed_port, one_error_line, s3_env, silent_server, spec_file
from _submit_specs import tiny_spec
from partaware.datasets import prepare_dataset
from partaware.datasets.store import is_intact, list_versions
from partaware.errors import StorageError, StorageUnusableError
from partaware.storage import StorageRoot


def prepare_args(store: str, size: int = 8) -> list[str]:
    return ["datasets", "prepare", "synthetic", "--size", str(size), "--image-size", "64", "--storage", store]


def test_a_storage_root_that_is_a_file(partctl, tmp_path):
    (tmp_path / "store").write_text("not a folder")
    proc = partctl(*prepare_args(str(tmp_path / "store")))
    one_error_line(proc, 2, r"storage root .*/store is a file, not a folder; pass a folder")
    with pytest.raises(StorageUnusableError, match="is a file"):
        StorageRoot.open(str(tmp_path / "store"))


def test_a_read_only_storage_root(tmp_path):
    """Refused before any work. Root ignores permission bits, so as root the command runs without the
    capability to override them (``setpriv``)."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    cmd = [PARTCTL, *prepare_args(str(ro))]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permission bits cannot be enforced")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=partctl_env(), timeout=120)
        one_error_line(proc, 2, rf"storage root {ro} cannot be written \(Permission denied\); pass a writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_an_s3_endpoint_that_refuses_connections(partctl):
    port = closed_port()
    start = time.perf_counter()
    proc = partctl(*prepare_args("s3://bucket/store"), env=s3_env(f"http://127.0.0.1:{port}"), timeout=120)
    one_error_line(proc, 2, rf"cannot connect to s3://bucket/store \(endpoint http://127\.0\.0\.1:{port}\): "
                            r"connection refused or host unreachable; check the endpoint")  # fmt: skip
    assert time.perf_counter() - start < 60


def test_an_s3_endpoint_that_never_answers_fails_in_bounded_time(partctl):
    """The server accepts connections and never sends a byte: 2 attempts of 1 s each, then one line."""
    with silent_server() as endpoint:
        start = time.perf_counter()
        proc = partctl(*prepare_args("s3://bucket/store"), env=s3_env(endpoint), timeout=120)
        took = time.perf_counter() - start
    one_error_line(proc, 2, rf"s3://bucket/store \(endpoint {re.escape(endpoint)}\) did not answer \(timeouts "
                            r"1 s to connect, 1 s to read, 2 attempts\)")  # fmt: skip
    assert took < 45, took


def test_the_specs_storage_options_win_over_the_environment(partctl, tmp_path):
    """The environment allows 5 attempts of 30 s; the spec's 1 attempt of 1 s is what the run waits."""
    spec = {**tiny_spec(), "storage_options": {"connect_timeout": 1, "read_timeout": 1, "max_attempts": 1}}
    path = spec_file(tmp_path, yaml.safe_dump(spec))
    with silent_server() as endpoint:
        start = time.perf_counter()
        proc = partctl("submit", str(path), "--storage", "s3://bucket/store",
                       env=s3_env(endpoint, timeout="30", attempts="5"), timeout=120)  # fmt: skip
        took = time.perf_counter() - start
    one_error_line(proc, 2, r"did not answer \(timeouts 1 s to connect, 1 s to read, 1 attempts\); check the "
                            r"endpoint, or raise .* \(or storage_options\.read_timeout in the job spec\)",
                   alone=False)  # fmt: skip
    assert took < 30, took


def test_bad_s3_limits_are_one_line(partctl):
    env = {**s3_env(f"http://127.0.0.1:{closed_port()}"), "PARTAWARE_S3_READ_TIMEOUT": "forever"}
    proc = partctl(*prepare_args("s3://bucket/store"), env=env)
    one_error_line(proc, 2, r"\$PARTAWARE_S3_READ_TIMEOUT='forever': expected seconds in \(0, 3600\]")


@pytest.mark.s3
def test_an_s3_endpoint_failing_every_second_request_is_survived_with_nothing_lost(s3_endpoint, s3_bucket):
    """moto behind a proxy answering 503 SlowDown to every second request: the default limits (3 attempts)
    retry through it; the version is complete, every file's bytes match its recorded sha256, and a rerun
    through the same proxy finds the version (cached)."""
    store = f"s3://{s3_bucket}/store"
    env = s3_env("", timeout="10", attempts="3")
    with FlakyS3Proxy(s3_endpoint) as proxy:
        start = time.perf_counter()
        env["PARTAWARE_S3_ENDPOINT"] = proxy.url
        proc = subprocess.run([PARTCTL, *prepare_args(store)], capture_output=True, text=True,
                              env=partctl_env(env), timeout=240)  # fmt: skip
        took = time.perf_counter() - start
        again = subprocess.run([PARTCTL, *prepare_args(store)], capture_output=True, text=True,
                               env=partctl_env(env), timeout=240)  # fmt: skip
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proxy.failed >= 20 and proxy.failed >= proxy.requests // 4, (proxy.failed, proxy.requests)
    root = StorageRoot.open(store)  # read back from moto directly, not through the proxy
    [version] = list_versions(root, "synthetic")
    assert is_intact(version.root) and len(version.manifest()) == version.info["rows"] > 0
    said = re.search(r"prepared: version (\w+), (\d+) regions, (\d+) files", proc.stderr)
    assert said and said.groups() == (version.version, str(version.info["rows"]), str(len(version.checksums())))
    for rel, sha in version.checksums().items():
        assert hashlib.sha256(version.root.read_bytes(rel)).hexdigest() == sha, rel
    assert again.returncode == 0 and version.version in again.stderr, again.stderr[-2000:]
    assert [v.version for v in list_versions(root, "synthetic")] == [version.version]
    assert took < 120, took


@pytest.mark.s3
def test_publishing_to_s3_without_expect_continue(s3_bucket):
    """Uploads skip ``Expect: 100-continue`` (a silent server would hang them): moto still takes them."""
    root = StorageRoot.open(f"s3://{s3_bucket}/store", writable=True)
    prepared, built = prepare_dataset(root, "synthetic", options={"size": 8, "image_size": 64})
    assert built and is_intact(prepared.root) and len(prepared.manifest()) > 0
    assert not prepare_dataset(root, "synthetic", options={"size": 8, "image_size": 64})[1]


# --- single files: whole or absent (probe records, markers, plans) ------------------------------


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_root(request, tmp_path) -> StorageRoot:
    if request.param == "s3":
        return StorageRoot.open(f"s3://{request.getfixturevalue('s3_bucket')}/store")
    return StorageRoot.open(str(tmp_path / "store"))


def test_a_record_is_written_in_one_step(any_root):
    """What the probe stage does with each record (``write_json``): a reader sees the old record or the new one,
    whole, never a part; a failed write leaves nothing; an exclusive write happens once; no temporary is left."""
    root = any_root
    big = {"values": list(range(30_000))}  # ~200 KB of JSON
    with pytest.raises(RuntimeError), root.open_atomic("probes", "failed.json") as f:
        f.write(b'{"half": ')
        raise RuntimeError("the writer died here")
    assert not root.exists("probes", "failed.json")

    seen, bad, stop = [], [], threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                seen.append(json.loads(root.read_bytes("probes", "key.json"))["n"])
            except StorageError:
                continue  # not written yet
            except ValueError as e:
                bad.append(repr(e)[:200])

    def write_loop(writer: int) -> None:
        for n in range(8):
            root.write_json({**big, "n": n, "writer": writer}, "probes", "key.json")

    reader = threading.Thread(target=read_loop)
    writers = [threading.Thread(target=write_loop, args=(i,)) for i in range(2)]
    for t in (reader, *writers):
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    reader.join(timeout=30)
    assert not bad and seen and root.read_json("probes", "key.json")["n"] == 7

    root.write_json({"first": True}, "probes", "once.json", exclusive=True)
    with pytest.raises(FileExistsError):
        root.write_json({"first": False}, "probes", "once.json", exclusive=True)
    assert root.read_json("probes", "once.json") == {"first": True}
    assert sorted(root.listdir("probes")) == ["key.json", "once.json"]  # no temporary file left
