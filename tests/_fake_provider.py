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

#: Ray's own class, taken once at import: the autoscaler launches nodes from several threads, and a launch that
#: read the module attribute while another launch had it patched would subclass (and later restore) the patch,
#: so every later launch failed with "multiple values for keyword argument 'runtime_env_dir_name'"
RAY_PARAMS = parameter.RayParams


class SeparateFoldersFakeProvider(FakeMultiNodeProvider):
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with self.lock:  # the parent builds the node's RayParams from this module attribute, under the same lock
            folder = f"runtime_resources_{self._next_node_id + 1}"  # the id the parent class gives this node

            class RayParams(RAY_PARAMS):
                def __init__(self, *args, **kwargs):
                    super().__init__(*args, runtime_env_dir_name=folder, **kwargs)

            parameter.RayParams = RayParams
            try:
                super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
            finally:
                parameter.RayParams = RAY_PARAMS
