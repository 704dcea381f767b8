"""Feature extraction throughput: the Ray Data pipeline vs a plain PyTorch DataLoader loop vs the model alone.

All three run in this one process, on the same crops (the synthetic dataset's object and part boxes),
the same encoder (random weights, explicitly: speed does not depend on the values), the same batch
size and the same torch thread count:

- **model only** (the ceiling): ``encoder.encode`` on random normalised tensors, no I/O;
- **plain loop** (the paper code's approach): a ``Dataset`` that opens the image for each region, crops
  it with PIL (black outside), resizes, normalises; ``DataLoader(batch_size, num_workers)``; encode;
- **pipeline**: ``extract_features`` on a local Ray (``num_cpus`` = cores) into a fresh storage root,
  end to end (Ray itself is started before the clock; the actor start and model load are inside it).

Figures are regions/s (a region is one crop, one image to the encoder) and ratios against the other
two. Peak memory is the largest resident set of the process tree (this process plus its children:
DataLoader workers, or Ray's daemons and actors) while each mode runs. The machines are shared:
absolute numbers are indicative, ratios less noisy.

``--device cuda`` runs all three on the GPU (the pipeline's actor asks Ray for one GPU), ``--precision
bf16``/``fp16`` autocasts the encoder in all three (fp16: CUDA only). On a GPU, give it enough images that
the fixed costs (actor start, model load) are small against the run, e.g. ViT-B/16 at 224 px in bf16:

    .venv/bin/python bench/bench_extract.py --device cuda --precision bf16 --encoder vit_base_patch16_224 \
        --size 224 --images 2000 --batch 256 --loader-workers 8
    .venv/bin/python bench/bench_extract.py [--images 48] [--encoder vit_small_patch16_224] [--size 224]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.encoders.base import EncoderSpec, WeightsSource
from partaware.encoders.loading import load_encoder
from partaware.storage import StorageRoot


def _tree_rss() -> int:
    """Resident bytes of this process and all its descendants (Linux /proc)."""
    parents, rss = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(stat[1])
                rss[int(entry)] = int(stat[21]) * page
            except (OSError, ValueError, IndexError):
                continue
    me, total = os.getpid(), 0
    for pid, size in rss.items():
        p = pid
        while p > 1 and p != me:
            p = parents.get(p, 0)
        if p == me:
            total += size
    return total


@contextmanager
def peak_memory():
    """Yields a dict whose ``peak`` is the largest tree RSS seen (sampled every 0.1 s)."""
    out = {"peak": _tree_rss()}
    stop = threading.Event()

    def sample():
        while not stop.wait(0.1):
            out["peak"] = max(out["peak"], _tree_rss())

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield out
    finally:
        stop.set()
        t.join()


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def encode(encoder, x: torch.Tensor, taps, device: str, precision: str) -> dict[str, np.ndarray]:
    """What the pipeline's worker does per batch: to the device, autocast, encode, back to host memory."""
    dtype = AUTOCAST[precision]
    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        out = encoder.encode(x.to(device, non_blocking=True), taps)
    return {t: v.float().cpu().numpy() for t, v in out.items()}


