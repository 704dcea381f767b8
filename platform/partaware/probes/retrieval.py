"""Part retrieval (protocol §3.3): cosine similarity, exact per-query average precision, AP and mAP.

Per query, AP equals ``sklearn.metrics.average_precision_score(label_j == label_q, sim_qj)`` exactly,
ties included: sklearn puts one threshold at every distinct score, so each positive j contributes
``T_j / A_j``, where ``T_j`` (``A_j``) is the number of positives (of all items) whose similarity is
at least j's. Neither count needs a full sort of the N similarities:

- CPU (numba): per query, the positives are bucket-sorted on a grid over their own mean +- 4 std,
  every item finds ``k`` = the number of positives <= its score by a look-up in its bucket plus two
  branch-free steps (a binary search only in a crowded bucket, e.g. many tied positives), and
  ``T``/``A`` are suffix sums of the histogram of ``k``. O(N) per query, in cache, no sort of N.
- GPU, or CPU without numba: the same counts with ``torch.sort`` of the masked row and
  ``torch.searchsorted``, which are fast on a GPU.

The paper includes the query in its own gallery (``exclude_self=False``, the default, quirk §7.8);
``exclude_self=True`` drops it. A query with no positive in its gallery has an undefined AP (NaN) and
is left out of AP and mAP (sklearn warns and returns 0 there), and ``n_undefined`` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from partaware.probes.errors import ProbeInputError

try:  # numba is a declared dependency; the torch path keeps retrieval working without it
    import numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    _HAVE_NUMBA = False


@dataclass
class RetrievalResult:
    """AP = mean over queries; mAP = mean over classes of the per-class mean AP (both in [0, 1])."""

    ap: float
    map: float
    per_query: np.ndarray = field(repr=False)
    per_class: dict[int, float]
    n_queries: int
    n_gallery: int
    n_undefined: int
    exclude_self: bool

    def metrics(self) -> dict[str, float]:
        """Percentages, as result records store them."""
        return {"ap": 100.0 * self.ap, "map": 100.0 * self.map}


def cosine_similarity(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, N) cosine similarities, in float32."""
    q = torch.nn.functional.normalize(queries.float(), dim=1)
    g = torch.nn.functional.normalize(gallery.float(), dim=1)
    return q @ g.T


def average_precision_rows(sim, positive, *, backend: str = "auto") -> np.ndarray:
    """Exact per-row AP of ``sim`` (B, N) against the boolean ``positive`` (B, N); NaN where no positive.

    ``backend``: ``numba`` (CPU counting kernel), ``torch`` (sort + searchsorted, on the tensor's
    device), or ``auto`` (torch for CUDA tensors, numba otherwise when available).
    """
    if backend not in ("auto", "numba", "torch"):
        raise ProbeInputError(f"unknown retrieval backend {backend!r}. Valid: auto, numba, torch")
    is_cuda = isinstance(sim, torch.Tensor) and sim.is_cuda
    if backend == "auto":
        backend = "numba" if _HAVE_NUMBA and not is_cuda else "torch"
    if backend == "numba":
        if not _HAVE_NUMBA:
            raise ProbeInputError("backend 'numba' requested but numba is not installed")
        s = sim.detach().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim)
        p = positive.detach().cpu().numpy() if isinstance(positive, torch.Tensor) else np.asarray(positive)
        if s.shape != p.shape or s.ndim != 2:
            raise ProbeInputError(f"similarities {s.shape} and positives {p.shape} must be equal 2-D shapes")
        if np.isnan(s).any():
            raise ProbeInputError("similarities contain NaN")
        return _ap_rows_numba(np.ascontiguousarray(s, dtype=np.float32), np.ascontiguousarray(p, dtype=np.uint8))
    s = torch.as_tensor(sim)
    p = torch.as_tensor(positive, device=s.device).bool()
    return _ap_rows_torch(s.float(), p).cpu().numpy()


