"""Weights downloads (``encoders.weights.download_to_cache``) against a real local HTTP server that drops
connections, answers 503 and honours ``Range``: retried, resumed where they stopped, checksummed, progress
reported; nothing appears in the cache until the file is whole."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from partaware.encoders import weights
from partaware.encoders.specs import EncoderSpec, WeightsSource
from partaware.encoders.weights import WeightsChecksumError, WeightsUnavailableError, cache_relpath, download_to_cache

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: several chunks


class FlakyServer(http.server.ThreadingHTTPServer):
    """Serves ``PAYLOAD`` at ``/w.pth`` with ``Range`` support; ``script`` says what each request gets:
    ``"cut"`` (the headers of the whole file, half its bytes, then a closed connection), ``503``, or ``"ok"``."""

    def __init__(self, script: list):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.ranges = list(script), []


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: FlakyServer = self.server  # type: ignore[assignment]
        step = server.script.pop(0) if server.script else "ok"
        rng = self.headers.get("Range")
        server.ranges.append(rng)
        if step == 503:
            self.send_error(503)
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        body = PAYLOAD[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if step == "cut" else body)
        if step == "cut":
            self.wfile.flush()
            self.close_connection = True


@pytest.fixture
def serve(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "RETRY_BACKOFF_S", 0.01)
    monkeypatch.setenv(weights.DOWNLOAD_DIR_ENV, str(tmp_path / "partial"))
    servers = []

    def start(*script) -> tuple[FlakyServer, str]:
        server = FlakyServer(list(script))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/w.pth"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _spec(url: str, sha256: str | None = hashlib.sha256(PAYLOAD).hexdigest()) -> EncoderSpec:
    return EncoderSpec(name="dl/tiny", family="supervised", arch="vit_tiny_patch16_224",
                       weights=WeightsSource(kind="url", location=url, sha256=sha256))  # fmt: skip


def test_a_dropped_connection_and_a_503_are_retried_and_resumed_with_range(store, serve):
    server, url = serve("cut", 503, "ok")
    seen: list[tuple[int, int]] = []
    uri = download_to_cache(_spec(url), store, progress=lambda done, total: seen.append((done, total)))
    assert store.read_bytes(*cache_relpath(_spec(url))) == PAYLOAD and uri.endswith("/dl/tiny/w.pth")
    half = len(PAYLOAD) // 2
    assert server.ranges == [None, f"bytes={half}-", f"bytes={half}-"]  # the third request resumed at the cut
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert not weights._partial_path(url, "w.pth").exists()  # moved into the cache, not left behind


def test_a_partial_file_left_by_an_earlier_process_is_continued(store, serve, tmp_path):
    server, url = serve("ok")
    part = weights._partial_path(url, "w.pth")
    part.write_bytes(PAYLOAD[:1000])  # what a killed download left behind
    download_to_cache(_spec(url), store)
    assert server.ranges == ["bytes=1000-"] and not part.exists()
    assert store.read_bytes(*cache_relpath(_spec(url))) == PAYLOAD


def test_giving_up_names_the_attempts_and_leaves_the_cache_empty(store, serve):
    server, url = serve(503, 503, 503)
    with pytest.raises(WeightsUnavailableError, match=r"download failed after 3 attempts: HTTP 503 .*Stage the"):
        download_to_cache(_spec(url), store, attempts=3)
    assert len(server.ranges) == 3 and not store.exists(*cache_relpath(_spec(url)))


def test_a_wrong_file_fails_its_checksum_and_is_not_kept_for_resuming(store, serve):
    _, url = serve("ok")
    with pytest.raises(WeightsChecksumError):
        download_to_cache(_spec(url, sha256="0" * 64), store)
    assert not weights._partial_path(url, "w.pth").exists() and not store.exists(*cache_relpath(_spec(url)))
