"""Generated bundles in the real file formats, for tests and benchmarks (never for training).

`make_bundle` writes a random genome (`regions.fa`, whole chromosomes or samtools-style regions),
a GTF of random genes, a bgzipped + tabix-indexed VCF of random variants whose REF matches the
genome, and small gene_info / gene_phenotypes tables, laid out like ../shared/data.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pysam

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
SOURCES = ("dbSNP", "ClinVar", "COSMIC")
GENE_TYPES = ("protein_coding", "lncRNA", "processed_pseudogene")
# divergence of the members of a planted gene family from their founder (`plant_families`)
FAMILY_DIVERGENCE = (0.02, 0.05, 0.10, 0.15)


@dataclass
class SyntheticBundle:
    path: Path
    genome: dict[str, tuple[int, np.ndarray]]  # record name -> (0-based start, sequence bytes)
    genes: list[dict]
    variants: pl.DataFrame


def random_sequence(rng: np.random.Generator, n: int) -> np.ndarray:
    return _BASES[rng.integers(0, 4, n)]


def _write_fasta(path: Path, records: dict[str, tuple[int, np.ndarray]], width: int = 60) -> None:
    with open(path, "wb") as fh:
        for name, (_, seq) in records.items():
            fh.write(f">{name}\n".encode())
            n = len(seq)
            full = n // width * width
            if full:
                block = np.empty((full // width, width + 1), dtype=np.uint8)
                block[:, :width] = seq[:full].reshape(-1, width)
                block[:, width] = ord("\n")
                fh.write(block.tobytes())
            if n > full:
                fh.write(seq[full:].tobytes() + b"\n")


def make_bundle(
    out: str | Path,
    chrom_lengths: dict[str, int] | None = None,
    n_genes: int = 20,
    n_variants: int = 300,
    seed: int = 0,
    regions: bool = False,
    gene_len: tuple[int, int] = (2_000, 20_000),
    source_weights: tuple[float, ...] = (0.6, 0.25, 0.15),
    families: int = 0,
    family_divergence: tuple[float, ...] = FAMILY_DIVERGENCE,
) -> SyntheticBundle:
    """Write a bundle directory; returns what was written (for assertions).

    Parameters
    ----------
    chrom_lengths : chromosome -> length (default three small chromosomes).
    regions : write each chromosome as one samtools-style region record starting at 1,001
        instead of a whole chromosome.
    families : gene families planted in the genome (`plant_families`): genes 0 .. families x
        len(family_divergence) - 1 get a copy of their family's founder sequence, gene i in
        family i % families, diverged from the founder by family_divergence[i // families]
        (`data.mutate.mutate`: substitutions and indels); each such gene dict gets "family" and
        "divergence". 0 = none (the genome stays uniform random). The genome, the genes and the
        variants drawn do not depend on it except through the planted bases.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chrom_lengths = chrom_lengths or {"chr1": 60_000, "chr2": 50_000, "chr3": 40_000}
    genome = _random_genome(rng, chrom_lengths, regions)
    genes = _random_genes(rng, chrom_lengths, genome, n_genes, gene_len)
    if families:
        plant_families(genome, genes, families, family_divergence, gene_len[1],
                       np.random.default_rng([seed, 1]))
    _write_fasta(out / "regions.fa", genome)
    _write_gtf(out / "annotation.gtf.gz", genes)
    variants = _random_variants(rng, genome, genes, list(chrom_lengths), n_variants, source_weights)
    write_vcf(out / "variants.vcf.gz", variants, chrom_lengths)
    _write_gene_tables(out, genes)
    return SyntheticBundle(path=out, genome=genome, genes=genes, variants=variants)


def _random_genome(rng: np.random.Generator, chrom_lengths: dict[str, int],
                   regions: bool) -> dict[str, tuple[int, np.ndarray]]:
    """Record name -> (0-based start, uniform random sequence) per chromosome."""
    genome: dict[str, tuple[int, np.ndarray]] = {}
    for chrom, n in chrom_lengths.items():
        seq = random_sequence(rng, n)
        if regions:
            start0 = 1000
            genome[f"{chrom}:{start0 + 1}-{start0 + n}"] = (start0, seq)
        else:
            genome[chrom] = (0, seq)
    return genome


def _random_genes(rng: np.random.Generator, chrom_lengths: dict[str, int],
                  genome: dict[str, tuple[int, np.ndarray]], n_genes: int,
                  gene_len: tuple[int, int]) -> list[dict]:
    """Random gene spans (1-based, inclusive), some overlapping, on every chromosome, about
    `n_genes` in all in proportion to the chromosome lengths."""
    per = np.maximum(1, np.round(n_genes * np.array(list(chrom_lengths.values()))
                                 / sum(chrom_lengths.values())).astype(int))
    genes = []
    for chrom, k, (start0, seq) in zip(list(chrom_lengths), per, genome.values()):
        for _ in range(k):
            length = int(rng.integers(*gene_len))
            s = int(rng.integers(start0 + 1, start0 + len(seq) - length))
            i = len(genes)
            genes.append({
                "chrom": chrom, "start": s, "end": s + length - 1,
                "strand": "+-"[i % 2], "gene_id": f"ENSG{900000000 + i:011d}",
                "gene_name": f"GENE{i}", "gene_type": GENE_TYPES[i % len(GENE_TYPES)],
                "description": f"synthetic gene {i}",
            })
    return genes


def _write_gtf(path: Path, genes: list[dict]) -> None:
    """A gzipped GTF with one `gene` line per gene (gene_id versioned `.3`)."""
    gtf_lines = ["#description: synthetic GTF"]
    for g in genes:
        attrs = (f'gene_id "{g["gene_id"]}.3"; gene_name "{g["gene_name"]}"; '
                 f'gene_type "{g["gene_type"]}";')
        gtf_lines.append("\t".join(
            [g["chrom"], "SYNTH", "gene", str(g["start"]), str(g["end"]), ".", g["strand"], ".",
             attrs]))
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(gtf_lines) + "\n")


