"""Variants with their source database: VCF (INFO SOURCE/CLNSIG/PHENO, via pysam) or TSV.

Variant table columns: chrom (normalised), pos (1-based), ref, alt ("." when the source gives
none; multiple ALTs comma-joined), variant_id, source, clinical_significance, phenotype
(null when the variant has none), line (1-based file line).

INFO values follow the ClinVar/bundle convention: `_` stands for a space and `|` separates
values (a `,` in the original text).
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pysam

from llamadna.constants import MAX_PHENOTYPES
from llamadna.errors import InputError
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.tables import normalise_chrom_column, read_tsv
from llamadna.io.text import read_bytes

log = logging.getLogger(__name__)

VARIANT_SCHEMA = {
    "chrom": pl.Utf8,
    "pos": pl.Int64,
    "ref": pl.Utf8,
    "alt": pl.Utf8,
    "variant_id": pl.Utf8,
    "source": pl.Utf8,
    "clinical_significance": pl.Utf8,
    "phenotype": pl.Utf8,
    "line": pl.Int64,
}
TSV_COLUMNS = ["chrom", "pos", "ref", "alt", "id", "source"]
# Phenotype values that mean "none given".
_NO_PHENOTYPE = {"", ".", "not provided", "not specified", "none", "na"}


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def join_phenotypes(values: list[str], limit: int = MAX_PHENOTYPES) -> str | None:
    """Distinct phenotype names (case/punctuation-insensitive), at most `limit`, joined by " and "."""
    out, seen = [], set()
    for v in values:
        v = v.strip()
        k = _key(v)
        if v.lower() in _NO_PHENOTYPE or not k or k in seen:
            continue
        seen.add(k)
        out.append(v)
        if len(out) == limit:
            break
    return " and ".join(out) if out else None


def _info_values(value) -> list[str]:
    if value is None or value is True or value is False:
        return []
    items = value if isinstance(value, tuple) else (value,)
    out = []
    for it in items:
        out.extend(s.replace("_", " ") for s in str(it).split("|"))
    return out


def _vcf_header_lines(path: Path) -> int:
    n = 0
    for line in read_bytes(path, "VCF").split(b"\n"):
        if not line.startswith(b"#"):
            break
        n += 1
    return n


def read_vcf(path: str | Path, default_source: str | None = None) -> pl.DataFrame:
    """Read a VCF (plain, gzip or bgzip) into the variant table.

    Parameters
    ----------
    default_source : source label for records without INFO SOURCE (e.g. "ClinVar" for the
        official ClinVar VCF). Without it, a record lacking SOURCE is an error.
    """
    path = Path(path)
    raw = read_bytes(path, "VCF")  # missing / empty / truncated gzip -> clear error
    if not raw.startswith(b"##fileformat=VCF"):
        raise InputError(path, "not a VCF: expected the first line '##fileformat=VCFv4.x'", line=1)
    n_header = 0
    for line in raw.split(b"\n"):
        if not line.startswith(b"#"):
            break
        n_header += 1
    cols: dict[str, list] = {k: [] for k in VARIANT_SCHEMA}
    chrom_map: dict[str, str] = {}
    i = 0
    pysam.set_verbosity(0)
    try:
        vf = pysam.VariantFile(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"could not open VCF: {exc}") from None
    has_source = "SOURCE" in vf.header.info
    has_clnsig = "CLNSIG" in vf.header.info
    has_pheno = "PHENO" in vf.header.info
    has_clndn = "CLNDN" in vf.header.info
    try:
        for i, rec in enumerate(vf, start=1):
            line = n_header + i
            chrom = rec.chrom
            norm = chrom_map.get(chrom)
            if norm is None:
                try:
                    norm = chrom_map[chrom] = normalise_chrom(chrom)
                except UnknownChromosomeError as exc:
                    raise InputError(path, str(exc), line=line) from None
            info = rec.info
            source = info.get("SOURCE") if has_source else None
            if source is None:
                source = default_source
            if source is None:
                raise InputError(
                    path, "record without INFO SOURCE (expected e.g. SOURCE=ClinVar)", line=line
                )
            if isinstance(source, tuple):
                source = source[0]
            ref = rec.ref
            if not ref or any(c not in "ACGTNacgtn" for c in ref):
                raise InputError(path, f"REF {ref!r}: expected A/C/G/T/N bases", line=line)
            alts = rec.alts
            clnsig = _info_values(info.get("CLNSIG")) if has_clnsig else []
            pheno = _info_values(info.get("PHENO")) if has_pheno else []
            if has_clndn:
                pheno += _info_values(info.get("CLNDN"))
            cols["chrom"].append(norm)
            cols["pos"].append(rec.pos)
            cols["ref"].append(ref.upper())
            cols["alt"].append(",".join(alts) if alts else ".")
            cols["variant_id"].append(rec.id or f"{norm}:{rec.pos}:{ref}")
            cols["source"].append(str(source))
            cols["clinical_significance"].append(", ".join(dict.fromkeys(clnsig)) or None)
            cols["phenotype"].append(join_phenotypes(pheno))
            cols["line"].append(line)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            path, f"malformed VCF record: {exc} (expected 8+ tab-separated VCF columns)",
            line=n_header + i + 1,
        ) from None
    finally:
        vf.close()
    return pl.DataFrame(cols, schema=VARIANT_SCHEMA)


def read_variants_tsv(path: str | Path) -> pl.DataFrame:
    """The bundle's variant TSV (`chrom pos ref alt id source [clinical_significance phenotype]`)."""
    path = Path(path)
    df = normalise_chrom_column(read_tsv(path, TSV_COLUMNS, "variant table", int_columns=("pos",)), path)
    bad = df.filter(~pl.col("ref").str.contains(r"^[ACGTNacgtn]+$"))
    if bad.height:
        r = bad.row(0, named=True)
        raise InputError(path, f"ref {r['ref']!r}: expected A/C/G/T/N bases", line=int(r["line"]))
    bad = df.filter(pl.col("pos") < 1)
    if bad.height:
        raise InputError(path, "pos < 1: expected 1-based positions", line=int(bad["line"][0]))
    for opt in ("clinical_significance", "phenotype"):
        if opt not in df.columns:
            df = df.with_columns(pl.lit(None, pl.Utf8).alias(opt))
    pheno = [
        join_phenotypes(v.replace("_", " ").split("|")) if v else None
        for v in df["phenotype"].to_list()
    ]
    return df.select(
        "chrom",
        "pos",
        pl.col("ref").str.to_uppercase(),
        pl.col("alt").fill_null("."),
        pl.col("id").alias("variant_id"),
        "source",
        pl.when(pl.col("clinical_significance") == "").then(None)
        .otherwise(pl.col("clinical_significance")).alias("clinical_significance"),
        pl.Series("phenotype", pheno, dtype=pl.Utf8),
        "line",
    ).cast(VARIANT_SCHEMA)


def read_variants(path: str | Path, default_source: str | None = None) -> pl.DataFrame:
    """Dispatch on the file name: `*.vcf[.gz]` -> VCF, else the variant TSV."""
    if ".vcf" in Path(path).name.lower():
        return read_vcf(path, default_source=default_source)
    return read_variants_tsv(path)
