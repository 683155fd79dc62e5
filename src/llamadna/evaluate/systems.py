"""The systems `llamadna evaluate` compares: one table (`SYSTEMS`) that drives the runners, the
training variant each one needs, the notes of the report and its order.

Every system annotates the test rows of a unit (one train/test partition: a split, or one fold
of split_gene) through its runner, `runner(unit, system, rows) -> one prediction dict per row`
(`annotation`, `source`, ...). A system that needs a model names its `variant`
(`train.variants.ModelVariant`: the given model's settings with a few fields changed), which the
`ModelSource` trains or loads; the others (majority, the lookups, splash_only) need none.

Adding an ablation is one entry: `_ablation("no_x", "ablation: ...", use_x=False)`.
The table's order is the report's order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from llamadna.errors import ConfigError
from llamadna.progress import Progress, no_progress
from llamadna.train.variants import ModelVariant


class ModelSource(Protocol):
    """Supplies the models `evaluate` runs: `get(split, variant, dataset)` (`variant`: a
    `ModelVariant` of the table; `dataset`: the table holding that split column);
    `train_config` is the given model's training settings, `retrieval` whether it reads
    reference evidence."""

    train_config: dict
    retrieval: bool

    def get(self, split: str, variant: ModelVariant, dataset: str | None = None): ...


@dataclass
class EvalContext:
    """What every step of one evaluation shares."""

    # the run's `evaluate.config.EvalConfig`; not imported here, since config checks its systems
    # against this module's table (an import either way would be a cycle)
    cfg: Any
    models: ModelSource
    df: pl.DataFrame  # the table holding every unit's split column, with a `row` number
    dataset: str  # its path (the dataset, or a copy with the fold columns)
    out: Path
    lookups: dict = field(default_factory=dict)  # name -> lookup object (evaluate.baselines)
    anchors: dict = field(default_factory=dict)  # build -> SPLASH anchors table
    reference: object = None  # retrieval models: the full ReferenceIndex
    progress: Progress = no_progress

    def rows(self, column: str, subset: str) -> list[dict]:
        """The rows of one subset (train/val/test) of a split column, in table order."""
        return self.df.filter(pl.col(column) == subset).to_dicts()


@dataclass
class Unit:
    """One train/test partition (a split, or one fold of split_gene) and what its systems share."""

    ctx: EvalContext
    split: str  # the reported split (split_gene for every fold)
    column: str  # the split column of this unit (split_gene, split_gene_fold2, ...)
    train_rows: list[dict]
    rng: np.random.Generator  # shuffled DNA
    test_rows: list[dict] = field(default_factory=list)
    cache: dict = field(default_factory=dict)  # per-unit objects built once (splash_only, ...)

    @property
    def cfg(self) -> Any:
        """The run's EvalConfig."""
        return self.ctx.cfg

    def annotator(self, variant: ModelVariant, setting: str = "full"):
        """The (unit, variant) model's Annotator with the evaluation's inference settings; a
        retrieval model's searches the unit's index of `setting` (`retriever`)."""
        key = f"annotator:{variant.name}:{setting}"
        if key not in self.cache:
            cfg = self.cfg
            annotator = self.ctx.models.get(self.column, variant, self.ctx.dataset).with_config(
                batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, decoding=cfg.decoding,
                withhold_below=cfg.withhold_below)
            if annotator.processor.retrieval:
                annotator.retriever = self.retriever(setting)  # this copy's only
            self.cache[key] = annotator
        return self.cache[key]

    def annotate(self, variant: ModelVariant, rows: list[dict], setting: str = "full") -> list[dict]:
        """The (unit, variant) model's predictions, generated once per distinct model input; a
        retrieval model reads the evidence of `setting` ("full" or "novel", `evidence`)."""
        from llamadna.evaluate.predict import annotate_distinct

        annotator = self.annotator(variant, setting)
        if annotator.processor.retrieval:
            rows = self.evidence(annotator, rows, setting)
        seen = self.cache.setdefault(f"generated:{variant.name}:{setting}", {})
        return annotate_distinct(annotator, rows, seen)

    def evidence(self, annotator, rows: list[dict], setting: str) -> list[dict]:
        """Rows with the candidates the annotator's retriever (the unit's index of `setting`)
        finds for their sequence, searched once per distinct sequence: "full" = the whole
        reference (variants: this unit's training rows), "novel" = the same without the unit's
        test genes."""
        store = self.cache.setdefault(f"evidence:{setting}", {})
        new = [s for s in dict.fromkeys(r["Sequence"] for r in rows) if s not in store]
        if new:
            found = annotator.with_evidence([{"Sequence": s} for s in new])
            store.update((s, f["evidence"]) for s, f in zip(new, found))
        return [{**r, "evidence": store[r["Sequence"]]} for r in rows]

    def retriever(self, setting: str):
        """The unit's retriever of `setting`, shared by its retrieval models: the full reference
        index with this unit's training rows as variants ("novel": its test genes masked out)."""
        from llamadna.retrieve.retriever import open_retriever
        from llamadna.train.evidence_sampler import split_genes

        key = f"retriever:{setting}"
        if key not in self.cache:
            if self.ctx.reference is None:
                raise ConfigError("a retrieval model needs a reference index (--index)")
            held = (sorted(split_genes(self.test_rows) - split_genes(self.train_rows))
                    if setting == "novel" else [])
            index = self.ctx.reference.derive(exclude_genes=held, variants=self.train_rows)
            self.cache[key] = open_retriever(index, k=self.ctx.models.train_config["evidence_k"])
        return self.cache[key]

    @property
    def majority(self) -> str:
        from llamadna.evaluate.baselines import majority_baseline

        if "majority" not in self.cache:
            self.cache["majority"] = majority_baseline([r["Dataset"] for r in self.train_rows], 1)[0]
        return self.cache["majority"]

    @property
    def majority_sentence(self) -> str:
        from llamadna.evaluate.baselines import majority_sentence

        if "sentence" not in self.cache:
            self.cache["sentence"] = majority_sentence(self.train_rows, source=self.majority)
        return self.cache["sentence"]

    def lookup(self, name: str, rows: list[dict]) -> list[dict]:
        """A reference lookup whose source comes from this unit's training rows only (the
        training majority where nothing maps); the reference index is shared by every unit."""
        key = f"lookup:{name}"
        if key not in self.cache:
            self.cache[key] = self.ctx.lookups[name].with_variants(
                self.train_rows, self.majority, f"training split of {self.column}")
        res = self.cache[key].lookup_many([r["Sequence"] for r in rows], [r["build"] for r in rows])
        return [{"annotation": h.get("annotation") or "", "source": h.get("source"),
                 "source_from_text": h.get("source")} for h in res]

    def variant_tables(self) -> dict[str, str]:
        """lookup name -> the variants table its source came from (those built so far)."""
        return {k.removeprefix("lookup:"): v.description for k, v in self.cache.items()
                if k.startswith("lookup:")}


