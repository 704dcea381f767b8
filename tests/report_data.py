"""Fabricated result records with known numbers, for the report tests (imported by tests/test_report*.py).

``paper_records`` lays the paper's own numbers (protocol §4) out as a run of the paper's seven encoders would
record them, one record per seed (seed 0 = number - 0.2, seed 1 = number + 0.2, so mean = the paper's number);
``synthetic_records`` is a small quickstart-like run with explicit numbers; ``control_records`` adds the job's
random-initialisation controls. Every record carries what a probe writes today: a 95% percentile-bootstrap
interval over its test items (``bootstrap_interval``: a real bootstrap of fabricated 0/1 outcomes), the
baselines of its split and its class count; ``legacy=True`` gives records as written before intervals.
"""

from __future__ import annotations

import numpy as np

from partaware.report.paper import PAPER_ENCODERS, PAPER_REFERENCE
from partaware.results import ResultRecord, write_results
from partaware.storage import StorageRoot

PAPER_IDS = {
    "deit": "deit_base_patch16_224.fb_in1k",
    "mocov3": "mocov3_vit_base.300ep",
    "dino": "vit_base_patch16_224.dino",
    "beit": "beit_base_patch16_224.in1k_800ep",
    "mae": "vit_base_patch16_224.mae",
    "cae": "cae_base_patch16_224.1600ep",
    "ibot": "ibot_vit_base_patch16.teacher",
}
# paper column prefix -> (dataset, level, task, feature, metric)
_PROBES = {
    "in1k_linear": ("imagenet", "object", "linear", "cls", "top1"),
    "in1k_attentive": ("imagenet", "object", "attentive", "patch:12", "top1"),
    "cub_ret_enc": ("cub", "part", "retrieval", "mean", "ap"),
    "cub_ret_proj": ("cub", "part", "retrieval", "proj", "ap"),
    "coco_ret_enc": ("coco", "part", "retrieval", "mean", "ap"),
    "coco_ret_proj": ("coco", "part", "retrieval", "proj", "ap"),
    "cub_cls_linear": ("cub", "part", "linear", "cls", "top1"),
    "cub_cls_attentive": ("cub", "part", "attentive", "patch:12", "top1"),
    "coco_cls_linear": ("coco", "part", "linear", "cls", "top1"),
    "coco_cls_attentive": ("coco", "part", "attentive", "patch:12", "top1"),
}
_SEG = {
    "ade150": ("ade20k", "object"),
    "adepart": ("ade20k-part", "part"),
    "pascalpart": ("pascal-part", "part"),
    "lip": ("lip", "part"),
}


#: test items per dataset (ImageNet val, part patches, images for segmentation), for the intervals
N_TEST = {
    "imagenet": 50_000,
    "cub": 5_000,
    "coco": 3_000,
    "ade20k": 2_000,
    "ade20k-part": 2_000,
    "pascal-part": 5_000,
    "lip": 10_000,
    "synthetic": 1_000,
}
UNITS = {"retrieval": "queries", "segmentation": "images"}
#: (dataset, level, task) -> baselines (percent) of its split; random features vary with the encoder's dimension
BASELINES = {
    ("imagenet", "object", "linear"): {"chance": 0.1, "majority": 0.1},
    ("imagenet", "object", "attentive"): {"chance": 0.1, "majority": 0.1},
    ("cub", "part", "linear"): {"chance": 25.0, "majority": 29.8},
    ("cub", "part", "attentive"): {"chance": 25.0, "majority": 29.8},
    ("coco", "part", "linear"): {"chance": 33.3, "majority": 38.0},
    ("coco", "part", "attentive"): {"chance": 33.3, "majority": 38.0},
    ("cub", "part", "retrieval"): {"chance": 25.4, "random_features": 26.1},
    ("coco", "part", "retrieval"): {"chance": 34.0, "random_features": 35.2},
    ("ade20k", "object", "segmentation"): {"majority": 1.1},
    ("ade20k-part", "part", "segmentation"): {"majority": 0.3},
    ("pascal-part", "part", "segmentation"): {"majority": 0.4},
    ("lip", "part", "segmentation"): {"majority": 3.5},
    ("synthetic", "object", "linear"): {"chance": 12.5, "majority": 15.3},
    ("synthetic", "part", "linear"): {"chance": 25.0, "majority": 31.0},
    ("synthetic", "part", "retrieval"): {"chance": 26.0, "random_features": 27.5},
}
N_CLASSES = {"imagenet": 1000, "cub": 4, "coco": 3, "ade20k": 150, "ade20k-part": 209, "pascal-part": 193, "lip": 19}


