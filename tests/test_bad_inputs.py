"""Bad inputs and faults, as a new user meets them: each ends in one clear line with the right exit code,
within bounded time, with nothing half-written left visible and nothing complete lost.

Real files, real subprocesses (the ``partctl`` a user runs), real sockets on 127.0.0.1 for S3 endpoints
that refuse or never answer, real ``kill -9``. Nothing is mocked.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from _cli import PARTCTL, partctl_env
from partaware.cli import describe_error
from partaware.datasets import prepare_dataset
from partaware.datasets.store import STAGING_PREFIX, StagingLock, is_intact, list_versions, remove_stale_staging
from partaware.errors import CheckpointError, SpecError, StorageUnusableError
from partaware.spec import dump_spec, load_spec, parse_spec
from partaware.storage import StorageRoot
from test_datasets_keypoints import person
from test_datasets_labelmaps import jpeg, write

GOOD = {"name": "t", "datasets": [{"name": "synthetic", "options": {"size": 16, "image_size": 64}}]}
COCO_REF = {"name": "coco", "source": "/x", "options": {"keypoints": [0]}}
DEPTH_SEARCH = {"linear": {"depth": {"type": "choice", "values": [1]}}}


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


def spec_file(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- specs ------------------------------------------------------------------------------------------

ALIAS_BOMB = """name: bomb
datasets:
  - name: synthetic
    options:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""
SEARCH_BOMB = """name: bomb
datasets: [{name: synthetic}]
tasks: [linear]
search:
  linear:
    lr: {type: choice, values: &v [1, 2, 3]}
    weight_decay: {type: choice, values: *v}
"""

