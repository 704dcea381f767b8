"""Helpers of the fault suite (tests/faults/): the one-line error check, misbehaving S3 endpoints, digests.

Every misbehaving endpoint is a real socket: one nobody listens on (refuses), one that accepts and never
answers (the kernel's backlog does the accepting), and ``FlakyS3Proxy``: moto behind a small HTTP proxy
that answers every second request to each URL with ``503 SlowDown``, as S3 does under load.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


def one_error_line(proc: subprocess.CompletedProcess[str], code: int, pattern: str, *, alone: bool = True) -> str:
    """The command failed with ``code`` and said so in one ``error:`` line matching ``pattern``, no traceback
    (``alone``: and printed nothing else on stderr; ``submit`` first prints the job it read)."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert len(errors) == 1 and (len(lines) == 1 or not alone), lines
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


def spec_file(folder: Path, text: str, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def s3_env(endpoint: str, *, timeout: str = "1", attempts: str = "2") -> dict[str, str]:
    """Dummy credentials and short limits, for a ``partctl`` pointed at ``endpoint``."""
    return {
        "PARTAWARE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PARTAWARE_S3_CONNECT_TIMEOUT": timeout,
        "PARTAWARE_S3_READ_TIMEOUT": timeout,
        "PARTAWARE_S3_MAX_ATTEMPTS": attempts,
    }


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[str]:
    """An endpoint that accepts connections (the kernel's backlog) and never sends a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def folder_digests(folder: str | Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (hidden lock files left out)."""
    root = Path(folder)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def descendants_titled(marker: str) -> list[int]:
    """Pids of this process's descendants whose command line contains ``marker`` (Linux ``/proc``): Ray
    workers of an in-process Ray are children of its raylet, itself a child of this process."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            titles[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
        return False

    return [pid for pid, title in titles.items() if marker in title and ours(pid)]


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


class FlakyS3Proxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that answers every second request with
    ``503 SlowDown`` and passes the others on.

    One exception: the retry of a request that just failed (same method, path and query) is passed, so a
    client that retries each failed call once gets every answer however its concurrent calls interleave
    (with a plain counter, one call's retries could keep landing on failing turns). ``requests`` and
    ``failed`` count what it saw.
    """

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.just_failed: set[tuple[str, str]] = set()
        self.requests = self.failed = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FlakyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def fails(self, method: str, path: str) -> bool:
        """Count the request; True for the ones to answer 503."""
        with self._lock:
            self.requests += 1
            retry = (method, path) in self.just_failed
            self.just_failed.discard((method, path))
            fail = self.requests % 2 == 0 and not retry
            if fail:
                self.just_failed.add((method, path))
                self.failed += 1
            return fail


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        pass

    def _forward(self) -> None:
        proxy: FlakyS3Proxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._body()
        if proxy.fails(self.command, self.path):
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(SLOW_DOWN)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SLOW_DOWN)
            return
        conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP | {"content-length", "date", "server"}:
                self.send_header(key, value)
        length = resp.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward
