"""Patch-retrieval galleries: the protocol's grid windows, cosine neighbours with the query excluded, green/red
frames, the same-part fraction against a hand count, and a gallery from real tiny timm encoders on the synthetic
dataset that ends up in the report's HTML, rendered by headless Chromium; ``partctl gallery RUN`` leaves the run
folder byte-identical."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from partaware.errors import SpecError
from partaware.report.gallery import (
    BACKGROUND,
    GREEN,
    RED,
    GalleryGeometry,
    build_gallery,
    grid_database,
    nearest_neighbours,
    retrieval_summary,
    window_boxes,
    window_label,
)
from report_data import pixel_std, synthetic_records, write_run


def test_window_grid_follows_the_protocol():
    boxes = window_boxes(224, 7)  # 7x7 windows of 56 px at stride 28 = the paper's 224 px at stride 112 on 896
    assert len(boxes) == 49
    assert boxes[0] == (0, 0, 56, 56) and boxes[1] == (28, 0, 84, 56) and boxes[-1] == (168, 168, 224, 224)
    with pytest.raises(SpecError):
        window_boxes(6, 7)


def test_window_label_is_the_majority_part_or_background():
    pmap = np.zeros((8, 8), np.uint8)
    pmap[:, :3] = 2  # 24 px of part 2
    pmap[:, 3:5] = 1  # 16 px of part 1
    names = ["head", "body"]
    assert window_label(pmap, (0, 0, 8, 8), names) == "body"
    assert window_label(pmap, (3, 0, 8, 8), names) == "head"
    assert window_label(pmap, (5, 0, 8, 8), names) == BACKGROUND
    # x 4..8: 8 labelled of 32 px = 25%
    assert window_label(pmap, (4, 0, 8, 8), names, min_part_fraction=0.3) == BACKGROUND
    assert window_label(pmap, (4, 0, 8, 8), names, min_part_fraction=0.25) == "head"


def _fabricated():
    """Six patches on a circle: patch i at angle 10*i degrees, except 3 which points the other way.

    From query 0 the cosine order is 1 (10 deg), 2 (20), 4 (40), 5 (50), 3 (190 deg): known by construction.
    """
    angles = np.deg2rad([0, 10, 20, 190, 40, 50])
    feats = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[3.0], [1], [2], [1], [5], [1]])
    labels = ["head", "head", "leg", "head", "head", "leg"]
    return feats, labels


def test_neighbours_exclude_the_query_and_are_ranked_by_cosine():
    feats, _ = _fabricated()
    idx, sims = nearest_neighbours(feats, [0, 3], 5)
    assert idx[0].tolist() == [1, 2, 4, 5, 3]  # scale does not matter: cosine
    assert 0 not in idx[0] and 3 not in idx[1]
    assert sims[0, 0] == pytest.approx(np.cos(np.deg2rad(10)))


def test_same_part_fraction_equals_the_hand_count():
    feats, labels = _fabricated()
    # query 0 (head), top 3 = 1 head, 2 leg, 4 head -> 2/3; query 5 (leg), top 3 = 4 head, 2 leg, 1 head -> 1/3
    stats = retrieval_summary(feats, labels, [0, 5], top_k=3, ks=(1, 4))
    assert stats["same_part_fraction"] == pytest.approx((2 + 1) / 6)
    cos = lambda deg: np.cos(np.deg2rad(deg))  # noqa: E731
    assert stats["mean_sim_top1"] == pytest.approx((cos(10) + cos(10)) / 2)
    assert stats["mean_sim_top4"] == pytest.approx(
        (cos(10) + cos(20) + cos(40) + cos(50) + cos(10) + cos(30) + cos(40) + cos(50)) / 8
    )


def test_gallery_image_has_the_grid_and_frames_of_the_neighbours():
    feats, labels = _fabricated()
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 255, size=(6, 72, 72, 3), dtype=np.uint8)
    g = GalleryGeometry()
    res = build_gallery(
        patches,
        None,
        {"enc_a": feats, "lab/enc_b · projected": feats[::-1].copy()},
        labels,
        queries=[0, 5],
        top_k=3,
        geometry=g,
    )
    img = np.asarray(Image.open(io.BytesIO(res.png)).convert("RGB"))
    assert (img.shape[1], img.shape[0]) == g.size(n_queries=2, n_rows=2, top_k=3)
    assert res.neighbours["enc_a"].tolist() == [[1, 2, 4], [4, 2, 1]]
    # frame colour (top-left pixel of each neighbour cell) = green for the same part, red otherwise
    for qi, expected in enumerate([[GREEN, RED, GREEN], [RED, GREEN, RED]]):
        for c, colour in enumerate(expected):
            x, y = g.cell_origin(qi, 0, 2, c + 1)
            assert tuple(img[y + 1, x + 1]) == colour
    assert [s["encoder"] for s in res.summary] == ["enc_a", "lab/enc_b"]  # a namespaced name stays whole
    assert res.summary[1]["feature"] == "projected"
    assert res.summary[0]["same_part_fraction"] == pytest.approx(0.5)


def test_gallery_input_errors_are_clear():
    feats, labels = _fabricated()
    patches = np.zeros((6, 8, 8, 3), np.uint8)
    with pytest.raises(SpecError, match="5 rows for 6 patches"):
        build_gallery(patches, None, {"a": feats[:5]}, labels)
    with pytest.raises(SpecError, match="out of range"):
        build_gallery(patches, None, {"a": feats}, labels, queries=[9])


def test_grid_database_labels_windows_from_part_maps():
    img = np.zeros((64, 64, 3), np.uint8)
    pmap = np.zeros((64, 64), np.uint8)
    pmap[:32, :32] = 1  # top-left quarter is "head"
    db = grid_database([img], part_maps=[pmap], part_names=["head"], crop=64, grid=3)
    assert len(db) == 9 and db.labels[0] == "head" and db.labels[-1] == BACKGROUND
    assert db.patch(0, 24).shape == (24, 24, 3)


# --- real tiny encoders on the synthetic dataset ---------------------------------------------------------------

TINY = ("gallery_tiny_a", "gallery_tiny_b")


@pytest.fixture
def tiny_encoders():
    import torch

    from partaware.encoders.base import EncoderSpec, WeightsSource
    from partaware.encoders.registry import ENCODERS, register_encoder

    torch.set_num_threads(1)
    for name in TINY:
        if name not in ENCODERS:
            register_encoder(
                EncoderSpec(
                    name=name,
                    family="mim",
                    zoo="test",
                    arch="vit_tiny_patch16_224",
                    arch_kwargs={"img_size": 64},
                    weights=WeightsSource(kind="random"),
                    input_size=64,
                )
            )
    return list(TINY)


@pytest.mark.browser
@pytest.mark.ray
def test_gallery_of_tiny_encoders_on_synthetic_data_reaches_the_report(
    ray_local, store, tmp_path, tiny_encoders, chromium
):
    from typer.testing import CliRunner

    from partaware.cli import app
    from partaware.datasets import prepare_dataset
    from partaware.report.gallery_job import GalleryRecipe, make_gallery

    prepare_dataset(store, "synthetic", options={"size": 10, "image_size": 96}, workers=1)
    run = write_run(store, "gal-run", synthetic_records(run_id="gal-run"))
    recipe = GalleryRecipe("synthetic", tiny_encoders, ["encoded", "cls"], n_images=4, crop=112, grid=7)
    res, paths, hits = make_gallery(store, recipe, out=run, name="g1", queries=2, top_k=5)
    assert hits == []
    img = Image.open(io.BytesIO(res.png))
    assert img.size == GalleryGeometry().size(n_queries=2, n_rows=4, top_k=5)
    assert len(res.summary) == 4 and all(0.0 <= s["same_part_fraction"] <= 1.0 for s in res.summary)
    assert {"mean_sim_top1", "mean_sim_top4", "mean_sim_top9", "mean_sim_top49"} <= set(res.summary[0])
    _, _, hits = make_gallery(store, recipe, out=run, name="g1", queries=2, top_k=5)
    assert hits == tiny_encoders  # second time: features from the cache, no encoding
    # one feature path: the gallery's patches are ordinary, complete feature sets made by extraction
    keys = [k for k in store.listdir("features") if not k.startswith((".", "_"))]
    assert len(keys) == 2 and all(store.sub("features", k).is_complete() for k in keys)

    # the job's report stage embeds the run's galleries; the CLI reads the run and writes beside it, never in it
    from partaware.report.build import build_report

    build_report(run, formats=["md", "html"])
    before = _digests(run.path)
    args = ["gallery", "gal-run", "--encoders", ",".join(tiny_encoders), "--datasets", "synthetic", "--storage"]
    inside = CliRunner().invoke(app, [*args, store.uri, "--output", str(tmp_path / "store" / "runs" / "gal-run")])
    assert inside.exit_code != 0 and "inside the run folder" in str(inside.exception or inside.output)
    result = CliRunner().invoke(
        app,
        [
            "gallery",
            "gal-run",
            "--encoders",
            ",".join(tiny_encoders),
            "--datasets",
            "synthetic",
            "--patches",
            "parts",
            "--images",
            "4",
            "--queries",
            "0,1",
            "--top",
            "4",
            "--name",
            "parts",
            "--storage",
            store.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert _digests(run.path) == before  # every file of the run folder byte-identical, nothing added
    assert store.exists("galleries", "gal-run", "parts.png") and store.exists("galleries", "gal-run", "parts.json")
    html = run.read_bytes("report.html").decode()
    assert '<h2 id="galleries">Galleries</h2>' in html and html.count("data:image/png;base64,") >= 2
    assert "same_part_fraction" in html
    page = tmp_path / "report.html"
    page.write_text(html)
    dom, console_errors, shot = chromium(page, tmp_path)
    assert console_errors == [] and "gallery g1" in dom and "gallery parts" not in dom
    assert pixel_std(shot) > 10


def _digests(folder: str) -> dict[str, str]:
    import hashlib
    from pathlib import Path

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}  # fmt: skip


def test_grid_windows_as_unified_manifest_regions(store):
    from partaware.datasets import prepare_dataset
    from partaware.manifest import validate_manifest
    from partaware.report.gallery import box_in_image, dataset_window_manifest

    prepared, _ = prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 96}, workers=1)
    table = dataset_window_manifest(prepared, n_images=2, crop=112, grid=7)
    validate_manifest(table)
    rows = table.to_pylist()
    assert len(rows) == 2 * 49 and {r["sample_rule"] for r in rows} == {"grid-window"}
    assert rows[0]["region_id"].endswith("/w00") and rows[0]["image_uri"].startswith("images/")
    names = prepared.info["part_classes"]
    assert all(r["label"] in names or (r["label"] == BACKGROUND and r["label_id"] == len(names)) for r in rows)
    assert any(r["label"] != BACKGROUND for r in rows)
    # 96 px -> shorter side 128 -> centre crop 112 at offset 8: window (0, 0, 28, 28) is (6, 6, 27, 27) in the image
    assert box_in_image((0, 0, 28, 28), 96, 96, 112) == pytest.approx([6.0, 6.0, 27.0, 27.0])
    assert rows[0]["box"] == pytest.approx([6.0, 6.0, 27.0, 27.0])


def test_gallery_without_part_labels_frames_grey_and_has_no_same_part_fraction():
    from partaware.report.gallery import GREY

    feats, _ = _fabricated()
    patches = np.full((6, 72, 72, 3), 128, np.uint8)
    g = GalleryGeometry()
    res = build_gallery(patches, None, {"a": feats}, None, queries=[0], top_k=2, geometry=g)
    assert "same_part_fraction" not in res.summary[0] and "mean_sim_top1" in res.summary[0]
    img = np.asarray(Image.open(io.BytesIO(res.png)).convert("RGB"))
    x, y = g.cell_origin(0, 0, 1, 1)
    assert tuple(img[y + 1, x + 1]) == GREY
