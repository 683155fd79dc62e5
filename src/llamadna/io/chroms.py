"""Chromosome-name normalisation: `1`/`chr1`, `MT`/`chrM`, `X`/`chrX` -> UCSC style.

Known non-primary contigs (UCSC `chr1_KI270706v1_random`, `chrUn_...`, `..._alt`, `chrEBV`,
GenBank/RefSeq accessions such as `KI270728.1`, `GL000009.2`, `NC_012920.1`) pass through
unchanged so that whole-genome files work; anything else is an error.
"""

from __future__ import annotations

import re

_PRIMARY = {str(i) for i in range(1, 23)} | {"X", "Y"}
_MITO = {"M", "MT"}
_REFSEQ_PRIMARY = {f"NC_0000{i:02d}" for i in range(1, 25)}  # NC_000001 .. NC_000024 (X=23, Y=24)
_NONPRIMARY = re.compile(
    r"^(chr[0-9XYM]{1,2}_[A-Za-z0-9]+v\d+_(random|alt|fix)"
    r"|chr[0-9XY]{1,2}_[A-Za-z0-9_.]+_(alt|fix|random)"
    r"|chrUn_[A-Za-z0-9]+v\d+(_decoy)?"
    r"|chrEBV|EBV|hs37d5|(GL|KI|KN|KQ|KV|KZ|ML|MU|JH)\d+(\.\d+)?)$"
)


class UnknownChromosomeError(ValueError):
    pass


def normalise_chrom(name: str) -> str:
    """Return the UCSC-style name of a chromosome (`chr1` .. `chr22`, `chrX`, `chrY`, `chrM`).

    Raises UnknownChromosomeError for names that are neither a known primary chromosome nor a
    recognised non-primary contig.
    """
    raw = name.strip()
    core = raw[3:] if raw.lower().startswith("chr") else raw
    if core.upper() in _MITO:
        return "chrM"
    if core in _PRIMARY or core.upper() in {"X", "Y"}:
        return "chr" + core.upper()
    # RefSeq accessions of the primary assembly (NC_000001.11 = chr1, ..., NC_012920.1 = chrM)
    acc = raw.split(".")[0]
    if acc in _REFSEQ_PRIMARY:
        n = int(acc[-2:])
        return "chr" + {23: "X", 24: "Y"}.get(n, str(n))
    if acc == "NC_012920":
        return "chrM"
    if _NONPRIMARY.match(raw):
        return raw
    raise UnknownChromosomeError(
        f"unknown chromosome name {name!r}: expected 1-22/X/Y/M(T) with or without 'chr', "
        "or a known non-primary contig (e.g. chrUn_..., KI270728.1)"
    )
