"""Part (and object) retrieval, protocol §3.3: cosine similarity of every item against the gallery, the
query included; AP per query as sklearn computes it. Nothing is trained, so nothing is searched."""

from __future__ import annotations

from partaware.probes.task import ProbeTask, register_task


class RetrievalTask(ProbeTask):
    def features(self, encoder, variant=None):
        # the paper's "Encoded" column is either ``embedding`` (mean) or ``cls``: both are scored; the
        # projection, for encoders with a head, is the part-to-whole evidence (Figure 4)
        return ("mean", "cls", *(("proj",) if encoder.has_projection else ()))

    def taps(self, encoder, depth, variant=None):
        return self.features(encoder)


RETRIEVAL = register_task(RetrievalTask(
    name="retrieval", summary="cosine retrieval AP over the dataset's gallery (protocol 3.3)", needs="regions",
    metric="ap", report_metrics=("ap",), tuned=False, split_rule="gallery", protocol_version="1",
    paper="Table 3 (part retrieval), Figure 4 (projected features)",
))  # fmt: skip