def bootstrap_interval(value: float, n: int, *, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile-bootstrap interval (percent) of a score that is the mean of ``n`` fabricated 0/1 item
    outcomes with ``round(value * n / 100)`` ones. Resampling n items with replacement from them gives a count of
    ones that is Binomial(n, k/n): drawn directly, the same bootstrap without an (resamples, n) index matrix."""
    k = round(value * n / 100)
    means = np.random.default_rng(seed).binomial(n, k / n, size=resamples) / n * 100
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _trials(value: float, seed: int) -> list[dict]:
    """Trials as the tuner reports them: the validation metric as a fraction."""
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    out = []
    for i, lr in enumerate(lrs):
        stopped = i in (0, 5)
        metric = value - abs(i - 3) * 1.5 - (3.0 if stopped else 0.0) + 0.1 * seed
        out.append(
            {
                "config": {"lr": lr, "weight_decay": [0.0, 1e-4][i % 2]},
                "metric": round(metric / 100, 5),
                "iterations": 4 if stopped else 20,
                "stopped_early": stopped,
            }
        )
    return out


def record(
    encoder: str,
    family: str,
    dataset: str,
    level: str,
    task: str,
    feature: str,
    metric: str,
    value: float,
    *,
    run_id: str = "run",
    seed: int = 0,
    zoo: str = "paper",
    metrics=None,
    trial_results=None,
    n_test: int | None = None,
    ci: tuple[float, float] | None = None,
    baselines: dict[str, float] | None = None,
    legacy: bool = False,
    **extra,
) -> ResultRecord:
    """One probe's record; its interval is bootstrapped over ``n_test`` items unless ``ci`` is given, its
    baselines are the split's (``BASELINES``) unless given; ``legacy``: no interval, no baselines."""
    trials = trial_results if trial_results is not None else []
    n = n_test or N_TEST.get(dataset, 1_000)
    if not legacy and ci is None:
        ci = bootstrap_interval(value, n, seed=seed)
    fields = _new_fields(encoder, dataset, level, task, feature, value, n, ci, baselines) if not legacy else {}
    return ResultRecord(
        **{
            **_base_fields(encoder, family, zoo, dataset, level, task, feature, metric, value, run_id, seed, trials),
            "metrics": metrics or {metric: value},
            **fields,
            **extra,
        }
    )


def _new_fields(encoder, dataset, level, task, feature, value, n, ci, baselines) -> dict:
    """What a probe writes since intervals and baselines: interval, per-seed values, baselines, protocol."""
    return {
        "ci_low": ci[0],
        "ci_high": ci[1],
        "ci": {
            "level": 0.95,
            "method": "percentile bootstrap",
            "units": UNITS.get(task, "test items"),
            "resamples": 1000,
        },
        "per_seed": [value],
        "n_test": n,
        "n_classes": N_CLASSES.get(dataset, 0),
        "baselines": dict(BASELINES.get((dataset, level, task), {}) if baselines is None else baselines),
        "protocol": {
            "task_version": "1",
            "input": feature,
            "scored_split": "test",
            "selection_split": "val",
            **({"mae_shuffle": "fixed"} if "mae" in encoder else {}),
        },
    }


def _base_fields(encoder, family, zoo, dataset, level, task, feature, metric, value, run_id, seed, trials) -> dict:
    return dict(
        run_id=run_id,
        encoder=encoder,
        family=family,
        zoo=zoo,
        dataset=dataset,
        dataset_version="v" + dataset[:6],
        level=level,
        task=task,
        feature=feature,
        metric=metric,
        value=value,
        seeds=[seed],
        search_space={
            "lr": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
            "weight_decay": {"type": "choice", "values": [0.0, 1e-4]},
        }
        if trials
        else {},
        best_config=max(trials, key=lambda t: t["metric"])["config"] if trials else {},
        trials=len(trials),
        trials_stopped_early=sum(t["iterations"] < 20 for t in trials),
        trial_results=trials,
        wall_seconds=12.0,
        cpu_hours=0.01,
        weights_digest=f"sha-{encoder[:8]}",
        versions={"partaware": "0.1.0"},
        protocol={"mae_shuffle": "fixed"} if "mae" in encoder else {},
    )


def paper_records(
    run_id: str = "paper-run", *, changes: dict | None = None, seeds=(0, 1), with_trials: bool = True, **kw
) -> list[ResultRecord]:
    """The paper's numbers as records. ``changes``: {(paper_key, column): new value} flips chosen numbers;
    ``kw`` goes to every ``record`` (``legacy=True``)."""
    changes = changes or {}
    out = []
    for key, enc in PAPER_IDS.items():
        family = PAPER_ENCODERS[key][1]
        ref = {**PAPER_REFERENCE[key], **{c: v for (k, c), v in changes.items() if k == key}}
        for seed in seeds:
            delta = 0.2 * (2 * seed - 1) if len(seeds) > 1 else 0.0
            for col, (ds, level, task, feature, metric) in _PROBES.items():
                if col in ref:
                    trials = _trials(ref[col], seed) if with_trials and task in ("linear", "attentive") else []
                    out.append(
                        record(
                            enc,
                            family,
                            ds,
                            level,
                            task,
                            feature,
                            metric,
                            ref[col] + delta,
                            run_id=run_id,
                            seed=seed,
                            trial_results=trials,
                            **kw,
                        )
                    )
            for pkey, (ds, level) in _SEG.items():
                ms = {m: ref[f"{pkey}_{m}"] + delta for m in ("miou", "macc", "aacc")}
                out.append(
                    record(
                        enc,
                        family,
                        ds,
                        level,
                        "segmentation",
                        "patch:4+6+8+12",
                        "miou",
                        ms["miou"],
                        run_id=run_id,
                        seed=seed,
                        metrics=ms,
                        **kw,
                    )
                )
    return out


#: encoder -> (object linear, part linear, part retrieval): known numbers for the synthetic run
SYNTHETIC_NUMBERS = {
    "tiny_sup": ("supervised", 90.0, 60.0, 30.0),
    "tiny_cl": ("contrastive", 80.0, 70.0, 40.0),
    "tiny_mim": ("mim", 50.0, 75.0, 45.0),
}


def synthetic_records(run_id: str = "quick", numbers=None, *, n_test: int = 1_000, **kw) -> list[ResultRecord]:
    """Three probes per encoder on the synthetic set: object linear, part linear, part retrieval. ``kw`` goes to
    every ``record`` (``legacy=True``, ``random_weights=True``, ``zoo=...``)."""
    numbers = numbers or SYNTHETIC_NUMBERS
    kw = {"zoo": "test", **kw}
    out = []
    for enc, (fam, obj, part, ret) in numbers.items():
        for level, value in (("object", obj), ("part", part)):
            out.append(
                record(
                    enc,
                    fam,
                    "synthetic",
                    level,
                    "linear",
                    "cls",
                    "top1",
                    value,
                    run_id=run_id,
                    trial_results=_trials(value, 0),
                    n_test=n_test,
                    **kw,
                )
            )
        out.append(
            record(enc, fam, "synthetic", "part", "retrieval", "mean", "ap", ret, run_id=run_id, n_test=n_test, **kw)
        )
    return out


#: the random-initialisation control of the synthetic run's architecture: near the baselines
CONTROL = "control/vit_tiny_patch16_224-1a2b3c"
CONTROL_NUMBERS = {CONTROL: ("control", 16.0, 33.0, 28.0)}


def control_records(run_id: str = "quick", numbers=None, **kw) -> list[ResultRecord]:
    """The controls a job adds (family and zoo ``control``, random weights), on the synthetic probes."""
    return synthetic_records(
        run_id,
        numbers or CONTROL_NUMBERS,
        zoo="control",
        random_weights=True,
        control=True,
        control_of="vit_tiny_patch16_224",
        **kw,
    )


def write_run(root: StorageRoot, run_id: str, records: list[ResultRecord], spec: str = "name: test\n") -> StorageRoot:
    """A run folder as the driver leaves it: spec.yaml, state.json, summary.json, results.parquet, _SUCCESS."""
    run = root.sub("runs", run_id)
    run.write_bytes(spec.encode(), "spec.yaml")
    run.write_json({"state": "succeeded"}, "state.json")
    run.write_json(
        {
            "run_id": run_id,
            "stages": [{"name": "prepare", "status": "ran", "seconds": 1.0, "detail": ""}],
            "ray_resources": {"CPU": 2.0},
        },
        "summary.json",
    )
    write_results(run, records)
    run.mark_complete()
    return run


# --- headless Chromium ----------------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--hide-scrollbars",
]


def chromium_binary() -> str:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("headless Chromium is required: `apt-get install -y chromium` (make test installs it)")


def render_in_chromium(html_path, tmp_path, *, width: int = 1280, height: int = 2400):
    """Open ``html_path`` in headless Chromium: returns (DOM text, console error lines, screenshot path)."""
    import subprocess

    binary = chromium_binary()
    shot = tmp_path / "screenshot.png"
    common = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    url = html_path.resolve().as_uri()
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    subprocess.run(
        [*common, f"--window-size={width},{height}", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return dom.stdout, console, shot


def pixel_std(png_path) -> float:
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(png_path).convert("L"), dtype=np.float32).std())