def _ap_rows_torch(sim: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Counts via a sort of each row's positives (others padded with +inf) and ``searchsorted``."""
    b, n = sim.shape
    padded = torch.where(positive, sim, torch.full_like(sim, float("inf")))
    pos_sorted = torch.sort(padded, dim=1).values
    k = torch.searchsorted(pos_sorted, sim.contiguous(), right=True)  # positives <= each score
    hist_all = torch.zeros(b, n + 1, dtype=torch.float64, device=sim.device)
    hist_all.scatter_add_(1, k, torch.ones_like(sim, dtype=torch.float64))
    hist_pos = torch.zeros_like(hist_all).scatter_add_(1, k, positive.double())
    at_least_all = hist_all.flip(1).cumsum(1).flip(1)[:, 1:]  # A for the j-th smallest positive
    at_least_pos = hist_pos.flip(1).cumsum(1).flip(1)[:, 1:]
    n_pos = positive.sum(1)
    valid = torch.arange(n, device=sim.device)[None, :] < n_pos[:, None]
    ratio = torch.where(valid, at_least_pos / at_least_all.clamp_min(1), torch.zeros_like(at_least_all))
    ap = ratio.sum(1) / n_pos.clamp_min(1)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, float("nan")))


if _HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _ap_one_row(row, pos, grid, pv, order, cell_of, start, hist):  # pragma: no cover - jit
        """AP of one row: bucket-sort the positives, count every item against them, suffix sums."""
        n = row.shape[0]
        n_pos = 0
        for i in range(n):  # gather the positives (branch-free)
            pv[n_pos] = row[i]
            n_pos += pos[i]
        if n_pos == 0:
            return np.nan
        # Grid over the positives' mean +- 4 std: outliers (the query itself at 1.0) land in the end cells.
        mean = 0.0
        lo = pv[0]
        hi = pv[0]
        for j in range(n_pos):
            mean += pv[j]
            lo = min(lo, pv[j])
            hi = max(hi, pv[j])
        mean /= n_pos
        var = 0.0
        for j in range(n_pos):
            var += (pv[j] - mean) ** 2
        std = np.sqrt(var / n_pos)
        lo = max(lo, np.float32(mean - 4.0 * std))
        hi = min(hi, np.float32(mean + 4.0 * std))
        n_cells = grid * n_pos
        top = np.float32(n_cells - 1)
        zero = np.float32(0.0)
        scale = np.float32(n_cells / (hi - lo)) if hi > lo else zero
        start[: n_cells + 2] = 0
        for j in range(n_pos):  # counting sort of the positives by cell (the cell map is monotone) ...
            c = int(min(max((pv[j] - lo) * scale, zero), top))
            cell_of[j] = c
            start[c + 1] += 1
        for c in range(n_cells):
            start[c + 1] += start[c]
        for j in range(n_pos):  # fill each cell from its end: start[c + 1] ends as cell c's first slot
            c = cell_of[j]
            x = start[c + 1] - 1
            start[c + 1] = x
            order[x] = pv[j]
        start[n_cells + 1] = n_pos  # cell c spans [start[c + 1], start[c + 2])
        for c in range(n_cells):  # ... then insertion sort inside each (small) cell
            first = start[c + 1]
            for x in range(first + 1, start[c + 2]):
                v = order[x]
                y = x - 1
                while y >= first and order[y] > v:
                    order[y + 1] = order[y]
                    y -= 1
                order[y + 1] = v
        order[n_pos] = np.inf  # sentinels: the two branch-free steps below may read past a cell
        order[n_pos + 1] = np.inf
        hist[: n_pos + 1] = 0
        pos_unit = np.int64(1) << 32  # one histogram: all items in the low 32 bits, positives above
        for i in range(n):  # every item's cell first: a loop the compiler vectorises
            cell_of[i] = np.int32(min(max((row[i] - lo) * scale, zero), top))
        for i in range(n):  # k = number of positives <= row[i]; exact, ties included
            v = row[i]
            c = cell_of[i]
            k = start[c + 1]
            end = start[c + 2]
            k += (k < end) & (order[k] <= v)
            k += (k < end) & (order[k] <= v)
            if k < end and order[k] <= v:  # a crowded cell (many tied positives): binary search, not a walk
                k += np.searchsorted(order[k:end], v, side="right")
            hist[k] += 1 + pos[i] * pos_unit
        total = 0.0
        at_least_all = 0
        at_least_pos = 0
        for j in range(n_pos, 0, -1):  # the j-th smallest positive: A and T are suffix sums
            at_least_all += hist[j] & 0xFFFFFFFF
            at_least_pos += hist[j] >> 32
            total += at_least_pos / at_least_all
        return total / n_pos

    @numba.njit(parallel=True, cache=True)
    def _ap_rows_kernel(sim, pos, grid, n_workers):  # pragma: no cover - jit
        b, n = sim.shape
        out = np.empty(b, dtype=np.float64)
        for w in numba.prange(n_workers):  # buffers once per worker, not per row (big ones cost page faults)
            pv = np.empty(n, dtype=np.float32)
            order = np.empty(n + 2, dtype=np.float32)
            cell_of = np.empty(n, dtype=np.int32)
            start = np.empty(grid * n + 3, dtype=np.int32)
            hist = np.empty(n + 1, dtype=np.int64)
            for r in range(w, b, n_workers):
                out[r] = _ap_one_row(sim[r], pos[r], grid, pv, order, cell_of, start, hist)
        return out


