"""Where a job runs: an embedded local Ray, an existing cluster, or a remote one through Ray Jobs.

- ``ray_session(address)``: no address -> start a local Ray sized to this machine (no dashboard,
  loopback only, no usage stats); a Ray address -> attach to that cluster (how the driver runs
  inside a Ray Job). Yields the address the stages run on.
- ``JobsCluster(address)``: the Ray Jobs API of a remote cluster (its dashboard, ``http://host:8265``).
  Connection problems fail within ``CONNECT_TIMEOUT_S`` and name the address; unknown job ids list
  the known ones.
- ``job_runtime_env(spec_dir)``: what travels with a submitted job: the ``partaware`` package and the
  resolved spec, nothing else (no local data, caches or credentials).

Only this module and the CLI import Ray for cluster handling.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from partaware.errors import PartawareError, UnknownNameError

CONNECT_TIMEOUT_S = 5.0
#: Environment variables a submitted job may carry: endpoints, limits and switches, never credentials.
#: The S3 limits include a spec's ``storage_options``, set for the submission (``s3_limits_applied``).
FORWARDED_ENV = (
    "PARTAWARE_S3_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "HF_HUB_OFFLINE",
    "PARTAWARE_S3_CONNECT_TIMEOUT",
    "PARTAWARE_S3_READ_TIMEOUT",
    "PARTAWARE_S3_MAX_ATTEMPTS",
)
_EMBEDDED_ENV = {  # loopback-only, no token file, no usage reporting (see stack-notes §2)
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
TERMINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "STOPPED")
_AUTH_HINT = (
    "the cluster uses token auth: set RAY_AUTH_MODE=token here, with its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
)


class ClusterError(PartawareError, ConnectionError):
    """A cluster that cannot be reached or used (the message names its address)."""


def jobs_address(flag: str | None) -> str | None:
    """The Ray Jobs (dashboard) address to submit to: the flag, else ``$RAY_ADDRESS`` if it is http(s)."""
    if flag:
        return flag if "://" in flag else f"http://{flag}"
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else None


def machine_cpus() -> int:
    """CPUs this process may use (affinity and cgroup aware, as Ray counts them); GPUs Ray detects itself."""
    from ray._private.utils import get_num_cpus

    return max(1, int(get_num_cpus()))


def machine_memory_available() -> int:
    """Bytes this process's machine can still give: its memory (or its container's limit) less what is in use,
    cgroup aware, as Ray counts them."""
    from ray._private.utils import get_system_memory, get_used_memory

    return max(0, int(get_system_memory()) - int(get_used_memory()))


@contextmanager
def ray_session(address: str | None = None, *, log: Callable[[str], None] | None = None) -> Iterator[str]:
    """Ray for the driver: an embedded local instance (no ``address``) or an existing cluster.

    Reuses a Ray this process already started (tests, notebooks) and leaves it running; otherwise
    shuts down what it started.
    """
    if not address:  # before Ray is imported: it reads these once, at import
        for key, value in _EMBEDDED_ENV.items():
            os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        yield ray.get_runtime_context().gcs_address
        return
    if address:
        _check_gcs(address)
        try:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
        except (ConnectionError, TimeoutError) as e:
            raise ClusterError(f"cannot attach to the Ray cluster at {address}: {e}") from None
        where = f"attached to cluster {address}"
    else:
        cpus = machine_cpus()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        resources = ray.cluster_resources()
        where = f"embedded Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs"
    if log:
        log(where)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def check_gpus_here(asked: dict[str, float]) -> None:
    """An embedded Ray has no autoscaler: a GPU request more than this machine has would wait forever, so it
    is refused before any stage starts. ``asked``: GPU request field -> GPUs (the fields the job uses)."""
    import ray

    have = ray.cluster_resources().get("GPU", 0.0)
    short = [f"resources.{field} {gpus:g}" for field, gpus in asked.items() if gpus > have]
    if short:
        raise ClusterError(
            f"the job asks for GPUs ({', '.join(short)}) but this machine's Ray has {have:g}, and no autoscaler "
            "adds any: submit it to a cluster (--address) or run it on CPUs (--device cpu)"
        )


def _check_gcs(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast on a ``host:port`` Ray address nobody listens on (``ray.init`` would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} within {timeout:.0f}s ({e}); "
            "check RAY_ADDRESS (the head's GCS, usually <head>:6379) and that the cluster is up"
        ) from None


def package_dir() -> Path:
    """The ``partaware`` package folder, shipped to the cluster with every job."""
    return Path(__file__).resolve().parents[1]


def job_runtime_env(spec_dir: Path) -> dict[str, Any]:
    """The job's runtime_env: the spec folder as working_dir, the package as a py_module, safe env vars.

    ``spec_dir`` must hold only the resolved spec: it is zipped and uploaded as is.
    """
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    return {
        "working_dir": str(spec_dir),
        "py_modules": [str(package_dir())],
        "excludes": ["__pycache__", "*.pyc"],
        "env_vars": env_vars,
    }


def driver_entrypoint(spec_file: str, *, run_id: str) -> str:
    """The shell command the cluster runs: ``partctl submit`` in attached mode, on the uploaded spec."""
    return shlex.join(["python", "-m", "partaware", "submit", spec_file, "--in-cluster", "--run-id", run_id])


def check_reachable(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """The Ray version the dashboard at ``address`` reports; ``ClusterError`` naming it otherwise."""
    url = address.rstrip("/") + "/api/version"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (http(s) only, checked by caller)
            return json.loads(r.read()).get("ray_version", "?")
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise ClusterError(f"{address} requires authentication: {_AUTH_HINT}") from None
        raise ClusterError(f"{address} answered HTTP {e.code} to {url}: is it a Ray dashboard (port 8265)?") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} within {timeout:.0f}s ({reason}); "
            "check the address (the head's dashboard, usually http://<head>:8265) and that the cluster is up"
        ) from None


class JobsCluster:
    """The Ray Jobs API of one cluster, with errors that name the address and the known job ids."""

    def __init__(self, address: str, *, timeout: float = CONNECT_TIMEOUT_S):
        if not address.startswith(("http://", "https://")):
            raise ClusterError(f"{address!r} is not a Ray Jobs address; use http://<head>:8265")
        self.address = address.rstrip("/")
        self.ray_version = check_reachable(self.address, timeout=timeout)
        from ray.job_submission import JobSubmissionClient

        try:
            self.client = JobSubmissionClient(self.address)
        except Exception as e:  # auth required, version mismatch: Ray's own words, with the address
            hint = f" ({_AUTH_HINT})" if "uthentication" in f"{type(e).__name__} {e}" else ""
            raise ClusterError(f"cannot use the Ray Jobs API at {self.address}: {e}{hint}") from None

    def submit(self, entrypoint: str, *, runtime_env: dict[str, Any], job_id: str, metadata: dict[str, str]) -> str:
        try:
            return self.client.submit_job(
                entrypoint=entrypoint, runtime_env=runtime_env, submission_id=job_id, metadata=metadata
            )
        except Exception as e:
            raise ClusterError(f"{self.address} refused the job: {e}") from None

    def jobs(self) -> list[Any]:
        """Every job the cluster knows (``JobDetails``), oldest first."""
        return sorted(self.client.list_jobs(), key=lambda j: j.start_time or 0)

    def job_ids(self) -> list[str]:
        return [j.submission_id or j.job_id for j in self.jobs() if (j.submission_id or j.job_id)]

    def job(self, job_id: str) -> Any:
        """The job's details; ``UnknownNameError`` listing the cluster's job ids when there is none."""
        for j in self.jobs():
            if job_id in (j.submission_id, j.job_id):
                return j
        raise UnknownNameError(f"job on {self.address}", job_id, self.job_ids())

    def status(self, job_id: str) -> str:
        return str(self.job(job_id).status.value)

    def logs(self, job_id: str) -> str:
        self.job(job_id)
        return self.client.get_job_logs(job_id)

    def follow(self, job_id: str, write: Callable[[str], None]) -> str:
        """Stream the job's logs until it ends; returns its final status."""
        self.job(job_id)

        async def _tail() -> None:
            async for chunk in self.client.tail_job_logs(job_id):
                write(chunk)

        asyncio.run(_tail())
        return self.status(job_id)

    def stop(self, job_id: str) -> bool:
        self.job(job_id)
        return self.client.stop_job(job_id)
