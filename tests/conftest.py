"""Shared fixtures: a temporary storage root, an S3-compatible server on 127.0.0.1, a local Ray,
headless Chromium, and the real ``partctl`` in a subprocess.

Nothing here is mocked except what cannot exist on a test machine: S3 itself is replaced by moto's
real HTTP server (the code under test speaks HTTP to it through s3fs/botocore, exactly as to AWS).

Markers: a test that starts Ray is marked ``ray``, one that talks to the S3 server ``s3``, one that opens
Chromium ``browser``, one that trains for long ``slow``; ``make test-fast`` runs the rest
(``-m "not ray and not s3 and not browser and not slow"``). The guards below fail a test that uses Ray,
S3 or Chromium without its marker, so the fast lane never starts them by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from _cli import run_partctl

# Set before anything imports Ray or timm: no hub downloads, no usage stats, Ray on loopback only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TQDM_DISABLE", "1")


#: fixture -> the marker a test using it (directly or through another fixture) must carry
NEEDS_MARKER = {"ray_local": "ray", "ray_head": "ray", "s3_endpoint": "s3", "s3_bucket": "s3", "chromium": "browser"}


def _marks(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers()}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up (no Ray started, no server): the markers match the fixtures used."""
    marks = _marks(item)
    missing = [
        f"{f} needs @pytest.mark.{m}" for f, m in NEEDS_MARKER.items() if f in item.fixturenames and m not in marks
    ]
    if missing:
        pytest.fail(f"{item.nodeid}: {'; '.join(missing)} (or it runs in the fast lane)", pytrace=False)


def _ray_running_here() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def _no_unmarked_ray_in_process(request):
    """A test not marked ``ray`` must not start Ray in this process (Ray Data and Tune start one on demand)."""
    before = _ray_running_here()
    yield
    if not before and _ray_running_here() and "ray" not in _marks(request.node):
        pytest.fail(f"{request.node.nodeid} started Ray without @pytest.mark.ray", pytrace=False)


@pytest.fixture
def partctl(request) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``partctl(*args, timeout=300, env=None, cwd=None)``: the real CLI in a subprocess (tests/_cli.py).

    In a test not marked ``ray`` the command gets its own empty ``RAY_TMPDIR``: a local Ray started by it
    leaves a session folder there, and the test fails saying so.
    """
    marked = "ray" in _marks(request.node)

    def run(*args: str, env: dict[str, str | None] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
        if marked:
            return run_partctl(*args, env=env, **kwargs)
        ray_tmp = tempfile.mkdtemp(prefix="pa-ray-")  # short: Ray's socket paths live under it
        try:
            out = run_partctl(*args, env={"RAY_TMPDIR": ray_tmp, **(env or {})}, **kwargs)
            if any(Path(ray_tmp).iterdir()):
                pytest.fail(f"`partctl {' '.join(args)}` started a local Ray: mark the test @pytest.mark.ray")
            return out
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)

    return run


@pytest.fixture
def chromium():
    """``chromium(html_path, tmp_path, width=..., height=...)``: the page in headless Chromium, returning
    (DOM text, console error lines, screenshot path). Needs the ``browser`` marker."""
    from report_data import render_in_chromium

    return render_in_chromium


@pytest.fixture
def store(tmp_path):
    """A fresh local storage root."""
    from partaware.storage import StorageRoot

    return StorageRoot.open(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (random port), with dummy credentials in the environment."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A new bucket on the test server; ``PARTAWARE_S3_ENDPOINT`` points at the server."""
    import boto3

    name = f"pa-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    monkeypatch.setenv("PARTAWARE_S3_ENDPOINT", s3_endpoint)
    return name


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the whole session (2 CPUs, no dashboard): starting Ray costs seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Other work shares the machine's two cores: one torch thread keeps training tests polite and steady."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
