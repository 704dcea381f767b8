"""Bad job specs and the one error path: each is one ``error:`` line naming the input, exit 2, before any Ray
process or run folder exists, within seconds. Also the spec's ``storage_options`` (S3 limits for a run).

Real files and the real ``partctl`` in a subprocess; nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from _faults import one_error_line, spec_file
from partaware.cli import describe_error
from partaware.errors import SpecError
from partaware.runs.cluster import job_runtime_env
from partaware.spec import dump_spec, load_spec, parse_spec
from partaware.storage import S3Limits, s3_limits, s3_limits_applied

GOOD = {"name": "t", "datasets": [{"name": "synthetic", "options": {"size": 16, "image_size": 64}}]}
COCO_REF = {"name": "coco", "source": "/x", "options": {"keypoints": [0]}}
DEPTH_SEARCH = {"linear": {"depth": {"type": "choice", "values": [1]}}}
S3_VARS = ("PARTAWARE_S3_CONNECT_TIMEOUT", "PARTAWARE_S3_READ_TIMEOUT", "PARTAWARE_S3_MAX_ATTEMPTS")

ALIAS_BOMB = """name: bomb
datasets:
  - name: synthetic
    options:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""
SEARCH_BOMB = """name: bomb
datasets: [{name: synthetic}]
tasks: [linear]
search:
  linear:
    lr: {type: choice, values: &v [1, 2, 3]}
    weight_decay: {type: choice, values: *v}
"""


def _dump(**changes) -> str:
    return yaml.safe_dump({**GOOD, **changes})


