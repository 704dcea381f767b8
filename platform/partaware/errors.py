"""One error root for the platform, with subclasses that are also the fitting built-ins.

Callers catch ``PartawareError`` to turn any expected failure into a clean one-line message
(the CLI does, with exit code 2 for bad input); tests and libraries can still catch
``LookupError`` / ``ValueError`` without knowing our names.
"""

from __future__ import annotations

from collections.abc import Iterable


class PartawareError(Exception):
    """Root of every error the platform raises on purpose."""


class UnknownNameError(PartawareError, LookupError):
    """A name (encoder, dataset, probe, ...) that no registry holds; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], suggestion: str | None = None):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        hint = f" Did you mean {suggestion!r}?" if suggestion else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(self.valid) or '(none)'}")

    def __reduce__(self):  # keep it picklable across Ray processes
        return (type(self), (self.kind, self.name, self.valid))


class SpecError(PartawareError, ValueError):
    """A job spec (or any user-supplied configuration) that fails validation."""


class StorageError(PartawareError, OSError):
    """The storage root cannot be reached, or an output is incomplete or corrupt."""


class StorageUnusableError(StorageError):
    """A storage root that cannot be used at all: a file, read-only, or an endpoint that cannot be reached."""


class CheckpointError(PartawareError, ValueError):
    """A checkpoint file that cannot be loaded: empty, truncated, corrupt, or not a checkpoint."""


class DatasetError(PartawareError, ValueError):
    """A dataset source that cannot be converted (missing files, unreadable annotation)."""


class UnsafePathError(DatasetError):
    """A manifest path that escapes its dataset root (``..``, absolute, or another scheme)."""
