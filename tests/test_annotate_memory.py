"""`annotate` holds a batch of tiles at a time, never a whole record (issue 27): the tiles of a
long record reach the retriever, generation and the scoring of reference candidates
`batch_size` at a time, and what is written is those tiles annotated batch by batch, in order.
(Peak memory itself is measured by bench/bench_annotate_memory.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llamadna.annotate import Annotator, annotate_fasta
from llamadna.annotate import annotator as annotator_module
from llamadna.annotate import decoding as dec
from llamadna.annotate import pipeline as pipe
from llamadna.constants import DEFAULT_DRAFT_TOKENS
from llamadna.model.processing import LlamaDNAProcessor
from tests.model.conftest import make_model, make_processor

MAX_NEW = 6
TILE = 40
BATCH = 4
K = 3  # candidates a query: a batch holds K x BATCH candidate sentences to score
RNG = np.random.default_rng(27)
LONG = "".join(RNG.choice(list("ACGT"), TILE * 9 + 13))  # 10 tiles, the last shifted inside
SHORT = "".join(RNG.choice(list("ACGT"), 25))
CANDIDATES = [{"gene": f"MEMGENE{j}", "gene_id": f"ENSG{j:011d}", "build": "GRCh38", "chrom": f"chr{j + 1}",
               "description": f"memory gene {j}", "transcript_type": "lncRNA", "phenotype": "not specified",
               "source": "ClinVar", "score": 1.5 - j / 10, "identity": 0.9, "aligned_fraction": 1.0,
               "cosine": None, "strand": "+", "position": 1000 * (j + 1), "window": j, "via": "align"}
              for j in range(K)]


pytestmark = pytest.mark.usefixtures("one_thread")


class Retriever:
    """In place of the reference index (`Retriever`'s call: sequences -> candidates per query):
    K aligned gene candidates for every query, none of which the (`unknown_gene`) greedy sentence
    names, so grounded decoding scores every one of them and the evidence's own sentence. Records
    how many sequences each call is handed."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, sequences, progress=None):
        self.calls.append(len(sequences))
        return [[dict(c) for c in CANDIDATES] for _ in sequences]


@pytest.fixture
def unknown_gene(monkeypatch):
    """Grounded decoding reads every greedy sentence of the tiny untrained model as naming a gene
    that no candidate has: the case that weighs sentences (the generation runs as it does)."""
    from llamadna.data.template import parse_outcome

    monkeypatch.setattr(dec, "parse_outcome", lambda text: {
        **parse_outcome(text), "outcome": "gene", "gene": "NOTINREF", "chrom": None, "source": None})


def _model() -> Annotator:
    m = make_model(copy_head=True, llm_training="full").eval()
    base = make_processor()
    proc = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True,
                             dna_chunk_tokens=base.dna_chunk_tokens, evidence_k=K)
    return Annotator(m, proc, retriever=Retriever())


