"""Variants with their source database: VCF (INFO SOURCE/CLNSIG/PHENO, via pysam) or TSV.

Variant table columns: chrom (normalised), pos (1-based), ref, alt ("." when the source gives
none; multiple ALTs comma-joined), variant_id, source, clinical_significance, phenotype
(null when the variant has none), line (1-based file line).

INFO values follow the ClinVar/bundle convention: `_` stands for a space and `|` separates
values (a `,` in the original text).
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import polars as pl
import pysam

from llamadna.constants import MAX_PHENOTYPES
from llamadna.errors import InputError
from llamadna.io.chroms import UnknownChromosomeError, build_of_length, normalise_chrom
from llamadna.io.tables import normalise_chrom_column, read_tsv
from llamadna.io.text import GZIP_MAGIC, read_bytes

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


# Build names a VCF header may use (`##reference=`, `##assembly=`, a `##contig` line's assembly=),
# lower case; "assembly19/38" are the Broad bundles' Homo_sapiens_assembly19/38 and "g1k_v37" the
# 1000 Genomes human_g1k_v37.
BUILD_NAMES = {
    "GRCh38": ("grch38", "hg38", "hs38", "assembly38"),
    "GRCh37": ("grch37", "hg19", "b37", "hs37", "assembly19", "g1k_v37"),
}
_BUILD_NAME = re.compile(r"(?<![a-z0-9])(" + "|".join(n for v in BUILD_NAMES.values() for n in v)
                         + r")(?![0-9])")
_CONTIG = re.compile(r"^##contig=<(?=.*\bID=([^,>]+))(?=.*\blength=(\d+))")


def header_build(lines: list[str]) -> tuple[str, int, str] | None:
    """The first build a VCF header names: (build, 1-based line, what says so), from a
    `##reference`, `##assembly` or `##contig` line (its assembly=, or a primary chromosome's
    length, `chroms.CHROM_LENGTHS`); None when no line names one."""
    for i, line in enumerate(lines, start=1):
        key = line.split("=", 1)[0]
        if key not in ("##reference", "##assembly", "##contig"):
            continue
        text = line if key != "##contig" else ",".join(
            f for f in line.split(",") if "assembly=" in f)
        m = _BUILD_NAME.search(text.lower())
        if m:
            build = next(b for b, names in BUILD_NAMES.items() if m[1] in names)
            return build, i, line.strip()
        c = _CONTIG.match(line) if key == "##contig" else None
        if c:
            try:
                chrom = normalise_chrom(c[1])
            except UnknownChromosomeError:
                continue
            build = build_of_length(chrom, int(c[2]))
            if build is not None:
                return build, i, f"##contig {c[1]} is {int(c[2]):,} bp long, {build}'s {chrom}"
    return None


def _check_build(path: Path, header: list[str], build: str) -> None:
    """A header that names a build other than `build`: its variants would be placed on the
    wrong bases (positions differ between builds), so the file is refused with that line."""
    said = header_build(header)
    if said is not None and said[0] != build:
        raise InputError(path, f"the header says {said[0]} ({said[2]}), but this file is read as the "
                         f"{build} variants: builds are never mixed; give a {build} VCF here",
                         line=said[1])


def _is_bgzf(raw: bytes) -> bool:
    """BGZF (bgzip) blocks are gzip members whose extra field holds the 'BC' subfield."""
    return raw[:2] == GZIP_MAGIC and len(raw) > 14 and bool(raw[3] & 4) and raw[12:14] == b"BC"


def _check_data_lines(path: Path, text: bytes, n_header: int) -> None:
    """What htslib would misreport ("truncated file") or pass silently, named with its line:
    fewer than 8 columns, and a POS that is not a whole number >= 1."""
    lines = pl.Series("l", text.split(b"\n")[n_header:], dtype=pl.Binary).cast(pl.Utf8)
    df = pl.DataFrame({"line": pl.int_range(n_header + 1, n_header + 1 + len(lines), eager=True),
                       "text": lines}).filter(pl.col("text").str.strip_chars() != "")
    cols = df["text"].str.count_matches("\t") + 1
    bad = df.filter(cols < 8)
    if bad.height:
        raise InputError(path, f"{int(cols.filter(cols < 8)[0])} tab-separated columns: expected the 8+ "
                         "VCF columns (CHROM POS ID REF ALT QUAL FILTER INFO)", line=int(bad["line"][0]))
    pos_text = df["text"].str.split_exact("\t", 2).struct.field("field_1")
    pos = pos_text.cast(pl.Int64, strict=False)
    bad_mask = pos.is_null() | (pos < 1)
    if bad_mask.any():
        k = int(bad_mask.arg_true()[0])
        raise InputError(path, f"POS {pos_text[k]!r}: expected a 1-based position (a whole number "
                         ">= 1)", line=int(df["line"][k]))


def read_vcf(path: str | Path, default_source: str | None = None,
             build: str | None = None) -> pl.DataFrame:
    """Read a VCF (plain, gzip or bgzip) into the variant table.

    Parameters
    ----------
    default_source : source label for records without INFO SOURCE (e.g. "ClinVar" for the
        official ClinVar VCF). Without it, a record lacking SOURCE is an error.
    build : the build the variants are read for (GRCh38, GRCh37): a header naming another one
        (`header_build`) is an error naming its line.

    Every data line is checked first (8+ columns, POS >= 1); a POS past the length the header's
    `##contig` line gives is an error too. A plain-gzip VCF (not bgzip) is read through a
    decompressed temporary copy, since htslib reads only bgzip streams.
    """
    path = Path(path)
    raw = read_bytes(path, "VCF")  # missing / empty / truncated gzip -> clear error
    if not raw.startswith(b"##fileformat=VCF"):
        raise InputError(path, "not a VCF: expected the first line '##fileformat=VCFv4.x'", line=1)
    header = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"#"):
            break
        header.append(line.decode("utf-8", "replace"))
    n_header = len(header)
    if build is not None:
        _check_build(path, header, build)
    _check_data_lines(path, raw, n_header)
    with open(path, "rb") as fh:
        plain_gzip = (head := fh.read(18))[:2] == GZIP_MAGIC and not _is_bgzf(head)
    if plain_gzip:
        with tempfile.TemporaryDirectory(prefix="llamadna-vcf-") as tmp:
            copy = Path(tmp) / "variants.vcf"
            copy.write_bytes(raw)
            return _read_vcf_records(path, copy, n_header, default_source)
    return _read_vcf_records(path, path, n_header, default_source)


def _read_vcf_records(path: Path, source_file: Path, n_header: int,
                      default_source: str | None) -> pl.DataFrame:
    """The records of `source_file` (plain or bgzip VCF); errors name `path`, the user's file."""
    cols: dict[str, list] = {k: [] for k in VARIANT_SCHEMA}
    i = 0
    pysam.set_verbosity(0)
    try:
        vf = pysam.VariantFile(str(source_file))
    except (OSError, ValueError) as exc:
        raise InputError(path, f"could not open VCF: {exc}") from None
    rows = _VcfRows(path, vf.header, default_source)
    try:
        for i, rec in enumerate(vf, start=1):
            for values, v in zip(cols.values(), rows.row(rec, n_header + i), strict=True):
                values.append(v)
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


