"""A gallery for a prepared dataset and registered encoders: patch database, features, PNG + JSON.

The patches (the manifest's part rows, or protocol §3.6's grid windows as regions of the dataset's images)
are encoded by the one feature path, ``extract_features`` on the Ray Data actor pool, into the feature cache
(``<root>/features/<key>/``, keyed by the weights digest, the preprocessing and the regions), so a second
gallery over the same patches does no encoding and a re-pretrained encoder never gets stale features.
Outputs go to ``<out>/galleries/<name>.png`` and ``<name>.json`` (the per-encoder summary), which
``build_report`` embeds in the run's report.
"""

from __future__ import annotations

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
    version: str | None = None  # the dataset version (a job's, a ``limit`` subset's); None: the newest full one

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
    prepared = open_prepared(root, recipe.dataset, recipe.version)
    if recipe.source == "grid":
        db = dataset_grid_database(
            prepared, n_images=recipe.n_images, crop=recipe.crop, grid=recipe.grid, seed=recipe.seed, split=recipe.split
        )
    else:
        db = dataset_part_database(prepared, n_images=recipe.n_images, seed=recipe.seed, split=recipe.split)
    return prepared, db


def gallery_regions(prepared, db: PatchDatabase, recipe: GalleryRecipe) -> list[dict]:
    """The database's patches as regions of the dataset's images (boxes in image pixels), for extraction."""
    if recipe.source == "parts":  # the manifest's own part rows: the same boxes every probe encodes
        wanted = set(db.region_ids)
        rows = prepared.manifest().select(["region_id", "image_uri", "box"]).to_pylist()
        by_id = {r["region_id"]: r for r in rows if r["region_id"] in wanted}
        return [by_id[i] for i in db.region_ids]
    from partaware.report.gallery import dataset_window_manifest

    table = dataset_window_manifest(prepared, n_images=recipe.n_images, crop=recipe.crop, grid=recipe.grid,
                                    seed=recipe.seed, split=recipe.split, db=db)  # fmt: skip
    return table.select(["region_id", "image_uri", "box"]).to_pylist()


def gallery_features(
    root: StorageRoot, prepared, regions: list[dict], encoder, taps: list[str], *, seed: int, progress=None
) -> tuple[dict[str, np.ndarray], bool]:
    """Features of the gallery's regions from the one feature path: ``extract_features`` on the actor pool,
    cached under ``features/<key>`` like any feature set (the key holds the weights digest and the regions)."""
    from partaware.extract.features import read_features
    from partaware.extract.pipeline import extract_features

    result = extract_features(root, prepared.name, encoder, taps=taps, regions=regions, seed=seed,
                              dataset_version=prepared.version, max_actors=1, progress=progress)  # fmt: skip
    fs = read_features(root, result.key, taps=taps)
    position = {rid: i for i, rid in enumerate(fs.region_ids)}
    missing = [r["region_id"] for r in regions if r["region_id"] not in position]
    if missing:
        raise SpecError(f"gallery: {len(missing)} patches could not be encoded (first: {missing[0]}); "
                        f"see {result.uri}/errors.parquet")  # fmt: skip
    order = np.array([position[r["region_id"]] for r in regions])
    return {t: fs.features[t][order].astype(np.float32) for t in taps}, result.status == "cached"


def make_gallery(
    root: StorageRoot,
    recipe: GalleryRecipe,
    *,
    out: StorageRoot,
    name: str = "gallery",
    queries: Sequence[int] | Sequence[str] | int = 3,
    top_k: int = 8,
    progress=None,
    folder: tuple[str, ...] = ("galleries",),
) -> tuple[GalleryResult, dict[str, str], list[str]]:
    """Build, write and return a gallery; also returns the paths written and the encoders that were cache hits.

    Files go to ``out/<folder...>/<name>.png`` and ``.json`` (``folder=()``: straight into ``out``, as
    ``partctl gallery --output`` asks).

    Needs a running Ray (the patches are encoded by the extraction pipeline's actors)."""
    from partaware.extract.pipeline import resolve_spec

    taps = _taps(recipe.features)
    prepared, db = gallery_database(root, recipe)
    regions = gallery_regions(prepared, db, recipe)
    features: dict[str, np.ndarray] = {}
    cache_hits: list[str] = []
    for enc_name in recipe.encoders:
        spec = resolve_spec(enc_name)
        enc_taps = [t for t in taps if t != "proj" or spec.has_projection]
        if not enc_taps:
            continue
        feats, hit = gallery_features(root, prepared, regions, spec, enc_taps, seed=recipe.seed, progress=progress)
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
        "png": out.write_bytes(result.png, *folder, f"{name}.png"),
        "json": out.write_json(summary, *folder, f"{name}.json"),
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
