"""Patch-retrieval galleries (the paper's Figures 2 and 4): which patches does an encoder find most similar?

Patch databases follow protocol §3.6: each image is resized (shorter side ``crop * 256 / 224``) and centre-cropped
to ``crop``, then cut into a ``grid x grid`` set of overlapping windows of side ``2 * crop / (grid + 1)`` at stride
``crop / (grid + 1)`` (the paper: 7 x 7 windows of 56 px in the 224 crop, 50% overlap). A window's part label is
the majority part among its labelled pixels when they cover at least ``min_part_fraction`` of it, else
``background``. Datasets with part annotations can also use the annotated part boxes themselves as patches.

``build_gallery`` works on arrays (patch pixels, features per encoder, labels) so it is testable with fabricated
features; for each query it ranks every other patch by cosine similarity, draws one row per encoder (and feature
type), frames each neighbour green when it has the query's label and red otherwise, and summarises each row by
the mean similarity of the top 1/4/9/49 neighbours and the same-part fraction of the neighbours shown.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from partaware.errors import DatasetError, SpecError
from partaware.probes.retrieval import nearest_neighbours

BACKGROUND = "background"
SIM_KS = (1, 4, 9, 49)
#: Separates encoder and feature type in a gallery row's name ("mocov3 · projected"); not "/", which
#: encoder names use for their namespace (``lab/dino``).
FEATURE_SEP = " · "
GREEN, RED, GREY = (26, 158, 60), (210, 40, 40), (150, 150, 150)

# --- patch databases ----------------------------------------------------------------------------------------


@dataclass
class PatchDatabase:
    """Patches to retrieve among: ``crops[image_index]`` holds each patch's pixels at ``boxes[i]``."""

    crops: list[np.ndarray]  # per image, H x W x 3 uint8 (the centre crop)
    image_index: list[int]
    boxes: list[tuple[int, int, int, int]]  # x0, y0, x1, y1 in crop pixels
    labels: list[str] | None  # part label per patch (None: the dataset has no part labels)
    region_ids: list[str] = field(default_factory=list)
    part_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)

    def patch(self, i: int, size: int) -> np.ndarray:
        """Patch ``i`` resized to ``size x size`` by the extraction's own crop (bicubic), uint8 H x W x 3."""
        from partaware.extract.crops import crop_resize

        return crop_resize(Image.fromarray(self.crops[self.image_index[i]]), self.boxes[i], size, "bicubic")

    def patches(self, size: int) -> np.ndarray:
        return np.stack([self.patch(i, size) for i in range(len(self))])


def crop_transform(height: int, width: int, crop: int) -> tuple[tuple[int, int], int, int]:
    """Resized (width, height) and the (left, top) offset of the centre crop, as ``centre_crop`` applies them."""
    short = round(crop * 256 / 224)
    scale = short / min(height, width)
    size = (max(crop, round(width * scale)), max(crop, round(height * scale)))
    return size, (size[0] - crop) // 2, (size[1] - crop) // 2


def centre_crop(image: np.ndarray, crop: int, *, nearest: bool = False) -> np.ndarray:
    """Resize the shorter side to ``round(crop * 256 / 224)`` and take the centre ``crop x crop`` (protocol §3.6).

    ``nearest`` for label maps (no new label values)."""
    size, left, top = crop_transform(image.shape[0], image.shape[1], crop)
    resized = np.asarray(Image.fromarray(image).resize(size, Image.NEAREST if nearest else Image.BICUBIC))
    return resized[top : top + crop, left : left + crop]


def box_in_image(box: tuple[int, int, int, int], height: int, width: int, crop: int) -> list[float]:
    """A box in crop pixels mapped back to the original image's pixels (for the unified manifest)."""
    (rw, rh), left, top = crop_transform(height, width, crop)
    sx, sy = width / rw, height / rh
    x0, y0, x1, y1 = box
    return [(x0 + left) * sx, (y0 + top) * sy, (x1 + left) * sx, (y1 + top) * sy]