def _random_variants(rng: np.random.Generator, genome: dict[str, tuple[int, np.ndarray]],
                     genes: list[dict], chroms: list[str], n_variants: int,
                     source_weights: tuple[float, ...]) -> pl.DataFrame:
    """Random SNVs sorted by position, 90 % inside a gene, REF = the genome's base (vectorised:
    benchmarks write millions)."""
    gi = rng.integers(0, len(genes), n_variants)
    g_start = np.array([g["start"] for g in genes])[gi]
    g_end = np.array([g["end"] for g in genes])[gi]
    g_chrom = np.array([chroms.index(g["chrom"]) for g in genes])[gi]
    rec = list(genome.values())
    r_start = np.array([s0 for s0, _ in rec])[g_chrom]
    r_len = np.array([len(q) for _, q in rec])[g_chrom]
    inside = rng.random(n_variants) < 0.9
    pos = np.where(
        inside,
        g_start + (rng.random(n_variants) * (g_end - g_start + 1)).astype(np.int64),
        r_start + 1 + (rng.random(n_variants) * r_len).astype(np.int64),
    )
    ref = np.empty(n_variants, dtype=np.uint8)
    for k, (s0, q) in enumerate(rec):
        sel = g_chrom == k
        ref[sel] = q[pos[sel] - 1 - s0]
    code = np.searchsorted(_BASES, ref)
    alt = _BASES[(code + 1 + rng.integers(0, 3, n_variants)) % 4]
    w = np.array(source_weights) / sum(source_weights)
    src = rng.choice(len(SOURCES), n_variants, p=w)
    order = np.lexsort((pos, g_chrom))
    return pl.DataFrame({
        "chrom": np.array(chroms)[g_chrom[order]],
        "pos": pos[order],
        "id": [f"v{j}" for j in order],
        "ref": ref[order].view("S1").astype(str),
        "alt": alt[order].view("S1").astype(str),
        "source": np.array(SOURCES)[src[order]],
    })


