"""``partctl datasets prepare`` on real-layout fixtures and ``partctl datasets list``, as a user runs them."""

from test_datasets_keypoints import make_coco, make_cub


def test_prepare_prints_the_summary_and_list_shows_the_version(tmp_path, partctl):
    src, store = make_cub(tmp_path), tmp_path / "store"
    out = partctl("datasets", "prepare", "cub", "--source", str(src), "--storage", str(store),
                  "--set", "max_error_rate=0.9")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "cub prepared: version" in out.stderr  # messages on stderr, the summary table on stdout
    table = out.stdout
    assert "3 images, 7 regions" in table
    for expected in ("right eye", "left wing", "Black_footed_Albatross", "missing-image 1", "keypoint-outside-image 1"):
        assert expected in table
    assert "parts/part_locs.txt, line 21" not in out.stderr  # the bad records, named in brackets, escaped
    assert "[line 21]" in out.stderr and "Laysan_Albatross_0002_1027.jpg" in out.stderr

    again = partctl("datasets", "prepare", "cub", "--source", str(src), "--storage", str(store))
    assert again.returncode == 0 and "already prepared (nothing to do)" in again.stderr

    listed = partctl("datasets", "list", "--storage", str(store))
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("│ cub"))
    assert "7 regions (object 3, part 4), 3 images, 3 errors" in line and "KiB" in line
    for name in ("coco", "ade20k-part", "pascal-part", "lip", "partimagenet", "imagenet"):
        assert f"│ {name} " in listed.stdout


def test_prepare_fails_above_the_error_rate_naming_the_bad_records(tmp_path, partctl):
    src, store = make_coco(tmp_path), tmp_path / "store"
    out = partctl("datasets", "prepare", "coco", "--source", str(src), "--storage", str(store))
    assert out.returncode == 2
    assert "3 bad records out of 4" in out.stderr and "nothing was published" in out.stderr
    assert "person_keypoints_val2017.json, annotation 31" in out.stderr
    assert "000000000006.jpg" in out.stderr and "_errors" in out.stderr
    bad = partctl("datasets", "prepare", "coco", "--source", str(src), "--storage", str(store),
                  "--set", "patch_rule=square")  # fmt: skip
    assert bad.returncode == 2 and "patch_rule" in bad.stderr
