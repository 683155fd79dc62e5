"""Training examples whose prompt holds reference evidence, made so that the model learns to read
the evidence rather than memorize the ~50 gene names of the training split.

`EvidenceSampler(index, cfg)` wraps a reference index from which every validation and test gene
of the split is masked out (`ReferenceIndex.derive`; its variants are the split's training rows)
and a `Retriever` on it. For a training batch (`train_batch`, seeded per step), each row is:

1. **diverged**: its sequence mutated at a rate drawn uniformly in [0, cfg.evidence_max_rate]
   (`data.mutate.mutate`: substitutions and indels), and reverse-complemented half the time, so
   the model meets what evaluation and users give it (a homologue, the other strand);
2. **retrieved**: the retriever's top-k candidates for the diverged sequence, exactly as at
   annotation time;
3. **left without its gene** with probability cfg.evidence_drop: the row's gene is removed from
   the candidates, so the model learns what to write when the reference lacks the gene (a novel
   gene): not the row's own fields, which nothing in the prompt tells, but what the evidence
   shows (`retrieve.outcome.describe_evidence`, the threshold rule's outcome: a paralog's gene,
   a repeat, a partial similarity or no match);
4. **made a copying task** otherwise, with probability cfg.evidence_swap: the row's gene is renamed in both
   the evidence and the target sentence: its name, chromosome, description, transcript type and
   phenotype each drawn from an independent other gene of the index (the name, half of those
   times, a synthetic one never seen anywhere), so no field can be guessed from another and the
   only way to write the right fields is to read them from the evidence; with probability
   cfg.evidence_pseudo the name, the description and the phenotype are then made unseen text
   of the same shape (`pseudo_text`: a real gene's name, e.g. "AP000223.42" -> "KQ731905.18", and
   half the words of a real description, "amyloid beta precursor protein" -> "amyloid qzvw
   precursor xtnbmcz"): a held-out gene's words are not in the text tokenizer's vocabulary and
   split into short pieces that the LLM never wrote, so the model must learn to copy any token
   sequence to its end, not only text it knows;
5. **shuffled**: the candidates' order permuted with probability cfg.evidence_shuffle (the scores
   stay in the text);
6. **shortened**: with probability cfg.evidence_truncate, only the first n candidates kept (n drawn
   in [1, k - 1]): a query in a gene-poor region of the reference gets fewer than k candidates
   (one gene's windows fill the embedding neighbours), which the training rows, all with k
   candidates, never showed the model.

The target of a row is its own sentence when its own gene (renamed or not) is among the
candidates it ends with, else the sentence of what the evidence shows (`describe_evidence`,
`outcome_sentence`): a row whose diverged sequence no longer finds its gene learns that too.

**Negatives** (`negatives`, a pool of `data.negatives.negative_rows` of the training part of the
reference, and `negative_rate`): each example of a training batch is replaced with probability
negative_rate by a negative, its kind drawn uniformly among the pool's kinds, then a row of that
kind; it is diverged like a genic row (not UNDIVERGED_KINDS: random, foreign, chimeras) and
retrieved. Its target is its intergenic sentence when its own interval (chromosome and flanking
genes) is among the candidates (with that candidate's distances, which the prompt shows); for a
negative of no match (random, shuffled, foreign) the no-match sentence where the evidence shows a
partial similarity or nothing (`NONE_STANDS`: a chance alignment is no similarity); else what
the evidence shows. A negative has no source class (`Dataset` None). The
draws of negatives come from a child of the batch's generator (`Generator.spawn`), so a sampler
without negatives draws exactly what it drew before them. With negatives, each example's SPLASH
scores are left out with probability `splash_hide` (from the same child): a negative has none,
nor does a FASTA given to `annotate`, so "SPLASH scores not available" must not mark negatives.

Validation rows (`plain`) get the candidates of their own sequence, unchanged: their genes are
masked out of the index, so validation measures the novel-gene case.

The genes that lend their text to training (the renamed fields, the text tokenizer's corpus and
the tiny LLM's pretraining sentences) are those of the training index (`TrainConfig.evidence_names`
"index", the default: the held-out genes are masked out of it, the reference's other genes are
in, e.g. the chrM genes that no dataset row holds) or only the training rows' genes ("training",
`known`): then a gene in no training row can be retrieved but its name is never a training target.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

import mappy
import numpy as np
import polars as pl

from llamadna.constants import NONE_SENTENCE, NOT_SPECIFIED, found_via
from llamadna.data.mutate import mutate
from llamadna.data.template import (
    annotation_sentence,
    intergenic_sentence,
    repeat_sentence,
    similar_sentence,
)
from llamadna.retrieve.outcome import NONE_STANDS, describe_evidence, outcome_sentence
from llamadna.retrieve.retriever import attach_evidence
from llamadna.splash.scores import without_scores

# The fields of a gene that are renamed together (candidate key, dataset row key).
GENE_FIELDS = (("gene", "gene_name"), ("chrom", "chrom"), ("description", "gene_description"),
               ("transcript_type", "transcript_type"), ("phenotype", "phenotype"))
# negatives left undiverged: generated sequences, which nothing in the reference resembles anyway,
# and partial chimeras: their kept piece aligns at identity ~1 over part of the query, the evidence
# "similar" rests on (diverged, they looked like a diverged genic row, whose target is its gene)
UNDIVERGED_KINDS = ("random", "foreign", "similar")
# example sentences (and evidence) of each outcome besides gene in the text tokenizer's corpus and
# the tiny LLM's pretraining text (`EvidenceSampler.outcome_examples`)
OUTCOME_EXAMPLES = 48


def synthetic_name(rng: np.random.Generator) -> str:
    """A gene-symbol-like name no reference holds: 3-6 capitals and 0-2 digits, "Z" first."""
    letters = "".join(rng.choice(list(string.ascii_uppercase), int(rng.integers(2, 6))))
    digits = "".join(rng.choice(list(string.digits), int(rng.integers(0, 3))))
    return f"Z{letters}{digits}"


def pseudo_word(word: str, rng: np.random.Generator) -> str:
    """A word of the same shape: each letter a random one of its case, each digit a random digit,
    anything else kept ("AP000223.42" -> "KQ731905.18", "5S" -> "8T")."""
    out = []
    for ch in word:
        if ch.isdigit():
            out.append(str(int(rng.integers(10))))
        elif ch.isalpha() and ch.isascii():
            pool = string.ascii_uppercase if ch.isupper() else string.ascii_lowercase
            out.append(pool[int(rng.integers(26))])
        else:
            out.append(ch)
    return "".join(out)


def pseudo_text(text: str, rng: np.random.Generator, rate: float = 0.5) -> str:
    """`text` with each word made a `pseudo_word` with probability `rate` (at least one word when
    rate > 0); "not specified" (no description or phenotype) is kept."""
    if text == NOT_SPECIFIED:
        return text
    words = text.split(" ")
    hit = rng.random(len(words)) < rate
    if rate > 0 and not hit.any():
        hit[int(rng.integers(len(words)))] = True
    return " ".join(pseudo_word(w, rng) if h else w for w, h in zip(words, hit))


def split_genes(rows: Sequence[dict]) -> set[str]:
    """Gene names and ids of dataset rows (what to mask out of a training index)."""
    return {v for r in rows for v in (r.get("gene_name"), r.get("gene_id")) if v}


def training_index(index, dataset, split: str, train_rows: Sequence[dict], keep: str | None = None):
    """The reference index (a directory or a loaded `ReferenceIndex`) as a model of `split` may see
    it: the genes that only the split's held-out rows hold masked out (validation and test; with
    keep="val" the test ones only, for calibration on validation), its variants the training rows."""
    from llamadna.io.dataset import dataset_parquet
    from llamadna.retrieve.index import ReferenceIndex

    df = pl.read_parquet(dataset_parquet(dataset), columns=["gene_name", "gene_id", split])
    held_sets = ["test"] if keep == "val" else ["val", "test"]
    seen = ["train", "val"] if keep == "val" else ["train"]
    held = split_genes(df.filter(pl.col(split).is_in(held_sets)).to_dicts())
    known = split_genes(df.filter(pl.col(split).is_in(seen)).to_dicts())
    full = index if isinstance(index, ReferenceIndex) else ReferenceIndex.load(index)
    return full.derive(exclude_genes=sorted(held - known), variants=train_rows)


def bundle_dir(dataset, index=None) -> Path:
    """The data bundle negatives are drawn from: the one the dataset was built from (its
    summary.json's inputs), else the one the index was built from (`index.meta["data"]`), else
    `data.paths.default_data_dir()`."""
    from llamadna.data.paths import default_data_dir
    from llamadna.errors import InputError
    from llamadna.io.dataset import DATASET_FILE, read_summary

    d = Path(dataset)
    d = d if d.is_dir() else d.parent
    try:
        summary = read_summary(d) if (d / DATASET_FILE).exists() else {}
    except InputError:  # a summary of another build: its inputs say nothing of this table
        summary = {}
    found = [Path(i["fasta"]).parent for i in summary.get("inputs", []) if i.get("fasta")]
    if index is not None and index.meta.get("data"):
        found.append(Path(index.meta["data"]))
    return next((p for p in found if p.is_dir()), None) or default_data_dir()


def row_window(rows: Sequence[dict]) -> int:
    """The length of the dataset's windows (the median length of `rows`' sequences): the length
    negatives are cut to, so that they look like the rows they stand in for."""
    return int(np.median([len(r["Sequence"]) for r in rows]))


class EvidenceSampler:
    """Reference evidence for training and validation rows (module doc)."""

    def __init__(self, retriever, max_rate: float, swap: float, drop: float, shuffle: float,
                 pseudo: float, known: set[str] | None = None, truncate: float = 0.0,
                 negatives: Sequence[dict] | None = None, negative_rate: float = 0.0,
                 splash_hide: float = 0.0):
        self.retriever = retriever
        self.max_rate, self.swap, self.drop, self.shuffle = max_rate, swap, drop, shuffle
        self.pseudo, self.truncate = pseudo, truncate
        # the negatives by kind (in the pool's order), drawn from with probability negative_rate
        self.negatives: dict[str, list[dict]] = {}
        for r in negatives or ():
            self.negatives.setdefault(r["kind"], []).append(r)
        self.negative_rate = negative_rate if self.negatives else 0.0
        self.splash_hide = splash_hide  # with negatives: examples whose SPLASH scores are left out
        g = retriever.index.genes.filter(pl.col("gene").is_not_null())
        if known is not None:  # only the training rows' genes lend their text (swaps, corpus)
            names = sorted(known)
            g = g.filter(pl.col("gene_name").is_in(names) | pl.col("gene_id").is_in(names))
        # one entry per gene name: its fields and chromosome (swaps; the text tokenizer's corpus)
        self.genes = g.select("gene", "chrom", "description", "transcript_type", "phenotype").unique(
            subset="gene", keep="first", maintain_order=True).to_dicts()

    def plain(self, rows: Sequence[dict]) -> list[dict]:
        """Rows with the candidates of their own (unchanged) sequence."""
        return attach_evidence(rows, self.retriever([r["Sequence"] for r in rows]))

    def train_batch(self, rows: Sequence[dict], rng: np.random.Generator) -> tuple[list[dict], list[str]]:
        """Diverged rows (some replaced by negatives) with their evidence, and the target
        sentences (module doc)."""
        neg, neg_rng = self._negative_draws(len(rows), rng)
        rows = [n if n is not None else r for r, n in zip(rows, neg)]
        if neg_rng is not None and self.splash_hide:  # "not available" must not mark the negatives
            hide = neg_rng.random(len(rows)) < self.splash_hide
            rows = [without_scores([r])[0] if h else r for r, h in zip(rows, hide)]
        seqs = []
        for r, n in zip(rows, neg):
            if n is not None and r["kind"] in UNDIVERGED_KINDS:
                seqs.append(r["Sequence"])
                continue
            g = neg_rng if n is not None else rng
            s = mutate(r["Sequence"], float(g.uniform(0, self.max_rate)), g)
            seqs.append(mappy.revcomp(s) if g.random() < 0.5 else s)
        found = self.retriever(seqs)
        out, targets = [], []
        for r, n, seq, cands in zip(rows, neg, seqs, found):
            cands = [dict(c) for c in cands]
            if n is None:
                cands, target = self._genic(r, cands, rng)
            else:
                target = self._negative_target(r, cands)
            out.append({**r, "Sequence": seq, "evidence": cands})
            targets.append(target)
        return out, targets

    def _negative_draws(self, n: int, rng: np.random.Generator
                        ) -> tuple[list[dict | None], np.random.Generator | None]:
        """Per example, a negative of the pool that replaces it (probability negative_rate; the
        kind uniform among the pool's), else None; and the child of `rng` they were drawn from,
        which diverges them (module doc)."""
        if not self.negative_rate:
            return [None] * n, None
        g = rng.spawn(1)[0]
        kinds = list(self.negatives)
        out: list[dict | None] = []
        for hit in g.random(n) < self.negative_rate:
            pool = self.negatives[kinds[int(g.integers(len(kinds)))]] if hit else None
            out.append(pool[int(g.integers(len(pool)))] if pool else None)
        return out, g

    def _genic(self, r: dict, cands: list[dict], rng: np.random.Generator) -> tuple[list[dict], str]:
        """A genic row's candidates after drop / swap / shuffle / truncation, and its target: its
        own (possibly renamed) sentence when its gene is still among them, else what they show."""
        fields = {k: r[k] for _, k in GENE_FIELDS}
        if rng.random() < self.drop:  # the gene out of the reference: a novel gene
            cands = [c for c in cands if c["gene"] != fields["gene_name"]]
        elif rng.random() < self.swap:
            new = self._other_gene(r["gene_name"], rng)
            for c in cands:
                if c["gene"] == r["gene_name"]:
                    c.update({ck: new[ck] for ck, _ in GENE_FIELDS})
            fields = {rk: new[ck] for ck, rk in GENE_FIELDS}
        if len(cands) > 1 and rng.random() < self.shuffle:
            cands = [cands[i] for i in rng.permutation(len(cands))]
        if self.truncate and len(cands) > 1 and rng.random() < self.truncate:
            cands = cands[: int(rng.integers(1, len(cands)))]
        if not any(c["gene"] == fields["gene_name"] for c in cands):
            return cands, evidence_target(cands)
        return cands, annotation_sentence(fields["chrom"], fields["gene_name"], fields["gene_description"],
                                          fields["transcript_type"], fields["phenotype"], r["Dataset"])

    @staticmethod
    def _negative_target(r: dict, cands: Sequence[dict]) -> str:
        """An intergenic negative whose own interval is among the candidates: its sentence, with
        the distances of that candidate (the evidence the model copies them from: the window's
        own differ by where the index's tile lies); a negative whose truth is no match (random,
        shuffled, foreign: its "outcome") where the evidence shows a partial similarity or
        nothing: the no-match sentence (a chance alignment of a biased composition is not a
        similarity; grounded decoding keeps "none" on the same evidence); any other negative:
        what the evidence shows."""
        own = next((c for c in cands if r["kind"] == "intergenic" and same_interval(c, r)), None)
        if own is not None:
            return outcome_sentence("intergenic", own, cands, None)
        if r.get("outcome") == "none" and describe_evidence(cands)[0] in NONE_STANDS:
            return NONE_SENTENCE
        return evidence_target(cands)

    def outcome_examples(self) -> tuple[list[str], list[list[dict]]]:
        """Sentences of the outcomes besides gene and candidate lists that show them, for the text
        tokenizer's corpus and the tiny LLM's pretraining (`train.train`), so that their words
        are known: OUTCOME_EXAMPLES of each (intergenic, repeat, similar), made from the pool's
        intergenic negatives and the sampler's genes (deterministic), and the no-match one."""
        genes = self.genes or [{"gene": "GENE1", "chrom": "chr1"}]
        pool = self.negatives.get("intergenic", [])
        sentences, evidence = [NONE_SENTENCE], [[]]
        for i in range(OUTCOME_EXAMPLES):
            g, other = genes[i % len(genes)], genes[(i * 7 + 1) % len(genes)]
            fraction, identity, loci = (i % 10 + 1) / 10, 0.6 + (i % 8) / 20, 3 + i * 5 % 60
            inter = pool[i % len(pool)] if pool else {  # distances from 100 bp to 1 Mb
                "chrom": g["chrom"], "left_gene": g["gene"], "right_gene": other["gene"],
                "left_distance": int(10 ** (2 + i * 7 % 40 / 10)),
                "right_distance": int(10 ** (2 + i * 13 % 40 / 10))}
            sentences += [
                intergenic_sentence(inter["chrom"], inter["left_gene"], inter["left_distance"],
                                    inter["right_gene"], inter["right_distance"]),
                repeat_sentence(loci, [genes[(i + j) % len(genes)]["gene"] for j in range(3)]),
                similar_sentence(g["chrom"], g["gene"] if i % 3 else None, fraction, identity),
            ]
            cosine = (i % 9 + 1) / 10  # found by the embedding only
            embedded = {**example_candidate(genes[(i + 2) % len(genes)], "gene", 0.0, 0.0, loci),
                        "identity": None, "aligned_fraction": None, "cosine": cosine,
                        "via": found_via(None, cosine)}
            evidence += [[example_candidate(inter, "intergenic", 1.0, 1.0, 1), embedded],
                         [example_candidate(g, "gene", fraction, identity, loci),
                          example_candidate(other, "gene", fraction / 2, identity, loci), embedded]]
        return sentences, evidence

    def _other_gene(self, gene: str, rng: np.random.Generator) -> dict:
        """New fields for a renamed gene, each drawn from an independent other gene of the index
        (so that no field can be guessed from another: the name does not tell the transcript
        type), the name half the time (or when there is no other gene) a synthetic one; with
        probability `self.pseudo` the name, description and phenotype made unseen text of a real
        one's shape instead (`pseudo_text`)."""
        others = [g for g in self.genes if g["gene"] != gene]
        if not others:
            return {"gene": synthetic_name(rng), "chrom": "chr1", "description": NOT_SPECIFIED,
                    "transcript_type": "protein coding", "phenotype": NOT_SPECIFIED}
        new = {ck: others[int(rng.integers(len(others)))][ck] for ck, _ in GENE_FIELDS}
        if rng.random() < self.pseudo:
            new["gene"] = pseudo_word(new["gene"], rng)
            new["description"] = pseudo_text(new["description"], rng)
            new["phenotype"] = pseudo_text(new["phenotype"], rng)
        elif rng.random() < 0.5:
            new["gene"] = synthetic_name(rng)
        return new


def evidence_target(cands: Sequence[dict]) -> str:
    """The sentence of what candidates show when the query's own gene or locus is not among them
    (`describe_evidence`, the rule's outcome: a paralog's gene, an intergenic stretch, a repeat,
    a partial similarity or no match); a gene sentence ends with the candidate's nearest known
    variant's source, as grounded decoding writes it (`annotate.decoding.described`)."""
    outcome, cand = describe_evidence(cands)
    return outcome_sentence(outcome, cand, cands, None)


def same_interval(cand: dict, row: dict) -> bool:
    """An intergenic candidate of the row's own interval: same chromosome, same flanking genes."""
    return (cand.get("kind") == "intergenic" and cand.get("chrom") == row["chrom"]
            and cand.get("left_gene") == row["left_gene"] and cand.get("right_gene") == row["right_gene"])


def example_candidate(fields: dict, kind: str, fraction: float, identity: float, loci: int) -> dict:
    """A candidate dict with every field the evidence text reads, for the example texts."""
    from llamadna.retrieve.retriever import CANDIDATE_FIELDS

    cand = dict.fromkeys((*CANDIDATE_FIELDS, "left_gene", "left_distance", "right_gene", "right_distance"))
    cand.update({k: fields.get(k) for k in ("gene", "chrom", "description", "transcript_type", "phenotype",
                                            "left_gene", "left_distance", "right_gene", "right_distance")})
    cand.update(kind=kind, aligned_fraction=fraction, identity=identity, loci=loci,
                via=found_via(identity, cand["cosine"]), score=1.0 + identity * fraction, strand="+")
    if kind == "gene":
        cand.update({k: cand[k] or NOT_SPECIFIED for k in ("description", "phenotype")},
                    transcript_type=cand["transcript_type"] or "protein coding")
    return cand
