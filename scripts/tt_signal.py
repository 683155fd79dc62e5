"""Does a window's DNA tell its transcript type for a gene never seen? (the novel-gene setting,
docs/RESULTS.md)

The reference index's annotated windows, 5-fold cross-validation grouped by gene (a test fold's
genes are in no training fold): logistic regression (features standardized) on (a) the DNA encoder's pooled window
embeddings (the index's FAISS vectors) and (b) 4-mer frequencies, against the training folds'
majority class, accuracy over the held-out genes' windows.

    .venv/bin/python scripts/tt_signal.py demo_out/index
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import faiss
import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

KMERS = {"".join(p): j for j, p in enumerate(itertools.product("ACGT", repeat=4))}


def kmer_frequencies(seq: str) -> np.ndarray:
    v = np.zeros(len(KMERS))
    for j in range(len(seq) - 3):
        x = KMERS.get(seq[j : j + 4])
        if x is not None:
            v[x] += 1
    return v / max(v.sum(), 1.0)


def main(index_dir: str) -> None:
    d = Path(index_dir)
    w = (pl.read_parquet(d / "windows.parquet").with_row_index("i")
         .filter(pl.col("transcript_type").is_not_null()))
    vectors = faiss.read_index(str(d / "embeddings.faiss"))
    features = {
        "encoder embedding": np.vstack([vectors.reconstruct(int(i)) for i in w["i"].to_list()]),
        "4-mer frequencies": np.vstack([kmer_frequencies(s.upper()) for s in w["Sequence"].to_list()]),
    }
    y, genes = np.array(w["transcript_type"].to_list()), np.array(w["gene"].to_list())
    for name, X in features.items():
        right = majority = n = 0
        for tr, te in GroupKFold(5).split(X, y, genes):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[tr], y[tr])
            right += int((model.predict(X[te]) == y[te]).sum())
            values, counts = np.unique(y[tr], return_counts=True)
            majority += int((y[te] == values[counts.argmax()]).sum())
            n += len(te)
        print(f"{name}: {n} windows of held-out genes, logistic regression {right / n:.3f}, "
              f"majority class {majority / n:.3f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_out/index")
