"""Attentive probe (protocol §3.4, copied from CAE): a learned query cross-attends over all tokens,
then BatchNorm (affine=False), then Linear.

The cross-attention has separate LayerNorms on q, k and v, q and v biases (no k bias), an output
projection, no residual and no MLP. The paper's BatchNorm always uses batch statistics, even at
evaluation (quirk §7.6, results then depend on the eval batch, 256); ``eval_batch_stats=True``
reproduces that, the default uses the running statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from partaware.probes.errors import ProbeInputError
from partaware.probes.linear import check_classification_arrays, evaluate_classifier
from partaware.probes.training import FitResult, TrainConfig, as_tensor, fit_head


class AttentiveHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, *, num_heads: int = 12, eval_batch_stats: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ProbeInputError(f"attentive head: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.eval_batch_stats = num_heads, eval_batch_stats
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.norm_q, self.norm_k, self.norm_v = (nn.LayerNorm(dim, eps=1e-6) for _ in range(3))
        self.q = nn.Linear(dim, dim, bias=True)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.bn = nn.BatchNorm1d(dim, affine=False)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, d = tokens.shape
        h = self.num_heads
        q = self.q(self.norm_q(self.query.expand(b, -1, -1))).reshape(b, 1, h, d // h).transpose(1, 2)
        k = self.k(self.norm_k(tokens)).reshape(b, t, h, d // h).transpose(1, 2)
        v = self.v(self.norm_v(tokens)).reshape(b, t, h, d // h).transpose(1, 2)
        x = nn.functional.scaled_dot_product_attention(q, k, v)  # (b, h, 1, d/h)
        return self.proj(x.transpose(1, 2).reshape(b, d))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pooled(tokens)
        if not self.training and self.eval_batch_stats:  # the paper's eval-time batch statistics
            x = nn.functional.batch_norm(x, None, None, training=True, eps=self.bn.eps)
        else:
            x = self.bn(x)
        return self.fc(x)


def train_attentive_probe(
    tokens_train,
    y_train,
    *,
    num_classes: int,
    config: Mapping[str, Any] | TrainConfig | None = None,
    tokens_eval=None,
    y_eval=None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train the attentive head on (N, T, D) token sequences (all tokens, CLS included, as in the paper).

    Head settings in ``config``: ``num_heads`` (default: D // 64, at least 1), ``eval_batch_stats``.
    """
    head_keys = ("num_heads", "eval_batch_stats")
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_mapping(config, head_keys=head_keys)
    x, y = as_tensor(tokens_train, dtype=torch.float32), as_tensor(y_train, dtype=torch.long)
    if x.ndim != 3:
        raise ProbeInputError(f"attentive probe needs tokens (N, T, D), got shape {tuple(x.shape)}")
    check_classification_arrays(x, y, num_classes)
    torch.manual_seed(cfg.seed)
    dim = x.shape[2]
    model = AttentiveHead(
        dim,
        num_classes,
        num_heads=int(cfg.extra.get("num_heads", max(1, dim // 64) if dim % 64 == 0 else 1)),
        eval_batch_stats=bool(cfg.extra.get("eval_batch_stats", False)),
    )
    evaluate = None
    if tokens_eval is not None:
        xe, ye = as_tensor(tokens_eval, dtype=torch.float32), as_tensor(y_eval, dtype=torch.long)
        check_classification_arrays(xe, ye, num_classes)

        def evaluate(m: nn.Module) -> dict[str, float]:
            return evaluate_classifier(m, xe, ye, cfg)

    return fit_head(model, x, y, config=cfg, loss_fn=nn.functional.cross_entropy, evaluate=evaluate, on_epoch=on_epoch)
