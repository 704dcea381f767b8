"""The paper's segmentation schedule, in-process (no Ray): iterations per second of the training loop.

A tiny random ViT (``vit_tiny_patch16_224`` at 64 px, the tests' encoder, or ``--arch``/``--size``) on the
synthetic set's part maps, batch 16, crop = the image size; ``--loaders`` data-loader processes do the
augmentation (a Ray Train worker with C CPUs uses C - 1 of them and one torch thread).

    python bench/bench_segmentation_paper.py [--iterations 100] [--threads 1] [--loaders 0] [--size 64]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from partaware.datasets.synthetic import prepare_synthetic
from partaware.encoders.specs import EncoderSpec
from partaware.probes.label_maps import label_convention
from partaware.probes.segmentation_paper import PaperJob, geometry_for, map_images, train_paper_segmentation
from partaware.storage import StorageRoot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loaders", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="synthetic image size = crop")
    parser.add_argument("--arch", default="vit_tiny_patch16_224")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder = EncoderSpec(
        name="bench/vit_rand", family="supervised", arch=args.arch, arch_kwargs={"img_size": args.size},
        input_size=args.size, weights={"kind": "random"},
    )  # fmt: skip
    root = StorageRoot.open(tempfile.mkdtemp(prefix="bench-seg-"))
    prepared, _ = prepare_synthetic(root, options={"size": 40, "image_size": args.size})
    manifest = prepared.manifest()
    job = PaperJob(
        encoder=encoder, storage_uri=root.uri, dataset_uri=prepared.uri, dataset="synthetic", level="part",
        train=tuple(map_images(manifest, "part", "train,val")), test=tuple(map_images(manifest, "part", "test")),
        convention=label_convention(prepared, "part"), geometry=geometry_for("synthetic", args.size),
        iterations=args.iterations, loader_workers=args.loaders,
    )  # fmt: skip
    out = train_paper_segmentation(job, device=args.device)
    print(f"{args.arch} crop {out['geometry']['crop']} batch {job.batch_size} on {out['device']}: "
          f"{out['iterations_per_second']:.2f} iterations/s over {args.iterations} "
          f"(threads {args.threads}, loaders {args.loaders}); test {out['eval_seconds']:.2f} s "
          f"for {out['n_test']} images")  # fmt: skip


if __name__ == "__main__":
    main()
