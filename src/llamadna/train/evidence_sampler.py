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
   the candidates, so the model learns what to write when the reference lacks the gene; the
   target keeps the row's own fields, which the DNA and the neighbouring genes among the
   candidates (their chromosome, their kind) partly tell (a renamed gene's fields would be a
   random draw that nothing in the prompt tells);
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

import mappy
import numpy as np
import polars as pl

from llamadna.constants import NOT_SPECIFIED
from llamadna.data.mutate import mutate
from llamadna.data.template import annotation_sentence
from llamadna.retrieve.retriever import attach_evidence

# The fields of a gene that are renamed together (candidate key, dataset row key).
GENE_FIELDS = (("gene", "gene_name"), ("chrom", "chrom"), ("description", "gene_description"),
               ("transcript_type", "transcript_type"), ("phenotype", "phenotype"))


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


class EvidenceSampler:
    """Reference evidence for training and validation rows (module doc)."""

    def __init__(self, retriever, max_rate: float, swap: float, drop: float, shuffle: float,
                 pseudo: float, known: set[str] | None = None, truncate: float = 0.0):
        self.retriever = retriever
        self.max_rate, self.swap, self.drop, self.shuffle = max_rate, swap, drop, shuffle
        self.pseudo, self.truncate = pseudo, truncate
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
        """Diverged rows with their evidence, and the target sentences (module doc)."""
        seqs = []
        for r in rows:
            s = mutate(r["Sequence"], float(rng.uniform(0, self.max_rate)), rng)
            seqs.append(mappy.revcomp(s) if rng.random() < 0.5 else s)
        found = self.retriever(seqs)
        out, targets = [], []
        for r, seq, cands in zip(rows, seqs, found):
            cands = [dict(c) for c in cands]
            fields = {k: r[k] for _, k in GENE_FIELDS}
            if rng.random() < self.drop:  # the row's own fields: inferable from the DNA and neighbours
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
            out.append({**r, "Sequence": seq, "evidence": cands})
            targets.append(annotation_sentence(fields["chrom"], fields["gene_name"],
                                               fields["gene_description"], fields["transcript_type"],
                                               fields["phenotype"], r["Dataset"]))
        return out, targets

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
