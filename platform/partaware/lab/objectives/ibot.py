"""iBOT (Zhou et al. 2022) at lab scale: DINO's [CLS] self-distillation plus masked-patch
self-distillation (an online tokenizer: the teacher's patch distributions are the targets).

The student's global views are masked blockwise (half of the images, 10-50% of their patches, a
learned mask token replacing the patch embedding); the teacher sees them unmasked. The loss is the
DINO loss on [CLS] over multi-crop pairs plus, on each global view, the cross-entropy between the
teacher's and the student's patch distributions at the masked positions. Head shared between [CLS]
and patches (iBOT's ``shared_head``), separate centres. The head's BatchNorm (see ``dino.py``) sees the
[CLS] tokens and the patch tokens as two batches: pooled, the 64 patches per image set the statistics
and the [CLS] outputs flattened (teacher entropy 5.1 -> 5.8 nats over 100 steps, against 3.5 -> 3.6
apart). The lab encoder is the teacher backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from partaware.lab.backbone import forward_tokens
from partaware.lab.objectives.base import Metrics, block_masking
from partaware.lab.objectives.dino import DINO, Centre, dino_ce


class IBOT(DINO):
    name, family = "ibot", "contrastive+mim"
    views_per_image = 2 + 4 * 0.25
    learning_curve = "kl"

    def __init__(self, *, mask_prob: float = 0.5, mask_ratio: tuple[float, float] = (0.1, 0.5), **kw):
        super().__init__(**kw)
        d = self.backbone.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_centre = Centre(self.centre.value.shape[1])
        self.mask_prob, self.mask_ratio = mask_prob, mask_ratio
        self.grid = self.backbone.patch_embed.grid_size[0]

    def masks(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n x N`` bool: each image masked with ``mask_prob``, a random ratio of its patches."""
        num = self.grid * self.grid
        out = torch.zeros(n, num, dtype=torch.bool)
        use = torch.rand(n, generator=gen) < self.mask_prob
        ratio = self.mask_ratio[0] + (self.mask_ratio[1] - self.mask_ratio[0]) * float(torch.rand(1, generator=gen))
        k = max(1, int(round(num * ratio)))
        if bool(use.any()):
            out[use] = block_masking(int(use.sum()), self.grid, k, gen)
        return out

    def patch_temp(self, step: int) -> float:
        """iBOT warms the teacher's patch temperature up from 0.04 to 0.07 (here over 30% of steps)."""
        warm = max(1, int(0.3 * self.total_steps))
        return 0.04 + (0.07 - 0.04) * min(1.0, step / warm)

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        views = self.crops(images, gen)
        g = self.n_global
        head = self.student_head(step)
        masks = [self.masks(images.shape[0], gen).to(self.device) for _ in range(g)]
        s_glob = [
            forward_tokens(self.backbone, v, mask=m, mask_token=self.mask_token)
            for v, m in zip(views[:g], masks, strict=True)
        ]
        s_cls = [head(t[:, 0]) for t in s_glob] + [head(forward_tokens(self.backbone, v)[:, 0]) for v in views[g:]]
        s_patches = [head(t[:, 1:]) for t in s_glob]  # B x N x K
        with torch.no_grad():
            t_tok = [forward_tokens(self.teacher_backbone, v) for v in views[:g]]
            cls_logits = torch.stack([self.teacher_head(t[:, 0]) for t in t_tok])  # G x B x K
            patch_logits = torch.stack([self.teacher_head(t[:, 1:]) for t in t_tok])  # G x B x N x K
            cls_probs = self.centre.probs(cls_logits, self.teacher_temp)
            patch_probs = self.patch_centre.probs(patch_logits, self.patch_temp(step))
        loss_cls, pairs = 0.0, 0
        for iq in range(g):
            for v, s in enumerate(s_cls):
                if v != iq:
                    loss_cls = loss_cls + dino_ce(cls_probs[iq], s, self.student_temp)
                    pairs += 1
        loss_mim, n_mim = 0.0, 0
        for i in range(g):
            if bool(masks[i].any()):
                s_patch = s_patches[i][masks[i]]
                loss_mim = loss_mim + dino_ce(patch_probs[i][masks[i]], s_patch, self.student_temp)
                n_mim += 1
        self.centre.update(cls_logits)
        self.patch_centre.update(patch_logits)
        loss_cls = loss_cls / pairs
        loss_mim = loss_mim / max(1, n_mim)
        total = loss_cls + loss_mim
        ent = lambda p: float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())  # noqa: E731
        h_cls = ent(cls_probs)
        h_mim = sum(ent(patch_probs[i][masks[i]]) for i in range(g) if bool(masks[i].any())) / max(1, n_mim)
        kl = float(total.detach()) - h_cls - h_mim
        return total, {
            "kl": kl,
            "teacher_entropy": h_cls,
            "loss_cls": float(torch.as_tensor(loss_cls).detach()),
            "loss_mim": float(torch.as_tensor(loss_mim).detach()),
        }
