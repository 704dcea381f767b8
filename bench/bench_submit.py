"""The embedded quickstart end to end: `partctl submit --encoders all`, cold (empty storage) then warm.

Runs the real command twice on a fresh temporary storage root and prints the wall time of each, the
time the stages themselves took (from the run's summary.json) and the rest (interpreter, embedded Ray
start and stop), with the warm run as a ratio of the cold one measured in the same process.

    .venv/bin/python bench/bench_submit.py [--spec quickstart] [--size N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def timed_submit(spec: str, storage: Path) -> tuple[float, dict]:
    partctl = shutil.which("partctl", path=str(Path(sys.executable).parent)) or "partctl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    out = subprocess.run([partctl, "submit", spec, "--encoders", "all", "--storage", str(storage)], env=env)
    wall = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"partctl submit failed with exit code {out.returncode}")
    runs = sorted((storage / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return wall, json.loads((runs[-1] / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="quickstart", help="job spec name or path")
    parser.add_argument("--size", type=int, default=None, help="override the synthetic dataset size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as tmp:
        spec = args.spec
        if args.size:
            from partaware.cli.jobs import find_spec

            data = yaml.safe_load(find_spec(spec).read_text())
            for d in data["datasets"]:
                d.setdefault("options", {})["size"] = args.size
            spec = str(Path(tmp) / "spec.yaml")
            Path(spec).write_text(yaml.safe_dump(data))
        storage = Path(tmp) / "store"
        cold, cold_summary = timed_submit(spec, storage)
        warm, warm_summary = timed_submit(spec, storage)
    print(f"partctl submit {args.spec} --encoders all, embedded Ray, {os.cpu_count()} cores")
    for label, wall, summary in (("cold", cold, cold_summary), ("warm", warm, warm_summary)):
        stages = ", ".join(f"{s['name']} {s['status']} {s['seconds']:.1f}s" for s in summary["stages"])
        rest = wall - summary["seconds"]
        print(f"  {label}: {wall:6.1f}s wall; stages {summary['seconds']:.1f}s ({stages}); rest {rest:.1f}s")
    print(f"  warm / cold: x{warm / cold:.2f} (baseline: the cold run)")


if __name__ == "__main__":
    main()
