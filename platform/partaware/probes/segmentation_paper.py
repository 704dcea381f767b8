"""The paper's segmentation schedule (protocol §3.5) with the frozen encoder in the loop: plain torch, no Ray.

Why not the cached maps: the paper trains its 1x1 conv on augmented crops (random resize, crop, flip,
photometric distortion) for 160k iterations and scores by sliding windows over resized test images; none of
that exists in features extracted once per image. So the encoder runs inside the loop, frozen:

- backbone: ``load_encoder`` (eval, no grad), position embeddings interpolated once to the crop (timm's
  ``set_input_size``, the paper's ``img_size = crop``); patch tokens of the paper's blocks scaled to the
  encoder's depth (``segmentation_blocks``), no final norm;
- head: resize-concat of the block maps, one 1x1 conv (N(0, 0.01) init), bilinear upsampling, cross-entropy
  with ignore 255 averaged over all pixels of the batch (mmseg 0.x, ``avg_non_ignore`` did not exist yet);
- optimiser: AdamW lr 4e-4, betas (0.9, 0.999), weight decay 0.05 (not on biases for the MAE/CAE/BEiT
  configs, whose layer-decay constructor skips 1-D parameters); linear warmup over 1,500 iterations from
  ratio 1e-6, then poly (power 1) to 0, set before every iteration as mmcv does; batch 16;
- test: keep-ratio resize to the test scale, single-scale sliding window (averaged logits), logits
  bilinearly resized to the original label map; mIoU / mAcc / aAcc over the summed per-image class counts.

A worker calls ``train_paper_segmentation`` with a picklable ``PaperJob``; ``partaware.train`` runs it in a
Ray Train worker. Every random draw derives from the job's seed (head init from ``torch.manual_seed``,
batch order and each sample's augmentation from ``(seed, iteration, slot)``), so a run is deterministic on
the CPU and resumes from a checkpoint onto the same trajectory.
"""

from __future__ import annotations

import copy
import functools
import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from partaware.datasets.convert import bounded_map, is_label_map_row, read_label_map
from partaware.encoders.specs import EncoderSpec
from partaware.errors import DatasetError
from partaware.probes.errors import ProbeInputError
from partaware.probes.fit import counts_scores
from partaware.probes.label_maps import READ_WORKERS, LabelConvention
from partaware.probes.metrics import IGNORE_INDEX
from partaware.probes.segmentation import LinearSegmentationHead, concat_block_maps, upsampled_logits
from partaware.probes.segmentation_augment import eval_image, train_sample
from partaware.probes.tasks.segmentation import segmentation_blocks
from partaware.storage import StorageRoot, safe_relpath

#: Bump when anything below changes what a paper-mode run computes (it enters the probe cache key).
PAPER_VERSION = "1"
BATCH_SIZE = 16
LR = 4e-4
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 0.05
WARMUP_ITERS = 1500
WARMUP_RATIO = 1e-6
POLY_POWER = 1.0
MIN_LR = 0.0
CHECKPOINT_EVERY = 16_000  # the paper evaluated every 16k iterations; here it is when a run can resume from
REPORT_EVERY = 50
EVAL_WINDOWS = 8  # sliding windows per forward pass at test time
#: weights converters of the configs with ``LayerDecayOptimizerConstructor`` (no decay on 1-D parameters)
NO_BIAS_DECAY = ("mae", "cae", "beit")


@dataclass(frozen=True)
class Geometry:
    """Train img_scale (long, short), crop, test scale and sliding-window stride; the window is the crop."""

    train_scale: tuple[int, int]
    crop: int
    test_scale: tuple[int, int]
    stride: int
    source: str

    def for_patch(self, patch: int) -> Geometry:
        """The crop floored to whole patches (the paper's crops already are, for patch 16 and 8)."""
        crop = max(patch, self.crop // patch * patch)
        return self if crop == self.crop else replace(self, crop=crop, stride=min(self.stride, crop))

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "train_scale": list(self.train_scale), "test_scale": list(self.test_scale)}


