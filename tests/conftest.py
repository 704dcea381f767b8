"""Shared fixtures: a temporary storage root, an S3-compatible server on 127.0.0.1, a local Ray.

Nothing here is mocked except what cannot exist on a test machine: S3 itself is replaced by moto's
real HTTP server (the code under test speaks HTTP to it through s3fs/botocore, exactly as to AWS).
"""

from __future__ import annotations

import os
import uuid

import pytest

# Set before anything imports Ray or timm: no hub downloads, no usage stats, Ray on loopback only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TQDM_DISABLE", "1")


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
