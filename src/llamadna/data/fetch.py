"""Download the public source files and convert them into a data bundle (`llamadna fetch-data`).

The result has the same file names and formats as `../shared/data` (see its MANIFEST.md), so
`llamadna build-dataset --data DIR` works on it:

=========================  =============================================================
`regions.fa`               UCSC hg38 chromosomes, whole-chromosome records (`>chr21`)
`annotation.gtf.gz`        GENCODE GRCh38 GTF, lines of the chosen chromosomes
`gene_info.tsv.gz`         NCBI Gene `Homo_sapiens.gene_info` in the bundle's columns
`gene_phenotypes.tsv.gz`   ClinVar gene-condition, Orphanet product 6 and HPO gene rows
`variants.vcf.gz` (+.tbi)  ClinVar GRCh38 VCF, UCSC names, bundle INFO fields
`fetch_summary.json`       URLs, sizes and md5 of every raw file; rows written per output
=========================  =============================================================

Not fetched: OMIM (needs a licence key), COSMIC (needs a login and licence) and dbSNP (tens of
GB); the bundle's GWAS and `HPO_disease` rows have no counterpart here either.

Downloads (`llamadna.io.download`) stream to `DIR/.download/NAME.part`, resume with an HTTP
Range request (a server that ignores Range gets a fresh download), are checked against the md5
the source publishes and are then renamed to `DIR/.download/NAME`. A raw file that is there is
never downloaded again: delete `DIR/.download` to refresh the sources. Outputs are written
atomically.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO
from urllib.parse import urlsplit

import pysam

from llamadna import __version__
from llamadna.io.atomic import atomic_write
from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom
from llamadna.io.download import (
    CHUNK,
    DownloadError,
    checksum_url,
    download,
    fetch_text,
    parse_md5_list,
)
from llamadna.io.text import open_maybe_gzip
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

DEFAULT_CHROMOSOMES = ("chr21", "chr22", "chrM")
DOWNLOAD_DIR = ".download"

# Columns of the files fetch writes: the bundle's full schemas, a superset of the columns the
# readers require (llamadna.io.tables.GENE_INFO_REQUIRED_COLUMNS, PHENOTYPE_REQUIRED_COLUMNS).
GENE_INFO_WRITTEN_COLUMNS = [
    "entrez_id", "symbol", "description", "gene_type", "chromosome", "map_location",
    "ensembl_ids", "omim_ids", "aliases", "hg38_location",
]
PHENOTYPE_WRITTEN_COLUMNS = ["gene_symbol", "phenotype", "source", "id", "related_id", "detail"]
_PRIMARY = re.compile(r"^chr([1-9]|1\d|2[0-2]|X|Y|M)$")
_NO_VALUE = {"", "-"}  # NCBI's "none" marker


class FetchError(DownloadError):
    """A conversion (or a checksum list) failed; the message starts with the file or URL
    concerned. A failed download is its base, `DownloadError`."""


@dataclass(frozen=True)
class Source:
    """One public file.

    url : where it is; `{chrom}` is replaced by each chosen chromosome (per-chromosome files).
    checksum : the md5 list the source publishes beside the file, relative to `url`
        (`md5sum.txt`, `MD5SUMS`, or `{file}.md5` for a per-file checksum); None when the
        source publishes none.
    """

    name: str
    url: str
    checksum: str | None
    what: str


# The one table of sources (name -> url and published checksum).
SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("hg38", "https://hgdownload.soe.ucsc.edu/goldenPath/hg38/chromosomes/{chrom}.fa.gz",
               "md5sum.txt", "UCSC hg38 chromosome FASTA"),
        Source("gencode", "https://ftp.ebi.ac.uk/pub/databases/gencode/Gencode_human/release_46/"
               "gencode.v46.annotation.gtf.gz", "MD5SUMS", "GENCODE v46 GRCh38 GTF"),
        Source("gene_info", "https://ftp.ncbi.nlm.nih.gov/gene/DATA/GENE_INFO/Mammalia/"
               "Homo_sapiens.gene_info.gz", None, "NCBI Gene gene_info (human)"),
        Source("clinvar_genes", "https://ftp.ncbi.nlm.nih.gov/pub/clinvar/gene_condition_source_id",
               None, "ClinVar gene-condition table"),
        Source("orphanet", "https://www.orphadata.com/data/xml/en_product6.xml", None,
               "Orphanet genes associated with rare diseases (product 6)"),
        Source("hpo", "http://purl.obolibrary.org/obo/hp/hpoa/genes_to_phenotype.txt", None,
               "HPO genes_to_phenotype"),
        Source("clinvar_vcf", "https://ftp.ncbi.nlm.nih.gov/pub/clinvar/vcf_GRCh38/clinvar.vcf.gz",
               "{file}.md5", "ClinVar GRCh38 VCF"),
    )
}


@dataclass
class FetchConfig:
    """Options of `fetch_data`: which chromosomes, where from, and how downloads retry."""

    chromosomes: tuple[str, ...] = DEFAULT_CHROMOSOMES
    mirror: str | None = None  # replaces scheme://host of every source URL (path kept)
    sources: dict[str, str] = field(default_factory=dict)  # name -> URL overrides
    verify: bool = True  # check md5 where the source publishes one
    retries: int = 3  # resumed attempts after an interrupted download
    retry_wait: float = 2.0  # seconds before retry k (times k)
    timeout: float = 60.0  # seconds per network operation


# --------------------------------------------------------------------------- sources


def parse_chromosomes(names: Iterable[str]) -> tuple[str, ...]:
    """Normalise (`21` -> `chr21`, `MT` -> `chrM`) and check: primary chromosomes only."""
    out: list[str] = []
    for n in names:
        try:
            c = normalise_chrom(n)
        except UnknownChromosomeError as exc:
            raise ValueError(f"--chromosomes: {exc}") from None
        if not _PRIMARY.match(c):
            raise ValueError(f"--chromosomes: {n!r} is not chr1-chr22, chrX, chrY or chrM")
        if c not in out:
            out.append(c)
    if not out:
        raise ValueError("--chromosomes: give at least one chromosome, e.g. chr21,chr22,chrM")
    return tuple(out)


def parse_source_overrides(items: Iterable[str]) -> dict[str, str]:
    """`NAME=URL` strings -> {name: url}, names checked against SOURCES."""
    out = {}
    for item in items:
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not url:
            raise ValueError(f"--source {item!r}: expected NAME=URL")
        if name not in SOURCES:
            raise ValueError(f"--source {item!r}: unknown source {name!r}; known: "
                             + ", ".join(SOURCES))
        out[name] = url
    return out


def with_mirror(url: str, mirror: str) -> str:
    """Replace scheme://host of `url` by `mirror` (which may carry a path prefix)."""
    parts = urlsplit(url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def resolve_sources(
    mirror: str | None = None, overrides: dict[str, str] | None = None
) -> dict[str, Source]:
    """The source table after `--mirror` (all URLs) and `--source NAME=URL` (one, wins)."""
    if mirror and not urlsplit(mirror).scheme:
        raise ValueError(f"--mirror {mirror!r}: expected a URL such as http://host:port")
    out = {}
    for name, s in SOURCES.items():
        url = with_mirror(s.url, mirror) if mirror else s.url
        if overrides and name in overrides:
            url = overrides[name]
        if "{chrom}" in s.url and "{chrom}" not in url:
            raise ValueError(f"source {name}: the URL must contain {{chrom}}, got {url!r}")
        out[name] = replace(s, url=url)
    unknown = set(overrides or {}) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")
    return out


# --------------------------------------------------------------------------- downloads


@dataclass
class RawFile:
    source: str
    url: str
    path: Path
    md5: str | None  # the published md5 it was checked against (None: not published/verified)
    downloaded: bool  # False when a verified copy from an earlier run was reused


class _Fetcher:
    """Downloads each raw file once, with its published checksum (cached per listing)."""

    def __init__(self, dl_dir: Path, opts: FetchConfig, step: Progress):
        self.dir, self.opts, self.step = dl_dir, opts, step
        self.listings: dict[str, str] = {}

    def expected_md5(self, src: Source, url: str) -> str | None:
        if not self.opts.verify or src.checksum is None:
            return None
        curl = checksum_url(url, src.checksum)
        if curl not in self.listings:
            self.listings[curl] = fetch_text(
                curl, self.opts.timeout, " (checksum list; --no-verify skips checksums)")
        name = PurePosixPath(urlsplit(url).path).name
        md5 = parse_md5_list(self.listings[curl], name, single_file="{file}" in src.checksum)
        if md5 is None:
            raise FetchError(curl, f"no md5 for {name} in the checksum list "
                             "(--no-verify skips checksums)")
        return md5

    def get(self, src: Source, chrom: str | None = None) -> RawFile:
        url = src.url.format(chrom=chrom) if chrom else src.url
        base = PurePosixPath(urlsplit(url).path).name or "index"
        key = src.name if chrom is None or chrom in base else f"{src.name}.{chrom}"
        dest = self.dir / f"{key}.{base}"
        sidecar = dest.with_name(dest.name + ".md5")  # the md5 it was verified against
        if dest.exists():
            log.debug("%s: using %s (downloaded before)", url, dest)
            md5 = sidecar.read_text().strip() if sidecar.exists() else None
            return RawFile(src.name, url, dest, md5 or None, downloaded=False)
        md5 = self.expected_md5(src, url)
        sidecar.unlink(missing_ok=True)
        download(url, dest, md5, self.step, self.opts.retries, self.opts.retry_wait,
                 self.opts.timeout)
        if md5:
            sidecar.write_text(md5 + "\n")
        return RawFile(src.name, url, dest, md5, downloaded=True)


# --------------------------------------------------------------------------- converting


@contextmanager
def _open_raw(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(file, stream): the raw file (for progress via tell()) and its content, gunzipped when
    it is gzip; truncated or corrupt gzip data becomes a FetchError naming the file."""
    with open_maybe_gzip(path) as (raw, stream):
        try:
            yield raw, stream
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise FetchError(path, f"corrupt or truncated gzip data ({exc}); delete the file "
                             "and run again") from None


def _lines(path: Path, desc: str, step: Progress) -> Iterator[bytes]:
    """Lines (without line ends) of a raw file, reporting progress in raw bytes."""
    size = path.stat().st_size
    with _open_raw(path) as (raw, stream):
        for i, line in enumerate(stream):
            if i % 65536 == 0:
                step(desc, raw.tell(), size)
            yield line.rstrip(b"\r\n")
    step(desc, size, size)


def _clean(value: object) -> str:
    return re.sub(r"[\t\r\n]+", " ", "" if value is None else str(value)).strip()


def _write_gz(path: Path, chunks: Iterable[bytes]) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                   compresslevel=6) as gz:
            for c in chunks:
                gz.write(c)
    return atomic_write(path, write)


def _write_tsv_gz(path: Path, columns: list[str], rows: Iterable[Iterable[object]]) -> Path:
    def chunks() -> Iterator[bytes]:
        yield ("\t".join(columns) + "\n").encode()
        for r in rows:
            yield ("\t".join(_clean(v) for v in r) + "\n").encode()
    return _write_gz(path, chunks())


def _header_index(path: Path, header: bytes, required: list[str], what: str) -> dict[str, int]:
    cols = header.decode("utf-8", errors="replace").lstrip("#").split("\t")
    cols = [c.strip() for c in cols]
    missing = [c for c in required if c not in cols]
    if missing:
        raise FetchError(path, f"missing column(s) {missing} in the header line; expected a "
                         f"{what} with columns {required}")
    return {c: i for i, c in enumerate(cols)}


def _tsv_records(raw: Path, required: list[str], what: str, step: Progress) -> Iterator[dict[str, str]]:
    """The records of a headed TSV as {column: stripped value}; short lines are padded with
    empty values, blank and `#` lines skipped."""
    lines = _lines(raw, f"convert {raw.name}", step)
    col = _header_index(raw, next(lines, b""), required, what)
    for line in lines:
        if not line or line.startswith(b"#"):
            continue
        f = line.decode("utf-8", errors="replace").split("\t")
        f += [""] * (len(col) - len(f))
        yield {k: f[i].strip() for k, i in col.items()}


def write_regions(raws: list[tuple[str, Path]], out: Path, step: Progress = no_progress) -> dict:
    """Concatenate per-chromosome FASTA files into `out` as `>chrom` records; returns
    {chrom: length}. Each input must hold exactly that chromosome."""
    lengths: dict[str, int] = {}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fo:
            for chrom, path in raws:
                size, desc = path.stat().st_size, f"convert {path.name}"
                with _open_raw(path) as (raw, stream):
                    head = stream.readline().strip()
                    name = head[1:].split()[0].decode() if head.startswith(b">") and \
                        len(head) > 1 else None
                    try:
                        ok = name is not None and normalise_chrom(name) == chrom
                    except UnknownChromosomeError:
                        ok = False
                    if not ok:
                        raise FetchError(path, f"first line {head[:60]!r}: expected a FASTA "
                                         f"header naming {chrom}")
                    fo.write(f">{chrom}\n".encode())
                    n, last = 0, b"\n"
                    while buf := stream.read(CHUNK):
                        if b">" in buf:
                            raise FetchError(path, f"more than one FASTA record (expected only "
                                             f"{chrom})")
                        fo.write(buf)
                        n += len(buf) - buf.count(b"\n") - buf.count(b"\r")
                        last = buf[-1:]
                        step(desc, raw.tell(), size)
                    if last != b"\n":
                        fo.write(b"\n")
                if n == 0:
                    raise FetchError(path, f"no sequence for {chrom}")
                lengths[chrom] = n
                step(desc, size, size)

    atomic_write(out, write)
    return lengths


def write_annotation(raw: Path, chroms: tuple[str, ...], out: Path,
                     step: Progress = no_progress) -> int:
    """Header comments and the records on `chroms` (seqname normalised to UCSC style)."""
    names: dict[bytes, str | None] = {}
    count = [0]

    def chunks() -> Iterator[bytes]:
        for line in _lines(raw, f"convert {raw.name}", step):
            if line.startswith(b"#"):
                yield line + b"\n"
                continue
            tab = line.find(b"\t")
            if tab <= 0:
                continue
            seq = line[:tab]
            if seq not in names:
                try:
                    c = normalise_chrom(seq.decode("utf-8", errors="replace"))
                except UnknownChromosomeError:
                    c = None
                names[seq] = c if c in chroms else None
            c = names[seq]
            if c is not None:
                count[0] += 1
                yield c.encode() + line[tab:] + b"\n"

    _write_gz(out, chunks())
    if count[0] == 0:
        raise FetchError(raw, f"no GTF records on {', '.join(chroms)}")
    return count[0]


def _xrefs(dbxrefs: str, prefix: str) -> list[str]:
    return [x[len(prefix):] for x in dbxrefs.split("|") if x.startswith(prefix)]


def write_gene_info(raw: Path, out: Path, step: Progress = no_progress) -> int:
    """NCBI gene_info -> the bundle's gene_info columns (Ensembl/MIM IDs from dbXrefs,
    aliases = symbol + synonyms, comma-joined; hg38_location left empty)."""
    need = ["GeneID", "Symbol", "Synonyms", "dbXrefs", "chromosome", "map_location",
            "description", "type_of_gene"]
    lines = _lines(raw, f"convert {raw.name}", step)
    header = next(lines, None)
    if header is None:
        raise FetchError(raw, "empty file (expected NCBI gene_info)")
    col = _header_index(raw, header, need, "NCBI gene_info")
    count = [0]

    def rows() -> Iterator[list[str]]:
        for line in lines:
            if not line or line.startswith(b"#"):
                continue
            f = line.decode("utf-8", errors="replace").split("\t")
            if len(f) < len(col):
                raise FetchError(raw, f"line with {len(f)} fields, expected {len(col)}: "
                                 f"{line[:80]!r}")
            v = {k: ("" if f[i] in _NO_VALUE else f[i]) for k, i in col.items()}
            syn = [s for s in v["Synonyms"].split("|") if s]
            count[0] += 1
            yield [
                v["GeneID"], v["Symbol"], v["description"], v["type_of_gene"], v["chromosome"],
                v["map_location"], ",".join(dict.fromkeys(_xrefs(v["dbXrefs"], "Ensembl:"))),
                ",".join(dict.fromkeys(_xrefs(v["dbXrefs"], "MIM:"))),
                ",".join(sorted({v["Symbol"], *syn} - {""})), "",
            ]

    _write_tsv_gz(out, GENE_INFO_WRITTEN_COLUMNS, rows())
    return count[0]


def clinvar_gene_rows(raw: Path, step: Progress = no_progress) -> Iterator[tuple]:
    """ClinVar gene_condition_source_id: one row per gene-condition pair.
    id = MIM:<DiseaseMIM> (else MedGen:<ConceptID>), related_id = MedGen concept."""
    need = ["AssociatedGenes", "RelatedGenes", "ConceptID", "DiseaseName", "SourceName",
            "DiseaseMIM"]
    for v in _tsv_records(raw, need, "ClinVar gene_condition_source_id", step):
        gene = v["AssociatedGenes"] or v["RelatedGenes"]
        relation = "associated" if v["AssociatedGenes"] else "related"
        concept = f"MedGen:{v['ConceptID']}" if v["ConceptID"] else ""
        ident = f"MIM:{v['DiseaseMIM']}" if v["DiseaseMIM"] else concept
        yield (gene, v["DiseaseName"], "ClinVar", ident, concept if ident != concept else "",
               f"gene={relation}; source={v['SourceName']}")


def orphanet_rows(raw: Path, step: Progress = no_progress) -> Iterator[tuple]:
    """Orphanet product 6 XML: one row per disorder-gene association (detail = its type)."""
    size, desc = raw.stat().st_size, f"convert {raw.name}"
    with _open_raw(raw) as (fh, stream):
        try:
            for _, elem in ET.iterparse(stream, events=("end",)):
                if elem.tag != "Disorder" or elem.find("OrphaCode") is None:
                    continue
                code = (elem.findtext("OrphaCode") or "").strip()
                name = (elem.findtext("Name") or "").strip()
                for a in elem.iterfind("DisorderGeneAssociationList/DisorderGeneAssociation"):
                    yield ((a.findtext("Gene/Symbol") or "").strip(), name, "Orphanet",
                           f"ORPHA:{code}", "",
                           (a.findtext("DisorderGeneAssociationType/Name") or "").strip())
                elem.clear()
                step(desc, fh.tell(), size)
        except ET.ParseError as exc:
            raise FetchError(raw, f"malformed XML ({exc}); expected Orphanet en_product6.xml") \
                from None
    step(desc, size, size)


def hpo_rows(raw: Path, step: Progress = no_progress) -> Iterator[tuple]:
    """HPO genes_to_phenotype.txt: phenotype = HPO term name, id = HP term, related_id =
    disease."""
    need = ["gene_symbol", "hpo_id", "hpo_name", "frequency", "disease_id"]
    for v in _tsv_records(raw, need, "HPO genes_to_phenotype.txt", step):
        yield (v["gene_symbol"], v["hpo_name"], "HPO", v["hpo_id"], v["disease_id"],
               f"frequency={v['frequency'] or '-'}")


def write_phenotypes(rows: Iterable[tuple], out: Path) -> dict[str, int]:
    """Distinct rows with a gene symbol and a phenotype; returns rows per source."""
    kept = dict.fromkeys(r for r in rows if _clean(r[0]) and _clean(r[1]))
    _write_tsv_gz(out, PHENOTYPE_WRITTEN_COLUMNS, kept)
    return dict(Counter(r[2] for r in kept))


_INFO_HEADER = [
    '##INFO=<ID=SOURCE,Number=1,Type=String,Description="Variant source database">',
    '##INFO=<ID=CLNSIG,Number=.,Type=String,Description="Clinical significance (ClinVar '
    'CLNSIG), | separated">',
    '##INFO=<ID=PHENO,Number=.,Type=String,Description="Phenotype / disease names (ClinVar '
    'CLNDN), | separated">',
    '##INFO=<ID=GENE,Number=.,Type=String,Description="Gene symbols (ClinVar GENEINFO), | '
    'separated">',
]


def _info_text(values: object) -> str | None:
    """INFO value(s) -> one `|`-separated value: spaces as `_`, no `;`, `=` or `,`."""
    if values is None or isinstance(values, bool):
        return None
    items = values if isinstance(values, tuple) else (values,)
    parts = []
    for it in items:
        for p in re.split(r"[|,]", str(it)):
            p = re.sub(r"[\s;=]+", "_", p.strip()).strip("_")
            if p and p not in parts:
                parts.append(p)
    return "|".join(parts) or None


def _vcf_offset(vf: pysam.VariantFile, size: int) -> int:
    """Compressed bytes read so far (bgzf virtual offset >> 16); 0 when unknown."""
    try:
        return min(int(vf.tell()) >> 16, size)
    except (OSError, ValueError):
        return 0


def _write_vcf_header(fo: TextIO, chroms: tuple[str, ...], lengths: dict[str, int], source: str) -> None:
    fo.write("##fileformat=VCFv4.2\n")
    fo.write(f"##source=llamadna fetch-data from {source}\n")
    fo.write("##reference=GRCh38\n")
    for c in chroms:
        fo.write(f"##contig=<ID={c},length={lengths[c]},assembly=GRCh38>\n")
    fo.write("\n".join(_INFO_HEADER) + "\n")
    fo.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


def _bundle_chrom(name: str, chroms: tuple[str, ...], cache: dict[str, str | None]) -> str | None:
    """The UCSC name of VCF contig `name` when it is one of `chroms`, else None (memoised)."""
    if name not in cache:
        try:
            c: str | None = normalise_chrom(name)
        except UnknownChromosomeError:
            c = None
        cache[name] = c if c in chroms else None
    return cache[name]


def _variant_info(r_info: pysam.VariantRecordInfo, has: dict[str, bool]) -> list[tuple[str, str]]:
    """The bundle INFO fields of one ClinVar record (`has`: which ClinVar keys the header declares)."""
    fields = [("SOURCE", "ClinVar")]
    for key, src in (("CLNSIG", "CLNSIG"), ("PHENO", "CLNDN")):
        val = _info_text(r_info.get(src)) if has[src] else None
        if val:
            fields.append((key, val))
    if has["GENEINFO"]:
        gi = _info_text(r_info.get("GENEINFO"))
        genes = [g.split(":")[0] for g in gi.split("|")] if gi else []
        if genes:
            fields.append(("GENE", "|".join(dict.fromkeys(genes))))
    return fields


def _convert_records(vf: pysam.VariantFile, fo: TextIO, chroms: tuple[str, ...], size: int, desc: str,
                     step: Progress) -> tuple[Counter, Counter]:
    """Write the kept records of `vf` as bundle VCF lines; returns (kept per chromosome,
    skipped per reason)."""
    counts: Counter = Counter()
    skipped: Counter = Counter()
    names: dict[str, str | None] = {}
    has = {k: k in vf.header.info for k in ("CLNSIG", "CLNDN", "GENEINFO")}
    for i, rec in enumerate(vf):
        if i % 20000 == 0:
            step(desc, _vcf_offset(vf, size), size)
        c = _bundle_chrom(rec.chrom, chroms, names)
        if c is None:
            continue
        ref = rec.ref or ""
        if not ref or any(b not in "ACGTNacgtn" for b in ref):
            skipped["ref_not_ACGTN"] += 1
            continue
        fields = _variant_info(rec.info, has)
        alts = ",".join(rec.alts) if rec.alts else "."
        fo.write(f"{c}\t{rec.pos}\t{rec.id or '.'}\t{ref}\t{alts}\t.\t.\t"
                 + ";".join(f"{k}={v}" for k, v in fields) + "\n")
        counts[c] += 1
    return counts, skipped


def _bgzip_index_to(plain: Path, raw: Path, out: Path) -> None:
    """bgzip + tabix-index `plain`, then move the result to `out` and `out.tbi` atomically."""
    try:
        gz = Path(pysam.tabix_index(str(plain), preset="vcf", force=True))
    except (OSError, ValueError) as exc:
        raise FetchError(raw, f"could not bgzip/index the converted VCF ({exc}); is the "
                         "input sorted by position?") from None
    atomic_write(out, lambda p: os.replace(gz, p))
    atomic_write(out.with_name(out.name + ".tbi"),
                 lambda p: os.replace(gz.with_name(gz.name + ".tbi"), p))


def write_variants(raw: Path, chroms: tuple[str, ...], lengths: dict[str, int], out: Path,
                   source_url: str = "", step: Progress = no_progress) -> dict[str, int]:
    """ClinVar VCF -> bundle VCF (UCSC names, `##contig` lengths, INFO SOURCE/CLNSIG/PHENO/
    GENE), bgzipped and tabix-indexed (`out` and `out.tbi`). Returns records per chromosome.

    Records on other chromosomes, or on contigs that are not chromosomes, are skipped; so are
    records whose REF is not A/C/G/T/N (the bundle's readers reject them).
    """
    size, desc = raw.stat().st_size, f"convert {raw.name}"
    pysam.set_verbosity(0)  # ClinVar declares no ##contig lines; htslib would warn per contig
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmpdir:
        plain = Path(tmpdir) / "variants.vcf"
        try:
            vf = pysam.VariantFile(str(raw))
        except (OSError, ValueError) as exc:
            raise FetchError(raw, f"could not open VCF: {exc}") from None
        try:
            with open(plain, "w") as fo:
                _write_vcf_header(fo, chroms, lengths, source_url or raw.name)
                counts, skipped = _convert_records(vf, fo, chroms, size, desc, step)
        except (OSError, ValueError) as exc:
            raise FetchError(raw, f"could not read VCF: {exc}") from None
        finally:
            vf.close()
        if skipped:
            log.info("%s: skipped %s", raw.name, dict(skipped))
        _bgzip_index_to(plain, raw, out)
    step(desc, size, size)
    return {c: counts.get(c, 0) for c in chroms}


# --------------------------------------------------------------------------- all


def fetch_data(out_dir: str | Path, opts: FetchConfig | None = None,
               step: Progress = no_progress) -> dict:
    """Download (or reuse) the raw files under `out_dir/.download` and write the bundle files
    into `out_dir`. Returns a summary (also written to `out_dir/fetch_summary.json`)."""
    opts = opts or FetchConfig()
    out = Path(out_dir)
    chroms = parse_chromosomes(opts.chromosomes)
    srcs = resolve_sources(opts.mirror, opts.sources)
    out.mkdir(parents=True, exist_ok=True)
    f = _Fetcher(out / DOWNLOAD_DIR, opts, step)

    # every download first, so that a network problem shows before any long conversion
    fasta = [(c, f.get(srcs["hg38"], c)) for c in chroms]
    raws = {n: f.get(srcs[n]) for n in ("gencode", "gene_info", "clinvar_genes", "orphanet",
                                         "hpo", "clinvar_vcf")}

    outputs: dict[str, dict] = {}
    lengths = write_regions([(c, r.path) for c, r in fasta], out / "regions.fa", step)
    outputs["regions.fa"] = {"chromosome_lengths": lengths}
    n = write_annotation(raws["gencode"].path, chroms, out / "annotation.gtf.gz", step)
    outputs["annotation.gtf.gz"] = {"records": n}
    n = write_gene_info(raws["gene_info"].path, out / "gene_info.tsv.gz", step)
    outputs["gene_info.tsv.gz"] = {"rows": n}
    rows = (
        *clinvar_gene_rows(raws["clinvar_genes"].path, step),
        *orphanet_rows(raws["orphanet"].path, step),
        *hpo_rows(raws["hpo"].path, step),
    )
    outputs["gene_phenotypes.tsv.gz"] = {
        "rows_per_source": write_phenotypes(rows, out / "gene_phenotypes.tsv.gz")}
    per_chrom = write_variants(raws["clinvar_vcf"].path, chroms, lengths,
                               out / "variants.vcf.gz", raws["clinvar_vcf"].url, step)
    outputs["variants.vcf.gz"] = {"records_per_chrom": per_chrom}

    summary = {
        "llamadna_version": __version__,
        "chromosomes": list(chroms),
        "downloads": [
            {"source": r.source, "url": r.url, "file": str(r.path.relative_to(out)),
             "bytes": r.path.stat().st_size, "md5_published": r.md5,
             "downloaded_now": r.downloaded}
            for r in [*(r for _, r in fasta), *raws.values()]
        ],
        "outputs": outputs,
        "not_fetched": {
            "OMIM": "needs a licence key (https://omim.org/downloads)",
            "COSMIC": "needs a login and a licence",
            "dbSNP": "tens of GB",
        },
    }
    atomic_write(out / "fetch_summary.json",
                 lambda p: p.write_text(json.dumps(summary, indent=2) + "\n"))
    return summary