def _ap_rows_numba(sim: np.ndarray, positive: np.ndarray, grid: int = 8) -> np.ndarray:
    if sim.shape[1] >= 2**31 // (grid + 1):
        raise ProbeInputError(f"retrieval rows of {sim.shape[1]} items exceed the kernel's int32 counters")
    return _ap_rows_kernel(sim, positive, grid, max(1, min(numba.get_num_threads(), sim.shape[0])))


def retrieval_ap(
    features,
    labels,
    *,
    exclude_self: bool = False,
    chunk_size: int = 512,
    device: str | torch.device | None = None,
    backend: str = "auto",
) -> RetrievalResult:
    """Every item queries all items (itself included unless ``exclude_self``); exact AP and mAP.

    ``features`` (N, D) and integer ``labels`` (N,) as numpy arrays or tensors. Similarities are
    computed ``chunk_size`` queries at a time on ``device`` (CUDA when present by default), so memory
    stays O(chunk_size x N).
    """
    feats = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor) else features)
    labs = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if feats.ndim != 2 or labs.ndim != 1 or feats.shape[0] != labs.shape[0]:
        raise ProbeInputError(
            f"retrieval needs features (N, D) and labels (N,); got {tuple(feats.shape)} and {tuple(labs.shape)}"
        )
    if feats.shape[0] < 2:
        raise ProbeInputError(f"retrieval needs at least 2 items, got {feats.shape[0]}")
    if not torch.isfinite(feats).all():
        raise ProbeInputError("retrieval features contain NaN or infinite values")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gallery = torch.nn.functional.normalize(feats.float(), dim=1).to(dev)
    labs_dev = labs.long().to(dev)
    n = gallery.shape[0]
    per_query = np.empty(n, dtype=np.float64)
    for lo in range(0, n, chunk_size):
        hi = min(lo + chunk_size, n)
        sim = gallery[lo:hi] @ gallery.T
        positive = labs_dev[lo:hi, None] == labs_dev[None, :]
        if exclude_self:
            rows = torch.arange(hi - lo, device=dev)
            sim[rows, rows + lo] = float("-inf")  # below every finite score: out of every count
            positive[rows, rows + lo] = False
        per_query[lo:hi] = average_precision_rows(sim, positive, backend=backend)
    return summarize_ap(per_query, labs.numpy(), exclude_self=exclude_self)


def summarize_ap(per_query: np.ndarray, labels: np.ndarray, *, exclude_self: bool = False) -> RetrievalResult:
    """AP (mean over defined queries) and mAP (mean over classes of the per-class mean AP)."""
    labels = np.asarray(labels)
    defined = ~np.isnan(per_query)
    per_class = {int(c): float(per_query[(labels == c) & defined].mean()) for c in np.unique(labels[defined])}
    return RetrievalResult(
        ap=float(per_query[defined].mean()) if defined.any() else float("nan"),
        map=float(np.mean(list(per_class.values()))) if per_class else float("nan"),
        per_query=per_query,
        per_class=per_class,
        n_queries=len(per_query),
        n_gallery=len(per_query) - int(exclude_self),
        n_undefined=int((~defined).sum()),
        exclude_self=exclude_self,
    )


# --- neighbours (the galleries' view of the same cosine retrieval) ----------------------------------


def _normalise(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ProbeInputError(f"features must be N x D, got shape {f.shape}")
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def nearest_neighbours(
    features: np.ndarray, queries: Sequence[int], k: int, *, exclude: Sequence[Sequence[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` patches by cosine similarity for each query, the query itself excluded (and ``exclude[q]``).

    Returns (indices, similarities), both ``len(queries) x k``; ties break by index."""
    f = _normalise(features)
    n = len(f)
    k = min(k, n - 1)
    sims = f[list(queries)] @ f.T
    for row, q in enumerate(queries):
        sims[row, q] = -np.inf
        if exclude is not None:
            sims[row, list(exclude[row])] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)
