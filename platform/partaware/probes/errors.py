"""The probes' one error: bad features, labels or settings, named precisely."""

from __future__ import annotations

from partaware.errors import PartawareError


class ProbeInputError(PartawareError, ValueError):
    """Features, labels or settings that a probe cannot use (shapes, NaNs, unknown options)."""
