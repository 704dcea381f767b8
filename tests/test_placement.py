"""Resources as requests and where compute runs (``device``, ``precision``): what the spec accepts and refuses,
how a worker picks its device (a GPU resource without a CUDA device computes on the CPU), and how placements
add up. No Ray here: tests/test_autoscaling.py runs the same on Ray's fake multi-node autoscaler."""

from __future__ import annotations

import pytest
import torch

from _submit_specs import tiny_spec
from partaware.errors import SpecError
from partaware.placement import NO_CUDA, DeviceError, compute_device, summarise
from partaware.runs.records import merge_placements
from partaware.spec import parse_spec

NO_GPU_HERE = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a CUDA device")


def _spec(**extra) -> dict:
    spec = tiny_spec()
    spec["resources"] = {**spec["resources"], **extra.pop("resources", {})}
    return {**spec, **extra}


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"device": "cpu", "resources": {"gpus_per_actor": 1}},
         r"device cpu asks Ray for no GPU, but resources\.gpus_per_actor is 1: set them to 0 or use device auto"),
        ({"device": "cuda"}, r"device cuda: extraction would run without a GPU \(resources\.gpus_per_actor 0\)"),
        ({"device": "cuda", "tasks": ["retrieval", "linear"], "resources": {"gpus_per_actor": 1}},
         r"device cuda: probe search trials would run without a GPU \(resources\.gpus_per_trial 0\)"),
        ({"precision": "fp16"}, r"precision fp16 runs only on CUDA"),
        ({"device": "gpu"}, r"device: Input should be 'auto', 'cuda' or 'cpu' \(got 'gpu'\)"),
        ({"resources": {"memory_per_actor": -1}}, r"resources\.memory_per_actor"),
    ],
)  # fmt: skip
def test_device_and_gpu_requests_that_cannot_run_are_refused_in_one_line(extra, error):
    with pytest.raises(SpecError, match=error) as e:
        parse_spec(_spec(**extra))
    assert "\n" not in str(e.value)


def test_what_can_run_is_accepted_and_each_stage_names_its_gpu_request():
    spec = parse_spec(_spec(device="cuda", precision="fp16", tasks=["retrieval", "linear"],
                            resources={"gpus_per_actor": 0.5, "gpus_per_trial": 1}))  # fmt: skip
    assert spec.gpu_stages() == {"gpus_per_actor": "extraction", "gpus_per_trial": "probe search trials"}
    assert parse_spec(_spec(precision="bf16")).precision == "bf16"  # bf16 runs on CPUs too
    lab = parse_spec({**_spec(), "zoo": "lab", "encoders": ["lab/mae"], "custom_encoders": []})
    assert lab.gpu_stages()["gpus_per_worker"] == "lab pretraining"
    # the paper's segmentation alone extracts nothing: its workers need a GPU under device cuda, actors do not
    paper = parse_spec(_spec(device="cuda", tasks=["segmentation"], variants={"segmentation": "paper"},
                             resources={"gpus_per_actor": 0, "gpus_per_worker": 1}))  # fmt: skip
    assert paper.gpu_stages() == {"gpus_per_worker": "paper segmentation"}


def test_partctl_device_cpu_drops_the_specs_gpu_requests(partctl):
    out = partctl("submit", "paper", "--device", "cpu", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    from partaware.cli.jobs import spec_with_overrides

    job = spec_with_overrides("paper", device="cpu")
    assert job.device == "cpu" and not any(job.resources.gpu_fields().values())
    assert "device cuda" in partctl("validate", "paper").stderr.replace("\n", " ")
    bad = partctl("submit", "quickstart", "--precision", "fp16", "--dry-run")
    assert bad.returncode == 2 and "precision fp16 runs only on CUDA" in bad.stderr and "Traceback" not in bad.stderr


@NO_GPU_HERE
def test_a_worker_given_a_gpu_resource_without_a_cuda_device_computes_on_the_cpu_under_auto():
    assert compute_device("cpu", 1) == ("cpu", "")
    assert compute_device("auto", 0) == ("cpu", "")
    assert compute_device("auto", 1) == ("cpu", NO_CUDA)
    with pytest.raises(DeviceError, match=r"device cuda: this worker has no CUDA device .*use device auto"):
        compute_device("cuda", 1)


def test_fp16_extraction_needs_cuda():
    from partaware.extract.pipeline import ExtractionOptions
    from partaware.extract.worker import FeatureExtractor

    with pytest.raises(SpecError, match="fp16 runs only on CUDA"):
        ExtractionOptions(precision="fp16")
    with pytest.raises(SpecError, match="device cpu with gpus_per_actor 1"):
        ExtractionOptions(device="cpu", gpus_per_actor=1)
    assert ExtractionOptions(precision="fp16", gpus_per_actor=1).device == "auto"
    with pytest.raises(ValueError, match="fp16 runs only on CUDA, not on cpu"):
        FeatureExtractor("test/none", ["cls"], "cpu", precision="fp16")


def test_placements_count_units_per_node_type_and_device_and_add_up_across_runs():
    places = [{"node_id": "n1", "node_type": "gpu", "device": "cpu", "note": NO_CUDA, "count": 10},
              {"node_id": "n2", "node_type": "gpu", "device": "cpu", "note": NO_CUDA, "count": 5},
              {"node_id": "n3", "node_type": "cpu", "device": "cpu", "note": ""}]  # fmt: skip
    first = summarise(places, gpus=1, unit="regions")
    assert [(p["node_type"], p["count"], p["nodes"]) for p in first] == [("gpu", 15, ["n1", "n2"]), ("cpu", 1, ["n3"])]
    second = summarise(places[:1], gpus=1, unit="regions")
    merged = {p.node_type: p for p in merge_placements(first + second)}
    assert merged["gpu"].count == 25 and merged["gpu"].nodes == ["n1", "n2"] and merged["cpu"].count == 1
