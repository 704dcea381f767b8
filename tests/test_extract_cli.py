"""``partctl extract`` and ``partctl features list``: the real entry point as a user runs it, and the
extract command in-process (the only way a test-registered encoder is visible to it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _tiny_encoder import TINY
from partaware.datasets import prepare_dataset

PARTCTL = shutil.which("partctl", path=str(Path(sys.executable).parent)) or "partctl"


def partctl(*args):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([PARTCTL, *args], capture_output=True, text=True, env=env, timeout=300)


def test_extract_rejects_an_unknown_encoder_listing_the_valid_ones(tmp_path):
    out = partctl("extract", "--encoders", "no-such-encoder", "--storage", str(tmp_path))
    assert out.returncode == 2
    assert "unknown encoder 'no-such-encoder'" in out.stderr and "Valid:" in out.stderr


@pytest.mark.ray
def test_extract_then_features_list_shows_the_cached_set(ray_local, store):
    from partaware.cli import app
    from partaware.encoders.registry import ENCODERS, register_encoder

    if TINY.name not in ENCODERS:
        register_encoder(TINY)
    prepared, _ = prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 64})
    runner = CliRunner()
    args = ["extract", "--encoders", TINY.name, "--storage", store.uri, "--taps", "cls,patch:2"]
    first = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert first.exit_code == 0, first.output
    assert "ran" in first.output and "regions/s while encoding" in first.output
    second = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert second.exit_code == 0 and "cached" in second.output

    out = partctl("features", "list", "--storage", store.uri)
    assert out.returncode == 0, out.stderr
    rows = str(prepared.info["rows"])
    line = next(line for line in out.stderr.splitlines() if TINY.name in line)  # rich prints to stderr
    assert f"synthetic@{prepared.version}" in line and "cls,patch:2" in line and f" {rows} " in line


@pytest.mark.ray
def test_the_extract_stage_runs_every_dataset_and_encoder_of_a_spec_then_is_cached(ray_local, store):
    from partaware.driver import RunContext
    from partaware.encoders.registry import ENCODERS, register_encoder
    from partaware.extract.stage import job_taps, stage_extract
    from partaware.spec import parse_spec
    from partaware.stages import stage_prepare

    if TINY.name not in ENCODERS:
        register_encoder(TINY)
    spec = parse_spec(
        {
            "name": "t",
            "datasets": [{"name": "synthetic", "options": {"size": 8, "image_size": 64}}],
            "encoders": [TINY.name],
            "tasks": ["retrieval", "segmentation"],
            "resources": {"extract_batch_size": 16, "max_actors": 1, "cpus_per_actor": 0.5},
        }
    )
    assert job_taps(TINY, ["retrieval"]) == ["cls", "mean"]
    ctx = RunContext(spec=spec, root=store, run_id="r1")
    ctx.outputs["prepare"] = stage_prepare(ctx).outputs
    first = stage_extract(ctx)
    out = first.outputs["synthetic"][TINY.name]
    assert first.status == "ran" and out["rows"] > 0 and out["regions_encoded"] == out["rows"]
    from partaware.extract.features import read_features

    fs = read_features(store, out["key"], taps=["patch:12"])
    assert fs.features["patch:12"].shape == (out["rows"], 192, 4, 4)
    assert stage_extract(ctx).status == "cached"