def _write_gene_tables(out: Path, genes: list[dict]) -> None:
    """gene_info.tsv.gz (every gene) and gene_phenotypes.tsv.gz (every other gene)."""
    with gzip.open(out / "gene_info.tsv.gz", "wt") as fh:
        fh.write("entrez_id\tsymbol\tdescription\tgene_type\tchromosome\tmap_location\t"
                 "ensembl_ids\tomim_ids\taliases\thg38_location\n")
        for i, g in enumerate(genes):
            fh.write(f"{i + 1}\t{g['gene_name']}\t{g['description']}\tprotein-coding\t"
                     f"{g['chrom'][3:]}\t\t{g['gene_id']}\t\t{g['gene_name']}\t\n")
    with gzip.open(out / "gene_phenotypes.tsv.gz", "wt") as fh:
        fh.write("gene_symbol\tphenotype\tsource\tid\trelated_id\tdetail\n")
        for i, g in enumerate(genes[::2]):
            fh.write(f"{g['gene_name']}\tsynthetic disease {i}\tOMIM\tMIM:{i}\t\t\n")
            fh.write(f"{g['gene_name']}\tsynthetic trait {i}\tGWAS\t{i}\t\t\n")


def plant_families(genome: dict[str, tuple[int, np.ndarray]], genes: list[dict], families: int,
                   divergence: Sequence[float], founder_len: int, rng: np.random.Generator) -> None:
    """Overwrite gene bodies with diverged copies of `families` random founder sequences (in
    place; see `make_bundle`). A later gene overwrites an earlier one where they overlap."""
    from llamadna.data.mutate import mutate

    n = families * len(divergence)
    if n > len(genes):
        raise ValueError(f"{families} families x {len(divergence)} members need {n} genes, "
                         f"have {len(genes)}")
    founders = [random_sequence(rng, founder_len).tobytes().decode() for _ in range(families)]
    by_chrom = {name.split(":")[0]: rec for name, rec in genome.items()}
    for i, g in enumerate(genes[:n]):
        f, d = i % families, float(divergence[i // families])
        start0, seq = by_chrom[g["chrom"]]
        length = min(g["end"] - g["start"] + 1, founder_len)
        copy = mutate(founders[f][:length], d, rng)
        a = g["start"] - 1 - start0
        seq[a : a + length] = np.frombuffer(copy.encode(), dtype=np.uint8)
        g["family"], g["divergence"] = f, d


def write_vcf(path: Path, variants: pl.DataFrame, chrom_lengths: dict[str, int]) -> None:
    """bgzip + tabix VCF with the bundle's INFO fields (SOURCE, optional CLNSIG and PHENO).

    variants : columns chrom, pos, id, ref, alt, source [, clnsig, pheno], sorted by position.
    """
    header = ["##fileformat=VCFv4.2"]
    header += [f"##contig=<ID={c},length={n}>" for c, n in chrom_lengths.items()]
    header += [
        '##INFO=<ID=SOURCE,Number=1,Type=String,Description="Variant source database">',
        '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance">',
        '##INFO=<ID=PHENO,Number=.,Type=String,Description="Phenotype names">',
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    info = pl.concat_str([pl.lit("SOURCE="), pl.col("source")])
    for col, key in (("clnsig", "CLNSIG"), ("pheno", "PHENO")):
        if col in variants.columns:
            info = pl.concat_str(
                [info, pl.when(pl.col(col).is_not_null())
                 .then(pl.concat_str([pl.lit(f";{key}="), pl.col(col)])).otherwise(pl.lit(""))]
            )
    body = variants.select(
        "chrom", pl.col("pos").cast(pl.Utf8), "id", "ref", "alt", pl.lit(".").alias("qual"),
        pl.lit(".").alias("filter"),
        info.alias("info"),
    )
    plain = path.with_suffix("")  # variants.vcf
    with open(plain, "w") as fh:
        fh.write("\n".join(header) + "\n")
    with open(plain, "ab") as fh:
        body.write_csv(fh, separator="\t", include_header=False, quote_style="never")
    pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=False)
