"""Dataset sources: folders, zip and tar archives (safely unpacked), digests that follow the content."""

import io
import tarfile
import zipfile

import pytest

from partaware.datasets import prepare_dataset
from partaware.datasets.sources import open_source
from partaware.errors import DatasetError
from test_datasets_labelmaps import jpeg, label_map, png, write


def test_folder_listing_locate_and_digest(tmp_path):
    root = tmp_path / "data" / "CUB_200_2011"
    write(root / "images.txt", "1 a.jpg\n")
    write(root / "parts" / "part_locs.txt", "1 1 0 0 0\n")
    with open_source(str(tmp_path / "data"), dataset="t") as src:
        assert src.files() == ["CUB_200_2011/images.txt", "CUB_200_2011/parts/part_locs.txt"]
        assert src.locate("parts/part_locs.txt") == "CUB_200_2011"
        assert src.read_text("CUB_200_2011/images.txt") == "1 a.jpg\n"
        with pytest.raises(FileNotFoundError, match="nope.txt"):
            src.read("CUB_200_2011/nope.txt")
        with pytest.raises(DatasetError, match="no 'classes.txt' found"):
            src.locate("classes.txt")
        before = src.digest()
    write(root / "images.txt", "1 b.jpg\n")  # same size, new content and mtime
    with open_source(str(tmp_path / "data"), dataset="t") as src:
        assert src.digest() != before


def test_zip_is_read_in_place_and_tar_members_cannot_escape(tmp_path):
    archive = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ADEChallengeData2016/images/training/ADE_train_00000001.jpg", jpeg(8, 8))
        z.writestr("ADEChallengeData2016/annotations/training/ADE_train_00000001.png", png(label_map(8, 8, [0, 4])))
    with open_source(str(archive), dataset="t") as src:
        assert "ADEChallengeData2016/images/training/ADE_train_00000001.jpg" in src.files()
        digest = src.digest()
    with open_source(str(archive), dataset="t") as src:
        assert src.digest() == digest

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DatasetError, match="cannot unpack"):
        open_source(str(evil), dataset="t")
    assert not (tmp_path / "outside.txt").exists()
    with pytest.raises(DatasetError, match="not an archive"):
        open_source(str(write_plain(tmp_path)), dataset="t")


def write_plain(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    return path


def test_ade20k_from_the_release_zip_with_progress(store, tmp_path):
    archive = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in (1, 2):
            z.writestr(f"ADEChallengeData2016/images/training/ADE_train_0000000{i}.jpg", jpeg(8, 8))
            z.writestr(f"ADEChallengeData2016/annotations/training/ADE_train_0000000{i}.png", png(label_map(8, 8, [i])))
    calls = []
    prepared, built = prepare_dataset(store, "ade20k", source=str(archive), progress=lambda d, t: calls.append((d, t)))
    assert built and len(prepared.manifest()) == 2
    assert calls == [(1, 2), (2, 2)]
    assert not prepare_dataset(store, "ade20k", source=str(archive))[1]
