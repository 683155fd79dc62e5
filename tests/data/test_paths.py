import pytest

from llamadna.data.paths import discover_sets
from llamadna.errors import DataDirError


def touch(d, *names):
    for n in names:
        (d / n).write_text("x")


def test_complete_builds_are_found(tmp_path):
    touch(tmp_path, "regions.fa", "annotation.gtf.gz", "variants.vcf.gz")
    (s,) = discover_sets(tmp_path)
    assert (s.build, s.fasta.name, s.variants.name) == ("GRCh38", "regions.fa", "variants.vcf.gz")


def test_a_build_without_its_reference_is_never_skipped_quietly(tmp_path):
    touch(tmp_path, "regions.fa", "annotation.gtf.gz", "variants.vcf.gz",
          "annotation.grch37.gtf.gz", "variants.grch37.vcf.gz")
    with pytest.raises(DataDirError, match=r"found annotation\.grch37\.gtf\.gz, variants\.grch37\.vcf\.gz "
                       r"\(GRCh37\) but not its reference regions\.grch37\.fa"):
        discover_sets(tmp_path)


def test_missing_parts_are_named_with_their_real_file_names(tmp_path):
    touch(tmp_path, "regions.grch37.fa", "variants.grch37.vcf.gz")
    with pytest.raises(DataDirError, match=r"annotation \(annotation\.grch37\.gtf\.gz or "
                       r"annotation\.grch37\.features\.tsv\.gz\)") as exc:
        discover_sets(tmp_path)
    assert "{t}" not in str(exc.value)
