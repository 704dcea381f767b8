"""``partctl`` as a scripting tool: tables and ``--json`` on stdout, read-only reports, one vocabulary, submit's
overrides and dry run, timm tags by name, combined results, shell completion. Real subprocesses, no Ray."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from _submit_specs import write_spec
from partaware.storage import StorageRoot
from report_data import synthetic_records, write_run
from test_architecture import HEAVY, REPO, _imported

LONG_RUN = "a-run-id-long-enough-to-wrap-in-any-narrow-terminal-0123456789abcdef"


def _json(proc) -> object:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def runs_store(tmp_path) -> Path:
    """Two finished runs with results (one with a long id) and one failed run without."""
    store = tmp_path / "store"
    root = StorageRoot.open(str(store), writable=True)
    write_run(root, "base", synthetic_records(run_id="base"))
    write_run(root, LONG_RUN, synthetic_records(run_id=LONG_RUN))
    failed = root.sub("runs", "broken")
    failed.write_json({"run_id": "broken", "state": "failed", "error": "boom", "started": 1.0e9}, "state.json")
    return store


# --- 1. output: stdout, full width, --json ------------------------------------------------------------------


def test_runs_and_status_print_data_on_stdout_at_full_width_and_as_json(partctl, runs_store):
    table = partctl("runs", "--storage", str(runs_store), env={"COLUMNS": "40"})
    assert table.returncode == 0, table.stderr
    assert any(LONG_RUN in line for line in table.stdout.splitlines())  # piped: one line per row, ids whole
    runs = _json(partctl("runs", "--json", "--storage", str(runs_store)))
    assert {r["run_id"] for r in runs} == {"base", LONG_RUN, "broken"}
    keys = {"run_id", "spec", "state", "stage", "encoders", "datasets", "levels", "started", "finished", "seconds",
            "report", "error", "complete"}  # fmt: skip
    assert all(set(r) == keys for r in runs)
    broken = next(r for r in runs if r["run_id"] == "broken")
    assert broken["state"] == "failed" and broken["started"] == "2001-09-09T01:46:40Z" and broken["error"] == "boom"

    status = partctl("status", "base", "--json", "--storage", str(runs_store))
    one = _json(status)
    assert set(one) == keys | {"stages"} and one["stages"][0] == {"name": "prepare", "status": "ran", "seconds": 1.0,
                                                                  "detail": ""}  # fmt: skip
    failed = partctl("status", "broken", "--json", "--storage", str(runs_store))
    assert failed.returncode == 1 and json.loads(failed.stdout)["state"] == "failed"  # the exit code still says so
    text = partctl("status", "base", "--storage", str(runs_store))
    assert text.returncode == 0 and text.stdout.startswith("base: succeeded")
    assert _json(partctl("status", "--json", "--storage", str(runs_store))) == runs


def test_listings_parse_as_json_from_stdout(partctl, tmp_path):
    store = str(tmp_path / "store")
    assert _json(partctl("runs", "--json", "--storage", store)) == []
    assert _json(partctl("features", "list", "--json", "--storage", store)) == []
    encoders = _json(partctl("encoders", "list", "--json", "--storage", store))
    mae = next(e for e in encoders if e["name"] == "mae_base_p16_in1k")
    assert mae["aliases"] == ["mae"] and mae["family"] == "mim" and mae["weights"] == "missing"
    assert set(mae) == {"name", "aliases", "family", "zoo", "arch", "variant", "weights_kind", "weights_source",
                        "weights", "description"}  # fmt: skip
    assert next(e for e in encoders if e["name"] == "lab/mae")["weights"] == "not trained"
    assert _json(partctl("encoders", "list", "--json", "--zoo", "lab", "--storage", store))[0]["zoo"] == "lab"

    assert partctl("datasets", "prepare", "synthetic", "--size", "8", "--image-size", "64", "--storage",
                   store).returncode == 0  # fmt: skip
    datasets = _json(partctl("datasets", "list", "--json", "--storage", store))
    synthetic = next(d for d in datasets if d["name"] == "synthetic")
    assert synthetic["generated"] and synthetic["levels"] == ["object", "part"] and "linear" in synthetic["tasks"]
    (version,) = synthetic["versions"]
    assert set(version) == {"version", "created", "bytes", "regions", "regions_per_level", "images", "errors", "uri"}
    assert version["images"] == 8 and version["bytes"] > 0 and version["regions"] > 0
    listed = partctl("datasets", "list", "--storage", store)
    assert version["version"] in listed.stdout and "│ synthetic" in listed.stdout


def test_validate_prints_its_plan_on_stdout_and_as_json(partctl):
    out = partctl("validate", "quickstart", cwd=REPO)
    assert out.returncode == 0 and "valid: quickstart" in out.stderr and "│ synthetic │ part" in out.stdout
    plan = _json(partctl("validate", "quickstart", "--json", cwd=REPO))
    assert set(plan) == {"name", "zoo", "datasets", "encoders", "controls", "seeds", "limit", "plan", "work"}
    assert plan["limit"] is None and set(plan["datasets"][0]) == {"name", "source", "levels", "tasks", "limit"}
    assert "lab/mae" in plan["encoders"] and plan["seeds"] == [0, 1, 2]
    assert plan["plan"][1] == {
        "dataset": "synthetic",
        "level": "object",
        "task": "linear",
        "scored_on": "test (held out)",
        "metric": "top1",
        "search": "4 x lr,weight_decay",
        "variant": "-",
    }
    from partaware.lab.release import released_objectives

    n = 7 + len(released_objectives()) + 1  # live lab encoders, released ones, one random-init control
    work = {"feature_sets": n, "probes": 4 * n, "tuned_probes": 2 * n, "trials": 8 * n, "final_fits": 6 * n,
            "encoder_in_the_loop_runs": 0}  # fmt: skip
    assert plan["work"] == work


@pytest.mark.parametrize(
    "args", [["encoders", "list", "--json"], ["validate", "jobs/quickstart.yaml", "--json"]], ids=["encoders", "spec"]
)
def test_json_listings_import_no_torch_timm_or_ray(args, partctl, tmp_path):
    extra = ["--storage", str(tmp_path)] if args[0] == "encoders" else []
    out = partctl(*args, *extra, cwd=REPO, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    json.loads(out.stdout)
    imported = _imported(out.stderr)
    assert "partaware" in imported and imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


# --- 2. report: read-only ------------------------------------------------------------------------------------


@pytest.mark.slow  # several seconds: kept out of the fast lane
def test_report_reads_the_run_and_writes_only_where_told(partctl, runs_store, tmp_path):
    before = _digests(runs_store)
    shown = partctl("report", "base", "--storage", str(runs_store))
    assert shown.returncode == 0 and "tiny_mim" in shown.stdout and "Verdict" in shown.stdout
    md = tmp_path / "out" / "base.md"
    out = partctl("report", "base", "--format", "md", "--output", str(md), "--compare", LONG_RUN,
                  "--storage", str(runs_store))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (
        f"## Comparison: base vs {LONG_RUN}" in md.read_text()
        and (md.parent / "figures" / "object_vs_part.png").exists()
    )
    html = tmp_path / "base.html"
    assert partctl("report", "base", "--format", "html", "-o", str(html), "--storage", str(runs_store)).returncode == 0
    assert html.read_text().startswith("<!DOCTYPE html>") or "<html" in html.read_text()[:200]
    csv = partctl("report", "base", "--format", "csv", "--storage", str(runs_store))
    assert csv.returncode == 0 and csv.stdout.startswith("run_id,encoder,")
    inside = partctl("report", "base", "--format", "html", "--output", str(runs_store / "runs" / "base" / "x.html"),
                     "--storage", str(runs_store))  # fmt: skip
    assert inside.returncode == 2 and "inside the run folder" in inside.stderr
    assert partctl("report", "base", "-f", "md", "--storage", str(runs_store)).returncode == 2  # -f means --follow
    assert _digests(runs_store) == before  # every file of every run byte-identical, none added


# --- 3. one vocabulary -----------------------------------------------------------------------------------------


def test_old_spellings_still_work_hidden_with_a_note(partctl, tmp_path):
    helped = partctl("--help")
    assert "datasets" in helped.stdout and "│ data " not in helped.stdout
    assert "prepare" in partctl("datasets", "--help").stdout
    old = partctl("data", "prepare", "synthetic", "--size", "8", "--image-size", "64", "--dest", str(tmp_path / "s"))
    assert old.returncode == 0, old.stderr
    assert "`partctl data prepare` is deprecated" in old.stderr and "--dest is deprecated" in old.stderr
    renamed = [("extract", "--datasets", "--dataset "), ("pretrain", "--datasets", "--dataset "),
               ("gallery", "--patches", "--source "), ("submit", "--datasets", "--dataset ")]  # fmt: skip
    for command, shown, hidden in renamed:
        text = partctl(command, "--help", env={"COLUMNS": "200"}).stdout
        assert shown in text and hidden not in text, command


def test_completion_is_on(partctl):
    assert "--install-completion" in partctl("--help").stdout
    # the script `--install-completion` installs, asked for bash by name (``--show-completion`` guesses the shell
    # from the parent process, which under make is sh)
    script = partctl(env={"_PARTCTL_COMPLETE": "source_bash"})
    assert script.returncode == 0 and "_partctl_completion" in script.stdout
    env = {"_PARTCTL_COMPLETE": "complete_bash", "COMP_WORDS": "partctl datasets ", "COMP_CWORD": "2"}
    assert partctl(env=env).stdout.split() == ["list", "prepare"]


# --- 4. submit: overrides and dry run ------------------------------------------------------------------------


def test_submit_dry_run_applies_every_override_and_starts_nothing(partctl, tmp_path):
    spec, store = write_spec(tmp_path), tmp_path / "store"
    out = partctl(
        "submit", str(spec), "--dry-run", "--storage", str(store), "--seeds", "3,4", "--tasks", "retrieval,knn"
    )
    assert out.returncode == 0, out.stderr
    assert (
        "nothing was started" in out.stderr and "a new run" in out.stderr and "│ synthetic │ object │ knn" in out.stdout
    )
    assert not store.exists()  # no run folder, no storage root; the fixture fails the test if Ray started
    plan = _json(partctl("submit", "quickstart", "--dry-run", "--json", "--zoo", "lab", "--encoders", "family:mim",
                         "--seeds", "7", "--storage", str(store), cwd=REPO))  # fmt: skip
    from partaware.lab.release import released_objectives

    mim = {"beit", "cae", "mae"}
    released = [f"lab-release/{o}" for o in released_objectives() if o in mim]
    assert sorted(plan["encoders"]) == sorted(["lab/beit", "lab/cae", "lab/mae", *released]) and plan["seeds"] == [7]
    assert plan["storage"] == str(store) and plan["resume"] is None and plan["runs_on"] == "local"
    bad = partctl("submit", str(spec), "--dry-run", "--seeds", "one")
    assert bad.returncode == 2 and "--seeds 'one'" in bad.stderr


def test_submit_source_flag_gives_a_dataset_its_source(partctl, tmp_path):
    spec = write_spec(tmp_path)
    missing = partctl("submit", str(spec), "--datasets", "cub", "--levels", "part", "--tasks", "linear", "--dry-run")
    assert missing.returncode == 2 and "give it with --source cub=URI" in missing.stderr
    raw = tmp_path / "CUB_200_2011"
    raw.mkdir()
    args = ["submit", str(spec), "--datasets", "cub", "--levels", "part", "--tasks", "linear", "--dry-run", "--json"]
    plan = _json(partctl(*args, "--source", f"cub={raw}", "--storage", str(tmp_path / "s")))
    assert plan["datasets"] == [{"name": "cub", "source": str(raw), "levels": ["part"], "tasks": ["linear"],
                                 "limit": None}]  # fmt: skip
    other = partctl(*args, "--source", f"coco={raw}")
    assert other.returncode == 2 and "coco is not a dataset of this job (datasets: cub)" in other.stderr


def test_the_resolved_spec_names_its_encoders_and_resumes_the_same_way():
    from partaware.cli.jobs import spec_with_overrides
    from partaware.spec import dump_spec, load_yaml_text

    job = spec_with_overrides(str(REPO / "jobs" / "quickstart.yaml"), encoders="all", seeds="0")
    dumped = load_yaml_text(dump_spec(job), source="spec.yaml")
    from partaware.lab.release import released_objectives

    live = ["lab/beit", "lab/cae", "lab/dino", "lab/ibot", "lab/mae", "lab/mocov3", "lab/supervised"]
    assert sorted(dumped["encoders"]) == sorted(live + [f"lab-release/{o}" for o in released_objectives()])
    again = spec_with_overrides(
        str(REPO / "jobs" / "quickstart.yaml"), encoders=",".join(dumped["encoders"]), seeds="0"
    )
    assert dump_spec(again) == dump_spec(job)  # what find_resumable compares


# --- 5. timm tags by name ----------------------------------------------------------------------------------------


@pytest.mark.slow  # several seconds: kept out of the fast lane
def test_a_timm_tag_is_an_encoder_by_name(partctl, tmp_path):
    spec = write_spec(tmp_path)
    tag = "vit_tiny_patch16_224.augreg_in21k"
    plan = _json(partctl("submit", str(spec), "--encoders", f"{tag},timm:vit_base_patch16_224.mae@mim", "--dry-run",
                         "--json", "--storage", str(tmp_path / "s")))  # fmt: skip
    assert plan["encoders"] == [f"timm/{tag}", "timm/vit_base_patch16_224.mae"]
    unknown = partctl("submit", str(spec), "--encoders", "vit_tiny_patch16_224.nope", "--dry-run")
    assert unknown.returncode == 2 and f"timm's tags for that architecture: {tag}" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_timm_entries_carry_the_tags_own_normalisation():
    from partaware.cli.jobs import spec_with_overrides
    from partaware.encoders.registry import ENCODERS

    job = spec_with_overrides(str(REPO / "jobs" / "quickstart.yaml"), encoders="vit_small_patch16_224.augreg_in21k")
    (entry,) = job.custom_encoders
    assert entry.weights.kind == "timm" and entry.family == "supervised" and entry.zoo == "custom"
    assert ENCODERS.get("timm/vit_small_patch16_224.augreg_in21k").mean == (0.5, 0.5, 0.5)  # timm's, read lazily
    assert job.model_dump()["custom_encoders"][0]["mean"] is None  # the spec records "the tag's own"


# --- 6. many runs as one table -----------------------------------------------------------------------------------


@pytest.mark.slow  # several seconds: kept out of the fast lane
def test_runs_combine_puts_many_runs_into_one_table(partctl, runs_store, tmp_path):
    before = _digests(runs_store)
    out = tmp_path / "all.csv"
    made = partctl("runs", "--combine", f"base,{LONG_RUN}", "--output", str(out), "--storage", str(runs_store))
    assert made.returncode == 0, made.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("run_id,encoder,") and {ln.split(",")[0] for ln in lines[1:]} == {"base", LONG_RUN}
    md = tmp_path / "all.md"
    assert (
        partctl("runs", "--combine", f"base,{LONG_RUN}", "--output", str(md), "--storage", str(runs_store)).returncode
        == 0
    )
    assert md.read_text().startswith("| run_id | encoder |") and f"| {LONG_RUN} | tiny_mim |" in md.read_text()
    rows = _json(partctl("runs", "--combine", "base", "--json", "--storage", str(runs_store)))
    assert {r["run_id"] for r in rows} == {"base"} and len(rows) == len(lines[1:]) // 2
    table = partctl("runs", "--combine", "base", "--storage", str(runs_store))
    assert "│ base   │ tiny_mim" in table.stdout
    bad = partctl("runs", "--combine", "base", "--output", str(tmp_path / "x.xlsx"), "--storage", str(runs_store))
    assert bad.returncode == 2 and ".csv or .md" in bad.stderr
    unknown = partctl("runs", "--combine", "nope", "--storage", str(runs_store))
    assert unknown.returncode == 2 and "unknown run 'nope'" in unknown.stderr and "base" in unknown.stderr
    assert _digests(runs_store) == before


@pytest.mark.ray
def test_a_timm_tag_reaches_the_weights_step_and_offline_says_where_to_stage(partctl, tmp_path):
    spec, store = write_spec(tmp_path), tmp_path / "store"
    tag = "vit_tiny_patch16_224.augreg_in21k"
    env = {"HF_HUB_OFFLINE": "1", "PARTAWARE_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # nothing cached
    out = partctl("submit", str(spec), "--encoders", f"timm:{tag}", "--storage", str(store), env=env)
    assert out.returncode == 1
    (error,) = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert f"Stage the file 'model.safetensors' (from huggingface.co/timm/{tag})" in error
    assert f"{store}/weights/timm/{tag}/model.safetensors" in error
    (run,) = (store / "runs").iterdir()
    recorded = yaml.safe_load((run / "spec.yaml").read_text())
    assert recorded["encoders"] == [f"timm/{tag}"] and recorded["custom_encoders"][-1]["weights"]["kind"] == "timm"
