"""Gene models: GTF (GENCODE/Ensembl) or a gene feature table, read into one gene table.

Gene table columns: chrom (normalised), start, end (1-based inclusive), strand, gene_id
(versionless Ensembl ID, or null when the annotation has none), gene_name, gene_type, line.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llamadna.errors import InputError
from llamadna.io.tables import normalise_chrom_column, read_tsv
from llamadna.io.text import read_bytes

GENE_TABLE_SCHEMA = {
    "chrom": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "strand": pl.Utf8,
    "gene_id": pl.Utf8,
    "gene_name": pl.Utf8,
    "gene_type": pl.Utf8,
    "line": pl.Int64,
}
FEATURE_TABLE_COLUMNS = ["feature", "chrom", "start", "end", "strand", "gene_name", "gene_type"]
_GTF_FIELDS = ["seqname", "source", "feature", "start", "end", "score", "strand", "frame", "attr"]


# A GTF attribute column: `key "value";` pairs (a value may be unquoted: `level 2;`), the last
# `;` optional. GFF3's `key=value` pairs, an unclosed quote or a missing `;` do not match.
_GTF_ATTRIBUTES = r'^\s*(?:[^\s";=]+\s+(?:"[^"]*"|[^\s";]+)\s*(?:;\s*|$))+$'


def _attr(name: str) -> pl.Expr:
    # GTF attributes: key "value"; (GENCODE) or key value; (unquoted numbers)
    return pl.col("attr").str.extract(rf'(?:^|;)\s*{name}\s+"?([^";]+)"?', 1)


def versionless(expr: pl.Expr) -> pl.Expr:
    """ENSG00000099889.14_5 -> ENSG00000099889 (GENCODE versions and lift-over suffixes)."""
    return expr.str.replace(r"\.\d+(_\d+)?$", "")


def _check_coords(df: pl.DataFrame, path: Path) -> None:
    bad = df.filter(
        pl.col("start").is_null() | pl.col("end").is_null() | (pl.col("start") < 1)
        | (pl.col("end") < pl.col("start"))
    )
    if bad.height:
        r = bad.row(0, named=True)
        start, end = r.get("start_text", r["start"]), r.get("end_text", r["end"])  # as written
        raise InputError(
            path,
            f"bad coordinates start={start!r} end={end!r}: "
            "expected integers with 1 <= start <= end",
            line=int(r["line"]),
        )
    bad = df.filter(~pl.col("strand").is_in(["+", "-", "."]))
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(path, f"bad strand {r['strand']!r}: expected +, - or .", line=int(r["line"]))


def _check_attributes(df: pl.DataFrame, path: Path) -> None:
    """Every line's attribute column is `key "value";` pairs (_GTF_ATTRIBUTES): a damaged one is
    named with its line, never read for a wrong gene_id or name."""
    bad = df.filter(~pl.col("attr").str.contains(_GTF_ATTRIBUTES))
    if not bad.height:
        return
    r = bad.row(0, named=True)
    text = r["attr"] if len(r["attr"]) <= 60 else r["attr"][:57] + "..."
    gff3 = "=" in r["attr"] and '"' not in r["attr"]
    raise InputError(
        path, f"malformed GTF attribute column {text!r}: "
        + ("this is GFF3 (key=value); expected GTF's " if gff3 else "expected ")
        + 'key "value"; pairs (e.g. gene_id "ENSG00000141510"; gene_name "TP53";)',
        line=int(r["line"]))


def read_gtf_genes(path: str | Path) -> pl.DataFrame:
    """Genes of a GTF: its `gene` records, or (GTFs without them) the span of each gene_id's
    transcripts/exons. Every line is checked: 9 tab-separated fields, coordinates, a known
    chromosome name and `key "value";` attributes."""
    path = Path(path)
    text = read_bytes(path, "GTF annotation").decode("utf-8", errors="replace")
    lines = pl.DataFrame({"raw": text.split("\n")}).with_row_index("line", offset=1)
    lines = lines.with_columns(pl.col("line").cast(pl.Int64)).filter(
        (pl.col("raw").str.len_bytes() > 0) & ~pl.col("raw").str.starts_with("#")
    )
    if lines.height == 0:
        raise InputError(path, "no GTF records (expected 9 tab-separated columns per line)")
    nf = lines["raw"].str.count_matches("\t") + 1
    bad = lines.filter(nf != 9)
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(
            path,
            f"malformed GTF line: {r['raw'].count(chr(9)) + 1} fields, expected 9 tab-separated",
            line=int(r["line"]),
        )
    df = lines.with_columns(
        pl.col("raw").str.split_exact("\t", 8).struct.rename_fields(_GTF_FIELDS)
    ).unnest("raw").with_columns(
        pl.col("start").alias("start_text"), pl.col("end").alias("end_text"),
        pl.col("start").cast(pl.Int64, strict=False), pl.col("end").cast(pl.Int64, strict=False))
    _check_coords(df, path)  # every record, not only the ones used: a damaged line is never passed
    _check_attributes(df, path)
    df = normalise_chrom_column(df.with_columns(pl.col("seqname").alias("chrom")), path)
    has_genes = (df["feature"] == "gene").any()
    sel = df.filter(pl.col("feature") == "gene") if has_genes else df
    sel = sel.with_columns(
        _attr("gene_id").alias("gene_id_raw"),
        _attr("gene_name").alias("gene_name"),
        pl.coalesce(_attr("gene_type"), _attr("gene_biotype")).alias("gene_type"),
    )
    missing = sel.filter(pl.col("gene_id_raw").is_null())
    if missing.height:
        raise InputError(path, "GTF record without gene_id attribute", line=int(missing["line"][0]))
    if not has_genes:
        sel = sel.group_by("gene_id_raw", maintain_order=True).agg(
            pl.col("chrom").first(), pl.col("start").min(), pl.col("end").max(),
            pl.col("strand").first(), pl.col("gene_name").first(), pl.col("gene_type").first(),
            pl.col("line").first(),
        )
    ensg = pl.col("gene_id_raw").str.starts_with("ENSG")
    out = sel.select(
        "chrom", "start", "end", "strand",
        pl.when(ensg).then(versionless(pl.col("gene_id_raw"))).otherwise(None).alias("gene_id"),
        pl.coalesce("gene_name", "gene_id_raw").alias("gene_name"),
        pl.col("gene_type").fill_null("unknown"),
        "line",
    )
    return out.cast(GENE_TABLE_SCHEMA)


def read_feature_table_genes(path: str | Path) -> pl.DataFrame:
    """Genes of a gene feature table (the bundle's `annotation.grch37.features.tsv.gz`):
    rows with feature == "gene". No gene IDs: they are resolved later from gene_info."""
    path = Path(path)
    df = read_tsv(path, FEATURE_TABLE_COLUMNS, "gene feature table")
    df = df.filter(pl.col("feature") == "gene").with_columns(
        pl.col("start").cast(pl.Int64, strict=False), pl.col("end").cast(pl.Int64, strict=False)
    )
    if df.height == 0:
        raise InputError(path, "no rows with feature == 'gene'")
    _check_coords(df, path)
    df = normalise_chrom_column(df, path)
    # The same gene can be listed once per region it overlaps: keep one row per gene.
    df = df.unique(subset=["chrom", "start", "end", "gene_name"], keep="first", maintain_order=True)
    return df.select(
        "chrom", "start", "end", "strand", pl.lit(None, pl.Utf8).alias("gene_id"),
        "gene_name", "gene_type", "line",
    ).cast(GENE_TABLE_SCHEMA)


def read_genes(path: str | Path) -> pl.DataFrame:
    """Dispatch on the file name: `*.gtf[.gz]` -> GTF, else a gene feature table."""
    name = Path(path).name.lower()
    if ".gtf" in name or ".gff" in name:
        return read_gtf_genes(path)
    return read_feature_table_genes(path)


def read_gene_list(path: str | Path) -> tuple[str, ...]:
    """A gene list file: one gene name or id per line (blank lines and # comments skipped).

    Returns the names in file order, each once; raises InputError on an unreadable file, a
    binary file or a list without any name.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read the gene list: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text file (expected one gene name or id per line)") from None
    genes = tuple(dict.fromkeys(x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")))
    if not genes:
        raise InputError(path, "no gene name in the list")
    return genes
