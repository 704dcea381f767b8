import os

import pytest

from partaware.errors import UnsafePathError
from partaware.storage import SUCCESS, StorageRoot, resolve_storage_uri, safe_relpath


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("PARTAWARE_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_uri() == str(tmp_path / "partaware-store")
    monkeypatch.setenv("PARTAWARE_STORAGE", "s3://bucket/prefix/")
    assert resolve_storage_uri() == "s3://bucket/prefix"
    assert resolve_storage_uri("rel/dir") == str(tmp_path / "rel/dir")


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "s3://other/x", "", "..", "a\\..\\b"])
def test_unsafe_paths_rejected(bad):
    with pytest.raises(UnsafePathError):
        safe_relpath(bad)


def test_safe_paths_normalised():
    assert safe_relpath("a/./b//c.jpg") == "a/b/c.jpg"
    assert safe_relpath("a/../b") == "b"


def test_atomic_write_leaves_no_partial_file(store):
    store.write_bytes(b"old", "d", "f.bin")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.open_atomic("d", "f.bin") as f:
        f.write(b"half-written new content")
        raise Boom
    assert store.read_bytes("d", "f.bin") == b"old"  # the reader still sees the old, complete file
    with pytest.raises(Boom), store.open_atomic("d", "g.bin") as f:
        f.write(b"partial")
        raise Boom
    assert not store.exists("d", "g.bin")
    assert os.listdir(store.join("d")) == ["f.bin"]  # no temporary files left behind


def test_temp_name_is_invisible_until_rename(store):
    with store.open_atomic("out", "x.json") as f:
        f.write(b"{}")
        assert not store.exists("out", "x.json")
    assert store.read_json("out", "x.json") == {}


def test_completion_marker(store):
    store.write_bytes(b"1", "feat", "part-00000.parquet")
    assert not store.is_complete("feat")
    store.mark_complete("feat", info={"rows": 1})
    assert store.is_complete("feat") and store.exists("feat", SUCCESS)
    assert store.completion_info("feat") == {"rows": 1}


def test_join_rejects_escapes(store):
    with pytest.raises(UnsafePathError):
        store.join("datasets", "../../etc")


@pytest.mark.s3
def test_s3_root_roundtrip(s3_bucket):
    root = StorageRoot.open(f"s3://{s3_bucket}/prefix")
    assert root.is_object_store
    root.write_json({"a": 1}, "runs", "r1", "state.json")
    assert root.read_json("runs", "r1", "state.json") == {"a": 1}
    assert not root.is_complete("runs", "r1")
    root.mark_complete("runs", "r1")
    assert root.is_complete("runs", "r1")
    assert root.listdir("runs") == ["r1"]
    assert root.uri_of("runs", "r1") == f"s3://{s3_bucket}/prefix/runs/r1"
