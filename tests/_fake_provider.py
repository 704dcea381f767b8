"""Ray's fake multi-node provider, with one difference: each fake node keeps its runtime environments
(``runtime_resources``: a job's unpacked working_dir and py_modules) in a folder of its own.

Every fake node runs on this machine in the head's session folder, and Ray unpacks a job's working_dir
with ``overwrite=True`` on each node that first runs the job's work: a second node would delete and
re-create the folder the job's driver (on the head) runs in, which real nodes, each with its own disk,
never do. Loaded by the autoscaler's monitor through ``provider: {type: external, module:
_fake_provider.SeparateFoldersFakeProvider}`` (tests/ on the head's PYTHONPATH).
"""

from __future__ import annotations

import ray._private.parameter as parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class SeparateFoldersFakeProvider(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        original = parameter.RayParams
        with self.lock:  # the parent builds the node's RayParams from this module attribute, under the same lock
            folder = f"runtime_resources_{self._next_node_id + 1}"  # the id the parent class gives this node

            class RayParams(original):
                def __init__(self, *args, **kwargs):
                    super().__init__(*args, runtime_env_dir_name=folder, **kwargs)

            parameter.RayParams = RayParams
            try:
                super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
            finally:
                parameter.RayParams = original
