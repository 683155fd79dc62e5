import pytest

from llamadna.io.chroms import UnknownChromosomeError, normalise_chrom


@pytest.mark.parametrize(
    "name, expected",
    [
        ("1", "chr1"), ("chr1", "chr1"), ("22", "chr22"), ("X", "chrX"), ("chrx", "chrX"),
        ("MT", "chrM"), ("chrM", "chrM"), ("chrMT", "chrM"), ("M", "chrM"),
        ("NC_000021.9", "chr21"), ("NC_000023.11", "chrX"), ("NC_012920.1", "chrM"),
        ("chr1_KI270706v1_random", "chr1_KI270706v1_random"), ("chrUn_GL000220v1", "chrUn_GL000220v1"),
        ("KI270728.1", "KI270728.1"), ("chrEBV", "chrEBV"),
    ],
)
def test_normalise(name, expected):
    assert normalise_chrom(name) == expected


@pytest.mark.parametrize("name", ["chr23", "chromosome1", "scaffold_7", "0", "chr1;", ""])
def test_unknown_names_are_errors(name):
    with pytest.raises(UnknownChromosomeError, match="unknown chromosome name"):
        normalise_chrom(name)
