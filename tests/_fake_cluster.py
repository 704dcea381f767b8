"""A Ray head with Ray's fake multi-node autoscaler: worker nodes of typed shapes that join on demand.

The provider is Ray's ``FakeMultiNodeProvider`` (type ``fake_multinode``), loaded as an external provider
only to give each node its own runtime-env folder (tests/_fake_provider.py says why).

Ray 2.60's ``ray.cluster_utils.AutoscalingCluster`` cannot be used here: its template
(``fake_multi_node/example.yaml``) is missing from the wheel, and its ``start``/``shutdown`` run
``ray stop --force``, which ends every Ray on the machine. So the config is written here and the head is
started as ``ray start --head --block`` in its own process group (``RAY_FAKE_CLUSTER=1``), on free ports,
with its own temp dir. The autoscaler's monitor starts each "node" as a raylet on this machine; a node of
the GPU-typed shape advertises a ``GPU`` resource that has no device behind it (what cannot exist on a
CI machine: a real GPU). Teardown signals the head's process group, then ends any process still running
from this cluster's temp dir by its pid; never ``ray stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def autoscaling_config(node_types: dict[str, dict], *, gcs_port: int, idle_timeout_minutes: float) -> dict:
    """An autoscaler config for the fake provider: a head with no CPUs for work, ``node_types`` from 0."""
    types = {HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}}
    for name, t in node_types.items():
        types[name] = {"resources": dict(t["resources"]), "node_config": {}, "min_workers": 0,
                       "max_workers": t.get("max_workers", 1)}  # fmt: skip
    return {
        "cluster_name": f"pa-fake-{gcs_port}",
        "max_workers": sum(t["max_workers"] for t in types.values()),
        "upscaling_speed": 10.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {  # Ray's fake_multinode provider, each node's runtime envs in a folder of its own
            "type": "external",
            "module": "_fake_provider.SeparateFoldersFakeProvider",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": f"127.0.0.1:{gcs_port}",
        },  # fmt: skip
        "auth": {"ssh_user": "ray"},
        "docker": {},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class FakeCluster:
    jobs_address: str  # the dashboard: partctl submit --address
    gcs_address: str  # ray.init(address=...)
    temp_dir: str
    head: subprocess.Popen

    def nodes(self) -> list[dict]:
        """Every node the GCS knows, alive or dead (``ray list nodes`` over the dashboard's state API)."""
        url = f"{self.jobs_address}/api/v0/nodes?limit=1000&detail=1"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())["data"]["result"]["result"]

    def workers(self, *, alive: bool | None = None) -> list[dict]:
        """Worker nodes (the head left out); each with ``resources_total`` and ``state`` (ALIVE | DEAD)."""
        out = [n for n in self.nodes() if not n.get("is_head_node")]
        return [n for n in out if alive is None or (n["state"] == "ALIVE") == alive]

    def descendants(self) -> list[int]:
        """Pids of the head's process tree: its GCS, raylet, monitor, and the fake nodes the monitor started."""
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        tree, frontier = set(), {self.head.pid}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
            tree |= frontier
        return sorted(tree)

    @staticmethod
    def title(pid: int) -> str:
        """A process's command line (Ray workers show their actor's class there)."""
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""

    def node_pids(self) -> list[int]:
        """Pids of every process still running from this cluster's temp dir (its raylets, workers, GCS)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if self.temp_dir in cmdline:
                    pids.append(int(entry))
        return pids


@contextlib.contextmanager
def fake_autoscaling_cluster(node_types: dict[str, dict], *, idle_timeout_minutes: float = 0.25,
                             start_timeout_s: float = 120) -> Iterator[FakeCluster]:  # fmt: skip
    """Start the head (blocks until its Jobs API answers); yields a ``FakeCluster``; ends it all."""
    venv_bin = str(Path(sys.executable).parent)
    temp_dir = tempfile.mkdtemp(prefix="pa-fk-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dashboard = free_port(), free_port()
    config = Path(temp_dir) / "autoscaling.yaml"
    config.write_text(yaml.safe_dump(autoscaling_config(node_types, gcs_port=gcs,
                                                        idle_timeout_minutes=idle_timeout_minutes)))  # fmt: skip
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # the fake nodes' and the job's `ray`/`python`
        "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("RAY_ADDRESS", None)
    ports = {
        "--port": gcs, "--dashboard-port": dashboard, "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
        "--ray-client-server-port": free_port(), "--node-manager-port": free_port(),
        "--object-manager-port": free_port(), "--runtime-env-agent-port": free_port(),
    }  # fmt: skip
    cmd = [os.path.join(venv_bin, "ray"), "start", "--head", "--block", "--num-cpus", "0", "--num-gpus", "0",
           "--disable-usage-stats", "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
           "--temp-dir", temp_dir, f"--autoscaling-config={config}"]  # fmt: skip
    cmd += [str(x) for kv in ports.items() for x in kv]
    log = open(os.path.join(temp_dir, "head.log"), "w")  # noqa: SIM115 (closed in teardown)
    head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    cluster = FakeCluster(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", temp_dir, head)
    try:
        deadline = time.time() + start_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{cluster.jobs_address}/api/version", timeout=2).read()
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"ray head did not start: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield cluster
    finally:
        stop(cluster)
        log.close()


def stop(cluster: FakeCluster) -> None:
    """SIGTERM the head's process group, then SIGKILL it and any of this cluster's processes left (by pid)."""
    head = cluster.head
    tree = cluster.descendants()  # before the group goes: orphans would leave the tree
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=10)
    deadline = time.time() + 10
    while (pids := [p for p in tree if Path(f"/proc/{p}").exists()] + cluster.node_pids()) and time.time() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