# ------------------------------------------------------------------------------------ runners

Runner = Callable[[Unit, "System", list[dict]], list[dict]]


def _annotated(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    """The system's model variant on the rows, reading the full index (a retrieval model)."""
    return unit.annotate(system.variant, rows)


def _novel(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    """The system's model variant reading the index without the unit's test genes."""
    return unit.annotate(system.variant, rows, setting="novel")


def _shuffled(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.baselines import shuffle_sequence

    return unit.annotate(system.variant, [{**r, "Sequence": shuffle_sequence(r["Sequence"], unit.rng)}
                                          for r in rows])


def _majority(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    top = unit.majority
    return [{"annotation": unit.majority_sentence, "source": top, "source_from_text": top}] * len(rows)


def _lookup(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    return unit.lookup(system.name, rows)


def _splash_only(unit: Unit, system: System, rows: list[dict]) -> list[dict]:
    from llamadna.evaluate.splash_baseline import SplashOnlyBaseline

    if "splash_only" not in unit.cache:
        unit.cache["splash_only"] = SplashOnlyBaseline().fit(unit.train_rows)
    labels = unit.cache["splash_only"].predict(rows)
    return [{"annotation": unit.majority_sentence, "source": lab, "source_from_text": unit.majority}
            for lab in labels]


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class System:
    """One evaluated system.

    name : its name in metrics.json, the prediction files and the report.
    runner : runner(unit, system, test rows) -> one prediction dict per row.
    note : what it saw, for the report (None: the lookup's own description, at run time).
    variant : the model it needs (None: no model).
    retrieval_only : run for a retrieval model only (left out of the default set otherwise).
    aligner : a reference lookup's aligner (`evaluate.baselines`); None for every other system.
    divergence : also re-run on the mutated test sequences of the divergence curves.
    retrieval_note : the note of a retrieval model's run, where it differs.
    """

    name: str
    runner: Runner
    note: str | None
    variant: ModelVariant | None = None
    retrieval_only: bool = False
    aligner: str | None = None
    divergence: bool = False
    retrieval_note: str | None = None

    def run(self, unit: Unit, rows: list[dict]) -> list[dict]:
        return self.runner(unit, self, rows)


MODEL = ModelVariant("model")  # the given model's settings (the given model where it fits)


def _lookup_system(name: str, aligner: str) -> System:
    return System(name, _lookup, None, aligner=aligner, divergence=True)


def _ablation(name: str, note: str, **edits) -> System:
    """A retrieval model trained with the same settings but `edits` (TrainConfig fields)."""
    return System(name, _annotated, note, ModelVariant(name, edits, needs_index=True), retrieval_only=True)


SYSTEMS: tuple[System, ...] = (
    System("model", _annotated, "DNA slots + SPLASH scores in the prompt", MODEL, divergence=True,
           retrieval_note="DNA slots + SPLASH scores + the reference evidence a search of the full "
                          "index finds (variants: the unit's training rows)"),
    System("majority", _majority, "the training rows' most frequent source and its most frequent sentence"),
    System("splash_prompt", _annotated,
           "the same training with the SPLASH scores only in the prompt (no sequence)",
           ModelVariant("splash_prompt", {"use_dna": False, "index": None})),
    System("shuffled_dna", _shuffled, "the model on the test sequences with their bases permuted", MODEL),
    # minimap2's map-ont preset (what it was), minimap2 with the sensitive settings of a measured
    # sweep, NCBI BLAST+ blastn
    _lookup_system("reference_lookup", "map-ont"),
    _lookup_system("minimap2_sensitive", "minimap2"),
    _lookup_system("blastn", "blastn"),
    System("splash_only", _splash_only,
           "gradient-boosted trees on the SPLASH columns for the source; majority sentence"),
    System("seed_faithful", _annotated,
           "gene name, description, phenotype and clinical significance in the prompt (the poster's "
           "setting); clinical significance is filled for every ClinVar row and no other, so the "
           "prompt carries the source label",
           ModelVariant("seed_faithful", {"index": None, "prompt_mode": "seed-faithful"})),
    System("model_novel", _novel,
           "the retrieval model with the unit's test genes masked out of the reference index "
           "(novel-gene setting)", MODEL, retrieval_only=True),
    _ablation("no_retrieval", "ablation: the same training without reference evidence (the seed's "
              "architecture)", index=None),
    _ablation("no_dna", "ablation: reference evidence and SPLASH scores, no DNA slots", use_dna=False),
    _ablation("no_splash", "ablation: DNA slots and reference evidence, no SPLASH scores", use_splash=False),
)
BY_NAME = {s.name: s for s in SYSTEMS}
SYSTEM_NAMES = tuple(BY_NAME)
RETRIEVAL_SYSTEMS = tuple(s.name for s in SYSTEMS if s.retrieval_only)
LOOKUPS = tuple(s.name for s in SYSTEMS if s.aligner is not None)
DIVERGENCE_SYSTEMS = tuple(s.name for s in SYSTEMS if s.divergence)


def system_note(name: str, lookups: dict, retrieval: bool) -> str:
    """What system `name` saw, for the report (`lookups`: name -> lookup object of the run)."""
    s = BY_NAME[name]
    if s.aligner is not None:
        return (f"{lookups[name].aligner.description}; source: the nearest variant of the unit's "
                "training rows (training split of that split or fold), the training majority where "
                "nothing maps")
    return s.retrieval_note if retrieval and s.retrieval_note else s.note
