"""Part retrieval: this implementation against the official per-query sklearn loop, in one run.

The official protocol (``pr_patch_retrieval.py``) calls ``sklearn.metrics.average_precision_score``
once per query on a row of cosine similarities. Both sides here read the *same* float32 similarity
rows (computed once by ``cosine_similarity``), so the AP difference measures the AP code alone. The
sklearn loop is timed on a random subset of queries and extrapolated to all of them (it is linear in
the number of queries); the output says so. Figures are ratios against that baseline, measured in the
same process, because the machine is shared and noisy.

    python bench/bench_retrieval.py [--n 20000] [--dim 768] [--classes 4] [--sklearn-queries 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from partaware.probes.retrieval import average_precision_rows, cosine_similarity, retrieval_ap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=4, help="part classes (CUB uses 4, COCO 3)")
    parser.add_argument("--sklearn-queries", type=int, default=300, help="queries timed for the sklearn loop")
    parser.add_argument("--chunk", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(args.seed)
    labels = torch.randint(0, args.classes, (args.n,), generator=gen)
    centers = torch.randn(args.classes, args.dim, generator=gen)
    feats = 0.1 * centers[labels] + torch.randn(args.n, args.dim, generator=gen)  # overlapping classes
    feats[1::97] = feats[0::97][: len(feats[1::97])]  # exact duplicates: tied similarities
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"retrieval bench: {args.n} x {args.dim} features, {args.classes} classes, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )

    # Warm-up: compile the numba kernel outside the timed region (it is cached on disk afterwards).
    retrieval_ap(feats[:600], labels[:600])

    start = time.perf_counter()
    result = retrieval_ap(feats, labels, chunk_size=args.chunk)
    ours_total = time.perf_counter() - start

    # The AP step alone, on precomputed similarity rows (what the sklearn loop is compared with).
    gallery = torch.nn.functional.normalize(feats.float(), dim=1).to(device)
    ours_ap_only, sims_seconds = 0.0, 0.0
    per_query = np.empty(args.n)
    for lo in range(0, args.n, args.chunk):
        hi = min(lo + args.chunk, args.n)
        t0 = time.perf_counter()
        sim = gallery[lo:hi] @ gallery.T
        positive = labels[lo:hi, None].to(device) == labels[None, :].to(device)
        t1 = time.perf_counter()
        per_query[lo:hi] = average_precision_rows(sim, positive)
        ours_ap_only += time.perf_counter() - t1
        sims_seconds += t1 - t0

    rng = np.random.default_rng(args.seed)
    subset = np.sort(rng.choice(args.n, size=min(args.sklearn_queries, args.n), replace=False))
    sims = cosine_similarity(feats[subset], feats).cpu().numpy()
    lab = labels.numpy()
    start = time.perf_counter()
    reference = np.array([average_precision_score(lab == lab[q], sims[i]) for i, q in enumerate(subset)])
    sk_per_query = (time.perf_counter() - start) / len(subset)
    sk_total = sk_per_query * args.n

    diff_same_sims = float(np.abs(reference - per_query[subset]).max())
    diff_end_to_end = float(np.abs(reference - result.per_query[subset]).max())
    print(
        f"  sklearn loop: {sk_per_query * 1e3:.2f} ms/query, timed on {len(subset)} random queries and "
        f"extrapolated to {args.n}: {sk_total:.1f} s"
    )
    print(f"  ours, AP from similarity rows: {ours_ap_only:.2f} s   speed ratio x{sk_total / ours_ap_only:.1f}")
    print(
        f"  ours, end to end (similarities + AP): {ours_total:.2f} s (similarity matmul {sims_seconds:.2f} s)  "
        f"speed ratio x{sk_total / ours_total:.1f}"
    )
    print(f"  max |AP - sklearn| on the same similarity rows: {diff_same_sims:.2e}")
    print(f"  max |AP - sklearn| end to end (chunked matmul vs one matmul): {diff_end_to_end:.2e}")
    print(f"  AP {100 * result.ap:.2f}  mAP {100 * result.map:.2f}")


if __name__ == "__main__":
    main()
