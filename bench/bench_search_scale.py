"""`llamadna search` against BLASTN at scale, on a generated reference (issue 13; not run by
`make test`).

Generates a genome of `--chroms` x `--chrom-mb` Mb (default 4 x 25 = 100 Mb) in the real formats
(`data.synthetic.make_bundle`): `--genes` random genes of 2-20 kb, the first `--families` x 4 of
them holding copies of `--families` founder sequences diverged by 2 / 5 / 10 / 15 % from their
founder (`plant_families`), so a query from one member has paralogs at known divergence. Builds
the reference index over it (`llamadna index` defaults but `--stride`; minimap2 k raised with the
reference size, `scale_k`), then draws `--queries` windows of 512 bases centred inside genes (half
from family members), mutates them at each `--rates` level (`data.mutate.mutate_nested`, the
evaluation's nested draw) and, in one run on the same queries, times:
- the hybrid retriever (`llamadna search`'s engine: embedding the queries, minimap2, FAISS,
  ranking; index loaded beforehand), recall@1 / recall@4 of the right gene, once per
  `--embed-when` policy (every query embedded, or only those that align poorly); the index is
  `--faiss` flat or ivfpq, whitened unless `--no-whiten`;
- `blastn -task blastn` (`retrieve.align.BlastnAligner`, the evaluation's settings, all CPUs)
  against a BLAST database of the SAME records the minimap2 index holds (the genes and their
  flanks, `segment_sequences`), gene = the one at the query centre's aligned position by the
  builder's rule (as the evaluation's lookup names it); database built beforehand.
The right gene is the one the dataset builder gives at the query's centre (`assign_genes`).

    .venv/bin/python bench/bench_search_scale.py --encoder demo_out/encoder --out scale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from llamadna.data.genes import assign_genes
from llamadna.data.mutate import mutate_nested, row_seed
from llamadna.data.synthetic import FAMILY_DIVERGENCE, make_bundle
from llamadna.retrieve.align import BlastnAligner
from llamadna.retrieve.config import EMBED_WHEN, FAISS_KINDS, IndexConfig
from llamadna.retrieve.index import ReferenceIndex, segment_sequences, write_records
from llamadna.retrieve.retriever import open_retriever

WINDOW = 512


def draw_queries(bundle, n: int, seed: int) -> list[dict]:
    """`n` windows centred inside genes (half in planted family members), with their gene centre
    position (1-based) and whether the gene is a family member."""
    rng = np.random.default_rng(seed)
    fam = [g for g in bundle.genes if "family" in g]
    rest = [g for g in bundle.genes if "family" not in g]
    chosen = [fam[i] for i in rng.integers(0, len(fam), n // 2)] if fam else []
    chosen += [rest[i] for i in rng.integers(0, len(rest), n - len(chosen))]
    records = {name.split(":")[0]: rec for name, rec in bundle.genome.items()}
    out = []
    for g in chosen:
        start0, seq = records[g["chrom"]]
        pos = int(rng.integers(g["start"], g["end"] + 1))  # 1-based centre
        a = max(0, min(pos - 1 - WINDOW // 2 - start0, len(seq) - WINDOW))
        out.append({"chrom": g["chrom"], "pos": a + start0 + WINDOW // 2 + 1,
                    "seq": seq[a : a + WINDOW].tobytes().decode(), "family": "family" in g})
    return out


def truth_genes(queries: list[dict], genes: pl.DataFrame) -> list[str | None]:
    table = pl.DataFrame({"row": range(len(queries)), "chrom": [q["chrom"] for q in queries],
                          "pos": [q["pos"] for q in queries]},
                         schema={"row": pl.Int64, "chrom": pl.Utf8, "pos": pl.Int64})
    hit = dict(assign_genes(table, genes).select("row", "gene_name").iter_rows())
    return [hit.get(i) for i in range(len(queries))]


def blastn_genes(blast, segments: list[tuple], genes: pl.DataFrame, seqs: list[str]) -> list[str | None]:
    hits = blast(seqs)
    rows = [(i, segments[h.record][1], segments[h.record][2] + h.offset + 1)
            for i, h in enumerate(hits) if h is not None]
    if not rows:
        return [None] * len(seqs)
    table = pl.DataFrame(rows, schema={"row": pl.Int64, "chrom": pl.Utf8, "pos": pl.Int64}, orient="row")
    named = dict(assign_genes(table, genes).select("row", "gene_name").iter_rows())
    return [named.get(i) for i in range(len(seqs))]


def score(names: list[list[str | None]], truth: list[str | None], sel: list[bool], k: int) -> float:
    pairs = [(n, t) for n, t, s in zip(names, truth, sel) if s]
    return round(sum(t in n[:k] for n, t in pairs) / max(len(pairs), 1), 4)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", required=True)
    ap.add_argument("--chroms", type=int, default=4)
    ap.add_argument("--chrom-mb", type=float, default=25.0)
    ap.add_argument("--genes", type=int, default=6000)
    ap.add_argument("--families", type=int, default=500)
    ap.add_argument("--stride", type=int, default=256)
    ap.add_argument("--faiss", default=IndexConfig.faiss, choices=FAISS_KINDS)
    ap.add_argument("--no-whiten", action="store_true", help="index the raw embeddings")
    ap.add_argument("--embed-when", default=",".join(EMBED_WHEN),
                    help="hybrid retriever policies timed, comma-separated (EMBED_WHEN)")
    ap.add_argument("--queries", type=int, default=300, help="query windows (each at every rate)")
    ap.add_argument("--rates", default="0,0.1,0.2,0.3")
    ap.add_argument("--workdir", default=None, help="kept when given (the bundle and index reused)")
    ap.add_argument("--out", default=None)
    return ap.parse_args()


def build_reference(a: argparse.Namespace, work: Path, report: dict):
    """The generated bundle and its reference index (built unless the workdir holds it);
    their sizes and timings go into `report`. Returns (bundle, index, index directory)."""
    length = int(a.chrom_mb * 1e6)
    t = time.perf_counter()
    bundle = make_bundle(work / "bundle", chrom_lengths={f"chr{i + 1}": length for i in range(a.chroms)},
                         n_genes=a.genes, n_variants=10_000, seed=0, families=a.families)
    report["generate_s"] = round(time.perf_counter() - t, 1)
    report["genome_bases"] = a.chroms * length
    index_dir = work / f"index_{a.faiss}{'_raw' if a.no_whiten else ''}"
    if not (index_dir / "index.json").exists():
        ReferenceIndex.build(IndexConfig(encoder=a.encoder, out=str(index_dir), data=str(work / "bundle"),
                                         stride=a.stride, faiss=a.faiss, whiten=not a.no_whiten))
    index = ReferenceIndex.load(index_dir)
    report["index"] = {k: index.meta[k] for k in ("windows", "genes", "segments", "segment_bases", "seconds",
                                                  "faiss")}
    report["index"]["minimap2"] = index.meta["config"]["minimap2"]
    report["index"]["minimap2_sensitive"] = index.meta["config"]["minimap2_sensitive"]
    report["index"]["minimap2_deep"] = index.meta["config"].get("minimap2_deep")
    report["index"]["bytes"] = sum(p.stat().st_size for p in index_dir.iterdir())
    return bundle, index, index_dir


def policy_report(retriever, seqs: list[str], truth: list[str | None], family: list[bool],
                  theirs: list[list[str | None]], blastn_q_per_s: float) -> dict:
    """One retriever policy at one rate: speed against BLASTN, recall over all, family and other
    queries."""
    t = time.perf_counter()
    cands = retriever(seqs)
    t_search = time.perf_counter() - t
    ours = [[c["gene"] for c in cs] for cs in cands]
    p: dict = {"search_q_per_s": round(len(seqs) / t_search, 1)}
    p["speed_ratio"] = round(p["search_q_per_s"] / blastn_q_per_s, 2)
    other = [not f for f in family]
    for label, sel in (("all", [True] * len(seqs)), ("family", family), ("other", other)):
        p[label] = {"search_r1": score(ours, truth, sel, 1), "search_r4": score(ours, truth, sel, 4),
                    "blastn_r1": score(theirs, truth, sel, 1)}
    p["recall_gap"] = round(p["all"]["search_r1"] - p["all"]["blastn_r1"], 4)
    return p


def main() -> None:
    a = parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="llamadna-scale-"))
    report: dict = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
                    "args": vars(a)}
    bundle, index, _ = build_reference(a, work, report)
    print(json.dumps(report), flush=True)

    fasta = work / "segments.fa"
    write_records(segment_sequences(index.windows), fasta)
    t = time.perf_counter()
    blast = BlastnAligner().index(fasta)
    report["makeblastdb_s"] = round(time.perf_counter() - t, 1)
    genes = index.genes.filter(pl.col("build") == "GRCh38")
    queries = draw_queries(bundle, a.queries, seed=1)
    truth = truth_genes(queries, genes)
    family = [q["family"] for q in queries]
    policies = a.embed_when.split(",")
    first = open_retriever(index, a.encoder, embed_when=policies[0])
    retrievers = {p: open_retriever(index, embedder=first.embedder, embed_when=p) for p in policies}
    rates = [float(x) for x in a.rates.split(",")]
    mutated = [mutate_nested(q["seq"], rates, row_seed(2, i)) for i, q in enumerate(queries)]
    report["rates"] = {}
    for j, rate in enumerate(rates):
        seqs = [m[j] for m in mutated]
        t = time.perf_counter()
        named = blastn_genes(blast, index.segments.rows(), genes, seqs)
        t_blast = time.perf_counter() - t
        r: dict = {"queries": len(seqs), "blastn_q_per_s": round(len(seqs) / t_blast, 2)}
        for policy, retriever in retrievers.items():
            r[f"embed_{policy}"] = policy_report(retriever, seqs, truth, family, [[n] for n in named],
                                                 r["blastn_q_per_s"])
        report["rates"][str(rate)] = r
        print(rate, json.dumps(r), flush=True)
    report["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    report["family_divergence"] = list(FAMILY_DIVERGENCE)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))
    if not a.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
