"""The cluster configs: ray_cluster.yaml against Ray's own autoscaler schema, the KubeRay manifests and
the image recipe parsed and checked for the fields that make them work (CPU and GPU workers from zero, one
image with pinned versions and nothing installed at node start, /dev/shm, S3 through roles, never keys)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
SECRET_PATTERNS = re.compile(r"aws_access_key_id|aws_secret_access_key|AKIA[0-9A-Z]{12,}|secretKey|SECRET_ACCESS", re.I)


def _pins() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    return dict(re.findall(r'"([a-z]+)(?:\[[^\]]*\])?==([0-9.]+)"', text))


@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def test_launcher_config_passes_rays_schema_before_and_after_defaults(launcher):
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    prepared = prepare_config(launcher)  # merges Ray's AWS defaults, as `ray up` does
    validate_config(prepared)
    assert set(prepared["available_node_types"]) == {"head", "cpu", "gpu_small", "gpu_large"}


def test_launcher_head_is_cpu_and_cpu_and_gpu_workers_scale_from_zero(launcher):
    assert launcher["provider"]["type"] == "aws" and launcher["idle_timeout_minutes"] > 0
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")) and head["resources"] == {"CPU": 0}
    gpu_types = {n: t for n, t in types.items() if t["node_config"]["InstanceType"].startswith(("g", "p"))}
    cpu_types = {n: t for n, t in types.items() if n != launcher["head_node_type"] and n not in gpu_types}
    assert len(gpu_types) >= 2 and cpu_types, "GPU worker types and a CPU worker type (CPU work never starts GPUs)"
    for name, t in {**gpu_types, **cpu_types}.items():
        assert t["min_workers"] == 0 and 0 < t["max_workers"] <= launcher["max_workers"], name
        assert t["node_config"]["IamInstanceProfile"]["Name"], f"{name}: S3 through an instance profile"
    assert sum(t["max_workers"] for t in types.values()) <= launcher["max_workers"]


def test_launcher_runs_the_project_image_and_installs_nothing_at_node_start(launcher):
    image = launcher["docker"]["image"]
    assert "head_image" not in launcher["docker"] and "worker_image" not in launcher["docker"], "one image"
    for manifest in ("raycluster.yaml",):
        assert image in (CLUSTER / manifest).read_text(), f"{manifest} runs the same image"
    assert "cluster/Dockerfile" in (ROOT / "ray_cluster.yaml").read_text()
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands"):
        assert not launcher.get(key), f"{key}: the image holds the environment"
    assert not launcher.get("file_mounts"), "nothing synced: each job uploads the package"
    assert any(o.startswith("--shm-size") for o in launcher["docker"]["run_options"])
    assert "--disable-usage-stats" in " ".join(launcher["head_start_ray_commands"])


@pytest.mark.parametrize(
    "path", ["ray_cluster.yaml", "cluster/raycluster.yaml", "cluster/rayjob.yaml", "cluster/Dockerfile"]
)
def test_no_credentials_in_any_cluster_file(path):
    assert not SECRET_PATTERNS.search((ROOT / path).read_text()), path


@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((CLUSTER / "raycluster.yaml").read_text()))
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def rayjobs() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text())}


def _groups(rc: dict) -> list[dict]:
    return [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]


def test_raycluster_autoscales_cpu_and_gpu_workers_from_zero(kuberay):
    rc = kuberay["RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1" and rc["spec"]["rayVersion"] == ray.__version__
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    head = rc["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert 8265 in [p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]]
    gpu_groups = [
        g
        for g in rc["spec"]["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert gpu_groups, "a GPU worker group"
    cpu_groups = [g for g in rc["spec"]["workerGroupSpecs"] if g not in gpu_groups]
    assert cpu_groups, "a CPU worker group: CPU work never starts GPU pods"
    for g in rc["spec"]["workerGroupSpecs"]:
        assert g["minReplicas"] == 0 and g["replicas"] == 0 and g["maxReplicas"] >= 1
    for g in gpu_groups:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert any(t["key"] == "nvidia.com/gpu" for t in g["template"]["spec"]["tolerations"])
    launcher = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert len(rc["spec"]["workerGroupSpecs"]) == len(launcher["available_node_types"]) - 1, "the same node types"


def test_every_kuberay_pod_runs_the_image_with_a_memory_backed_dev_shm(kuberay):
    images = set()
    for g in _groups(kuberay["RayCluster"]):
        pod = g["template"]["spec"]
        shm = {v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"}
        for c in pod["containers"]:
            images.add(c["image"])
            assert any(m["mountPath"] == "/dev/shm" and m["name"] in shm for m in c["volumeMounts"]), c["name"]
    assert len(images) == 1 and "partaware" in images.pop()


def test_kuberay_pods_reach_s3_through_a_role_not_keys(kuberay):
    sa = kuberay["ServiceAccount"]
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    for g in _groups(kuberay["RayCluster"]):
        pod = g["template"]["spec"]
        assert pod["serviceAccountName"] == sa["metadata"]["name"]
        for c in pod["containers"]:
            names = {e["name"] for e in c.get("env", [])}
            assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


@pytest.mark.parametrize(("name", "spec", "gpus"), [("partaware-quickstart", "quickstart", False),
                                                    ("partaware-paper", "paper", True)])  # fmt: skip
def test_rayjobs_run_partctls_driver_on_the_raycluster_cpu_and_gpu(rayjobs, kuberay, name, spec, gpus):
    """A CPU RayJob (quickstart: asks no GPU) beside a GPU one (jobs/paper.yaml: asks a GPU for its stages);
    each entrypoint's options are ones `partctl submit` accepts, and its spec, as the entrypoint resolves it,
    asks for GPUs exactly when the job is the GPU one."""
    from typer.testing import CliRunner

    from partaware.cli import app
    from partaware.cli.jobs import spec_with_overrides

    job, rc = rayjobs[name], kuberay["RayCluster"]
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == rc["metadata"]["name"]
    argv = job["spec"]["entrypoint"].split()
    assert argv[:4] == ["python", "-m", "partaware", "submit"] and "--in-cluster" in argv
    spec_path = argv[4]
    assert spec_path == f"/home/ray/partaware/jobs/{spec}.yaml" and (ROOT / "jobs" / f"{spec}.yaml").exists()
    help_text = CliRunner().invoke(app, ["submit", "--help"], env={"COLUMNS": "200"}).output
    options = [a for a in argv[5:] if a.startswith("--")]
    for option in options:
        assert option in help_text or option == "--in-cluster", option
    device = argv[argv.index("--device") + 1] if "--device" in argv else None
    resolved = spec_with_overrides(str(ROOT / "jobs" / f"{spec}.yaml"), device=device)
    asks = {f: getattr(resolved.resources, f) for f in resolved.gpu_stages()}
    assert all(g > 0 for g in asks.values()) if gpus else not any(asks.values()), asks
    assert (resolved.device == "cuda") == gpus


def test_dockerfile_builds_on_the_pinned_ray_and_installs_only_the_package():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"RAY_IMAGE=rayproject/ray:{re.escape(ray.__version__)}-py3\d+", text)
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    sources = {s for line in copies for s in line.split()}
    assert sources == {"pyproject.toml", "README.md", "cluster/constraints.txt", "platform", "jobs"}
    assert "pip install --no-cache-dir -e . -c cluster/constraints.txt" in text
    assert re.search(rf"RAY_IMAGE=rayproject/ray:{re.escape(ray.__version__)}-py3\d+-cpu", text), "one CUDA stack"
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "**" and all(line.startswith(("!", "**/")) for line in ignore[1:])
    workdir = re.search(r"^WORKDIR (\S+)", text, re.M).group(1)
    rayjob = (CLUSTER / "rayjob.yaml").read_text()
    assert f"{workdir}/jobs/" in rayjob, "the RayJob's spec path is where the image puts jobs/"


def test_constraints_pin_exactly_what_the_package_needs():
    """Every line of cluster/constraints.txt is an exact pin, and they agree with pyproject.toml's."""
    pins = dict(line.split("==") for line in (CLUSTER / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))  # fmt: skip
    assert all(v and "<" not in v and ">" not in v for v in pins.values())
    for name, version in _pins().items():
        assert pins.get(name) == version, name


def test_cluster_guide_exists_and_names_every_file():
    guide = (CLUSTER / "README.md").read_text()
    for name in ("ray_cluster.yaml", "raycluster.yaml", "rayjob.yaml", "Dockerfile", "partctl cluster up"):
        assert name in guide, name
    assert os.path.exists(ROOT / "docs" / "submit.md")
