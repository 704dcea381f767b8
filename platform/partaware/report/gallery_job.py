"""A gallery for a prepared dataset and registered encoders: patch database, features (cached), PNG + JSON.

Features of a gallery's patches are cached under ``<root>/features/gallery/<key>.npz``, the key a digest of
everything that changes them (dataset version, database recipe, encoder spec, preprocessing version, taps), so a
second gallery over the same patches does no encoding. Outputs go to ``<out>/galleries/<name>.png`` and
``<name>.json`` (the per-encoder summary), which ``build_report`` embeds in the run's report.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from partaware.errors import SpecError
from partaware.report.gallery import (
    FEATURE_SEP,
    GalleryGeometry,
    GalleryResult,
    PatchDatabase,
    build_gallery,
    dataset_grid_database,
    dataset_part_database,
    encode_patches,
    encoder_fn,
)
from partaware.storage import StorageRoot

#: user-facing feature type -> encoder tap
FEATURE_TAPS = {"encoded": "mean", "mean": "mean", "cls": "cls", "projected": "proj", "proj": "proj"}
SOURCES = ("grid", "parts")


@dataclass
class GalleryRecipe:
    dataset: str
    encoders: list[str]
    features: list[str]  # user-facing names (encoded, projected, cls)
    source: str = "grid"
    n_images: int = 16
    crop: int = 224
    grid: int = 7
    seed: int = 0
    split: str | None = None

    def database_key(self, version: str) -> dict:
        return {
            "dataset": self.dataset,
            "version": version,
            "source": self.source,
            "n_images": self.n_images,
            "crop": self.crop,
            "grid": self.grid,
            "seed": self.seed,
            "split": self.split,
        }


def _taps(features: Sequence[str]) -> list[str]:
    bad = [f for f in features if f not in FEATURE_TAPS]
    if bad:
        raise SpecError(f"gallery features {bad}: valid are {', '.join(FEATURE_TAPS)}")
    return list(dict.fromkeys(FEATURE_TAPS[f] for f in features))


def gallery_database(root: StorageRoot, recipe: GalleryRecipe):
    from partaware.datasets.store import open_prepared

    if recipe.source not in SOURCES:
        raise SpecError(f"gallery source {recipe.source!r}: valid are {', '.join(SOURCES)}")
    prepared = open_prepared(root, recipe.dataset)
    if recipe.source == "grid":
        db = dataset_grid_database(
            prepared, n_images=recipe.n_images, crop=recipe.crop, grid=recipe.grid, seed=recipe.seed, split=recipe.split
        )
    else:
        db = dataset_part_database(prepared, n_images=recipe.n_images, seed=recipe.seed, split=recipe.split)
    return prepared, db


def cached_features(root: StorageRoot, key: dict, compute) -> tuple[dict[str, np.ndarray], bool]:
    """Features from the cache when this exact key was computed before; else computed and stored (atomically)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    rel = ("features", "gallery", f"{digest}.npz")
    if root.exists(*rel):
        with np.load(io.BytesIO(root.read_bytes(*rel)), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}, True
    feats = compute()
    buf = io.BytesIO()
    np.savez(buf, **feats)
    root.write_bytes(buf.getvalue(), *rel)
    return feats, False


def make_gallery(
    root: StorageRoot,
    recipe: GalleryRecipe,
    *,
    out: StorageRoot,
    name: str = "gallery",
    queries: Sequence[int] | Sequence[str] | int = 3,
    top_k: int = 8,
    device: str = "cpu",
) -> tuple[GalleryResult, dict[str, str], list[str]]:
    """Build, write and return a gallery; also returns the paths written and the encoders that were cache hits."""
    from partaware.encoders.base import PREPROCESS_VERSION
    from partaware.encoders.loading import load_encoder
    from partaware.encoders.registry import ENCODERS, _load_builtin_encoders

    _load_builtin_encoders()
    taps = _taps(recipe.features)
    prepared, db = gallery_database(root, recipe)
    features: dict[str, np.ndarray] = {}
    cache_hits: list[str] = []
    for enc_name in recipe.encoders:
        spec = ENCODERS.get(enc_name)
        enc_taps = [t for t in taps if t != "proj" or spec.has_projection]
        if not enc_taps:
            continue
        key = {
            "db": recipe.database_key(prepared.version),
            "encoder": spec.model_dump(mode="json"),
            "preprocess": PREPROCESS_VERSION,
            "taps": enc_taps,
            "seed": recipe.seed,
        }

        def compute(spec=spec, enc_taps=enc_taps, db: PatchDatabase = db):
            loaded = load_encoder(spec, root=root, device=device, seed=recipe.seed)
            return encode_patches(encoder_fn(loaded, enc_taps, device=device), db.patches(spec.input_size))

        feats, hit = cached_features(root, key, compute)
        if hit:
            cache_hits.append(spec.name)
        multi = len(taps) > 1
        for tap in enc_taps:
            label = {"mean": "encoded", "cls": "cls", "proj": "projected"}[tap]
            features[f"{spec.name}{FEATURE_SEP}{label}" if multi or tap == "proj" else spec.name] = feats[tap]
    if not features:
        raise SpecError(f"none of the encoders {recipe.encoders} offers the features {recipe.features}")
    query_idx = resolve_queries(queries, db)
    geometry = GalleryGeometry()
    result = build_gallery(
        db.patches(geometry.cell),
        None,
        features,
        db.labels,
        queries=query_idx,
        top_k=top_k,
        seed=recipe.seed,
        geometry=geometry,
        title=f"{recipe.dataset} {prepared.version} · {recipe.source} patches · top {top_k}",
    )
    summary = {
        "recipe": recipe.__dict__,
        "dataset_version": prepared.version,
        "queries": result.queries,
        "query_ids": [db.region_ids[q] for q in result.queries] if db.region_ids else [],
        "n_patches": len(db),
        "top_k": top_k,
        "encoders": result.summary,
    }
    paths = {
        "png": out.write_bytes(result.png, "galleries", f"{name}.png"),
        "json": out.write_json(summary, "galleries", f"{name}.json"),
    }
    return result, paths, cache_hits


def resolve_queries(queries: Sequence[int] | Sequence[str] | int, db: PatchDatabase) -> list[int] | int:
    """An int = how many to sample; otherwise patch indices or region ids (``<image_id>/w<k>``)."""
    if isinstance(queries, int):
        return queries
    out = []
    for q in queries:
        if isinstance(q, int) or (isinstance(q, str) and q.isdigit()):
            out.append(int(q))
        elif q in db.region_ids:
            out.append(db.region_ids.index(q))
        else:
            raise SpecError(f"query {q!r} is neither a patch index nor a region id (e.g. {db.region_ids[0]!r})")
    return out
