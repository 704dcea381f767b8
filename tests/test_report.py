"""Reports built from fabricated result records with known numbers (tests/report_data.py).

The tables must show those numbers, the verdict must rank them, the paper's claims must flip when the numbers
flip, every figure must be a valid PNG, and the HTML must render in a real headless Chromium.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from PIL import Image

from partaware.errors import SpecError, StorageError, UnknownNameError
from partaware.report.build import build_report, report_data
from partaware.report.claims import FAILS, HOLDS, INCONCLUSIVE, NA, PARTIAL, check_claims
from partaware.report.markdown import render_markdown
from partaware.report.paper import PAPER_REFERENCE, PaperMapping
from partaware.report.records import aggregate
from partaware.report.tables import build_tables
from partaware.report.verdict import compute_verdict
from report_data import (
    PAPER_IDS,
    paper_records,
    pixel_std,
    record,
    synthetic_records,
    write_run,
)


def _md_row(md: str, first_cells: str, *, after: str = "") -> list[str]:
    """Cells of the first Markdown table row starting with ``first_cells`` (after the line ``after``)."""
    lines = md.splitlines()
    start = lines.index(after) if after else 0
    for line in lines[start:]:
        if line.startswith(f"| {first_cells} |"):
            return [c.strip().strip("*") for c in line.strip("|").split("|")]
    raise AssertionError(f"no row starting {first_cells!r}")


# --- tables ----------------------------------------------------------------------------------------------------


def test_tables_show_the_recorded_numbers():
    tables = {t.id: t for t in build_tables(aggregate(synthetic_records()))}
    assert set(tables) == {"object-probing", "part-retrieval", "part-classification"}
    obj = tables["object-probing"]
    (col,) = obj.columns
    assert [obj.cell(enc, col).value for enc, _ in obj.rows] == [90.0, 80.0, 50.0]
    assert [enc for enc, _ in obj.rows] == ["tiny_sup", "tiny_cl", "tiny_mim"]  # supervised, CL, MIM order
    md = render_markdown(report_data("quick", "mem://quick", synthetic_records()))
    retrieval = "### Part retrieval (same protocol as Table 3, on synthetic)"
    classification = "### Part classification (same protocol as Table 3, on synthetic)"
    assert _md_row(md, "tiny_mim | MIM", after=retrieval)[2].startswith("45.0 [")
    assert _md_row(md, "tiny_mim | MIM", after=classification)[2].startswith("75.0 [")
    assert "Against the paper" not in md  # test-zoo encoders on synthetic data: no paper section


def test_mean_and_std_over_seeds_whether_one_record_per_seed_or_pre_aggregated():
    per_seed = paper_records(seeds=(0, 1), with_trials=False)
    table = next(t for t in build_tables(aggregate(per_seed)) if t.id == "object-probing")
    col = next(c for c in table.columns if c.task == "linear")
    cell = table.cell(PAPER_IDS["deit"], col)
    assert cell.value == pytest.approx(81.8) and cell.std == pytest.approx(0.2828, abs=1e-3)
    # the interval of the mean over seeds: the mean of the seeds' interval ends (same test items for both)
    seeds = [r for r in per_seed if r.encoder == PAPER_IDS["deit"] and (r.dataset, r.task) == ("imagenet", "linear")]
    assert cell.low == pytest.approx((seeds[0].ci_low + seeds[1].ci_low) / 2)
    assert cell.text() == f"81.8 ± 0.3 [{cell.low:.1f}, {cell.high:.1f}]"
    single = record(PAPER_IDS["deit"], "supervised", "imagenet", "object", "linear", "cls", "top1", 81.8, legacy=True)
    single = single.model_copy(update={"std": 0.2828, "seeds": [0, 1]})
    table2 = next(t for t in build_tables(aggregate([single])) if t.id == "object-probing")
    assert table2.cell(PAPER_IDS["deit"], col).text() == "81.8 ± 0.3"  # a record written before intervals


def test_segmentation_tables_show_miou_macc_aacc():
    table = next(
        t for t in build_tables(aggregate(paper_records(seeds=(0,), with_trials=False))) if t.id == "part-segmentation"
    )
    lip = [c for c in table.columns if c.dataset == "lip"]
    assert [c.metric for c in lip] == ["miou", "macc", "aacc"]
    assert [table.cell(PAPER_IDS["ibot"], c).value for c in lip] == [44.6, 55.7, 76.6]


# --- verdict ---------------------------------------------------------------------------------------------------


OBJ, PART, AP = ("object", "top1"), ("part", "top1"), ("part", "ap")


def test_verdict_ranks_and_leaning_follow_the_numbers():
    v = {x.encoder: x for x in compute_verdict(aggregate(synthetic_records()))}
    # 1000 test items: intervals of about ±3 points. object: sup 90 > cl 80 > mim 50, all decided;
    # part top-1: mim 75 vs cl 70 overlap, sup 60 last; part AP: mim 45 vs cl 40 overlap, sup 30 last
    assert [v[e].ranks[OBJ].text() for e in ("tiny_sup", "tiny_cl", "tiny_mim")] == ["1", "2", "3"]
    assert [v[e].ranks[PART].text() for e in ("tiny_mim", "tiny_cl", "tiny_sup")] == ["1–2", "1–2", "3"]
    assert v["tiny_mim"].scores[PART].value == pytest.approx(75.0) and v["tiny_mim"].scores[AP].value == 45.0
    assert v["tiny_sup"].leaning == "object-aware" and v["tiny_mim"].leaning == "part-aware"
    assert v["tiny_cl"].leaning == "inconclusive"  # object rank 2, part rank 1–2: the intervals cannot tell
    assert "part top-1 70.0 [" in v["tiny_cl"].reason and "overlaps tiny_mim 75.0 [" in v["tiny_cl"].reason
    # the gap is read above each level's chance (object 12.5 %, part 25 %) within top-1, never across metrics
    (gap,) = v["tiny_sup"].chance_gaps
    assert (gap.metric, gap.reference) == ("top1", "chance")
    assert gap.gap == pytest.approx((60.0 - 25.0) - (90.0 - 12.5))
    # flip one number: the supervised encoder becomes the best part encoder
    flipped = synthetic_records(
        numbers={
            "tiny_sup": ("supervised", 90.0, 95.0, 60.0),
            "tiny_cl": ("contrastive", 80.0, 70.0, 40.0),
            "tiny_mim": ("mim", 50.0, 75.0, 45.0),
        }
    )
    v2 = {x.encoder: x for x in compute_verdict(aggregate(flipped))}
    assert v2["tiny_sup"].part_rank.text() == "1" and v2["tiny_sup"].leaning == "balanced"
    assert v2["tiny_mim"].ranks[PART].text() == "2–3"  # 75 vs tiny_cl 70: overlapping intervals
    md = render_markdown(report_data("flip", "mem://flip", flipped))
    assert "Best at part level beyond the intervals: **tiny_sup**" in md


def test_verdict_uses_only_probes_every_encoder_ran_and_ignores_projected_features():
    recs = synthetic_records()
    recs.append(record("tiny_cl", "contrastive", "synthetic", "part", "retrieval", "proj", "ap", 1.0, zoo="test"))
    recs.append(record("tiny_cl", "contrastive", "other", "part", "linear", "cls", "top1", 0.0, zoo="test"))
    v = {x.encoder: x for x in compute_verdict(aggregate(recs))}
    assert v["tiny_cl"].scores[PART].value == pytest.approx(70.0) and v["tiny_cl"].scores[AP].value == 40.0
    assert set(v["tiny_cl"].scores) == {OBJ, PART, AP}  # AP is never averaged with top-1


# --- the paper -------------------------------------------------------------------------------------------------

#: the paper's own numbers, read as exact: C6 fails (CAE beats iBOT on CUB), C9 fails (MAE 92.8 vs DeiT 92.9 on
#: CUB attentive), C12 is partial (Figure 6's object numbers were not retrieved), C14 fails (MAE ranks 6th at
#: both levels: mean 6 vs 5.9, not better by more than half a place)
EXPECTED_ON_PAPER_NUMBERS = {f"C{i}": HOLDS for i in range(1, 15)} | {
    "C6": FAILS,
    "C9": FAILS,
    "C12": PARTIAL,
    "C14": FAILS,
}
#: the same numbers as a run with 95% intervals: differences smaller than the noise become inconclusive
EXPECTED_ON_THE_RUN = EXPECTED_ON_PAPER_NUMBERS | {
    "C1": INCONCLUSIVE,  # DeiT 34.9 vs MoCo v3 34.7 on ADE20K-150, 2000 images
    "C4": INCONCLUSIVE,  # MAE 3rd-6th worst on COCO attentive: 93.9 vs DINO 94.5, iBOT 95.1 overlap
    "C8": INCONCLUSIVE,  # "by more than 2": 93.8 [93.1, 94.4] vs 90.9 [90.1, 91.7] can be as little as 1.4
    "C9": INCONCLUSIVE,  # MAE 92.8 vs DeiT 92.9 on CUB attentive: within the noise, no longer a failure
    "C10": INCONCLUSIVE,  # DINO 27.8 vs DeiT 27.4 on Pascal-Part
    "C11": INCONCLUSIVE,  # iBOT 44.6 vs CAE 43.7 on LIP
    "C12": INCONCLUSIVE,  # only iBOT beats DeiT on ADE20K-Part beyond the intervals (and no object numbers)
    "C13": INCONCLUSIVE,  # CAE 33.3 vs DINO 32.6 mean part mIoU
    "C14": INCONCLUSIVE,  # MAE's part rank 4.9-6.1 against its object rank 6
}


def test_claims_on_the_papers_own_numbers_read_as_the_paper_does():
    got = {c.id: c.status for c in check_claims(PAPER_REFERENCE, exact=True)}
    assert got == EXPECTED_ON_PAPER_NUMBERS
    c6 = next(c for c in check_claims(PAPER_REFERENCE, exact=True) if c.id == "C6")
    assert "iBOT 49.3 vs best other CAE 58.0" in c6.detail
    # without ``exact`` a number without an interval decides nothing
    assert {c.status for c in check_claims(PAPER_REFERENCE)} <= {INCONCLUSIVE, PARTIAL, FAILS, NA}


def test_claims_are_computed_from_the_run_and_flip_with_its_numbers():
    data = report_data("paper", "mem://paper", paper_records(with_trials=False))
    assert {c.id: c.status for c in data.claims} == EXPECTED_ON_THE_RUN
    c9 = next(c for c in data.claims if c.id == "C9")
    assert "MAE 92.8 [" in c9.detail and "(intervals overlap)" in c9.detail and "within 5 points" in c9.tolerance
    changes = {("deit", "in1k_linear"): 60.0, ("ibot", "cub_ret_enc"): 65.0, ("ibot", "coco_ret_enc"): 65.0}
    flipped = paper_records(with_trials=False, changes=changes)
    got = {c.id: c.status for c in report_data("flip", "mem://flip", flipped).claims}
    assert got["C1"] == FAILS  # DeiT no longer tops linear probing, far beyond the intervals
    assert got["C6"] == HOLDS  # iBOT now best on CUB and COCO beyond the intervals
    md = render_markdown(report_data("flip", "mem://flip", flipped))
    assert _md_row(md, "C6")[2] == HOLDS and _md_row(md, "C1")[2] == FAILS


def test_claims_without_their_numbers_are_not_applicable():
    assert {c.status for c in check_claims({})} == {NA}
    only_t1 = {k: {c: v for c, v in cols.items() if c.startswith("in1k")} for k, cols in PAPER_REFERENCE.items()}
    got = {c.id: c.status for c in check_claims(only_t1, exact=True)}
    assert got["C2"] == HOLDS and got["C10"] == NA and got["C5"] == NA
    assert got["C13"] == PARTIAL  # ImageNet linear ran, the segmentation and retrieval means did not
    assert report_data("q", "mem://q", synthetic_records()).claims is None


def test_paper_reference_column_and_difference():
    changed = paper_records(with_trials=False, changes={("cae", "cub_ret_enc"): 55.0})
    rows = {(r.paper_key, r.column): r for r in report_data("p", "mem://p", changed).paper_rows}
    row = rows[("cae", "cub_ret_enc")]
    assert (row.ours, row.paper, row.delta) == (pytest.approx(55.0), 58.0, pytest.approx(-3.0))
    assert row.encoder == PAPER_IDS["cae"]


def test_paper_mapping_by_family_and_alias_and_explicitly():
    m = PaperMapping()
    assert m.paper_key("vit_base_patch16_224.dino", "contrastive", "paper") == "dino"
    assert m.paper_key("dinov2_vitb14", "contrastive", "paper") is None  # a different model
    assert m.paper_key("vit_base_patch16_224.dino", "contrastive", "modern") is None  # not the paper zoo
    assert m.paper_key("vit_base_patch16_224.mae", "contrastive", "paper") is None  # family must agree
    assert PaperMapping(explicit={"my_enc": "cae"}).paper_key("my_enc", "mim", "custom") == "cae"
    with pytest.raises(UnknownNameError, match="ibot"):
        PaperMapping(explicit={"x": "simclr"})


# --- files, figures, HTML --------------------------------------------------------------------------------------


def _assert_png(data: bytes) -> None:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.verify()
    assert min(Image.open(io.BytesIO(data)).size) > 100


def test_build_report_writes_every_file_and_valid_figures(store):
    recs = synthetic_records()
    run = write_run(store, "quick-1", recs)
    paths = build_report(run, formats=["all"])
    assert {"md", "html", "csv", "figures"} <= set(paths)
    figures = run.listdir("figures")
    assert {"object_vs_part.png", "family_bars.png", "same_images.png"} <= set(figures)
    assert sum(f.startswith("search_") for f in figures) == 6  # 3 encoders x 2 searched probes
    for name in figures:
        _assert_png(run.read_bytes("figures", name))
    md = run.read_bytes("report.md").decode()
    for ref in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert run.exists(ref), ref
    rows = list(csv.DictReader(io.StringIO(run.read_bytes("results.csv").decode())))
    assert len(rows) == len(recs) and {r["encoder"] for r in rows} == {"tiny_sup", "tiny_cl", "tiny_mim"}
    assert "ray resources" in md and "CPU" in md  # provenance from the run folder


def test_search_section_lists_space_trials_and_stopped_trials(store):
    run = write_run(store, "quick-2", synthetic_records())
    build_report(run, formats=["md"])
    md = run.read_bytes("report.md").decode()
    row = _md_row(md, "tiny_cl | object | linear")
    assert row[5].startswith("lr: loguniform[0.0001, 0.03]") and row[6:8] == ["6", "2"]
    assert row[8] == "lr=0.003, weight_decay=0.0001" and row[9].startswith("80.0 [")


@pytest.mark.browser
def test_html_is_self_contained_and_renders_in_headless_chromium(store, tmp_path, chromium):
    run = write_run(
        store, "paper-1", paper_records(seeds=(0, 1), with_trials=False) + synthetic_records(run_id="paper-1")[:2]
    )
    build_report(run, formats=["html"])
    html_path = tmp_path / "report.html"
    html_path.write_bytes(run.read_bytes("report.html"))
    text = html_path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    assert text.count("data:image/png;base64,") >= 2
    dom, console_errors, shot = chromium(html_path, tmp_path)
    assert console_errors == []
    assert "Verdict: object-aware or part-aware?" in dom and "The paper's claims" in dom
    assert PAPER_IDS["ibot"] in dom and "fails" in dom and "inconclusive" in dom
    assert pixel_std(shot) > 10  # a rendered page, not a blank one


def test_compare_two_runs_side_by_side(store):
    a = write_run(store, "base", synthetic_records(run_id="base"))
    newcomer = {"tiny_new": ("contrastive", 70.0, 90.0, 60.0)}
    b = write_run(store, "new", synthetic_records(run_id="new", numbers=newcomer))
    build_report(a, formats=["md"], compare_root=b)
    md = a.read_bytes("report.md").decode()
    assert "## Comparison: base vs new" in md and "not comparable" not in md
    joint = _md_row(md, "tiny_new | CL")
    assert joint[3] == "1"  # the newcomer ranks first on parts among all four encoders, beyond the intervals
    row = _md_row(md, "tiny_sup | object", after="## Comparison: base vs new")
    assert row[3].startswith("90.0 [") and row[4] == "–"


def test_bad_input_gives_clear_errors(store):
    with pytest.raises(StorageError, match="no results.parquet"):
        build_report(store.sub("runs", "empty"), formats=["md"])
    run = write_run(store, "r", synthetic_records())
    with pytest.raises(SpecError, match="not one of terminal, md, html, csv, all"):
        build_report(run, formats=["pdf"])


def test_cli_report_and_report_stage(store, tmp_path):
    from typer.testing import CliRunner

    from partaware.cli import app
    from partaware.runs.driver import RunContext
    from partaware.runs.stages.report import run as stage_report
    from partaware.spec import parse_spec

    write_run(store, "cli-run", synthetic_records())
    res = CliRunner().invoke(app, ["report", "cli-run", "--storage", store.uri])
    assert res.exit_code == 0, res.output
    assert "tiny_mim" in res.output and "part-aware" in res.output
    assert not store.exists("runs", "cli-run", "report.md")  # read-only: the run's report is the report stage's
    res = CliRunner().invoke(app, ["report", "nope", "--storage", store.uri])
    assert isinstance(res.exception, UnknownNameError) and "cli-run" in str(res.exception)
    spec = parse_spec({"name": "t", "datasets": [{"name": "synthetic"}], "encoders": ["family:mim"]})
    result = stage_report(RunContext(spec=spec, root=store, run_id="cli-run"))
    assert result.status == "ran" and store.exists("runs", "cli-run", "report.html")
    assert stage_report(RunContext(spec=spec, root=store, run_id="no-results")).status == "skipped"


def test_stopped_early_trials_and_runs_without_searches_or_levels(store):
    from partaware.report.figures import search_plot, stopped_early

    assert stopped_early({"iterations": 4}, 20) and not stopped_early({"iterations": 20}, 20)
    assert stopped_early({"iterations": 20, "stopped_early": True}, 20)
    plain = record("e", "mim", "synthetic", "part", "retrieval", "mean", "ap", 40.0, zoo="test")
    assert search_plot(plain) is None  # retrieval has no search: no figure, no section
    run = write_run(store, "one-level", [plain])
    build_report(run, formats=["md", "html", "csv"])
    md = run.read_bytes("report.md").decode()
    assert "## Hyperparameter searches" not in md and _md_row(md, "MIM | e")[2].startswith("40.0 [")
    assert _md_row(md, "MIM | e")[-2:] == ["inconclusive", "no object-level probe that every encoder ran"]
    empty = write_run(store, "empty", [])
    build_report(empty, formats=["md", "html"])
    assert "No results." in empty.read_bytes("report.md").decode()


@pytest.mark.browser
def test_the_chromium_check_does_catch_console_errors(tmp_path, chromium):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefined_function()</script></body></html>")
    _, console_errors, _ = chromium(page, tmp_path, height=200)
    assert any("undefined_function" in line for line in console_errors)


def test_same_images_pairs_for_figure_6():
    from partaware.report.verdict import same_image_pairs

    (pair,) = same_image_pairs(aggregate(synthetic_records()))  # synthetic: linear probe at both levels
    assert pair.label == "synthetic · linear · cls · top1" and pair.chance == (12.5, 25.0)
    values = {e: (o.value, p.value) for e, (o, p) in pair.values.items()}
    assert values == {"tiny_sup": (90.0, 60.0), "tiny_cl": (80.0, 70.0), "tiny_mim": (50.0, 75.0)}
    seg = [
        record("e1", "mim", "Pascal-Object", "object", "segmentation", "patch:4+6+8+12", "miou", 40.0),
        record("e1", "mim", "pascal-part", "part", "segmentation", "patch:4+6+8+12", "miou", 25.0),
        record("e1", "mim", "lip", "part", "segmentation", "patch:4+6+8+12", "miou", 30.0),
    ]
    (pair,) = same_image_pairs(seg)
    assert pair.label.startswith("Pascal-Object / pascal-part")
    assert {e: (o.value, p.value) for e, (o, p) in pair.values.items()} == {"e1": (40.0, 25.0)}
    md = render_markdown(report_data("s", "mem://s", synthetic_records()))
    heading = "### Same images, object vs part granularity (same protocol as paper Figure 6, on synthetic)"
    cell = _md_row(md, "tiny_mim", after=heading)[1]  # titled after the paper only on the paper's datasets
    assert re.fullmatch(r"50\.0 \[\d+\.\d, \d+\.\d\] / 75\.0 \[\d+\.\d, \d+\.\d\]", cell), cell


@pytest.mark.s3
def test_report_of_a_run_on_object_storage(s3_bucket):
    from partaware.storage import StorageRoot

    root = StorageRoot.open(f"s3://{s3_bucket}/store")
    run = write_run(root, "s3-run", synthetic_records(run_id="s3-run"))
    paths = build_report(run, formats=["md", "html", "csv"])
    assert paths["html"].startswith(f"{s3_bucket}/store/runs/s3-run/")
    assert run.exists("report.html") and run.exists("figures", "object_vs_part.png")
    assert "tiny_mim" in run.read_bytes("report.md").decode()


@pytest.mark.slow  # several seconds: kept out of the fast lane
def test_lab_pretraining_section_shows_the_runs_budget_time_and_curves(store, one_torch_thread):
    """The provenance names each lab encoder's budget, images seen, time and loss curve, from the infos the
    run's pretrain stage recorded (real lab training, 2 steps); a run without lab encoders has no section."""

    from partaware.datasets import prepare_dataset
    from partaware.lab.data import load_lab_data
    from partaware.lab.train import Budget, train_objective
    from partaware.runs.records import PretrainOutput, StageRecord, write_record

    prepared, _ = prepare_dataset(store, "synthetic", options={"size": 24, "image_size": 64}, workers=1)
    data = load_lab_data(prepared, size=64)
    budget = Budget(steps=2, batch_size=4, seed=0)
    infos = {o: train_objective(store, o, budget, data) for o in ("supervised", "dino")}
    infos["mae"] = {"objective": "mae", "budget_key": "x", "stopped_at": 1, "losses": [1.0]}  # interrupted
    run = write_run(store, "lab-1", synthetic_records())
    write_record(run, StageRecord.of(PretrainOutput(lab=infos), "ran", 1.0))
    build_report(run, formats=["md", "html"])
    md = run.read_bytes("report.md").decode()
    assert "### Lab pretraining" in md and "under one budget" in md
    sup = _md_row(md, "lab/supervised", after="### Lab pretraining")
    dino = _md_row(md, "lab/dino", after="### Lab pretraining")
    assert sup[1] == "supervised" and sup[3] == "8" and dino[1] == "CL" and dino[4] == "3.00"
    assert (sup[2], dino[2]) == ("1", "2")  # recipe versions: DINO's views were revised, so its weights key differs
    assert sup[6] == f"{infos['supervised']['loss_first']:.3f} → {infos['supervised']['loss_last']:.3f}"
    assert dino[7].startswith("kl: ") and sup[7] == "the loss"
    assert "lab/mae" not in md.split("### Lab pretraining")[1].split("**lab budget**")[0]  # no weights, no row
    assert "arch: partaware_lab_vit" in md and "steps: 2" in md
    _assert_png(run.read_bytes("figures", "lab_pretraining.png"))
    plain = write_run(store, "plain-1", synthetic_records())
    build_report(plain, formats=["md"])
    assert "Lab pretraining" not in plain.read_bytes("report.md").decode()
    assert not plain.exists("figures", "lab_pretraining.png")