def window_boxes(crop: int, grid: int = 7) -> list[tuple[int, int, int, int]]:
    """``grid x grid`` windows of side ``2 * crop / (grid + 1)`` at stride ``crop / (grid + 1)``, row-major."""
    if grid < 1 or crop < grid + 1:
        raise SpecError(f"gallery grid {grid} does not fit a {crop}-px crop")
    stride = crop / (grid + 1)
    side = 2 * stride
    return [
        (round(c * stride), round(r * stride), round(c * stride + side), round(r * stride + side))
        for r in range(grid)
        for c in range(grid)
    ]


def window_label(
    part_map: np.ndarray, box: tuple[int, int, int, int], names: Sequence[str], *, min_part_fraction: float = 0.25
) -> str:
    """Majority part (map value k > 0 -> ``names[k - 1]``) in the window, or ``background``."""
    x0, y0, x1, y1 = box
    window = part_map[y0:y1, x0:x1].ravel()
    labelled = window[window > 0]
    if labelled.size == 0 or labelled.size < min_part_fraction * window.size:
        return BACKGROUND
    counts = np.bincount(labelled)
    k = int(np.argmax(counts))
    return names[k - 1] if 0 < k <= len(names) else f"part{k}"


def grid_database(
    images: Sequence[np.ndarray],
    *,
    part_maps: Sequence[np.ndarray] | None = None,
    part_names: Sequence[str] = (),
    crop: int = 224,
    grid: int = 7,
    min_part_fraction: float = 0.25,
    image_ids: Sequence[str] | None = None,
) -> PatchDatabase:
    """Grid windows of every image (protocol §3.6); labels from part maps when given."""
    boxes = window_boxes(crop, grid)
    crops, index, all_boxes, labels, ids = [], [], [], [] if part_maps is not None else None, []
    for i, img in enumerate(images):
        crops.append(centre_crop(img, crop))
        pmap = centre_crop(part_maps[i], crop, nearest=True) if part_maps is not None else None
        for j, box in enumerate(boxes):
            index.append(i)
            all_boxes.append(box)
            ids.append(f"{image_ids[i] if image_ids else i}/w{j:02d}")
            if labels is not None:
                labels.append(window_label(pmap, box, part_names, min_part_fraction=min_part_fraction))
    return PatchDatabase(crops, index, all_boxes, labels, ids, list(part_names))


def _load_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _dataset_images(prepared, n_images: int, seed: int, split: str | None) -> tuple[list[dict], list]:
    table = prepared.manifest()
    rows = table.select(
        ["image_id", "image_uri", "split", "level", "label", "label_id", "box", "label_map_uri", "region_id"]
    ).to_pylist()
    if split:
        rows = [r for r in rows if r["split"] == split]
    image_ids = sorted({r["image_id"] for r in rows})
    if not image_ids:
        raise DatasetError(
            f"dataset {prepared.name} {prepared.version} has no images" + (f" in split {split}" if split else "")
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(image_ids, size=min(n_images, len(image_ids)), replace=False).tolist())
    return rows, chosen


