"""``partctl cluster up|down|attach|status``: the Ray cluster launcher (``ray up`` and friends), checked first.

The launcher's own failures on missing tooling or credentials are long tracebacks from deep inside
the provider; these commands check the same things up front and say in one line what to fix.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import typer
import yaml

from partaware.cli import app
from partaware.errors import SpecError
from partaware.progress import console
from partaware.runs.cluster import ClusterError

cluster_app = typer.Typer(help="Start, stop and reach a Ray cluster from ray_cluster.yaml (the Ray cluster launcher).")
app.add_typer(cluster_app, name="cluster")

_PROJECT_ROOT = Path(__file__).resolve().parents[3]
_CONFIG_HELP = "Ray cluster launcher config (default: ./ray_cluster.yaml, else the project's)."


def find_config(config: str | None) -> Path:
    """The launcher config: the flag, else ``./ray_cluster.yaml``, else the one beside the project."""
    candidates = [Path(config)] if config else [Path.cwd() / "ray_cluster.yaml", _PROJECT_ROOT / "ray_cluster.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise SpecError(f"no cluster config at {' or '.join(str(p) for p in candidates)}")


def check_launcher(config: Path) -> str:
    """The ``ray`` executable, once the config parses and its cloud's tooling and credentials exist."""
    ray_bin = shutil.which("ray") or shutil.which("ray", path=str(Path(sys.executable).parent))
    if not ray_bin:
        raise ClusterError("the `ray` command is not installed: pip install 'ray[default]'")
    try:
        provider = (yaml.safe_load(config.read_text()) or {}).get("provider", {}).get("type")
    except yaml.YAMLError as e:
        raise SpecError(f"{config}: not valid YAML: {e}") from None
    if provider == "aws":
        _check_aws()
    elif provider == "kuberay":
        raise ClusterError(f"{config} is a KubeRay config: use kubectl with cluster/ (see cluster/README.md)")
    return ray_bin


def _check_aws() -> None:
    """boto3 importable and some credential source present (env, profile, SSO, instance profile)."""
    try:
        import boto3
    except ImportError:
        raise ClusterError("the AWS cluster launcher needs boto3: pip install boto3") from None
    try:
        creds = boto3.Session().get_credentials()
    except Exception as e:  # a broken profile file: botocore's own words, never the secrets
        raise ClusterError(f"AWS credentials cannot be read: {type(e).__name__}: {e}") from None
    if creds is None:
        raise ClusterError(
            "no AWS credentials found: run `aws configure` (or `aws sso login`), set AWS_PROFILE, "
            "or run from a machine with an instance profile"
        )


def _launch(*args: str, config: Path) -> None:
    """Run the launcher from the config's folder: its ``file_mounts`` sync that checkout (``.``)."""
    code = subprocess.call(list(args), cwd=config.resolve().parent)
    if code:
        raise typer.Exit(code)


@cluster_app.command()
def up(
    config: str = typer.Option(None, help=_CONFIG_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Start (or update) the cluster: `ray up`."""
    path = find_config(config)
    ray_bin = check_launcher(path)
    _launch(ray_bin, "up", str(path.resolve()), *(["-y"] if yes else []), config=path)
    console.print(f"then: partctl cluster attach --config {path}  (or ray dashboard {path} for :8265)", highlight=False)


@cluster_app.command()
def down(
    config: str = typer.Option(None, help=_CONFIG_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Tear the cluster down: `ray down`."""
    path = find_config(config)
    _launch(check_launcher(path), "down", str(path.resolve()), *(["-y"] if yes else []), config=path)


@cluster_app.command()
def attach(config: str = typer.Option(None, help=_CONFIG_HELP)) -> None:
    """A shell on the head node: `ray attach`."""
    path = find_config(config)
    _launch(check_launcher(path), "attach", str(path.resolve()), config=path)


@cluster_app.command("status")
def cluster_status(config: str = typer.Option(None, help=_CONFIG_HELP)) -> None:
    """Nodes and resources of the running cluster: `ray status` on the head."""
    path = find_config(config)
    _launch(check_launcher(path), "exec", str(path.resolve()), "ray status", config=path)