class _VcfRows:
    """One VCF record -> one row of the variant table (VARIANT_SCHEMA's order), checked; what
    the header declares is looked up once, chromosome names are normalised once each."""

    def __init__(self, path: Path, header: pysam.VariantHeader, default_source: str | None):
        self.path, self.default_source = path, default_source
        self.lengths = {c: header.contigs[c].length for c in header.contigs}
        self.has_source = "SOURCE" in header.info
        self.has_clnsig = "CLNSIG" in header.info
        self.has_pheno = "PHENO" in header.info
        self.has_clndn = "CLNDN" in header.info
        self.chrom_map: dict[str, str] = {}

    def _chrom(self, chrom: str, line: int) -> str:
        norm = self.chrom_map.get(chrom)
        if norm is None:
            try:
                norm = self.chrom_map[chrom] = normalise_chrom(chrom)
            except UnknownChromosomeError as exc:
                raise InputError(self.path, str(exc), line=line) from None
        return norm

    def _source(self, info: pysam.VariantRecordInfo, line: int) -> object:
        source = info.get("SOURCE") if self.has_source else None
        if source is None:
            source = self.default_source
        if source is None:
            raise InputError(
                self.path, "record without INFO SOURCE (expected e.g. SOURCE=ClinVar)", line=line
            )
        if isinstance(source, tuple):
            source = source[0]
        return source

    def row(self, rec: pysam.VariantRecord, line: int) -> tuple:
        """The record's values: chrom, pos, ref, alt, variant_id, source, clinical_significance,
        phenotype, line."""
        chrom = rec.chrom
        norm = self._chrom(chrom, line)
        info = rec.info
        source = self._source(info, line)
        ref = rec.ref
        if not ref or any(c not in "ACGTNacgtn" for c in ref):
            raise InputError(self.path, f"REF {ref!r}: expected A/C/G/T/N bases", line=line)
        alts = rec.alts
        clnsig = _info_values(info.get("CLNSIG")) if self.has_clnsig else []
        pheno = _info_values(info.get("PHENO")) if self.has_pheno else []
        if self.has_clndn:
            pheno += _info_values(info.get("CLNDN"))
        if self.lengths.get(chrom) and rec.pos > self.lengths[chrom]:
            raise InputError(self.path, f"POS {rec.pos} is past the end of {chrom} "
                             f"({self.lengths[chrom]} bp by the header's ##contig line)", line=line)
        return (norm, rec.pos, ref.upper(), ",".join(alts) if alts else ".",
                rec.id or f"{norm}:{rec.pos}:{ref}", str(source),
                ", ".join(dict.fromkeys(clnsig)) or None, join_phenotypes(pheno), line)


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


def read_variants(path: str | Path, default_source: str | None = None,
                  build: str | None = None) -> pl.DataFrame:
    """Dispatch on the file name: `*.vcf[.gz]` -> VCF (its header checked against `build`, see
    read_vcf), else the variant TSV."""
    if ".vcf" in Path(path).name.lower():
        return read_vcf(path, default_source=default_source, build=build)
    return read_variants_tsv(path)
