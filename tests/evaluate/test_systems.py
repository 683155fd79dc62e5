"""The table of systems drives the runners, the training variants, the notes and the order."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from llamadna.errors import ConfigError
from llamadna.evaluate.config import EvalConfig
from llamadna.evaluate.report import _ordered_systems
from llamadna.evaluate.systems import (
    BY_NAME,
    DIVERGENCE_SYSTEMS,
    LOOKUPS,
    RETRIEVAL_SYSTEMS,
    SYSTEM_NAMES,
    SYSTEMS,
    EvalContext,
    Unit,
    system_note,
)
from llamadna.train.cache import TrainedModels
from llamadna.train.config import TrainConfig
from llamadna.train.variants import ModelVariant

# What each variant was trained with before the table existed (train/cache.py's config_for):
# use_dna, use_splash, index (True = the given model's), prompt_mode
VARIANT_SETTINGS = {
    "model": (True, True, True, "leak-free"),
    "splash_prompt": (False, True, False, "leak-free"),
    "seed_faithful": (True, True, False, "seed-faithful"),
    "no_retrieval": (True, True, False, "leak-free"),
    "no_dna": (False, True, True, "leak-free"),
    "no_splash": (True, False, True, "leak-free"),
}


def _models(tmp_path: Path, **settings) -> TrainedModels:
    model = tmp_path / "given"
    model.mkdir()
    tc = TrainConfig(dataset="ds", out=str(model), split="split_random", encoder="enc", **settings)
    (model / "train_config.json").write_text(json.dumps(asdict(tc)))
    return TrainedModels(model, "ds", tmp_path / "report", max_steps=3)


def test_the_table_names_every_list_of_systems():
    assert len(SYSTEM_NAMES) == len(SYSTEMS) == len(set(SYSTEM_NAMES))
    assert EvalConfig(model="m", dataset="d", out="o").systems == SYSTEM_NAMES
    assert RETRIEVAL_SYSTEMS == ("model_novel", "no_retrieval", "no_dna", "no_splash")
    assert LOOKUPS == ("reference_lookup", "minimap2_sensitive", "blastn")
    assert DIVERGENCE_SYSTEMS == ("model", *LOOKUPS)
    assert _ordered_systems(list(reversed(SYSTEM_NAMES))) == list(SYSTEM_NAMES)  # the report's order
    for s in SYSTEMS:
        assert s.note or s.aligner, s.name  # every system has a note (a lookup's is its aligner's)
        if s.variant is not None and s.variant.needs_index:
            assert s.retrieval_only, s.name
    with pytest.raises(ConfigError, match="unknown system 'no_such'"):
        EvalConfig(model="m", dataset="d", out="o", systems=("no_such",))


def test_variants_train_with_the_settings_they_always_had(tmp_path):
    models = _models(tmp_path, index="idx")
    variants = {s.variant.name: s.variant for s in SYSTEMS if s.variant is not None}
    assert set(variants) == set(VARIANT_SETTINGS)
    assert models.config_for("split_random", variants["model"]) is None  # the given model
    for name, (dna, splash, index, prompt) in VARIANT_SETTINGS.items():
        tc = models.config_for("split_gene", variants[name], "folds.parquet")
        assert (tc.use_dna, tc.use_splash, tc.index == "idx", tc.prompt_mode) == (dna, splash, index, prompt)
        assert (tc.split, tc.dataset, tc.max_steps) == ("split_gene", "folds.parquet", 3)
        assert tc.out == str(tmp_path / "report" / "models" / "split_gene" / name)


def test_a_variant_of_a_retrieval_model_needs_one(tmp_path):
    models = _models(tmp_path, use_dna=False)
    # a given model without DNA: its "model" variant is trained with DNA
    assert models.config_for("split_random", BY_NAME["model"].variant).use_dna is True
    with pytest.raises(ValueError, match="no_dna variant is of a retrieval model"):
        models.config_for("split_random", BY_NAME["no_dna"].variant)
    with pytest.raises(ValueError, match="not TrainConfig fields"):
        ModelVariant("typo", {"use_dnaa": False})


class _Annotator:
    """Annotates a row as 'variant:sequence'."""

    def __init__(self, variant: str):
        self.variant = variant
        self.processor = SimpleNamespace(retrieval=False, use_dna=True, prompt_parts=lambda r: "")

    def with_config(self, **changes):
        return self

    def annotate_rows(self, rows):
        return [{"id": i, "annotation": f"{self.variant}:{r['Sequence']}", "source": self.variant}
                for i, r in enumerate(rows)]


class _Models:
    train_config: dict = {}
    retrieval = False

    def __init__(self):
        self.asked = []

    def get(self, split, variant, dataset=None):
        self.asked.append((split, variant.name, dataset))
        return _Annotator(variant.name)


def test_each_system_runs_its_own_variant(tmp_path):
    models = _Models()
    ctx = EvalContext(EvalConfig(model="m", dataset="d", out="o"), models, None, "folds.parquet", tmp_path)
    train = [{"Dataset": "dbSNP", "Sequence": "AAAA"}] * 3 + [{"Dataset": "COSMIC", "Sequence": "CCCC"}]
    unit = Unit(ctx, "split_gene", "split_gene_fold1", train, np.random.default_rng(0))
    rows = [{"Sequence": "ACGTACGTAC"}, {"Sequence": "GGGGTTTT"}]
    for name in ("model", "splash_prompt", "seed_faithful"):
        preds = BY_NAME[name].run(unit, rows)
        assert [p["annotation"] for p in preds] == [f"{name}:ACGTACGTAC", f"{name}:GGGGTTTT"]
    shuffled = BY_NAME["shuffled_dna"].run(unit, rows)
    seq = shuffled[0]["annotation"].removeprefix("model:")
    assert sorted(seq) == sorted("ACGTACGTAC") and seq != "ACGTACGTAC"  # the model on permuted bases
    assert set(models.asked) == {("split_gene_fold1", v, "folds.parquet")
                                         for v in ("model", "splash_prompt", "seed_faithful")}
    unit.cache["sentence"] = "the majority sentence"
    assert BY_NAME["majority"].run(unit, rows) == [
        {"annotation": "the majority sentence", "source": "dbSNP", "source_from_text": "dbSNP"}] * 2


def test_notes_come_from_the_table():
    lookups = {"blastn": SimpleNamespace(aligner=SimpleNamespace(description="BLASTN, word 11"))}
    assert system_note("model", lookups, retrieval=False) == BY_NAME["model"].note
    assert system_note("model", lookups, retrieval=True) == BY_NAME["model"].retrieval_note
    assert system_note("no_dna", lookups, retrieval=True) == BY_NAME["no_dna"].note
    assert system_note("blastn", lookups, retrieval=False).startswith("BLASTN, word 11; source: the nearest")
