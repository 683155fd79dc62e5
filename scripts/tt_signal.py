"""Does a window's DNA tell its transcript type for a gene never seen? (the novel-gene setting,
docs/RESULTS.md)

Two sets of windows: the reference index's annotated windows (tiled over genes and flanks) and
the dataset's rows (windows centred on known variants, so richer in exons). For each, 5-fold
cross-validation grouped by gene (a test fold's genes are in no training fold): logistic
regression (standardized features) on 4-mer frequencies, and for the index also on the DNA
encoder's pooled window embeddings (its FAISS vectors), against the training folds' majority
class; accuracy over the held-out genes' windows.

    .venv/bin/python scripts/tt_signal.py demo_out/index demo_out/dataset
"""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from llamadna.io.dataset import dataset_parquet
from llamadna.retrieve.index import inner_index
from llamadna.splash.kmers import N_CODE, encode, kmer_values

K = 4


def kmer_frequencies(seq: str) -> np.ndarray:
    """Frequencies of the 4^K k-mers (lexicographic order) over the k-mers without an N."""
    codes = encode(seq)
    values = kmer_values(codes, K)
    if not len(values):
        return np.zeros(4**K)
    has_n = np.convolve(codes == N_CODE, np.ones(K, dtype=int), mode="valid")[: len(values)] > 0
    v = np.bincount(values[~has_n].astype(np.intp), minlength=4**K).astype(float)
    return v / max(v.sum(), 1.0)


def grouped_cv(name: str, X: np.ndarray, y: np.ndarray, genes: np.ndarray) -> None:
    right = majority = n = 0
    for tr, te in GroupKFold(5).split(X, y, genes):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[tr], y[tr])
        right += int((model.predict(X[te]) == y[te]).sum())
        values, counts = np.unique(y[tr], return_counts=True)
        majority += int((y[te] == values[counts.argmax()]).sum())
        n += len(te)
    print(f"{name}: {n} windows of held-out genes ({len(set(genes))} genes), logistic regression "
          f"{right / n:.3f}, majority class {majority / n:.3f}")


def main(index_dir: str, dataset: str) -> None:
    d = Path(index_dir)
    w = (pl.read_parquet(d / "windows.parquet").with_row_index("i")
         .filter(pl.col("transcript_type").is_not_null()))
    y, genes = np.array(w["transcript_type"].to_list()), np.array(w["gene"].to_list())
    vectors = inner_index(faiss.read_index(str(d / "embeddings.faiss")))  # as stored (whitened if so)
    grouped_cv("index windows, encoder embedding",
               np.vstack([vectors.reconstruct(int(i)) for i in w["i"].to_list()]), y, genes)
    grouped_cv("index windows, 4-mer frequencies",
               np.vstack([kmer_frequencies(s) for s in w["Sequence"].to_list()]), y, genes)
    rows = pl.read_parquet(dataset_parquet(dataset), columns=["Sequence", "gene_name", "transcript_type"])
    grouped_cv("dataset rows (variant-centred), 4-mer frequencies",
               np.vstack([kmer_frequencies(s) for s in rows["Sequence"].to_list()]),
               np.array(rows["transcript_type"].to_list()), np.array(rows["gene_name"].to_list()))


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("demo_out/index", "demo_out/dataset")))
