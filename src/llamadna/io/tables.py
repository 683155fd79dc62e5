"""Tab-separated tables (gene descriptions, phenotypes, variant/feature tables) via polars.

`read_tsv` parses with polars; when polars rejects the file, it scans for the first line whose
field count differs from the header so the error names the line.
"""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from llamadna.errors import InputError
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.text import read_bytes

# Columns each table must have (the reader checks these; the files may have more, see
# MANIFEST.md). `llamadna.data.fetch` writes a superset (GENE_INFO_WRITTEN_COLUMNS, ...).
GENE_INFO_REQUIRED_COLUMNS = [
    "entrez_id", "symbol", "description", "gene_type", "ensembl_ids", "aliases",
]
PHENOTYPE_REQUIRED_COLUMNS = ["gene_symbol", "phenotype", "source"]


def _first_ragged_line(text: str, n_fields: int) -> tuple[int, int] | None:
    """(1-based line, field count) of the first non-empty line without n_fields fields."""
    lines = pl.Series(text.split("\n"))
    n = lines.str.count_matches("\t") + 1
    bad = ((n != n_fields) & (lines.str.len_bytes() > 0)).arg_true()
    if bad.len() == 0:
        return None
    i = int(bad[0])
    return i + 1, int(n[i])


def read_tsv(
    path: str | Path, required: list[str], what: str, int_columns: tuple[str, ...] = ()
) -> pl.DataFrame:
    """Read a headed TSV (plain or gzip) as strings, checking columns, field counts and integers.

    Integer columns are cast strictly; a non-integer value is reported with its line number.
    A `line` column (1-based file line of each row) is added.
    """
    raw = read_bytes(path, what)
    text = raw.decode("utf-8", errors="replace")
    header = text.split("\n", 1)[0].lstrip("#").split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            path, f"missing column(s) {missing}; expected a {what} with columns {required}", line=1
        )
    # polars pads short rows with nulls silently: check field counts first
    bad = _first_ragged_line(text, len(header))
    if bad is not None:
        raise InputError(
            path, f"malformed line: {bad[1]} fields, expected {len(header)} (tab-separated)",
            line=bad[0],
        )
    try:
        df = pl.read_csv(
            io.BytesIO(raw),
            separator="\t",
            quote_char=None,
            infer_schema=False,
            has_header=True,
            new_columns=header,
            comment_prefix=None,
        )
    except pl.exceptions.PolarsError as exc:
        raise InputError(path, f"could not parse {what}: {exc}") from None
    # Blank lines would shift numbering; polars skips none with infer_schema=False and no comments.
    df = df.with_row_index("line", offset=2).with_columns(pl.col("line").cast(pl.Int64))
    for col in int_columns:
        cast = df[col].cast(pl.Int64, strict=False)
        bad = df.filter(cast.is_null() & df[col].is_not_null() | df[col].is_null())
        if bad.height:
            row = bad.row(0, named=True)
            raise InputError(
                path, f"column {col!r} = {row[col]!r}: expected an integer", line=row["line"]
            )
        df = df.with_columns(cast.alias(col))
    return df


def normalise_chrom_column(df: pl.DataFrame, path: str | Path) -> pl.DataFrame:
    """Normalise the `chrom` column of a table read with `read_tsv` (it has `line`); an unknown
    name is an InputError naming the file and the first line that holds it."""
    mapping = {}
    for name in df["chrom"].unique().to_list():
        try:
            mapping[name] = normalise_chrom(name)
        except UnknownChromosomeError as exc:
            line = df.filter(pl.col("chrom") == name)["line"][0]
            raise InputError(path, str(exc), line=int(line)) from None
    return df.with_columns(pl.col("chrom").replace_strict(mapping))


def read_gene_info(path: str | Path) -> pl.DataFrame:
    """Entrez gene descriptions (`gene_info.tsv.gz`): symbol, description, Ensembl IDs, aliases."""
    return read_tsv(path, GENE_INFO_REQUIRED_COLUMNS, "gene description table (gene_info)")


def read_gene_phenotypes(path: str | Path) -> pl.DataFrame:
    """Gene -> phenotype rows (`gene_phenotypes.tsv.gz`) with their source database."""
    return read_tsv(path, PHENOTYPE_REQUIRED_COLUMNS, "gene-phenotype table")
