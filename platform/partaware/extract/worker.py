"""The encoder worker: a plain callable class, Ray-free, that the pipeline runs in an actor pool.

It loads the encoder once (``__init__``) and maps a batch dict of numpy arrays to a batch dict
(``__call__``), as Ray's batch-inference examples do; tests call it directly. It checks that the
weights it loaded are the weights the feature key was computed for, so a checkpoint that changed
under a URI can never be written under the old key.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch

from partaware.encoders.base import EncoderSpec
from partaware.encoders.loading import load_encoder
from partaware.errors import StorageError
from partaware.extract.crops import normalise
from partaware.extract.features import tap_dtype
from partaware.storage import StorageRoot

#: precision -> the autocast dtype (None: plain fp32); bf16 autocasts on CUDA and on CPUs, fp16 on CUDA only.
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Columns of the decode stage that travel through the worker unchanged.
PASSTHROUGH = ("row", "region_id", "shard", "error", "t_read", "t_decode")


class FeatureExtractor:
    """Encode batches of uint8 crops into the requested taps.

    Input batch: ``pixels`` (N, S, S, 3) uint8 and ``error`` (N,) str ("" = good) plus passthrough
    columns. Output: the passthrough columns, one column per tap (float32, or float16 for
    ``patch:<k>``; zeros on error rows), ``worker`` (host:pid) and ``t_encode`` (seconds per row).
    """

    def __init__(
        self,
        encoder: EncoderSpec | str,
        taps: Sequence[str],
        device: str = "cpu",
        *,
        seed: int = 0,
        root_uri: str | None = None,
        expected_digest: str | None = None,
        threads: int | None = None,
        precision: str = "fp32",
    ):
        if threads:
            torch.set_num_threads(threads)
        if precision not in AUTOCAST:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(AUTOCAST)}")
        if precision == "fp16" and torch.device(device).type != "cuda":
            raise ValueError(f"precision fp16 runs only on CUDA, not on {device}; use bf16 or fp32")
        root = StorageRoot.open(root_uri) if root_uri else None
        self.encoder = load_encoder(encoder, root=root, device=device, seed=seed)
        if expected_digest is not None and self.encoder.weights_digest != expected_digest:
            raise StorageError(
                f"encoder {self.encoder.spec.name!r}: loaded weights {self.encoder.weights_digest} differ from "
                f"the weights the feature key was made for ({expected_digest})"
            )
        self.encoder.check_taps(taps)
        self.taps = list(taps)
        self.device = torch.device(device)
        self.precision = precision
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        size = self.encoder.spec.input_size
        probe = self.encode_pixels(np.zeros((1, size, size, 3), dtype=np.uint8))  # also warms the model up
        self.tap_shapes = {t: v.shape[1:] for t, v in probe.items()}

    def _autocast(self):
        dtype = AUTOCAST[self.precision]
        return torch.autocast(device_type=self.device.type, dtype=dtype) if dtype else nullcontext()

    def encode_pixels(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Taps of a (N, S, S, 3) uint8 batch, as numpy arrays in their storage dtype."""
        spec = self.encoder.spec
        x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device, non_blocking=True)
        images = normalise(x, spec.mean, spec.std)
        with torch.inference_mode(), self._autocast():
            out = self.encoder.encode(images, self.taps)
        return {t: out[t].float().cpu().numpy().astype(tap_dtype(t), copy=False) for t in self.taps}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        n = len(batch["error"])
        good = np.asarray([e == "" for e in batch["error"]], dtype=bool)
        result = {k: batch[k] for k in PASSTHROUGH if k in batch}
        encoded = self.encode_pixels(batch["pixels"][good]) if good.any() else {}
        for tap in self.taps:
            arr = np.zeros((n, *self.tap_shapes[tap]), dtype=tap_dtype(tap))
            if tap in encoded:
                arr[good] = encoded[tap]
            result[tap] = arr
        result["worker"] = np.full(n, self.worker_id, dtype=object)
        result["t_encode"] = np.full(n, (time.perf_counter() - start) / max(n, 1), dtype=np.float64)
        return result
