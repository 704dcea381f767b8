"""Bad sources and checkpoints: truncated, mislabelled or oversized archives, malformed COCO records, empty or
cut checkpoints. Each is one line naming the file (exit 2), or an error row, and leaves no temporary folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from _faults import one_error_line
from partaware.cli import describe_error
from partaware.datasets import prepare_dataset
from partaware.datasets.store import is_intact
from partaware.errors import CheckpointError
from test_datasets_keypoints import person
from test_datasets_labelmaps import jpeg, write


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def cub_like(n: int = 3) -> dict[str, bytes]:
    return {f"CUB_200_2011/images/{i:03d}.bin": os.urandom(50_000) for i in range(n)}


def prepare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A private TMPDIR (the test checks it is left empty) and any limit settings."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp), **extra}


def prepare(partctl, name: str, source: Path, store: Path, env: dict[str, str] | None = None):
    return partctl("datasets", "prepare", name, "--source", str(source), "--storage", str(store), env=env)


def test_truncated_tar_gz_is_one_line_and_leaves_no_temporary_folder(partctl, tmp_path):
    good = tar_gz(tmp_path / "good.tgz", cub_like())
    cut = tmp_path / "CUB_200_2011.tgz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    proc = prepare(partctl, "cub", cut, tmp_path / "s", prepare_env(tmp_path))
    one_error_line(proc, 2, r"CUB_200_2011\.tgz: cannot unpack archive: truncated, corrupt or not a tar \(EOFError")
    assert not list((tmp_path / "tmpdir").iterdir())


def test_a_zip_that_is_not_one(partctl, tmp_path):
    fake = tmp_path / "ADEChallengeData2016.zip"
    fake.write_text("<html>404 not found</html>")
    proc = prepare(partctl, "ade20k", fake, tmp_path / "s", prepare_env(tmp_path))
    one_error_line(proc, 2, r"ADEChallengeData2016\.zip: not a readable zip archive \(BadZipFile: File is not a zip")
    assert not list((tmp_path / "tmpdir").iterdir())


def test_unpacking_is_capped_in_files_and_bytes(partctl, tmp_path):
    tgz = tar_gz(tmp_path / "CUB_200_2011.tgz", cub_like(3))
    proc = prepare(partctl, "cub", tgz, tmp_path / "s", prepare_env(tmp_path, PARTAWARE_MAX_UNPACK_FILES="2"))
    one_error_line(
        proc, 2, r"archive holds more than 2 files; unpack it yourself .* raise \$PARTAWARE_MAX_UNPACK_FILES"
    )
    assert not list((tmp_path / "tmpdir").iterdir())
    bomb = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ADEChallengeData2016/images/training/a.jpg", b"\0" * 5_000_000)  # 5 MB in ~5 KB
    proc = prepare(partctl, "ade20k", bomb, tmp_path / "s", prepare_env(tmp_path, PARTAWARE_MAX_UNPACK_BYTES="1000000"))
    one_error_line(proc, 2, r"archive unpacks to more than 1000000 bytes")
    assert not list((tmp_path / "tmpdir").iterdir())


# --- COCO records ---------------------------------------------------------------------------------


def coco_source(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    kp = {1: (10, 10, 2), 11: (20, 30, 2)}
    train = {
        "images": [
            {"id": 1, "file_name": "a.jpg"},
            {"id": 2, "file_name": 123},
            {"id": 3},
            {"id": 4, "file_name": "../val2017/b.jpg"},  # stays inside the source
            {"id": 5, "file_name": "../../../../etc/hostname"},  # escapes it
            "not a record",
        ],
        "annotations": [person(11, 1, kp), person(12, 2, kp), person(13, 3, kp), person(14, 4, kp),
                        person(15, 5, kp), {**person(16, 1, kp), "bbox": [1, 2]}],
    }  # fmt: skip
    write(root / "annotations" / "person_keypoints_train2017.json", json.dumps(train))
    write(root / "train2017" / "a.jpg", jpeg(64, 64))
    write(root / "val2017" / "b.jpg", jpeg(64, 64))
    return root


def test_coco_bad_records_become_error_rows_and_inside_dotdot_resolves(store, tmp_path):
    opts = {"splits": ["train2017"], "object_samples": "box", "max_error_rate": 1.0}
    prepared, _ = prepare_dataset(store, "coco", source=str(coco_source(tmp_path)), options=opts)
    errors = {(e["file"], e["record"], e["kind"]): e["message"] for e in prepared.errors().to_pylist()}
    ann = "annotations/person_keypoints_train2017.json"
    assert errors == {
        (ann, "image 2", "unreadable-annotation"): "'file_name' must be a non-empty string (got 123)",
        (ann, "image 3", "unreadable-annotation"): "'file_name' is missing",
        (ann, "image #5", "unreadable-annotation"): "an image record needs an integer or string 'id'",
        (ann, "annotation 16", "unreadable-annotation"): "bbox must be 4 numbers [x, y, width, height], got [1, 2]",
        (ann, "image 5", "unsafe-path"): errors[(ann, "image 5", "unsafe-path")],
    }
    assert "escapes its root" in errors[(ann, "image 5", "unsafe-path")]
    uris = {r["image_id"]: r["image_uri"] for r in prepared.manifest().to_pylist()}
    assert uris == {"1": "images/train2017/a.jpg", "4": "images/val2017/b.jpg"}
    assert is_intact(prepared.root) and (Path(prepared.root.path) / "images/val2017/b.jpg").exists()


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_empty_or_truncated_checkpoints_name_the_file(tmp_path, suffix):
    import torch
    from safetensors.torch import save

    from partaware.encoders.weights import read_checkpoint

    whole = tmp_path / f"whole{suffix}"
    state = {"w": torch.zeros(64, 64)}
    if suffix == ".safetensors":
        whole.write_bytes(save(state))
    else:
        torch.save({"model": state}, whole)
    assert read_checkpoint(str(whole))
    empty, cut = tmp_path / f"empty{suffix}", tmp_path / f"cut{suffix}"
    empty.write_bytes(b"")
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"checkpoint .*empty{re.escape(suffix)} is empty \(0 bytes\)"):
        read_checkpoint(str(empty))
    with pytest.raises(CheckpointError, match=rf"checkpoint .*cut{re.escape(suffix)} \(\d+ bytes\) cannot be read: "
                                              r"truncated or corrupt .*; re-download or re-stage it"):  # fmt: skip
        read_checkpoint(str(cut))
    message, code = describe_error(CheckpointError("x"))
    assert code == 2
