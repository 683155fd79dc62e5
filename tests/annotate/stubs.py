"""Stand-ins for an Annotator's model and processor, for the tests of the FASTA pipeline and of
sharded runs: the predictions come from a patched `Annotator.predict_batch`."""

from __future__ import annotations


class StubModel:
    """eval/train only (what `Annotator.annotate` calls), and a dtype for a run's fingerprint."""

    training = False
    dtype = "stub"

    def eval(self):
        return self

    def train(self, mode=True):
        return self


class StubProcessor:
    prompt_mode = "leak-free"
    retrieval = False
