"""The real ``partctl`` entry point, run as a subprocess the way a user runs it."""

import pyarrow.parquet as pq
import pytest
import yaml

from _submit_specs import tiny_spec


def test_help_lists_the_commands(partctl):
    out = partctl("--help")
    assert out.returncode == 0
    for command in ("submit", "validate", "datasets", "data"):
        assert command in out.stdout
    assert partctl("--version").stdout.startswith("partctl ")


def test_data_prepare_synthetic_writes_images_and_manifest(partctl, tmp_path):
    store = tmp_path / "store"
    out = partctl("datasets", "prepare", "synthetic", "--size", "16", "--image-size", "64", "--storage", str(store))
    assert out.returncode == 0, out.stderr
    assert "prepared: version" in out.stderr
    (version,) = [p for p in (store / "datasets" / "synthetic").iterdir() if not p.name.startswith(("_", "."))]
    assert (version / "_SUCCESS").exists()
    assert len(list((version / "images").glob("*.jpg"))) == 16
    assert pq.read_table(version / "manifest.parquet", use_threads=False).num_rows > 16
    again = partctl("datasets", "prepare", "synthetic", "--size", "16", "--image-size", "64", "--storage", str(store))
    assert again.returncode == 0 and "already prepared" in again.stderr
    listed = partctl("datasets", "list", "--storage", str(store))
    assert version.name in listed.stdout + listed.stderr


def test_unknown_dataset_lists_valid_ones(partctl, tmp_path):
    out = partctl("datasets", "prepare", "synthtic", "--storage", str(tmp_path))
    assert out.returncode == 2
    assert "unknown dataset 'synthtic'. Did you mean 'synthetic'? Valid: " in out.stderr
    assert "cub, " in out.stderr and ", synthetic" in out.stderr  # every registered dataset is listed


def test_bad_spec_is_one_line_and_exit_code_2(partctl, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "b", "datasets": [{"name": "synthetic"}], "levels": ["whole"]}))
    for command in ("validate", "submit"):
        extra = ["--storage", str(tmp_path)] if command == "submit" else []
        out = partctl(command, str(bad), *extra)
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "levels.0" in lines[0] and "'object' or 'part'" in lines[0] and "'whole'" in lines[0]


@pytest.mark.ray
def test_submit_runs_the_existing_stages_and_resumes(partctl, tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec("tiny")))  # a tiny random-weight ViT declared in the spec: no download
    store = tmp_path / "store"
    first = partctl("submit", str(spec), "--storage", str(store))
    assert first.returncode == 0, first.stderr
    second = partctl("submit", str(spec), "--storage", str(store))
    assert second.returncode == 0 and "cached" in second.stderr
    runs = sorted((store / "runs").iterdir())
    assert len(runs) == 2 and all((r / "_SUCCESS").exists() and (r / "spec.yaml").exists() for r in runs)


@pytest.mark.parametrize("flag", [["--levels", "object,whole"], ["--encoders", "nope"], ["--datasets", "imagenet9"]])
def test_submit_flags_are_validated(partctl, tmp_path, flag):
    out = partctl("submit", "quickstart", *flag, "--storage", str(tmp_path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