_ADE = Geometry((2048, 512), 512, (2048, 512), 341, "paper: ADE20K configs")
_PASCAL = Geometry((520, 520), 480, (3840, 480), 161, "paper: Pascal configs")
_LIP = Geometry((1024, 320), 320, (4096, 320), 161, "paper: LIP configs")
#: The paper's crop sizes and windows by dataset; releases of the same images reuse them (not in the paper).
GEOMETRY = {
    "ade20k": _ADE, "ade20k-part": _ADE, "ade20k-object": _ADE, "pascal-part": _PASCAL, "pascal-object": _PASCAL,
    "lip": _LIP,
    "ade20k-part-234": replace(_ADE, source="ADE20K images: the paper's ADE20K geometry (dataset not in the paper)"),
    "pascal-part-116": replace(_PASCAL, source="Pascal images: the paper's Pascal geometry (dataset not in the paper)"),
}  # fmt: skip


def geometry_for(dataset: str, short_side: int) -> Geometry:
    """The paper's geometry for ``dataset``; otherwise the images' own size: crop = their (median) short side,
    train and test scale (4 crop, crop), stride 2/3 of the crop (ADE20K's proportions)."""
    if dataset in GEOMETRY:
        return GEOMETRY[dataset]
    crop = max(1, int(short_side))
    return Geometry((4 * crop, crop), crop, (4 * crop, crop), max(1, 2 * crop // 3),
                    f"default: the images' median short side ({crop} px)")  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """mmcv's iteration-based poly schedule with linear warmup; ``lr_at(i)`` is set before iteration i (0-based)."""

    iterations: int
    lr: float = LR
    warmup_iters: int = WARMUP_ITERS
    warmup_ratio: float = WARMUP_RATIO
    power: float = POLY_POWER
    min_lr: float = MIN_LR

    def lr_at(self, iteration: int) -> float:
        regular = (self.lr - self.min_lr) * (1.0 - iteration / self.iterations) ** self.power + self.min_lr
        if iteration < self.warmup_iters:  # mmcv scales the (already decayed) regular lr during warmup
            return regular * (1.0 - (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio))
        return regular

    def record(self) -> dict[str, Any]:
        return {"optimizer": "adamw", "betas": list(BETAS), "weight_decay": WEIGHT_DECAY, **asdict(self),
                "schedule": "linear warmup then poly, per iteration (mmcv)"}  # fmt: skip


# --- data -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapImage:
    """One whole-image label-map row: its image and label map (paths relative to the dataset version)."""

    row: int
    image_uri: str
    label_uri: str


def map_images(manifest, level: str, splits: str) -> list[MapImage]:
    """The label-map rows of ``level`` in the manifest splits ``splits`` (a comma list), in manifest order."""
    names = set(splits.split(","))
    columns = ["image_uri", "split", "level", "label_id", "sample_rule", "label_map_uri"]
    return [
        MapImage(i, r["image_uri"], r["label_map_uri"])
        for i, r in enumerate(manifest.select(columns).to_pylist())
        if r["level"] == level and r["split"] in names and is_label_map_row(r)
    ]


def median_short_side(manifest, rows: Sequence[MapImage]) -> int:
    """The median short side of ``rows``' images (from the manifest's width/height)."""
    size = manifest.select(["width", "height"]).to_pydict()
    return int(np.median([min(size["width"][r.row], size["height"][r.row]) for r in rows]))


class PairReader:
    """Reads (RGB uint8 image, uint8 labels in classes 0..K-1 / 255) from a dataset version's storage."""

    def __init__(self, root: StorageRoot, convention: LabelConvention, where: str = ""):
        self.root, self.convention, self.where = root, convention, where

    def __call__(self, item: MapImage) -> tuple[np.ndarray, np.ndarray]:
        try:
            with Image.open(io.BytesIO(self.root.read_bytes(safe_relpath(item.image_uri)))) as im:
                image = np.asarray(im.convert("RGB"))
            label = self.convention.apply(read_label_map(self.root.read_bytes(safe_relpath(item.label_uri))))
            if image.shape[:2] != label.shape:
                h, w = label.shape
                raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, label map {w}x{h}")
        except Exception as e:  # noqa: BLE001 - named with its files and row, whatever the reader raised
            raise DatasetError(
                f"{self.where}: image {item.image_uri} / label map {item.label_uri} (manifest row {item.row}) is "
                f"unusable: {type(e).__name__}: {e}"
            ) from e
        return image, label


def class_histogram(reader: PairReader, rows: Sequence[MapImage], num_classes: int) -> np.ndarray:
    """(K,) labelled pixels per class over ``rows``' label maps at their own size (255 skipped)."""
    root, convention = reader.root, reader.convention
    total = np.zeros(num_classes, np.int64)

    def count(item: MapImage) -> np.ndarray:
        labels = convention.apply(read_label_map(root.read_bytes(safe_relpath(item.label_uri)))).ravel()
        return np.bincount(labels[labels != IGNORE_INDEX], minlength=num_classes)[:num_classes]

    for item, result in bounded_map(count, rows, READ_WORKERS):
        if isinstance(result, Exception):
            raise DatasetError(f"{reader.where}: label map {item.label_uri} (manifest row {item.row}) is unusable: "
                               f"{type(result).__name__}: {result}") from result  # fmt: skip
        total += result
    return total


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_items(n: int, batch_size: int, seed: int, iteration: int) -> list[int]:
    """The items of ``iteration``: a stream of seeded per-epoch permutations, ``batch_size`` at a time."""
    positions = range(iteration * batch_size, (iteration + 1) * batch_size)
    return [int(_epoch_order(n, seed, p // n)[p % n]) for p in positions]


class TrainBatches(torch.utils.data.Dataset):
    """Map-style: index k -> the augmented batch of iteration ``start + k`` (same batch in any loader worker)."""

    def __init__(self, reader: PairReader, rows: Sequence[MapImage], geometry: Geometry, mean, std, *,
                 seed: int, batch_size: int, start: int, iterations: int):  # fmt: skip
        self.reader, self.rows, self.geometry, self.mean, self.std = reader, list(rows), geometry, mean, std
        self.seed, self.batch_size, self.start, self.iterations = seed, batch_size, start, iterations

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        iteration = self.start + k
        images, labels = [], []
        for slot, index in enumerate(batch_items(len(self.rows), self.batch_size, self.seed, iteration)):
            image, label = self.reader(self.rows[index])
            rng = np.random.default_rng([self.seed, iteration, slot])
            x, y = train_sample(image, label, scale=self.geometry.train_scale, crop=self.geometry.crop,
                                mean=self.mean, std=self.std, rng=rng)  # fmt: skip
            images.append(x)
            labels.append(y)
        return torch.stack(images), torch.stack(labels)


# --- model ------------------------------------------------------------------------------------------------


class FrozenBackbone:
    """A loaded encoder at the crop size, giving the concatenated patch maps of ``blocks`` (no final norm)."""

    def __init__(self, encoder, crop: int, blocks: Sequence[int], device: torch.device | str = "cpu"):
        model = encoder.model
        if not hasattr(model, "set_input_size"):
            name = type(model).__name__
            raise ProbeInputError(f"encoder {encoder.spec.name!r}: {name} has no set_input_size")
        model.set_input_size(img_size=(crop, crop))  # resamples the position embeddings to the crop's grid
        self.encoder, self.crop, self.device = encoder, crop, torch.device(device)
        self.taps = [f"patch:{b}" for b in blocks]
        self.amp = self.device.type == "cuda"  # the paper trained in fp16; the CPU path stays fp32

    @property
    def patch(self) -> int:
        return int(self.encoder.model.patch_embed.patch_size[0])

    def maps(self, images: torch.Tensor) -> torch.Tensor:
        """(B, sum D, crop/p, crop/p) float32 for (B, 3, crop, crop) normalised images; no graph to the encoder."""
        amp = torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()
        with amp:
            out = self.encoder.encode(images.to(self.device, non_blocking=True), self.taps)
        return concat_block_maps([out[t].float().clone() for t in self.taps])  # clone: leave inference mode


def head_forward(backbone: FrozenBackbone, head: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: head(backbone.maps(images))


def mmseg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on logits upsampled to the labels, ignore 255, averaged over every pixel (mmseg 0.x)."""
    upsampled = upsampled_logits(logits, labels.shape[-2:])
    return F.cross_entropy(upsampled, labels.long(), ignore_index=IGNORE_INDEX, reduction="none").mean()


def make_optimizer(head: torch.nn.Module, converter: str) -> tuple[torch.optim.Optimizer, str]:
    """AdamW with the paper's settings; which parameters decay depends on the encoder's config family."""
    if converter in NO_BIAS_DECAY:
        decay = [p for p in head.parameters() if p.ndim > 1]
        rest = [p for p in head.parameters() if p.ndim <= 1]
        groups = [{"params": decay}, {"params": rest, "weight_decay": 0.0}]
        rule = "weights only (layer-decay configs: MAE, CAE, BEiT)"
    else:
        groups, rule = [{"params": list(head.parameters())}], "all head parameters"
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY), rule


# --- inference and scores ---------------------------------------------------------------------------------


def window_boxes(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmseg's slide windows (y0, y1, x0, x1): a grid at ``stride``, the last row/column flush with the edge."""
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * stride + crop, height), min(c * stride + crop, width)
            boxes.append((max(y1 - crop, 0), y1, max(x1 - crop, 0), x1))
    return boxes


@torch.no_grad()
def slide_logits(
    forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *, crop: int, stride: int,
    num_classes: int, windows_per_pass: int = EVAL_WINDOWS,
) -> torch.Tensor:  # fmt: skip
    """(K, H, W) logits of a (3, H, W) image: window logits upsampled to the window and averaged where
    windows overlap. A window smaller than the crop (an image smaller than the crop) is zero-padded to it."""
    _, height, width = image.shape
    boxes = window_boxes(height, width, crop, stride)
    total = torch.zeros(num_classes, height, width)
    count = torch.zeros(1, height, width)
    for lo in range(0, len(boxes), windows_per_pass):
        chunk = boxes[lo : lo + windows_per_pass]
        batch = torch.zeros(len(chunk), 3, crop, crop, dtype=image.dtype)
        for i, (y0, y1, x0, x1) in enumerate(chunk):
            batch[i, :, : y1 - y0, : x1 - x0] = image[:, y0:y1, x0:x1]
        logits = upsampled_logits(forward(batch), (crop, crop)).float().cpu()
        for i, (y0, y1, x0, x1) in enumerate(chunk):
            total[:, y0:y1, x0:x1] += logits[i, :, : y1 - y0, : x1 - x0]
            count[:, y0:y1, x0:x1] += 1
    return total / count


def image_counts(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> tuple[np.ndarray, ...]:
    """(inter, gt, pred) pixel counts per class of one image, ignored pixels skipped."""
    keep = label != IGNORE_INDEX
    t, p = label[keep].long(), pred[keep].long()
    return tuple(torch.bincount(v, minlength=num_classes).numpy() for v in (t[t == p], t, p))


@torch.no_grad()
def evaluate(forward, reader: PairReader, rows: Sequence[MapImage], geometry: Geometry, mean, std,
             num_classes: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-image class counts (each (N, K) int64) over ``rows``, scored at the label maps' own size."""
    out = {k: np.zeros((len(rows), num_classes), np.int64) for k in ("inter", "gt", "pred")}
    for i, item in enumerate(rows):
        image, label = reader(item)
        x = eval_image(image, scale=geometry.test_scale, mean=mean, std=std)
        logits = slide_logits(forward, x, crop=geometry.crop, stride=geometry.stride, num_classes=num_classes)
        pred = upsampled_logits(logits[None], label.shape)[0].argmax(0)
        out["inter"][i], out["gt"][i], out["pred"][i] = image_counts(pred, torch.from_numpy(label), num_classes)
    return out


# --- one run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperJob:
    """Everything one seed's run needs, picklable: where data and weights live, what to train, for how long."""

    encoder: EncoderSpec
    storage_uri: str  # the storage root (encoder weights are resolved through it)
    dataset_uri: str  # the prepared dataset version's folder
    dataset: str
    level: str
    train: tuple[MapImage, ...]
    test: tuple[MapImage, ...]
    convention: LabelConvention
    geometry: Geometry
    iterations: int
    seed: int = 0
    encoder_seed: int = 0  # the seed the extract stage built the encoder with (random weights, quirks)
    batch_size: int = BATCH_SIZE
    loader_workers: int = 0


def _batches(dataset: TrainBatches, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if workers <= 0:
        return (dataset[k] for k in range(len(dataset)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                         persistent_workers=False, prefetch_factor=2)  # fmt: skip
    return iter(loader)


def train_paper_segmentation(
    job: PaperJob,
    *,
    device: torch.device | str = "cpu",
    resume: dict[str, Any] | None = None,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    report_every: int = REPORT_EVERY,
) -> dict[str, Any]:
    """Train the head for ``job.iterations`` iterations (from ``resume``'s state if given) and score the test
    rows. ``on_checkpoint`` receives ``{"iteration", "head", "optimizer"}`` every ``checkpoint_every``
    iterations and at the end. Returns metrics (fractions), per-image ``counts``, the geometry and timings."""
    from partaware.encoders.loading import load_encoder

    if not job.train or not job.test:
        raise ProbeInputError(
            f"paper segmentation needs train and test label maps (got {len(job.train)} and {len(job.test)})"
        )
    device = torch.device(device)
    encoder = load_encoder(job.encoder, root=StorageRoot.open(job.storage_uri), device=device, seed=job.encoder_seed)
    patch = int(encoder.model.patch_embed.patch_size[0])
    geometry = job.geometry.for_patch(patch)
    blocks = segmentation_blocks(encoder.depth)
    backbone = FrozenBackbone(encoder, geometry.crop, blocks, device)
    mean, std = job.encoder.mean, job.encoder.std
    where = f"dataset {job.dataset} ({job.dataset_uri})"
    reader = PairReader(StorageRoot.open(job.dataset_uri), job.convention, where)
    num_classes = job.convention.num_classes

    torch.manual_seed(job.seed)
    channels = len(blocks) * int(encoder.model.embed_dim)
    head = LinearSegmentationHead(channels, num_classes).to(device)
    optimizer, decay_rule = make_optimizer(head, job.encoder.weights.converter)
    schedule = Schedule(job.iterations)
    start = 0
    if resume:
        head.load_state_dict(resume["head"])
        optimizer.load_state_dict(resume["optimizer"])
        start = int(resume["iteration"])

    def state(iteration: int) -> dict[str, Any]:
        snapshot = {"head": head.state_dict(), "optimizer": optimizer.state_dict()}  # live tensors: copy them
        return {"iteration": iteration, **copy.deepcopy(snapshot)}

    batches = TrainBatches(reader, job.train, geometry, mean, std, seed=job.seed, batch_size=job.batch_size,
                           start=start, iterations=job.iterations)  # fmt: skip
    forward = head_forward(backbone, head)
    head.train()
    t0, loss = time.perf_counter(), None
    for iteration, (images, labels) in enumerate(_batches(batches, job.loader_workers), start=start):
        lr = schedule.lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = mmseg_loss(forward(images), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = iteration + 1
        if on_progress and (done % report_every == 0 or done == job.iterations):  # .item() syncs a GPU: rarely
            on_progress({"iteration": done, "loss": float(loss.detach()), "lr": lr})
        if on_checkpoint and done % checkpoint_every == 0 and done < job.iterations:
            on_checkpoint(state(done))
    train_s = time.perf_counter() - t0
    if on_checkpoint and start < job.iterations:
        on_checkpoint(state(job.iterations))

    t1 = time.perf_counter()
    head.eval()
    counts = evaluate(forward, reader, job.test, geometry, mean, std, num_classes)
    trained = job.iterations - start
    return {
        "metrics": counts_scores(counts), "counts": counts, "geometry": geometry.record(), "patch": patch,
        "blocks": list(blocks), "channels": int(channels), "device": str(device), "amp": backbone.amp,
        "weights_digest": encoder.weights_digest, "weight_decay_on": decay_rule, "iterations": job.iterations,
        "resumed_from": start, "final_loss": None if loss is None else float(loss.detach()), "train_seconds": train_s,
        "iterations_per_second": trained / train_s if trained and train_s > 0 else None,  # None: nothing trained
        "eval_seconds": time.perf_counter() - t1, "n_train": len(job.train), "n_test": len(job.test),
    }  # fmt: skip