def dataset_grid_database(
    prepared,
    *,
    n_images: int = 16,
    crop: int = 224,
    grid: int = 7,
    seed: int = 0,
    split: str | None = None,
    min_part_fraction: float = 0.25,
) -> PatchDatabase:
    """Grid windows of ``n_images`` sampled images of a prepared dataset; part labels from its part label maps."""
    rows, chosen = _dataset_images(prepared, n_images, seed, split)
    by_image: dict[str, dict] = {}
    for r in rows:
        entry = by_image.setdefault(r["image_id"], {"uri": r["image_uri"], "part_map": None})
        if r["level"] == "part" and r["label_map_uri"]:
            entry["part_map"] = r["label_map_uri"]
    names = list(prepared.info.get("part_classes") or [])
    if not names:
        ids = {r["label_id"]: r["label"] for r in rows if r["level"] == "part"}
        names = [ids.get(k, f"part{k + 1}") for k in range(max(ids, default=-1) + 1)]
    has_maps = all(by_image[i]["part_map"] for i in chosen)
    images, maps = [], []
    for image_id in chosen:
        images.append(_load_rgb(prepared.root.read_bytes(by_image[image_id]["uri"])))
        if has_maps:
            maps.append(np.asarray(Image.open(io.BytesIO(prepared.root.read_bytes(by_image[image_id]["part_map"])))))
    return grid_database(
        images,
        part_maps=maps if has_maps else None,
        part_names=names,
        crop=crop,
        grid=grid,
        min_part_fraction=min_part_fraction,
        image_ids=chosen,
    )


def dataset_window_manifest(
    prepared,
    *,
    n_images: int = 16,
    crop: int = 224,
    grid: int = 7,
    seed: int = 0,
    split: str | None = None,
    min_part_fraction: float = 0.25,
    db: PatchDatabase | None = None,
):
    """The grid windows as regions of the unified manifest (``sample_rule='grid-window'``), so extraction can
    encode them like any other region. ``label_id`` is the part index; ``background`` gets ``len(part names)``.
    ``db``: the grid database of these settings when the caller has it (its images are not decoded again)."""
    from partaware.manifest import manifest_table

    db = db or dataset_grid_database(
        prepared, n_images=n_images, crop=crop, grid=grid, seed=seed, split=split, min_part_fraction=min_part_fraction
    )
    rows = (
        prepared.manifest()
        .select(["image_id", "image_uri", "width", "height", "split", "object_label", "object_label_id"])
        .to_pylist()
    )
    by_image = {r["image_id"]: r for r in rows}
    names = list(db.part_names)
    out = []
    for i, region_id in enumerate(db.region_ids):
        image_id = region_id.rsplit("/", 1)[0]
        info = by_image[image_id]
        label = db.labels[i] if db.labels is not None else BACKGROUND
        out.append(
            {
                **info,
                "region_id": region_id,
                "level": "part",
                "label": label,
                "label_id": names.index(label) if label in names else len(names),
                "box": box_in_image(db.boxes[i], info["height"], info["width"], crop),
                "sample_rule": "grid-window",
            }
        )
    return manifest_table(out)


def dataset_part_database(prepared, *, n_images: int = 16, seed: int = 0, split: str | None = None) -> PatchDatabase:
    """The annotated part boxes of ``n_images`` sampled images (the manifest's rows), labelled by their part."""
    from partaware.extract.crops import pixel_box

    rows, chosen = _dataset_images(prepared, n_images, seed, split)
    wanted = set(chosen)
    crops, index, boxes, labels, ids = [], [], [], [], []
    image_pos: dict[str, int] = {}
    for r in rows:
        if r["level"] != "part" or r["image_id"] not in wanted or r["box"] is None:
            continue
        if r["image_id"] not in image_pos:
            image_pos[r["image_id"]] = len(crops)
            crops.append(_load_rgb(prepared.root.read_bytes(r["image_uri"])))
        img = crops[image_pos[r["image_id"]]]
        boxes.append(pixel_box(r["box"], img.shape[1], img.shape[0]))  # the box every probe encodes
        index.append(image_pos[r["image_id"]])
        labels.append(r["label"])
        ids.append(r["region_id"])
    if not boxes:
        raise DatasetError(f"dataset {prepared.name} has no annotated part boxes in the sampled images")
    return PatchDatabase(crops, index, boxes, labels, ids)


# --- retrieval and statistics ------------------------------------------------------------------------------


