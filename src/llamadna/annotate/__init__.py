"""Model + DNA sequences -> predictions.

- `annotator.py`: `Annotator` (model + processor + retriever + calibration + `InferenceConfig`):
  rows -> predictions, as transformers' Pipeline (preprocess -> _forward -> postprocess);
- `decoding.py`: what a retrieval model's sentence is once greedy generation ran (grounded,
  rerank), and the sentence scoring they use;
- `pipeline.py`: a FASTA, tiled and streamed through an Annotator into a predictions file.
"""

from llamadna.annotate.annotator import Annotator, InferenceConfig
from llamadna.annotate.decoding import (
    OutcomeDecided,
    SentenceScorer,
    candidate_sentence,
    check_decoding,
    ground,
    rerank,
)
from llamadna.annotate.pipeline import NO_BASE, annotate_fasta, tiles

__all__ = [
    "NO_BASE", "Annotator", "InferenceConfig", "OutcomeDecided", "SentenceScorer", "annotate_fasta",
    "candidate_sentence", "check_decoding", "ground", "rerank", "tiles",
]
