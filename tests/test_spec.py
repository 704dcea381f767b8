"""Job spec validation: every bad field gets one clear line naming the field, the value, the choices."""

from pathlib import Path

import pytest
import yaml

from partaware.errors import SpecError
from partaware.spec import JobSpec, dump_spec, load_spec, parse_spec

JOBS = Path(__file__).resolve().parents[1] / "jobs"
GOOD = {"name": "t", "datasets": [{"name": "synthetic", "options": {"size": 16}}]}


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_are_valid(path):
    assert isinstance(load_spec(path), JobSpec)


def test_defaults_and_roundtrip():
    spec = parse_spec(GOOD)
    assert spec.levels == ["object", "part"] and spec.encoders == ["all"] and spec.seed == 0
    assert parse_spec(yaml.safe_load(dump_spec(spec))) == spec


BAD = [
    ({"levels": ["obj"]}, r"levels\.0: Input should be 'object' or 'part' \(got 'obj'\)"),
    ({"tasks": ["segment"]}, r"tasks: unknown probe task\(s\) \['segment'\]; valid: attentive, knn, linear, retr"),
    ({"datasets": [{"name": "birds"}]}, r"datasets\.0\.name: unknown dataset 'birds'.*Valid: .*synthetic"),
    ({"encoders": ["nonesuch"]}, r"encoders: unknown encoder 'nonesuch'.*Valid:"),
    (
        {"encoders": ["family:gan"]},
        r"encoders: unknown encoder family 'gan'.*Valid: contrastive, contrastive\+mim, mim, supervised",
    ),
    ({"seed": -1}, r"seed: Input should be greater than or equal to 0 \(got -1\)"),
    ({"name": "has space"}, r"name: String should match pattern"),
    ({"datasets": []}, r"datasets: List should have at least 1 item"),
    ({"resources": {"min_actors": 3, "max_actors": 2}}, r"resources: min_actors \(3\) exceeds max_actors \(2\)"),
    ({"resources": {"gpu": 1}}, r"resources\.gpu: unknown field \(valid fields: extract_batch_size, .*gpus_per_actor"),
    ({"bogus": 1}, r"bogus: unknown field \(valid fields: version, name, "),
    (
        {"search": {"linear": {"lr": {"type": "loguniform", "low": 0, "high": 1}}}},
        r"search\.linear\.lr: loguniform needs low > 0",
    ),
    ({"search": {"linear": {"lr": {"type": "choice"}}}}, r"search\.linear\.lr: choice needs a non-empty 'values' list"),
    (
        {"tasks": ["segmentation"], "segmentation_iterations": 5},
        r"segmentation_iterations: only the paper's schedule \(variants: \{segmentation: paper\}\) counts iterations",
    ),
    (
        {
            "tasks": ["segmentation"],
            "variants": {"segmentation": "paper"},
            "search": {"segmentation": {"lr": {"type": "choice", "values": [0.1]}}},
        },
        r"search\.segmentation: the paper's segmentation schedule \(variants\.segmentation: paper\) searches nothing",
    ),
    ({"search": {"probe": {}}}, r"search\.probe: not a task of this job \(tasks: retrieval, linear, knn\)"),
    (
        {"search": {"linear": {"depth": {"type": "choice", "values": [1]}}}},
        r"search\.linear: unknown parameter\(s\) \['depth'\]; valid: lr, weight_decay",
    ),
    (
        {"tasks": ["attentive"], "variants": {"attentive": "cls"}},
        r"variants\.attentive: unknown variant 'cls'; valid: tokens, cls\+last-block",
    ),
    (
        {"datasets": [{"name": "cub", "source": "x"}], "tasks": ["segmentation"]},
        r"task segmentation cannot run on dataset cub at level object: it needs label maps \(tasks for cub: attentive",
    ),
    (
        {"datasets": [{"name": "ade20k", "source": "x"}], "tasks": ["segmentation"]},
        r"dataset ade20k has no part level \(it has: object\)",
    ),
    (
        {"datasets": [{"name": "ade20k", "source": "x", "levels": ["object"]}], "tasks": ["retrieval"]},
        r"task retrieval cannot run on dataset ade20k at level object: it needs regions \(tasks for ade20k: segm",
    ),
    (
        {"search_settings": {"num_samples": 0}},
        r"search_settings\.num_samples: Input should be greater than or equal to 1",
    ),
    ({"version": 2}, r"version: Input should be 1 \(got 2\)"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[str(next(iter(c))) + str(i) for i, (c, _) in enumerate(BAD)])
def test_bad_fields_are_named(change, message):
    with pytest.raises(SpecError) as err:
        parse_spec({**GOOD, **change}, source="job.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith("job.yaml: invalid job spec: ")
    assert __import__("re").search(message, text), text


def test_missing_name_and_non_mapping():
    with pytest.raises(SpecError, match="name: Field required"):
        parse_spec({"datasets": GOOD["datasets"]})
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        parse_spec(["a"])


def test_yaml_errors_and_missing_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndatasets: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: line \d+, column \d+ not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such job spec"):
        load_spec(tmp_path / "missing.yaml")


def test_overrides_win_and_are_validated(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert load_spec(path, {"levels": ["part"]}).levels == ["part"]
    with pytest.raises(SpecError, match="levels.0"):
        load_spec(path, {"levels": ["parts"]})


def test_gallery_encoders_are_among_the_jobs_and_follow_an_encoders_override():
    from partaware.cli.jobs import spec_with_overrides

    base = {"version": 1, "name": "g", "datasets": [{"name": "synthetic"}], "zoo": "lab"}
    job = parse_spec({**base, "gallery_encoders": ["lab/mae", "lab/supervised"]})
    assert job.encoders_in_gallery() == ["lab/mae", "lab/supervised"]
    with pytest.raises(SpecError, match=r"gallery_encoders: lab/dino not among the job's encoders \(lab/mae\)"):
        parse_spec({**base, "encoders": ["lab/mae"], "gallery_encoders": ["lab/dino"]})
    narrowed = spec_with_overrides("quickstart", encoders="lab/mae,lab-release/mae")
    assert narrowed.encoders_in_gallery() == ["lab-release/mae"]  # the spec's other gallery encoders left the job
    assert spec_with_overrides("quickstart", encoders="lab/mae").gallery_encoders is None  # none left: every encoder


def test_heads_per_trial_is_for_linear_probes_searching_per_head_keys():
    from partaware.probes.linear import PER_HEAD_KEYS
    from partaware.spec import PER_HEAD_KEYS as SPEC_KEYS

    assert SPEC_KEYS == PER_HEAD_KEYS
    base = {"version": 1, "name": "h", "datasets": [{"name": "synthetic"}], "zoo": "lab"}
    ok = parse_spec({**base, "tasks": ["linear"], "search_settings": {"heads_per_trial": 4}})
    assert ok.search_settings.heads_per_trial == 4
    with pytest.raises(SpecError, match="heads_per_trial: only the linear probe"):
        parse_spec({**base, "tasks": ["retrieval"], "search_settings": {"heads_per_trial": 4}})
