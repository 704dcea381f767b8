"""Probe training throughput at the paper's shapes: items x epochs per second, against the bare head.

A probe stage's cost is (items x epochs) / rate per trial. This measures the rate of the platform's own
training loops (``probes.linear.train_linear_probe``, ``probes.attentive.train_attentive_probe``: shuffled
batches moved to the device one by one, SGD with a cosine schedule, the loss read back every step) on
random ViT-B/16-shaped inputs, and, in the same process, the **bare head**: the same module, optimiser and
batch on inputs already on the device, nothing else (the ceiling). Shapes: the linear probe reads the CLS
token (768), the attentive probe all 197 tokens of 768 (fp32, protocol 3.4); 1,000 classes (ImageNet).

    .venv/bin/python bench/bench_probe_rates.py [--device cpu|cuda] [--items 4096] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from partaware.probes.attentive import AttentiveHead, train_attentive_probe
from partaware.probes.linear import LinearHead, train_linear_probe


def bare_rate(head: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, epochs: int) -> float:
    """Items x epochs per second of the head alone: SGD steps on device-resident batches, one sync at the end."""
    opt = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9)

    def step(lo: int) -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(head(x[lo : lo + batch]), y[lo : lo + batch]).backward()
        opt.step()

    step(0)  # warm-up
    sync(x.device)
    start = time.perf_counter()
    for _ in range(epochs):
        for lo in range(0, len(x), batch):
            step(lo)
    sync(x.device)
    return len(x) * epochs / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--items", type=int, default=4096, help="training items (the attentive probe: x 0.6 MB)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024, help="the paper's total batch")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"probe training: {args.items} items x {args.epochs} epochs, batch {args.batch}, {args.classes} classes, "
          f"fp32, {where}")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, args.classes, (args.items,), generator=gen)
    config = {"epochs": args.epochs, "batch_size": args.batch, "lr": 0.01, "device": args.device}
    probes = {
        "linear (CLS)": ((args.dim,), lambda: LinearHead(args.dim, args.classes), train_linear_probe),
        "attentive (tokens)": ((args.tokens, args.dim), lambda: AttentiveHead(args.dim, args.classes),
                               train_attentive_probe),
    }  # fmt: skip
    for name, (shape, make_head, train) in probes.items():
        x = torch.randn(args.items, *shape, generator=gen)
        bare = bare_rate(make_head().to(device), x.to(device), y.to(device), args.batch, args.epochs)
        start = time.perf_counter()
        train(x, y, num_classes=args.classes, config=config)
        sync(device)
        probe = args.items * args.epochs / (time.perf_counter() - start)
        print(f"  {name:20} bare head {bare:9.0f} items x epochs/s   probe loop {probe:9.0f}   "
              f"probe / bare x{probe / bare:.2f}   input {x[0].numel() * 4 / 1024:.0f} KB/item")  # fmt: skip


if __name__ == "__main__":
    main()