SPEC_CASES = [
    ("alias bomb in options", ALIAS_BOMB, r"job\.yaml: line 5, column 10 YAML anchor &a refused"),
    ("alias in a search space", SEARCH_BOMB, r"YAML anchor &v refused: job specs may not use anchors or aliases"),
    ("deep nesting", "name: x\ndatasets: " + "[" * 5000 + "]" * 5000 + "\n", r"refused: nested deeper than 32"),
    ("unknown dataset option", _dump(datasets=[{"name": "synthetic", "options": {"sise": 8}}]),
     r"datasets\.0\.options\.sise: unknown field \(valid fields: size, image_size"),
    ("negative dataset option", _dump(datasets=[{"name": "synthetic", "options": {"size": -3}}]),
     r"datasets\.0\.options\.size: Input should be greater than or equal to 8 \(got -3\)"),
    ("typed options of a real converter", _dump(levels=["part"], datasets=[COCO_REF]),
     r"datasets\.0\.options\.keypoints: keypoint ids \[0\] are not in 1\.\.17"),
    ("a real dataset without a source", _dump(datasets=[{"name": "cub"}]),
     r"datasets\.0\.source: dataset cub needs a source"),
    ("unknown search parameter", _dump(tasks=["linear"], search=DEPTH_SEARCH),
     r"search\.linear: unknown parameter\(s\) \['depth'\]"),
    ("unbounded size", _dump(resources={"extract_batch_size": 10**9}),
     r"resources\.extract_batch_size: 1000000000 is above the limit 65536"),
    ("unknown storage option", _dump(storage_options={"read_timout": 5}),
     r"storage_options\.read_timout: unknown field \(valid fields: connect_timeout, read_timeout, max_attempts\)"),
    ("unbounded storage timeout", _dump(storage_options={"connect_timeout": 7200}),
     r"storage_options\.connect_timeout: Input should be less than or equal to 3600 \(got 7200\)"),
    ("zero storage attempts", _dump(storage_options={"max_attempts": 0}),
     r"storage_options\.max_attempts: Input should be greater than or equal to 1 \(got 0\)"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "pattern"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_specs_fail_validate_in_one_line(partctl, tmp_path, case, text, pattern):
    start = time.perf_counter()
    proc = partctl("validate", str(spec_file(tmp_path, text)), timeout=60)
    one_error_line(proc, 2, pattern)
    assert time.perf_counter() - start < 30


def test_every_dataset_types_its_options_without_torch():
    """Spec validation checks each dataset's options against its converter's model, importing no torch."""
    code = (
        "import sys\n"
        "from pydantic import BaseModel\n"
        "from partaware.datasets import DATASETS, options_model\n"
        "for name in DATASETS.names():\n"
        "    model = options_model(name)\n"
        "    assert issubclass(model, BaseModel) and model.model_config.get('extra') == 'forbid', name\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_spec_paths_that_are_not_specs(partctl, tmp_path):
    """A folder, a non-UTF-8 file and an oversized file: one line naming the file, exit 2."""
    (tmp_path / "folder.yaml").mkdir()
    one_error_line(partctl("validate", str(tmp_path / "folder.yaml")), 2, r"folder\.yaml: is a folder, not a job spec")
    latin = spec_file(tmp_path, "", "latin.yaml")
    latin.write_bytes(b"name: caf\xe9\ndatasets: []\n")
    one_error_line(partctl("validate", str(latin)), 2, r"latin\.yaml: line 1: not UTF-8 text \(byte 0xe9 at offset 9\)")
    big = spec_file(tmp_path, "name: x\n# " + "x" * (2 << 20) + "\n", "big.yaml")
    one_error_line(partctl("validate", str(big)), 2, r"big\.yaml: job spec is larger than 1 MiB")


def test_a_bad_spec_fails_submit_before_ray_or_a_run_folder(partctl, tmp_path):
    """Typed options are checked at load: nothing starts (the fixture fails a test that starts Ray)."""
    bad = {**GOOD, "datasets": [{"name": "synthetic", "options": {"size": 16, "colour": "red"}}]}
    store = tmp_path / "store"
    proc = partctl("submit", str(spec_file(tmp_path, yaml.safe_dump(bad))), "--storage", str(store), timeout=120)
    one_error_line(proc, 2, r"datasets\.0\.options\.colour: unknown field")
    assert not (store / "runs").exists()


def test_a_missing_local_source_fails_submit_before_ray(partctl, tmp_path):
    spec = {**GOOD, "levels": ["part"], "tasks": ["linear"], "datasets": [{"name": "cub", "source": "no/such/CUB"}]}
    store = tmp_path / "store"
    proc = partctl("submit", str(spec_file(tmp_path, yaml.safe_dump(spec))), "--storage", str(store), cwd=tmp_path)
    one_error_line(proc, 2, rf"datasets\.0\.source: {tmp_path}/no/such/CUB does not exist; check", alone=False)
    assert not (store / "runs").exists()


def test_debug_shows_the_traceback(partctl, tmp_path):
    (tmp_path / "d.yaml").mkdir()
    proc = partctl("--debug", "validate", str(tmp_path / "d.yaml"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "SpecError" in proc.stderr
    proc = partctl("validate", str(tmp_path / "d.yaml"), env={"PARTAWARE_DEBUG": "1"})
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_dumped_specs_hold_no_anchors_and_load_again(tmp_path):
    """A value shared in memory is written out twice (the loader refuses anchors, so it must)."""
    shared = {"type": "choice", "values": [1, 2]}
    spec = parse_spec({**GOOD, "tasks": ["linear"], "search": {"linear": {"lr": shared, "weight_decay": shared}}})
    text = dump_spec(spec)
    assert "&" not in text and "*" not in text
    assert load_spec(spec_file(tmp_path, text)) == spec


def test_set_values_refuse_aliases(partctl, tmp_path):
    proc = partctl("datasets", "prepare", "synthetic", "--set", "size=[&a [1], *a]", "--storage", str(tmp_path / "s"))
    one_error_line(proc, 2, r"--set size: line 1, column 2 YAML anchor &a refused")


def test_unexpected_errors_are_one_line_with_a_hint():
    message, code = describe_error(RuntimeError("boom\n  and a second line"))
    assert (message, code) == ("unexpected RuntimeError: boom (rerun with --debug for the traceback)", 1)
    message, code = describe_error(SpecError("job.yaml: invalid job spec: x"))
    assert (message, code) == ("job.yaml: invalid job spec: x", 2)
    message, code = describe_error(PermissionError(13, "Permission denied", "/data/x"))
    assert (message, code) == ("/data/x: Permission denied; check the path and its permissions", 2)


# --- storage_options: the run's S3 limits -------------------------------------------------------


def test_storage_options_set_in_the_spec_win_and_the_rest_stays_with_the_environment(tmp_path, monkeypatch):
    """Only what the spec sets overrides ``$PARTAWARE_S3_*``, for the run, and a saved spec keeps it that way."""
    for var in S3_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PARTAWARE_S3_READ_TIMEOUT", "45")
    monkeypatch.setenv("PARTAWARE_S3_MAX_ATTEMPTS", "7")
    spec = parse_spec({**GOOD, "storage_options": {"max_attempts": 2, "connect_timeout": 1.5}})
    assert spec.storage_options.overrides() == {"connect_timeout": 1.5, "max_attempts": 2}
    again = load_spec(spec_file(tmp_path, dump_spec(spec)))  # what a run saves and a submitted job reads
    assert again.storage_options.overrides() == spec.storage_options.overrides()
    with s3_limits_applied(again.storage_options.overrides()) as limits:
        assert limits == S3Limits(connect_timeout=1.5, read_timeout=45.0, max_attempts=2)
        assert s3_limits() == limits  # every filesystem opened during the run reads these
        forwarded = job_runtime_env(tmp_path)["env_vars"]  # what a submitted job carries to the cluster
        assert {k: forwarded.get(k) for k in S3_VARS} == dict(zip(S3_VARS, ["1.5", "45", "2"], strict=True))
    assert s3_limits() == S3Limits(read_timeout=45.0, max_attempts=7)  # restored after the run
    assert parse_spec(GOOD).storage_options.overrides() == {} and "storage_options: {}" in dump_spec(parse_spec(GOOD))
    assert os.environ["PARTAWARE_S3_MAX_ATTEMPTS"] == "7"


def test_a_bad_flag_or_command_is_one_line_naming_the_help_that_lists_the_valid_ones(partctl):
    proc = partctl("submit", "--nosuchflag")
    one_error_line(proc, 2, r"No such option: --nosuchflag \(see 'partctl submit --help'\)")
    one_error_line(partctl("nosuch"), 2, r"No such command 'nosuch'\. \(see 'partctl --help'\)")
