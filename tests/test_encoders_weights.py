"""Weights resolution: the storage root's weight cache, a staging URI, a real HTTP download into the
cache with its sha256 checked before the file appears, and the offline error naming what to stage where.
The internet is replaced by an HTTP server on 127.0.0.1 serving a fabricated official checkpoint."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from functools import partial

import pytest
import torch

from _encoder_refs import FABRICATORS, TINY
from partaware.encoders.loading import load_encoder
from partaware.encoders.registry import ENCODERS
from partaware.encoders.weights import (
    UnsafeCheckpointError,
    WeightsChecksumError,
    WeightsUnavailableError,
    cache_relpath,
    read_checkpoint,
)


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def tiny_spec(name: str, **weights):
    spec = ENCODERS.get(name)
    return spec.model_copy(
        update={
            "arch_kwargs": {**spec.arch_kwargs, **TINY.arch_kwargs()},
            "weights": spec.weights.model_copy(update={"sha256": None, **weights}),
        }
    )


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PARTAWARE_OFFLINE", raising=False)


@pytest.fixture
def http_files(tmp_path):
    """A real HTTP server on 127.0.0.1 serving files written into the returned folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_offline_with_nothing_staged_says_what_to_stage_where(store):
    spec = tiny_spec("dino")
    with pytest.raises(WeightsUnavailableError) as e:
        load_encoder(spec, root=store)
    msg = str(e.value)
    target = store.uri_of("weights", "dino_base_p16_in1k_teacher", "dino_vitbase16_pretrain_full_checkpoint.pth")
    assert "offline" in msg and target in msg and spec.weights.location in msg and "PARTAWARE_WEIGHTS_DIR" in msg
    assert not store.exists("weights", "dino_base_p16_in1k_teacher")  # nothing half-written


def test_drive_only_release_asks_for_staging_even_online(store, online):
    with pytest.raises(WeightsUnavailableError, match=r"cannot be downloaded automatically.*cae_base_1600ep\.pth"):
        load_encoder(tiny_spec("cae"), root=store)


def test_uri_weights_are_checksummed_when_a_digest_is_given(tmp_path):
    path = tmp_path / "mae.pth"
    path.write_bytes(_bytes(FABRICATORS["mae"](TINY)))
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_encoder(tiny_spec("mae", kind="uri", location=str(path), sha256=good)).weights_digest
    with pytest.raises(WeightsChecksumError, match=str(path)):
        load_encoder(tiny_spec("mae", kind="uri", location=str(path), sha256="deadbeef"))


def test_staged_file_in_the_weight_cache_is_used_and_checksummed(store):
    data = _bytes(FABRICATORS["deit"](TINY))
    digest = hashlib.sha256(data).hexdigest()
    store.write_bytes(data, *cache_relpath(tiny_spec("deit")))
    assert load_encoder(tiny_spec("deit", sha256=digest[:8]), root=store).weights_digest
    assert load_encoder(tiny_spec("deit", sha256=digest), root=store).weights_digest
    with pytest.raises(WeightsChecksumError, match=r"does not match the expected b5f2ef4d"):
        load_encoder(tiny_spec("deit", sha256="b5f2ef4d"), root=store)


def test_download_streams_into_the_cache_then_reads_it_offline(store, http_files, online, monkeypatch):
    folder, base = http_files
    data = _bytes(FABRICATORS["mae"](TINY, seed=3))
    (folder / "mae_pretrain_vit_base.pth").write_bytes(data)
    spec = tiny_spec("mae", location=f"{base}/mae_pretrain_vit_base.pth")
    first = load_encoder(spec, root=store)
    rel = cache_relpath(spec)
    assert store.read_bytes(*rel) == data
    assert store.read_bytes(*rel[:-1], rel[-1] + ".sha256").decode() == hashlib.sha256(data).hexdigest()
    (folder / "mae_pretrain_vit_base.pth").unlink()
    monkeypatch.setenv("PARTAWARE_OFFLINE", "1")
    # the shuffle variant shares the cached file
    for name in ("mae", "mae_shufflebug"):
        again = load_encoder(tiny_spec(name, location=spec.weights.location), root=store)
        assert again.weights_digest == first.weights_digest
    # a corrupted cache file is caught by the sidecar digest recorded at download time
    store.write_bytes(data[:-1] + bytes([data[-1] ^ 1]), *rel)
    with pytest.raises(WeightsChecksumError):
        load_encoder(spec, root=store)


def test_download_with_a_wrong_checksum_leaves_nothing_in_the_cache(store, http_files, online):
    folder, base = http_files
    (folder / "w.pth").write_bytes(_bytes(FABRICATORS["mae"](TINY)))
    spec = tiny_spec("mae", location=f"{base}/w.pth", sha256="0" * 64)
    with pytest.raises(WeightsChecksumError):
        load_encoder(spec, root=store)
    assert store.listdir("weights", "mae_base_p16_in1k") == []


def test_unreachable_url_gives_the_staging_error(store, http_files, online):
    _, base = http_files
    spec = tiny_spec("mae", location=f"{base}/missing.pth")
    with pytest.raises(WeightsUnavailableError, match=r"download failed.*Stage the file 'missing\.pth'"):
        load_encoder(spec, root=store)


@pytest.mark.s3
def test_weights_staged_on_object_storage(store, s3_bucket, monkeypatch):
    """An air-gapped cluster: weights pre-staged under any fsspec URI (here S3 over HTTP to moto)."""
    from partaware.storage import StorageRoot

    staging = StorageRoot.open(f"s3://{s3_bucket}/weights")
    spec = tiny_spec("ibot")
    staging.write_bytes(_bytes(FABRICATORS["ibot_teacher"](TINY)), spec.name, "checkpoint.pth")
    monkeypatch.setenv("PARTAWARE_WEIGHTS_DIR", staging.uri)
    enc = load_encoder(spec, root=store)
    assert enc.encode(torch.randn(1, 3, TINY.img, TINY.img), ["proj"])["proj"].shape == (1, 64)


class _NotAWeight:
    pass


def test_checkpoints_are_never_unpickled_beyond_weights(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": _NotAWeight()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*refused.*_NotAWeight"):
        read_checkpoint(str(path))
    ok = tmp_path / "ok.pth"
    torch.save(FABRICATORS["beit"](TINY), ok)  # carries argparse.Namespace args, as the official files do
    assert "model" in read_checkpoint(str(ok))
