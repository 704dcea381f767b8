"""``partctl extract`` and ``partctl features list``: the real entry point as a user runs it, and the
extract command in-process (the only way a test-registered encoder is visible to it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from _tiny_encoder import TINY
from partaware.datasets import prepare_dataset

WIDE = {"COLUMNS": "250"}


def test_extract_rejects_an_unknown_encoder_listing_the_valid_ones(partctl, tmp_path):
    out = partctl("extract", "--encoders", "no-such-encoder", "--storage", str(tmp_path), env=WIDE)
    assert out.returncode == 2
    assert "unknown encoder 'no-such-encoder'" in out.stderr and "Valid:" in out.stderr


@pytest.mark.ray
def test_extract_then_features_list_shows_the_cached_set(ray_local, store, partctl):
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

    out = partctl("features", "list", "--storage", store.uri, env=WIDE)
    assert out.returncode == 0, out.stderr
    rows = str(sum(i >= 0 for i in prepared.manifest().column("label_id").to_pylist()))
    line = next(line for line in out.stdout.splitlines() if TINY.name in line)  # tables go to stdout
    assert f"synthetic@{prepared.version}" in line and "cls,patch:2" in line and f" {rows} " in line


@pytest.mark.ray
def test_the_extract_stage_runs_every_dataset_and_encoder_of_a_spec_then_is_cached(ray_local, store):
    from partaware.encoders.registry import ENCODERS, register_encoder
    from partaware.extract.features import read_features
    from partaware.probes.tasks import job_taps
    from partaware.runs.driver import RunContext
    from partaware.runs.records import ExtractOutput, read_output, write_record
    from partaware.runs.stages import extract, prepare
    from partaware.spec import parse_spec

    if TINY.name not in ENCODERS:
        register_encoder(TINY)
    spec = parse_spec(
        {
            "name": "t",
            "datasets": [{"name": "synthetic", "options": {"size": 8, "image_size": 64}}],
            "encoders": [TINY.name],
            "tasks": ["retrieval", "attentive"],
            "resources": {"extract_batch_size": 16, "max_actors": 1, "cpus_per_actor": 0.5},
        }
    )
    assert job_taps(TINY, ["retrieval"]) == ["cls", "mean"]
    assert job_taps(TINY, ["attentive"], {"attentive": "cls+last-block"}) == ["cls", "mean", "patch:12"]
    ctx = RunContext(spec=spec, root=store, run_id="r1")
    write_record(ctx.run_root, prepare.run(ctx))  # later stages read earlier stages' records from storage
    first = extract.run(ctx)
    write_record(ctx.run_root, first)
    (out,) = read_output(ctx.run_root, ExtractOutput).feature_sets
    assert first.status == "ran" and out.rows > 0 and out.taps == ["cls", "mean", "tokens"]
    fs = read_features(store, out.key, taps=["tokens"])
    assert fs.features["tokens"].shape == (out.rows, 1 + 16, 192)  # CLS + 4x4 patches, after the final norm
    assert extract.run(ctx).status == "cached"