def retrieval_summary(
    features: np.ndarray,
    labels: Sequence[str] | None,
    queries: Sequence[int],
    *,
    top_k: int,
    ks: Sequence[int] = SIM_KS,
    exclude: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """Mean similarity of the top 1/4/9/49 neighbours over the queries, and the same-part fraction of the top-K."""
    kmax = max(max(ks), top_k)
    idx, sims = nearest_neighbours(features, queries, kmax, exclude=exclude)
    out: dict[str, float] = {}
    for k in ks:
        if k <= sims.shape[1]:
            out[f"mean_sim_top{k}"] = float(np.mean(sims[:, :k]))
    if labels is not None:
        shown = idx[:, :top_k]
        same = [labels[j] == labels[q] for row, q in enumerate(queries) for j in shown[row]]
        out["same_part_fraction"] = float(np.mean(same)) if same else float("nan")
    return out


def sample_queries(labels: Sequence[str] | None, n: int, *, seed: int = 0, n_patches: int | None = None) -> list[int]:
    """``n`` query patches, seeded; with labels, only labelled (non-background) patches, spread over labels."""
    rng = np.random.default_rng(seed)
    if labels is None:
        return sorted(rng.choice(n_patches or 0, size=min(n, n_patches or 0), replace=False).tolist())
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        if lab != BACKGROUND:
            by_label.setdefault(lab, []).append(i)
    if not by_label:
        raise DatasetError("no labelled (non-background) patch to use as a query")
    chosen: list[int] = []
    names = sorted(by_label)
    rng.shuffle(names)
    while len(chosen) < n and any(by_label.values()):
        for name in names:
            pool = by_label[name]
            if pool and len(chosen) < n:
                chosen.append(pool.pop(int(rng.integers(len(pool)))))
    return chosen


# --- rendering -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryGeometry:
    """Pixel layout of a gallery image (tests check the PNG against it)."""

    cell: int = 72
    frame: int = 4
    gap: int = 6
    caption: int = 14
    label_width: int = 190
    title: int = 24
    query_header: int = 20

    @property
    def slot(self) -> int:
        return self.cell + 2 * self.frame + self.gap

    def size(self, n_queries: int, n_rows: int, top_k: int) -> tuple[int, int]:
        width = self.label_width + (top_k + 1) * self.slot + self.gap
        height = self.title + n_queries * (self.query_header + n_rows * (self.slot + self.caption)) + self.gap
        return width, height

    def cell_origin(self, query: int, row: int, n_rows: int, column: int) -> tuple[int, int]:
        """Top-left of the framed cell: column 0 = the query, 1..K = neighbours."""
        x = self.label_width + column * self.slot
        y = self.title + query * (self.query_header + n_rows * (self.slot + self.caption)) + self.query_header
        return x, y + row * (self.slot + self.caption)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def render_gallery(
    patches: np.ndarray,
    queries: Sequence[int],
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]],
    labels: Sequence[str] | None,
    *,
    title: str = "",
    geometry: GalleryGeometry = GalleryGeometry(),
) -> bytes:
    """PNG of the gallery. ``patches``: N x S x S x 3 uint8 at ``geometry.cell``; ``rows``: (name, neighbour
    indices ``Q x K``, similarities ``Q x K``) per encoder/feature."""
    g = geometry
    top_k = rows[0][1].shape[1] if rows else 0
    width, height = g.size(len(queries), len(rows), top_k)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(13), _font(10)
    draw.text((g.gap, 4), title, fill="black", font=font)
    for qi, q in enumerate(queries):
        _, y_head = g.cell_origin(qi, 0, len(rows), 0)
        qlabel = f" ({labels[q]})" if labels is not None else ""
        draw.text((g.gap, y_head - g.query_header + 3), f"query {q}{qlabel}", fill="black", font=font)
        for ri, (name, idx, sims) in enumerate(rows):
            x, y = g.cell_origin(qi, ri, len(rows), 0)
            draw.text((g.gap, y + g.cell // 2), name, fill="black", font=small)
            _paste(canvas, draw, patches[q], x, y, (30, 30, 30), g)
            draw.text((x, y + g.slot - g.gap), "query", fill="black", font=small)
            for c in range(top_k):
                j = int(idx[qi, c])
                colour = GREY if labels is None else GREEN if labels[j] == labels[q] else RED
                x, y = g.cell_origin(qi, ri, len(rows), c + 1)
                _paste(canvas, draw, patches[j], x, y, colour, g)
                tag = "" if labels is None else " " + ("bg" if labels[j] == BACKGROUND else labels[j][:7])
                draw.text((x, y + g.slot - g.gap), f"{sims[qi, c]:.2f}{tag}", fill=colour, font=small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _paste(canvas, draw, patch: np.ndarray, x: int, y: int, colour, g: GalleryGeometry) -> None:
    side = g.cell + 2 * g.frame
    draw.rectangle([x, y, x + side - 1, y + side - 1], fill=colour)
    canvas.paste(Image.fromarray(patch).resize((g.cell, g.cell)), (x + g.frame, y + g.frame))


@dataclass
class GalleryResult:
    png: bytes
    queries: list[int]
    summary: list[dict]  # per row: encoder, feature, mean_sim_top1/4/9/49, same_part_fraction
    neighbours: dict[str, np.ndarray]  # row name -> Q x K indices


def build_gallery(
    images: np.ndarray | Sequence[np.ndarray],
    regions: Sequence[tuple[int, tuple[int, int, int, int]]] | None,
    features_by_encoder: Mapping[str, np.ndarray],
    labels: Sequence[str] | None,
    *,
    queries: Sequence[int] | int = 3,
    top_k: int = 8,
    seed: int = 0,
    exclude_same_image: bool = False,
    title: str = "",
    geometry: GalleryGeometry = GalleryGeometry(),
) -> GalleryResult:
    """A gallery from arrays.

    ``images``: with ``regions`` None, one patch image per feature row (N x S x S x 3); else the source images and
    ``regions`` = (image index, box) per feature row. ``features_by_encoder``: row name (``encoder`` or
    ``encoder/feature``) -> N x D. ``queries``: patch indices, or how many to sample (labelled patches only).
    """
    if regions is None:
        patches = np.asarray(images)
        image_of = list(range(len(patches)))
    else:
        db = PatchDatabase(list(images), [r[0] for r in regions], [tuple(r[1]) for r in regions], None)
        patches = db.patches(geometry.cell)
        image_of = db.image_index
    n = len(patches)
    for name, f in features_by_encoder.items():
        if len(f) != n:
            raise SpecError(f"features of {name!r} have {len(f)} rows for {n} patches")
    if labels is not None and len(labels) != n:
        raise SpecError(f"{len(labels)} labels for {n} patches")
    if isinstance(queries, int):
        queries = sample_queries(labels, queries, seed=seed, n_patches=n)
    queries = list(queries)
    bad = [q for q in queries if not 0 <= q < n]
    if bad:
        raise SpecError(f"query indices {bad} out of range (0..{n - 1})")
    exclude = None
    if exclude_same_image:
        exclude = [[j for j in range(n) if image_of[j] == image_of[q]] for q in queries]
    rows, summary, neighbours = [], [], {}
    for name, feats in features_by_encoder.items():
        idx, sims = nearest_neighbours(feats, queries, top_k, exclude=exclude)
        rows.append((name, idx, sims))
        neighbours[name] = idx
        encoder, _, feature = name.partition(FEATURE_SEP)
        stats = retrieval_summary(feats, labels, queries, top_k=top_k, exclude=exclude)
        summary.append({"encoder": encoder, "feature": feature or "-", **stats})
    if patches.shape[1] != geometry.cell:
        patches = np.stack([np.asarray(Image.fromarray(p).resize((geometry.cell, geometry.cell))) for p in patches])
    png = render_gallery(patches, queries, rows, labels, title=title, geometry=geometry)
    return GalleryResult(png, queries, summary, neighbours)