def model_only(spec: EncoderSpec, taps, batch: int, n: int, device: str, precision: str) -> float:
    """The ceiling: the model on device-resident random input (outputs synchronised to the host)."""
    encoder = load_encoder(spec, device=device)
    x = torch.randn(batch, 3, spec.input_size, spec.input_size, device=device)
    for _ in range(3 if device == "cuda" else 1):  # warm-up (CUDA: kernels, autotuning)
        encode(encoder, x, taps, device, precision)
    steps = max(1, n // batch)
    start = time.perf_counter()
    for _ in range(steps):
        encode(encoder, x, taps, device, precision)
    return steps * batch / (time.perf_counter() - start)


class RegionCrops(torch.utils.data.Dataset):
    """The paper code's loader: one image read per region, PIL crop, resize, ToTensor, Normalize."""

    def __init__(self, files: list[str], boxes: list, spec: EncoderSpec):
        self.files, self.boxes, self.spec = files, boxes, spec
        self.mean = np.array(spec.mean, np.float32)
        self.std = np.array(spec.std, np.float32)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with open(self.files[i], "rb") as f:
            img = Image.open(io.BytesIO(f.read())).convert("RGB")
        box = self.boxes[i]
        box = (0, 0, img.width, img.height) if box is None else tuple(int(round(v)) for v in box)
        size = self.spec.input_size
        crop = np.asarray(img.crop(box).resize((size, size), Image.Resampling.BICUBIC), np.float32)
        return torch.from_numpy(((crop / 255.0 - self.mean) / self.std).transpose(2, 0, 1).copy())


def plain_loop(root: StorageRoot, spec: EncoderSpec, taps, batch: int, workers: int, device: str,
               precision: str) -> tuple[float, int]:  # fmt: skip
    start = time.perf_counter()
    from partaware.datasets.store import open_prepared

    prepared = open_prepared(root, "synthetic")
    rows = [r for r in prepared.manifest().select(["image_uri", "box", "label_id"]).to_pylist() if r["label_id"] >= 0]
    files = [os.path.join(prepared.root.path, r["image_uri"]) for r in rows]
    encoder = load_encoder(spec, device=device)
    loader = torch.utils.data.DataLoader(
        RegionCrops(files, [r["box"] for r in rows], spec), batch_size=batch, num_workers=workers,
        pin_memory=device == "cuda",
    )  # fmt: skip
    n = 0
    for x in loader:
        encode(encoder, x, taps, device, precision)
        n += len(x)
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="synthetic images (about 6-7 regions each)")
    parser.add_argument("--encoder", "--arch", dest="arch", default="vit_small_patch16_224",
                        help="a timm architecture, random weights (ViT-B/16: vit_base_patch16_224)")  # fmt: skip
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--image-size", type=int, default=224,
                        help="side of the synthetic source images (photos: about 500)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--loader-workers", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model-batches", type=int, default=None, help="batches timed for the ceiling (2; CUDA 20)")
    parser.add_argument("--decode-cpus", type=float, default=None, help="CPUs per decode task (default: the share)")
    parser.add_argument("--images-per-task", type=int, default=8, help="images per decode task")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="the model alone and the plain loop only (a machine without Ray)")  # fmt: skip
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.precision == "fp16" and args.device != "cuda":
        parser.error("--precision fp16 runs only on CUDA; use bf16 on CPUs")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    torch.set_num_threads(args.threads)
    spec = EncoderSpec(
        name=f"bench/{args.arch}_{args.size}_rand",
        family="supervised",
        zoo="custom",
        arch=args.arch,
        arch_kwargs={"img_size": args.size},
        input_size=args.size,
        weights=WeightsSource(kind="random"),
    )
    taps = ["cls", "mean"]
    device, gpu = args.device, args.device == "cuda"
    model_n = (args.model_batches or (20 if gpu else 2)) * args.batch
    with tempfile.TemporaryDirectory() as tmp:
        root = StorageRoot.open(tmp)
        prepared, _ = prepare_dataset(root, "synthetic", options={"size": args.images, "image_size": args.image_size})
        n = sum(i >= 0 for i in prepared.manifest().column("label_id").to_pylist())  # the "regions" rows
        print(
            f"extraction: {args.arch} at {args.size} px, batch {args.batch}, {args.threads} torch threads, "
            f"{n} regions from {args.images} synthetic images ({args.image_size} px), {os.cpu_count()} cores, "
            f"{torch.cuda.get_device_name() if gpu else 'CPU'}, {args.precision}"
        )
        load_before = os.getloadavg()[0]
        with peak_memory() as mem_model:
            ceiling_before = model_only(spec, taps, args.batch, model_n, device, args.precision)
        with peak_memory() as mem_loop:
            loop, n_loop = plain_loop(root, spec, taps, args.batch, args.loader_workers, device, args.precision)
        assert n_loop == n
        if args.no_pipeline:
            print(f"  model only (ceiling):       {ceiling_before:7.1f} regions/s   peak RSS "
                  f"{mem_model['peak'] / 2**30:5.2f} GiB")  # fmt: skip
            print(f"  plain DataLoader loop:      {loop:7.1f} regions/s   peak RSS {mem_loop['peak'] / 2**30:5.2f} "
                  f"GiB   ({args.loader_workers} loader worker(s))")  # fmt: skip
            print(f"  plain loop / model only:    x{loop / ceiling_before:.2f}")
            return

        import ray

        from partaware.extract.pipeline import extract_features

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
        with peak_memory() as mem_pipe:
            result = extract_features(
                root, "synthetic", spec, taps=taps, batch_size=args.batch, min_actors=1, max_actors=1,
                threads_per_actor=args.threads, precision=args.precision, shard_regions=128,
                gpus_per_actor=1 if gpu else 0, device=device, decode_cpus=args.decode_cpus,
                images_per_task=args.images_per_task,
            )  # fmt: skip
        ray.shutdown()
        ceiling_after = model_only(spec, taps, args.batch, model_n, device, args.precision)  # shared: measure twice
    ceiling = (ceiling_before + ceiling_after) / 2
    assert result.rows == n and result.regions_encoded == n
    pipe = result.regions_per_s
    (worker,) = result.workers.values()
    t = result.timings
    gib = 1024**3
    print(
        f"  model only (ceiling):       {ceiling:7.1f} regions/s   peak RSS {mem_model['peak'] / gib:5.2f} GiB   "
        f"(before {ceiling_before:.1f}, after {ceiling_after:.1f}; load average {load_before:.1f} -> "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"  plain DataLoader loop:      {loop:7.1f} regions/s   peak RSS {mem_loop['peak'] / gib:5.2f} GiB   "
        f"({args.loader_workers} loader worker(s))"
    )
    print(
        f"  Ray Data pipeline:          {pipe:7.1f} regions/s   peak RSS {mem_pipe['peak'] / gib:5.2f} GiB   "
        f"(incl. Ray daemons; {result.seconds:.1f} s end to end)"
    )
    print(f"  pipeline device: {result.device} ({', '.join(p['node_type'] for p in result.placement)})")
    print(f"  pipeline / plain loop:      x{pipe / loop:.2f}")
    print(f"  pipeline / model only:      x{pipe / ceiling:.2f}")
    print(f"  plain loop / model only:    x{loop / ceiling:.2f}")
    print(
        f"  pipeline stages (s, summed over workers): read {t['read']:.2f}, decode+crop {t['decode']:.2f}, "
        f"encode {t['encode']:.2f}, write {t['write']:.2f}; actor while encoding {worker['regions_per_s']:.1f} "
        f"regions/s (x{worker['regions_per_s'] / ceiling:.2f} of the ceiling); "
        f"fixed cost (actor start, model load, verify) {result.seconds - t['encode'] - t['decode'] - t['read']:.1f} s"
    )


if __name__ == "__main__":
    main()
