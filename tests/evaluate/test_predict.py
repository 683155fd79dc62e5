"""Predictions for evaluation rows: one generation per distinct model input."""

from __future__ import annotations

import pytest

from llamadna.evaluate.predict import annotate_distinct
from tests.model.conftest import make_annotator, rows


@pytest.mark.parametrize("use_dna", [True, False])
def test_annotate_distinct_generates_each_input_once(monkeypatch, use_dna):
    annotator = make_annotator()
    m = annotator.model.eval()
    annotator.processor.use_dna = use_dna
    a, b, c = rows(3)
    other_splash = {**a, "SPLASH_Effect": 0.99}  # same sequence, another prompt: its own input
    other_seq = {**b, "Sequence": a["Sequence"]}  # b's prompt with a's sequence
    batch = [a, b, a, other_splash, c, other_seq, b]
    plain = annotator.with_config(max_new_tokens=5).annotate_rows(batch)
    generated = []
    orig = m.generate_with_class
    monkeypatch.setattr(m, "generate_with_class",
                        lambda **kw: generated.append(kw["input_ids"].shape[0]) or orig(**kw))
    seen: dict = {}
    got = annotate_distinct(annotator, batch, seen, batch_size=16, max_new_tokens=5)
    distinct = 5 if use_dna else 4  # without DNA, other_seq's input is b's
    assert generated == [distinct] and len(seen) == distinct
    for p, q in zip(got, plain):
        assert p["annotation"] == q["annotation"] and p["source"] == q["source"]
        assert p["confidence"] == pytest.approx(q["confidence"], abs=1e-5)
    assert annotate_distinct(annotator, [c, a], seen, max_new_tokens=5) == [got[4], got[0]]
    assert generated == [distinct]  # all remembered: no generation
    got[0]["annotation"] = "changed"  # the caller's copy, not the remembered prediction
    assert annotate_distinct(annotator, [a], seen, max_new_tokens=5)[0]["annotation"] == plain[0]["annotation"]
