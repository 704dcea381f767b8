"""Weighted k-NN classifier on cosine similarity (DINO's protocol): the k nearest training items vote
with weight exp(sim / temperature). No training, so a search over (k, temperature) is cheap."""

from __future__ import annotations

import torch

from partaware.probes.errors import ProbeInputError
from partaware.probes.metrics import top1_accuracy
from partaware.probes.training import as_tensor


def knn_predict(
    train_x,
    train_y,
    query_x,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
    device: str | None = None,
) -> torch.Tensor:
    """(Q,) predicted class ids for ``query_x`` from labelled ``train_x``."""
    if k < 1 or temperature <= 0:
        raise ProbeInputError(f"k-NN needs k >= 1 and temperature > 0 (got k={k}, temperature={temperature})")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gallery = torch.nn.functional.normalize(as_tensor(train_x, dtype=torch.float32), dim=1).to(dev)
    labels = as_tensor(train_y, dtype=torch.long).to(dev)
    queries = as_tensor(query_x, dtype=torch.float32)
    if gallery.shape[0] != labels.shape[0] or queries.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ProbeInputError(
            f"k-NN shapes: train {tuple(gallery.shape)}, labels {tuple(labels.shape)}, queries {tuple(queries.shape)}"
        )
    n_cls = num_classes or int(labels.max()) + 1
    k = min(k, gallery.shape[0])
    preds = []
    for lo in range(0, queries.shape[0], chunk_size):
        q = torch.nn.functional.normalize(queries[lo : lo + chunk_size].to(dev), dim=1)
        sim, idx = (q @ gallery.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], n_cls, device=dev)
        votes.scatter_add_(1, labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_top1(train_x, train_y, eval_x, eval_y, *, k: int = 20, temperature: float = 0.07, **kwargs) -> float:
    """Top-1 accuracy (fraction) of the weighted k-NN classifier."""
    return top1_accuracy(knn_predict(train_x, train_y, eval_x, k=k, temperature=temperature, **kwargs), eval_y)