def _spy(model, name: str) -> list[int]:
    """Rows (input_ids) of each call of the model's method `name`."""
    sizes: list[int] = []
    method = getattr(model, name)

    def spy(*args, **kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        return method(*args, **kwargs)

    setattr(model, name, spy)
    return sizes


def _fasta(path):
    path.write_text(f">long\n{LONG}\n>short\n{SHORT}\n")
    return path


def test_a_long_record_reaches_the_model_a_batch_at_a_time(tmp_path, monkeypatch, unknown_gene):
    m = _model()
    generated, scored = _spy(m.model, "generate_with_class"), _spy(m.model, "target_log_probs")
    made = [0]  # tile rows made so far: never more than the batches handed on
    tile_rows = pipe.tile_rows

    def counted(records, tile):
        for row in tile_rows(records, tile):
            made[0] += 1
            yield row

    monkeypatch.setattr(pipe, "tile_rows", counted)
    seen = []  # (retriever call, tile rows made by then)
    retriever = m.retriever

    def watched(sequences, progress=None):
        out = retriever(sequences, progress)
        seen.append((len(retriever.calls), made[0]))
        return out

    m.retriever = watched
    s = annotate_fasta(m, _fasta(tmp_path / "seqs.fa"), tmp_path / "p.jsonl", batch_size=BATCH,
                       max_new_tokens=MAX_NEW, tile=TILE, decoding="grounded")
    assert (s["records"], s["tiles"]) == (2, 11) and s["tiles_per_s"] > 0
    batches = -(-11 // BATCH)
    assert retriever.calls == [BATCH, BATCH, 11 - 2 * BATCH]
    assert generated == retriever.calls
    # the candidates of a batch (K x its rows) are scored a batch's rows at a time, not all at once
    assert scored and max(scored) <= BATCH and len(scored) > batches
    assert sum(scored) == (K + 1) * 11  # every tile's every candidate and the evidence's own sentence
    # tiles are made as they are needed: a batch ahead of what the retriever has seen at most
    assert all(n <= call * BATCH for call, n in seen), seen


def test_no_logits_over_whole_prompts(tmp_path, unknown_gene):
    """Generation reads the next-token logits at the prompt's last position, scoring at the
    target's positions: the LLM never returns (B, T, V) logits over whole prompts."""
    m = _model()
    calls = []  # (positions read, positions given logits)

    def hook(module, args, kwargs, out):
        calls.append((kwargs["inputs_embeds"].shape[1], out.logits.shape[1]))

    m.model.language_model.register_forward_hook(hook, with_kwargs=True)
    annotate_fasta(m, _fasta(tmp_path / "seqs.fa"), tmp_path / "p.jsonl", batch_size=BATCH,
                   max_new_tokens=MAX_NEW, tile=TILE, decoding="grounded")
    # prefill and scoring passes; a decoding pass reads the token just chosen and its draft's
    prompts = [(t, n) for t, n in calls if t > 1 + DEFAULT_DRAFT_TOKENS]
    assert len(prompts) > 3 and len(calls) > len(prompts)
    assert all(n < t / 2 for t, n in prompts), prompts


def test_the_output_is_the_tiles_annotated_batch_by_batch(tmp_path, unknown_gene):
    m = _model()
    annotate_fasta(m, _fasta(tmp_path / "seqs.fa"), tmp_path / "p.jsonl", batch_size=BATCH,
                   max_new_tokens=MAX_NEW, tile=TILE, decoding="grounded")
    with open(tmp_path / "p.jsonl") as fh:
        written = [json.loads(line) for line in fh]
    rows = [{"id": f"long:{a + 1}-{b}", "record": "long", "start": a + 1, "end": b, "Sequence": LONG[a:b]}
            for a, b in pipe.tiles(len(LONG), TILE)]
    rows.append({"id": "short", "record": "short", "start": 1, "end": len(SHORT), "Sequence": SHORT})
    for r in rows:
        r.update(dict.fromkeys(("SPLASH_Effect", "SPLASH_pval", "SPLASH_entropy")))
    want, grounded = [], m.with_config(max_new_tokens=MAX_NEW, decoding="grounded")
    for i in range(0, len(rows), BATCH):
        batch = rows[i : i + BATCH]
        want += [{"id": r["id"], "record": r["record"], "start": r["start"], "end": r["end"], **p}
                 for r, p in zip(batch, grounded.predict_batch(batch))]
    assert len(written) == len(want) == 11
    for got, exp in zip(written, want):
        assert {k: got[k] for k in exp} == exp
    for w in written:  # grounded on a candidate, or what the evidence shows
        assert w["gene"] in {c["gene"] for c in CANDIDATES} or w["annotation"] == dec.described(CANDIDATES)


def test_scoring_in_parts_gives_the_scores_of_one_pass():
    m = _model()
    rows = [{"Sequence": s, "SPLASH_Effect": None, "SPLASH_pval": None, "SPLASH_entropy": None,
             "evidence": CANDIDATES} for s in (LONG[:40], LONG[40:80], SHORT)]
    pairs = [(r, dec.candidate_sentence(c, "ClinVar")) for r in rows for c in CANDIDATES]
    scored = _spy(m.model, "target_log_probs")
    score = dec.SentenceScorer(m.model, m.processor)
    whole = score([r for r, _ in pairs], [t for _, t in pairs], batch_size=len(pairs))
    parts = score([r for r, _ in pairs], [t for _, t in pairs], batch_size=2)
    assert scored == [9, 2, 2, 2, 2, 1]
    assert parts.shape == whole.shape == (9,)
    assert torch.allclose(parts, whole, atol=1e-5) and float(whole.max()) < 0
    assert len(set(whole.tolist())) > 1  # the sentences differ: a mix-up would show


def test_a_batch_reaches_the_model_a_few_rows_a_pass(monkeypatch):
    # a pass holds a few MB a row: a batch of 32 in one pass made a long record's peak grow
    m = _model().with_config(max_new_tokens=12, decoding="grounded")
    rows = [{"Sequence": LONG[i * 30 : i * 30 + 40], "SPLASH_Effect": None, "SPLASH_pval": None,
             "SPLASH_entropy": None, "evidence": CANDIDATES} for i in range(5)]
    monkeypatch.setattr(annotator_module, "MODEL_PASS_ROWS", len(rows))
    whole = m.predict_batch(rows)
    monkeypatch.setattr(annotator_module, "MODEL_PASS_ROWS", 2)
    passes = _spy(m.model, "generate_with_class")
    parts = m.predict_batch(rows)
    assert passes == [2, 2, 1]
    assert [p["annotation"] for p in parts] == [p["annotation"] for p in whole]
    for a, b in zip(parts, whole):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
        assert a["source_prob"] == pytest.approx(b["source_prob"], abs=1e-5)
    assert len({p["confidence"] for p in whole}) > 1  # the rows differ: a mix-up would show
