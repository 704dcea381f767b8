"""Encoder zoo: what loading an official ViT-B/16 checkpoint and tapping it costs, in one run.

Baselines measured in the same process (shared, noisy machines: only ratios mean much):
- loading: ``timm.create_model`` of the bare architecture vs reading a fabricated official DINO full
  checkpoint (``weights_only``) + converting + strict-loading it, and building the projection head;
- encoding: a batch with the ``cls`` tap only vs ``cls, mean, proj`` plus the four segmentation maps.

    .venv/bin/python bench/bench_encoders.py [--batch 8] [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _encoder_refs import VIT_B, fab_dino  # noqa: E402  (the test's official-layout fabricator)
from partaware.encoders.base import LoadedEncoder, load_strict  # noqa: E402
from partaware.encoders.loading import CONVERTERS, build_head, build_model  # noqa: E402
from partaware.encoders.registry import ENCODERS  # noqa: E402
from partaware.encoders.weights import load_checkpoint_bytes  # noqa: E402


def timed(fn, repeat: int = 1):
    """(result, best wall time of ``repeat`` runs): the minimum is the least noisy on a shared machine."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = ENCODERS.get("dino")
    buf = io.BytesIO()
    torch.save(fab_dino(VIT_B, head_dims=(2048, 256, 65536)), buf)
    data = buf.getvalue()

    build_model(spec)  # warm-up: first-call import and init costs are not the model's
    _, t_bare = timed(lambda: build_model(spec), args.repeat)

    def load():
        checkpoint = load_checkpoint_bytes(data, name="dino.pth")
        backbone, head_state = CONVERTERS.get(spec.weights.converter)(checkpoint)
        model = build_model(spec)
        load_strict(model, backbone, what=spec.name)
        return model.eval(), build_head(spec, head_state)

    (model, head), t_load = timed(load, args.repeat)
    enc = LoadedEncoder(spec=spec, model=model, head=head, weights_digest="bench")
    images = torch.randn(args.batch, 3, 224, 224)
    enc.encode(images[:1], ["cls"])  # warm-up
    _, t_cls = timed(lambda: enc.encode(images, ["cls"]), args.repeat)
    taps = ["cls", "mean", "proj", "patch:4", "patch:6", "patch:8", "patch:12"]
    _, t_all = timed(lambda: enc.encode(images, taps), args.repeat)
    print(f"encoder zoo, ViT-B/16 DINO layout ({len(data) / 2**20:.0f} MiB checkpoint), {args.threads} threads")
    print(f"  timm.create_model (bare):          {t_bare:6.2f} s  (baseline)")
    print(f"  read + convert + strict load + head: {t_load:6.2f} s  x{t_load / t_bare:.2f} vs baseline")
    print(f"  encode {args.batch} images, cls only:       {t_cls:6.2f} s  (baseline)  {args.batch / t_cls:5.1f} img/s")
    print(f"  encode, cls+mean+proj+4 maps:     {t_all:6.2f} s  x{t_all / t_cls:.2f} vs baseline")


if __name__ == "__main__":
    main()