SPEC_CASES = [
    ("alias bomb in options", ALIAS_BOMB, r"job\.yaml: line 5, column 10 YAML anchor &a refused"),
    ("alias in a search space", SEARCH_BOMB, r"YAML anchor &v refused: job specs may not use anchors or aliases"),
    ("deep nesting", "name: x\ndatasets: " + "[" * 5000 + "]" * 5000 + "\n", r"refused: nested deeper than 32"),
    ("unknown dataset option", yaml.safe_dump({**GOOD, "datasets": [{"name": "synthetic", "options": {"sise": 8}}]}),
     r"datasets\.0\.options\.sise: unknown field \(valid fields: size, image_size"),
    ("negative dataset option", yaml.safe_dump({**GOOD, "datasets": [{"name": "synthetic", "options": {"size": -3}}]}),
     r"datasets\.0\.options\.size: Input should be greater than or equal to 8 \(got -3\)"),
    ("typed options of a real converter",
     yaml.safe_dump({**GOOD, "levels": ["part"], "datasets": [COCO_REF]}),
     r"datasets\.0\.options\.keypoints: keypoint ids \[0\] are not in 1\.\.17"),
    ("a real dataset without a source", yaml.safe_dump({**GOOD, "datasets": [{"name": "cub"}]}),
     r"datasets\.0\.source: dataset cub needs a source"),
    ("unknown search parameter", yaml.safe_dump({**GOOD, "tasks": ["linear"], "search": DEPTH_SEARCH}),
     r"search\.linear: unknown parameter\(s\) \['depth'\]"),
    ("unbounded size", yaml.safe_dump({**GOOD, "resources": {"extract_batch_size": 10**9}}),
     r"resources\.extract_batch_size: 1000000000 is above the limit 65536"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "pattern"), SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_specs_fail_validate_in_one_line(partctl, tmp_path, case, text, pattern):
    start = time.perf_counter()
    proc = partctl("validate", str(spec_file(tmp_path, text)), timeout=60)
    one_error_line(proc, 2, pattern)
    assert time.perf_counter() - start < 30


def test_every_dataset_types_its_options_without_torch():
    """Spec validation checks each dataset's options against its converter's model, importing no torch."""
    code = (
        "import sys\n"
        "from pydantic import BaseModel\n"
        "from partaware.datasets import DATASETS, options_model\n"
        "for name in DATASETS.names():\n"
        "    model = options_model(name)\n"
        "    assert issubclass(model, BaseModel) and model.model_config.get('extra') == 'forbid', name\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_spec_paths_that_are_not_specs(partctl, tmp_path):
    """A folder, a non-UTF-8 file and an oversized file: one line naming the file, exit 2."""
    (tmp_path / "folder.yaml").mkdir()
    one_error_line(partctl("validate", str(tmp_path / "folder.yaml")), 2, r"folder\.yaml: is a folder, not a job spec")
    latin = spec_file(tmp_path, "", "latin.yaml")
    latin.write_bytes(b"name: caf\xe9\ndatasets: []\n")
    one_error_line(partctl("validate", str(latin)), 2, r"latin\.yaml: line 1: not UTF-8 text \(byte 0xe9 at offset 9\)")
    big = spec_file(tmp_path, "name: x\n# " + "x" * (2 << 20) + "\n", "big.yaml")
    one_error_line(partctl("validate", str(big)), 2, r"big\.yaml: job spec is larger than 1 MiB")


def test_a_bad_spec_fails_submit_before_ray_or_a_run_folder(partctl, tmp_path):
    """Typed options are checked at load: nothing starts (the fixture fails a test that starts Ray)."""
    bad = {**GOOD, "datasets": [{"name": "synthetic", "options": {"size": 16, "colour": "red"}}]}
    store = tmp_path / "store"
    proc = partctl("submit", str(spec_file(tmp_path, yaml.safe_dump(bad))), "--storage", str(store), timeout=120)
    one_error_line(proc, 2, r"datasets\.0\.options\.colour: unknown field")
    assert not (store / "runs").exists()


def test_a_missing_local_source_fails_submit_before_ray(partctl, tmp_path):
    spec = {**GOOD, "levels": ["part"], "tasks": ["linear"], "datasets": [{"name": "cub", "source": "no/such/CUB"}]}
    store = tmp_path / "store"
    proc = partctl("submit", str(spec_file(tmp_path, yaml.safe_dump(spec))), "--storage", str(store), cwd=tmp_path)
    one_error_line(proc, 2, rf"job t: datasets\.0\.source: {tmp_path}/no/such/CUB does not exist; check", alone=False)
    assert not (store / "runs").exists()


def test_debug_shows_the_traceback(partctl, tmp_path):
    (tmp_path / "d.yaml").mkdir()
    proc = partctl("--debug", "validate", str(tmp_path / "d.yaml"))
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "SpecError" in proc.stderr
    proc = partctl("validate", str(tmp_path / "d.yaml"), env={"PARTAWARE_DEBUG": "1"})
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_dumped_specs_hold_no_anchors_and_load_again(tmp_path):
    """A value shared in memory is written out twice (the loader refuses anchors, so it must)."""
    shared = {"type": "choice", "values": [1, 2]}
    spec = parse_spec({**GOOD, "tasks": ["linear"], "search": {"linear": {"lr": shared, "weight_decay": shared}}})
    text = dump_spec(spec)
    assert "&" not in text and "*" not in text
    assert load_spec(spec_file(tmp_path, text)) == spec


def test_set_values_refuse_aliases(partctl, tmp_path):
    proc = partctl("data", "prepare", "synthetic", "--set", "size=[&a [1], *a]", "--dest", str(tmp_path / "s"))
    one_error_line(proc, 2, r"--set size: line 1, column 2 YAML anchor &a refused")


# --- archives -------------------------------------------------------------------------------------


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


def test_truncated_tar_gz_is_one_line_and_leaves_no_temporary_folder(partctl, tmp_path):
    good = tar_gz(tmp_path / "good.tgz", cub_like())
    cut = tmp_path / "CUB_200_2011.tgz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    env = prepare_env(tmp_path)
    proc = partctl("data", "prepare", "cub", "--source", str(cut), "--dest", str(tmp_path / "s"), env=env)
    one_error_line(proc, 2, r"CUB_200_2011\.tgz: cannot unpack archive: truncated, corrupt or not a tar \(EOFError")
    assert not list((tmp_path / "tmpdir").iterdir())


def test_a_zip_that_is_not_one(partctl, tmp_path):
    fake = tmp_path / "ADEChallengeData2016.zip"
    fake.write_text("<html>404 not found</html>")
    proc = partctl("data", "prepare", "ade20k", "--source", str(fake), "--dest", str(tmp_path / "s"))
    one_error_line(proc, 2, r"ADEChallengeData2016\.zip: not a readable zip archive \(BadZipFile: File is not a zip")


def test_unpacking_is_capped_in_files_and_bytes(partctl, tmp_path):
    tgz = tar_gz(tmp_path / "CUB_200_2011.tgz", cub_like(3))
    env = prepare_env(tmp_path, PARTAWARE_MAX_UNPACK_FILES="2")
    proc = partctl("data", "prepare", "cub", "--source", str(tgz), "--dest", str(tmp_path / "s"), env=env)
    one_error_line(
        proc, 2, r"archive holds more than 2 files; unpack it yourself .* raise \$PARTAWARE_MAX_UNPACK_FILES"
    )
    assert not list((tmp_path / "tmpdir").iterdir())
    bomb = tmp_path / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ADEChallengeData2016/images/training/a.jpg", b"\0" * 5_000_000)  # 5 MB in ~5 KB
    env = prepare_env(tmp_path, PARTAWARE_MAX_UNPACK_BYTES="1000000")
    proc = partctl("data", "prepare", "ade20k", "--source", str(bomb), "--dest", str(tmp_path / "s"), env=env)
    one_error_line(proc, 2, r"archive unpacks to more than 1000000 bytes")


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


# --- storage --------------------------------------------------------------------------------------


def test_a_storage_root_that_is_a_file(partctl, tmp_path):
    (tmp_path / "store").write_text("not a folder")
    proc = partctl("data", "prepare", "synthetic", "--size", "8", "--dest", str(tmp_path / "store"))
    one_error_line(proc, 2, r"storage root .*/store is a file, not a folder; pass a folder")
    with pytest.raises(StorageUnusableError, match="is a file"):
        StorageRoot.open(str(tmp_path / "store"))


def test_a_read_only_storage_root(tmp_path):
    """Refused before any work. Root ignores permission bits, so as root the command runs without the
    capability to override them (``setpriv``)."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    cmd = [PARTCTL, "data", "prepare", "synthetic", "--size", "8", "--dest", str(ro)]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: permission bits cannot be enforced")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=partctl_env(), timeout=120)
        one_error_line(proc, 2, rf"storage root {ro} cannot be written \(Permission denied\); pass a writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "PARTAWARE_S3_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PARTAWARE_S3_CONNECT_TIMEOUT": "1",
        "PARTAWARE_S3_READ_TIMEOUT": "1",
        "PARTAWARE_S3_MAX_ATTEMPTS": "2",
    }


def test_an_s3_endpoint_that_refuses_connections(partctl):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    start = time.perf_counter()
    proc = partctl("data", "prepare", "synthetic", "--size", "8", "--dest", "s3://bucket/store",
                   env=s3_env(f"http://127.0.0.1:{port}"), timeout=120)  # fmt: skip
    one_error_line(proc, 2, rf"cannot connect to s3://bucket/store \(endpoint http://127\.0\.0\.1:{port}\): "
                            r"connection refused or host unreachable; check the endpoint")  # fmt: skip
    assert time.perf_counter() - start < 60


def test_an_s3_endpoint_that_never_answers_fails_in_bounded_time(partctl):
    """The server accepts connections (the kernel's backlog) and never sends a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        port = server.getsockname()[1]
        start = time.perf_counter()
        proc = partctl("data", "prepare", "synthetic", "--size", "8", "--dest", "s3://bucket/store",
                       env=s3_env(f"http://127.0.0.1:{port}"), timeout=120)  # fmt: skip
        took = time.perf_counter() - start
    one_error_line(proc, 2, rf"s3://bucket/store \(endpoint http://127\.0\.0\.1:{port}\) did not answer \(timeouts "
                            r"1 s to connect, 1 s to read, 2 attempts\)")  # fmt: skip
    assert took < 45, took


def test_bad_s3_limits_are_one_line(partctl):
    env = {**s3_env("http://127.0.0.1:9"), "PARTAWARE_S3_READ_TIMEOUT": "forever"}
    proc = partctl("data", "prepare", "synthetic", "--size", "8", "--dest", "s3://bucket/store", env=env)
    one_error_line(proc, 2, r"\$PARTAWARE_S3_READ_TIMEOUT='forever': expected seconds in \(0, 3600\]")


@pytest.mark.s3
def test_publishing_to_s3_without_expect_continue(s3_bucket):
    """Uploads skip ``Expect: 100-continue`` (a silent server would hang them): moto still takes them."""
    root = StorageRoot.open(f"s3://{s3_bucket}/store", writable=True)
    prepared, built = prepare_dataset(root, "synthetic", options={"size": 8, "image_size": 64})
    assert built and is_intact(prepared.root) and len(prepared.manifest()) > 0
    assert not prepare_dataset(root, "synthetic", options={"size": 8, "image_size": 64})[1]


# --- publishing: concurrency, half-published versions, killed writers ----------------------------


def staging_dirs(store: Path) -> list[str]:
    folder = store / "datasets" / "synthetic"
    """Staging entries (folders and their lock files) under the synthetic dataset's folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX)) if folder.exists() else []


def prepare_cmd(store: Path, size: int = 48) -> list[str]:
    return [PARTCTL, "data", "prepare", "synthetic", "--size", str(size), "--image-size", "64", "--workers", "1",
            "--dest", str(store)]  # fmt: skip


def test_two_prepares_of_one_recipe_both_succeed_with_one_intact_version(tmp_path):
    store = tmp_path / "store"
    procs = [subprocess.Popen(prepare_cmd(store), env=partctl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    versions = list_versions(StorageRoot.open(str(store)), "synthetic")
    assert len(versions) == 1 and is_intact(versions[0].root)
    assert len(versions[0].manifest()) == versions[0].info["rows"] > 0
    checksums = versions[0].checksums()
    assert all((Path(versions[0].root.path) / rel).exists() for rel in checksums)
    assert (
        staging_dirs(store) == []
        and [p.name for p in (store / "datasets/synthetic").iterdir() if ".lock" in p.name] == []
    )


def test_a_half_published_version_is_repaired_by_the_next_prepare(store):
    """The replayed race: a version folder holding only ``_SUCCESS`` (and its recipe pointing there)."""
    opts = {"size": 8, "image_size": 64}
    prepared, _ = prepare_dataset(store, "synthetic", options=opts)
    folder = Path(prepared.root.path)
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.name != "_SUCCESS":
            path.rmdir() if path.is_dir() else path.unlink()
    assert [p.name for p in folder.iterdir()] == ["_SUCCESS"]
    assert list_versions(store, "synthetic") == []  # listing skips it instead of failing
    again, built = prepare_dataset(store, "synthetic", options=opts)
    assert built and again.version == prepared.version and is_intact(again.root)
    assert len(again.manifest()) == prepared.info["rows"]


def test_a_publish_that_finds_the_version_complete_discards_its_copy(store):
    from partaware.datasets.store import DatasetBuild

    first, _ = prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 64})
    with DatasetBuild(store, "synthetic", dict(first.info["recipe"])) as build:
        for rel in first.checksums():
            build.add_file(rel, (Path(first.root.path) / rel).read_bytes())
        second = build.publish(first.manifest().to_pylist(), {})
    assert second.version == first.version and not os.path.exists(build.staging)
    assert is_intact(first.root) and staging_dirs(Path(store.path)) == []


def test_kill_9_during_prepare_leaves_a_staging_folder_that_the_next_prepare_removes(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(prepare_cmd(store, size=3000), env=partctl_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _some_staged_file(store):
            time.sleep(0.2)
        assert _some_staged_file(store), "the prepare never started staging"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert [Path(n).suffix for n in staging_dirs(store)] == ["", ".lock"]  # left behind, hidden, not a version
    assert list_versions(StorageRoot.open(str(store)), "synthetic") == []
    done = subprocess.run(prepare_cmd(store, size=8), env=partctl_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert staging_dirs(store) == []


def _some_staged_file(store: Path) -> bool:
    return any((store / "datasets" / "synthetic" / d).rglob("*.png") for d in staging_dirs(store))


def test_staging_of_a_live_writer_is_kept_and_unlocked_old_ones_go(tmp_path, monkeypatch):
    parent = tmp_path / "datasets" / "x"
    parent.mkdir(parents=True)
    live = StagingLock.create(str(parent))
    os.makedirs(live.folder)
    orphan = parent / f"{STAGING_PREFIX}0123abcd"  # an older layout: no lock file
    orphan.mkdir()
    assert remove_stale_staging(str(parent)) == []  # the orphan is too young, the live one is held
    monkeypatch.setenv("PARTAWARE_STALE_STAGING_S", "0")
    time.sleep(0.01)
    assert remove_stale_staging(str(parent)) == [orphan.name]
    assert os.path.isdir(live.folder)
    live.release()  # its writer is done: no lock file, an orphan once old
    assert remove_stale_staging(str(parent)) == [Path(live.folder).name]


def test_interrupting_prepare_exits_130_and_leaves_nothing_half_written(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(prepare_cmd(store, size=3000), env=partctl_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _some_staged_file(store):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert staging_dirs(store) == [] and list_versions(StorageRoot.open(str(store)), "synthetic") == []


# --- the one error path ---------------------------------------------------------------------------


def test_unexpected_errors_are_one_line_with_a_hint():
    message, code = describe_error(RuntimeError("boom\n  and a second line"))
    assert (message, code) == ("unexpected RuntimeError: boom (rerun with --debug for the traceback)", 1)
    message, code = describe_error(SpecError("job.yaml: invalid job spec: x"))
    assert (message, code) == ("job.yaml: invalid job spec: x", 2)
    message, code = describe_error(PermissionError(13, "Permission denied", "/data/x"))
    assert (message, code) == ("/data/x: Permission denied; check the path and its permissions", 2)
