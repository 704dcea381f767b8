"""Job specs for the submit tests: synthetic data and one tiny random-weight ViT declared in the spec.

The encoder travels inside the spec (``custom_encoders``), so a ``partctl`` subprocess, and a driver
running as a Ray Job on a head node, see it exactly as the test does; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_ENCODER = {
    "name": "custom/vit_tiny_rand",
    "family": "supervised",
    "zoo": "custom",
    "arch": "vit_tiny_patch16_224",
    "arch_kwargs": {"img_size": 64},
    "input_size": 64,
    "weights": {"kind": "random"},
}


def tiny_spec(name: str = "tiny", size: int = 12) -> dict:
    return {
        "name": name,
        "datasets": [{"name": "synthetic", "options": {"size": size, "image_size": 64}}],
        "zoo": "custom",
        "custom_encoders": [TINY_ENCODER],
        "encoders": [TINY_ENCODER["name"]],
        "tasks": ["retrieval"],
        "resources": {"extract_batch_size": 32, "max_actors": 1, "cpus_per_actor": 0.5},
    }


def write_spec(folder: Path, name: str = "tiny", size: int = 12) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_spec(name, size), sort_keys=False))
    return path
