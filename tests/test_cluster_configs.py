"""The cluster configs: ray_cluster.yaml against Ray's own autoscaler schema, the KubeRay manifests and
the image recipe parsed and checked for the fields that make them work (GPU workers from zero, the
package installed, S3 through roles, never keys)."""

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
    assert set(prepared["available_node_types"]) == {"head", "gpu_small", "gpu_large"}


def test_launcher_head_is_cpu_and_gpu_workers_scale_from_zero(launcher):
    assert launcher["provider"]["type"] == "aws" and launcher["idle_timeout_minutes"] > 0
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")) and head["resources"] == {"CPU": 0}
    gpu_types = {n: t for n, t in types.items() if t["node_config"]["InstanceType"].startswith(("g", "p"))}
    assert len(gpu_types) >= 2
    for name, t in gpu_types.items():
        assert t["min_workers"] == 0 and 0 < t["max_workers"] <= launcher["max_workers"], name
        assert t["node_config"]["IamInstanceProfile"]["Name"], f"{name}: S3 through an instance profile"


def test_launcher_installs_partaware_at_the_pinned_ray(launcher):
    ray_pin = _pins()["ray"]
    assert ray_pin == ray.__version__
    for key in ("image", "head_image"):
        assert launcher["docker"][key].startswith(f"rayproject/ray:{ray_pin}-py3"), key
    (remote, local), *_ = launcher["file_mounts"].items()
    assert local == "." and any(f"pip install --no-cache-dir -e {remote}" in c for c in launcher["setup_commands"])
    excluded = " ".join(launcher["rsync_exclude"])
    for local_only in (".venv", "partaware-store", ".git"):
        assert local_only in excluded, f"{local_only} must not be synced to the cluster"
    assert "--disable-usage-stats" in " ".join(launcher["head_start_ray_commands"])


@pytest.mark.parametrize(
    "path", ["ray_cluster.yaml", "cluster/raycluster.yaml", "cluster/rayjob.yaml", "cluster/Dockerfile"]
)
def test_no_credentials_in_any_cluster_file(path):
    assert not SECRET_PATTERNS.search((ROOT / path).read_text()), path


@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict]:
    docs = list(yaml.safe_load_all((CLUSTER / "raycluster.yaml").read_text()))
    docs += list(yaml.safe_load_all((CLUSTER / "rayjob.yaml").read_text()))
    return {d["kind"]: d for d in docs}


def test_raycluster_autoscales_gpu_workers_from_zero(kuberay):
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
    for g in gpu_groups:
        assert g["minReplicas"] == 0 and g["replicas"] == 0 and g["maxReplicas"] >= 1
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
        assert any(t["key"] == "nvidia.com/gpu" for t in g["template"]["spec"]["tolerations"])


def test_kuberay_pods_reach_s3_through_a_role_not_keys(kuberay):
    sa = kuberay["ServiceAccount"]
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    rc = kuberay["RayCluster"]
    groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    for g in groups:
        pod = g["template"]["spec"]
        assert pod["serviceAccountName"] == sa["metadata"]["name"]
        for c in pod["containers"]:
            names = {e["name"] for e in c.get("env", [])}
            assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_rayjob_runs_partctls_driver_on_the_raycluster(kuberay):
    from typer.testing import CliRunner

    from partaware.cli import app

    job, rc = kuberay["RayJob"], kuberay["RayCluster"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == rc["metadata"]["name"]
    argv = job["spec"]["entrypoint"].split()
    assert argv[:4] == ["python", "-m", "partaware", "submit"] and "--in-cluster" in argv
    spec_path = argv[4]
    assert spec_path.startswith("/home/ray/partaware/jobs/") and (ROOT / "jobs" / Path(spec_path).name).exists()
    # every option the entrypoint passes is one `partctl submit` accepts
    help_text = CliRunner().invoke(app, ["submit", "--help"], env={"COLUMNS": "200"}).output
    for option in (a for a in argv[5:] if a.startswith("--")):
        assert option in help_text or option == "--in-cluster", option


def test_dockerfile_builds_on_the_pinned_ray_and_installs_only_the_package():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"RAY_IMAGE=rayproject/ray:{re.escape(ray.__version__)}-py3\d+", text)
    copies = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    sources = {s for line in copies for s in line.split()}
    assert sources == {"pyproject.toml", "README.md", "platform", "jobs"}
    assert "pip install --no-cache-dir -e ." in text
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert ignore[0] == "**" and all(line.startswith(("!", "**/")) for line in ignore[1:])
    workdir = re.search(r"^WORKDIR (\S+)", text, re.M).group(1)
    rayjob = (CLUSTER / "rayjob.yaml").read_text()
    assert f"{workdir}/jobs/" in rayjob, "the RayJob's spec path is where the image puts jobs/"


def test_cluster_guide_exists_and_names_every_file():
    guide = (CLUSTER / "README.md").read_text()
    for name in ("ray_cluster.yaml", "raycluster.yaml", "rayjob.yaml", "Dockerfile", "partctl cluster up"):
        assert name in guide, name
    assert os.path.exists(ROOT / "docs" / "submit.md")
