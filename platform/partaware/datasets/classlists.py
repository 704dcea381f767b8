"""Class lists shipped as data (``datasets/classes/<name>.json``), checked against ``classes/SHA256SUMS``.

Why data and not code: a per-class table is only readable, and a result only comparable with other work,
when the names and ids are exactly a published list. Each file names its source (repository, path,
commit) and its label-value convention; its sha256 is checked on every load, copied into each prepared
version (``classes/<name>.json``, so it enters the version's content digest) and recorded in
``dataset.json`` (``class_list_record``) for the result records to carry.

A list whose release publishes no names (the Zhu et al. releases keep numeric ids only) has
``"named": false``; its classes are shown as ``class 17 (unnamed in the release)``, never as real names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from partaware.errors import DatasetError

SUMS_FILE = "SHA256SUMS"
PLACEHOLDER = "class {id} (unnamed in the release)"


@dataclass(frozen=True)
class ClassList:
    """One shipped list: its file's bytes and digest, and the parsed entries."""

    name: str
    data: bytes
    sha256: str
    spec: dict[str, Any]

    @property
    def named(self) -> bool:
        return bool(self.spec.get("named", True))

    @property
    def entries(self) -> list[dict[str, Any]]:
        return list(self.spec["classes"])

    @property
    def ids(self) -> list[int]:
        """The stored label value of each class, in list order."""
        return [int(c["id"]) for c in self.spec["classes"]]

    def names(self) -> list[str]:
        """Display names in list order; placeholders (never passed off as real) where the release has none."""
        return [c.get("name") or PLACEHOLDER.format(id=c["id"]) for c in self.spec["classes"]]

    def objects(self) -> list[dict[str, Any]]:
        return list(self.spec.get("objects", []))

    @property
    def file(self) -> str:
        """Where a prepared version keeps its copy (relative to the version folder)."""
        return f"classes/{self.name}.json"

    def record(self, entries: str = "classes") -> dict[str, Any]:
        """What ``dataset.json`` says about the list used (``entries``: which of its lists labels the level)."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "named": self.named,
            "entries": entries,
            "file": self.file,
            "version": self.spec.get("version", ""),
            "source": self.spec.get("source", {}),
        }

    def add_to(self, build) -> str:
        """Copy the list into the version being built (once); its checksum enters the version's digest."""
        if self.file not in build.checksums:
            build.add_file(self.file, self.data)
        return self.file


def _folder():
    return resources.files("partaware.datasets").joinpath("classes")


@cache
def expected_digests() -> dict[str, str]:
    """file name -> sha256, from ``classes/SHA256SUMS`` (``sha256sum`` format)."""
    sums = {}
    for line in _folder().joinpath(SUMS_FILE).read_text().splitlines():
        if line.strip():
            digest, _, file = line.strip().partition("  ")
            sums[file.strip()] = digest.strip()
    return sums


def list_names() -> list[str]:
    return sorted(f.removesuffix(".json") for f in expected_digests())


def load_class_list(name: str) -> ClassList:
    """The shipped list ``name``; ``DatasetError`` (one line naming file and digest) if it does not verify."""
    file = f"{name}.json"
    path = _folder().joinpath(file)
    expected = expected_digests().get(file)
    if expected is None:
        raise DatasetError(f"class list {name!r} is not shipped (known: {', '.join(list_names())})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"class list file {path} is missing (listed in {SUMS_FILE})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise DatasetError(f"class list file {path}: sha256 {digest} does not match {expected} in {SUMS_FILE}")
    try:
        spec = json.loads(data)
        if spec["name"] != name or not isinstance(spec["classes"], list):
            raise ValueError(f"names itself {spec['name']!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"class list file {path}: not a class list: {e}") from None
    return ClassList(name, data, digest, spec)


def options_class_list(names: list[str], source: str, note: str | None = None) -> dict[str, Any]:
    """The record for names not in a shipped file (options, or ``note``: a release's own file): their digest
    still identifies them."""
    digest = hashlib.sha256(json.dumps(names).encode()).hexdigest()
    name, note = (source, note) if note else (f"options ({source})", f"class names given by the user ({source})")
    return {"name": name, "sha256": digest, "named": True, "entries": "classes", "file": None, "version": "",
            "source": {"note": note}}  # fmt: skip
