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


# Primary chromosome lengths of the two builds (UCSC names; GRC assembly reports): a `##contig`
# length names the build a file was made for. chrM is left out: the rCRS (16,569 bp) is GRCh38's
# chrM and GRCh37's MT alike.
CHROM_LENGTHS = {
    "GRCh38": {
        "chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555,
        "chr5": 181538259, "chr6": 170805979, "chr7": 159345973, "chr8": 145138636,
        "chr9": 138394717, "chr10": 133797422, "chr11": 135086622, "chr12": 133275309,
        "chr13": 114364328, "chr14": 107043718, "chr15": 101991189, "chr16": 90338345,
        "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
        "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415,
    },
    "GRCh37": {
        "chr1": 249250621, "chr2": 243199373, "chr3": 198022430, "chr4": 191154276,
        "chr5": 180915260, "chr6": 171115067, "chr7": 159138663, "chr8": 146364022,
        "chr9": 141213431, "chr10": 135534747, "chr11": 135006516, "chr12": 133851895,
        "chr13": 115169878, "chr14": 107349540, "chr15": 102531392, "chr16": 90354753,
        "chr17": 81195210, "chr18": 78077248, "chr19": 59128983, "chr20": 63025520,
        "chr21": 48129895, "chr22": 51304566, "chrX": 155270560, "chrY": 59373566,
    },
}


def build_of_length(chrom: str, length: int) -> str | None:
    """The build whose primary chromosome `chrom` (normalised) has exactly `length` bases;
    None when neither has (another assembly, a region, chrM, a non-primary contig)."""
    for build, lengths in CHROM_LENGTHS.items():
        if lengths.get(chrom) == length:
            return build
    return None


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
