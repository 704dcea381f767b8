"""``partctl weights fetch|stage|list`` as a user runs them (real subprocesses, no Ray).

The internet is the one thing replaced: official URLs point at an HTTP server started here on 127.0.0.1 that
honours ``Range`` and serves checkpoints fabricated in the official layouts (``_encoder_refs``); hub downloads
stay offline (``HF_HUB_OFFLINE=1``). The encoders are tiny ones declared in a job spec (``--spec``), exactly as a
user declares a custom encoder, so a strict load through the real converter takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from _encoder_refs import FABRICATORS, TINY
from _submit_specs import tiny_spec
from partaware.encoders.registry import ENCODERS

ONLINE = {"HF_HUB_OFFLINE": None, "PARTAWARE_OFFLINE": None}


def _bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _encoder(name: str, base: str, weights: dict) -> dict:
    """A custom encoder of the tiny official architecture of the built-in ``base`` (its converter, its kwargs)."""
    ref = ENCODERS.get(base)
    return {"name": name, "family": ref.family, "zoo": "custom", "arch": ref.arch,
            "arch_kwargs": {**ref.arch_kwargs, **TINY.arch_kwargs()}, "input_size": TINY.img,
            "weights": {"converter": ref.weights.converter, **weights}}  # fmt: skip


def _spec(tmp_path: Path, encoders: list[dict]) -> str:
    data = {**tiny_spec(), "custom_encoders": encoders, "encoders": [e["name"] for e in encoders]}
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) with ``Range: bytes=N-`` support; records each Range asked."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        data = self.server.files.get(self.path)  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        self.server.ranges.append(rng)  # type: ignore[attr-defined]
        if data is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def www():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.files, server.ranges = {}, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
    assert sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


def test_stage_checks_the_file_against_the_encoder_then_caches_it_with_its_digests(partctl, tmp_path):
    store = tmp_path / "store"
    drive = {"kind": "url", "location": "https://drive.google.com/drive/folders/x", "filename": "beit_tiny.pth",
             "downloadable": False}  # fmt: skip
    spec = _spec(tmp_path, [_encoder("custom/beit_tiny", "beit", drive)])
    good, wrong = tmp_path / "beit.pth", tmp_path / "deit.pth"
    good.write_bytes(_bytes(FABRICATORS["beit"](TINY)))
    wrong.write_bytes(_bytes(FABRICATORS["deit"](TINY)))  # another release's layout
    common = ("--spec", spec, "--storage", str(store))

    listed = json.loads(partctl("weights", "list", "--json", *common).stdout)
    assert [(r["name"], r["state"], r["bytes"]) for r in listed] == [("custom/beit_tiny", "stage by hand", None)]
    missing = partctl("weights", "fetch", *common)
    assert missing.returncode == 1 and "cannot be downloaded automatically" in _error_line(missing)
    assert f"{store}/weights/custom/beit_tiny/beit_tiny.pth" in _error_line(missing)
    assert "partctl weights stage custom/beit_tiny FILE" in _error_line(missing)

    refused = partctl("weights", "stage", "custom/beit_tiny", str(wrong), *common)
    assert refused.returncode == 2 and "the file was not staged" in _error_line(refused)
    bad_sum = partctl("weights", "stage", "custom/beit_tiny", str(good), "--sha256", "0" * 64, *common)
    assert bad_sum.returncode == 2 and "does not match the expected" in _error_line(bad_sum)
    assert not (store / "weights" / "custom" / "beit_tiny" / "beit_tiny.pth").exists()  # nothing half-staged

    staged = partctl("weights", "stage", "custom/beit_tiny", str(good), *common)
    assert staged.returncode == 0, staged.stderr[-2000:]
    folder = store / "weights" / "custom" / "beit_tiny"
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert (folder / "beit_tiny.pth").read_bytes() == good.read_bytes()
    assert (folder / "beit_tiny.pth.sha256").read_text() == digest
    assert len(json.loads((folder / "digests.json").read_text())) == 1  # the state dict's, for the feature cache
    (row,) = json.loads(partctl("weights", "list", "--json", *common).stdout)
    assert (row["state"], row["sha256"], row["bytes"]) == ("cached", digest, good.stat().st_size)
    again = partctl("weights", "fetch", *common)
    assert again.returncode == 0 and "cached" in again.stdout


def test_fetch_resumes_a_partial_download_checks_its_sha256_and_lists_it(partctl, tmp_path, www):
    server, base = www
    data = _bytes(FABRICATORS["mae"](TINY))
    server.files["/mae_tiny.pth"] = data
    digest = hashlib.sha256(data).hexdigest()
    url = {"kind": "url", "location": f"{base}/mae_tiny.pth", "sha256": digest}
    spec = _spec(tmp_path, [_encoder("custom/mae_tiny", "mae", url)])
    partial = tmp_path / "partial"
    partial.mkdir()
    # what a killed download left: the first third, where the downloader keeps partial files
    key = hashlib.sha256(url["location"].encode()).hexdigest()[:16]
    (partial / f"{key}-mae_tiny.pth.part").write_bytes(data[: len(data) // 3])
    env = {**ONLINE, "PARTAWARE_DOWNLOAD_DIR": str(partial)}
    t0 = time.perf_counter()
    out = partctl("weights", "fetch", "custom/mae_tiny", "--spec", spec, "--storage", str(tmp_path / "s"), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert server.ranges == [f"bytes={len(data) // 3}-"]  # one request, for the rest only
    cached = tmp_path / "s" / "weights" / "custom" / "mae_tiny" / "mae_tiny.pth"
    assert cached.read_bytes() == data and "fetched" in out.stdout and not list(partial.glob("*.part"))
    print(f"resumed fetch of {len(data)} bytes via the CLI: {time.perf_counter() - t0:.2f}s")
    (row,) = json.loads(partctl("weights", "list", "custom/mae_tiny", "--json", "--spec", spec, "--storage",
                                str(tmp_path / "s")).stdout)  # fmt: skip
    assert row["state"] == "cached" and row["sha256"] == digest


def test_fetch_offline_ends_in_one_line_naming_where_to_stage(partctl, tmp_path):
    store = tmp_path / "store"
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty hub cache
    dino = partctl("weights", "fetch", "dino", "--storage", str(store), env=env)
    assert dino.returncode == 1
    line = _error_line(dino)
    assert "offline" in line and f"{store}/weights/dino_base_p16_in1k_teacher/" in line
    clip = partctl("weights", "fetch", "clip", "--storage", str(store), env=env)
    assert clip.returncode == 1 and f"{store}/weights/clip_base_p16_openai/model.safetensors" in _error_line(clip)
    both = partctl("weights", "fetch", "dino", "clip", "--storage", str(store), env=env)
    assert both.returncode == 1 and "2 of 2 encoders" in _error_line(both)
    assert not (store / "weights").exists() or not any((store / "weights").rglob("*.pth"))


def test_weights_input_errors_are_one_line(partctl, tmp_path):
    store = ("--storage", str(tmp_path / "store"))
    nothing = partctl("weights", "fetch", *store)
    assert nothing.returncode == 2 and "name the encoders" in _error_line(nothing)
    unknown = partctl("weights", "stage", "nope", str(tmp_path / "x.pth"), *store)
    assert unknown.returncode == 2 and "dino" in _error_line(unknown)  # the valid names are listed
    lab = partctl("weights", "stage", "lab/mae", str(tmp_path / "x.pth"), *store)
    assert lab.returncode == 2 and "partctl pretrain" in _error_line(lab)
    no_file = partctl("weights", "stage", "mae", str(tmp_path / "x.pth"), *store)
    assert no_file.returncode == 2 and "no such file" in _error_line(no_file)
    zoo = partctl("weights", "list", "--zoo", "nope", *store)
    assert zoo.returncode == 2 and "paper" in _error_line(zoo)
