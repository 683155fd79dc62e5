"""Damaged inputs through the command line, as a user meets them: exit status 2, one line that
names the file (and line) with the true cause, no traceback, and no output or temporary left."""

from __future__ import annotations

import gzip
import shutil

import pytest
from typer.testing import CliRunner

from llamadna.cli import app

runner = CliRunner()


def _vcf_line(d, body: str):
    """Replace the bundle's VCF by a plain one whose first data line is `body`."""
    with gzip.open(d / "variants.vcf.gz", "rt") as fh:
        header = [line for line in fh if line.startswith("#")]
    (d / "variants.vcf.gz").unlink()
    (d / "variants.vcf.gz.tbi").unlink(missing_ok=True)
    (d / "variants.vcf").write_text("".join(header) + body + "\n")
    return "variants.vcf", len(header) + 1


def _pos(value):
    def damage(d):
        return _vcf_line(d, f"chr1\t{value}\trs1\tA\tG\t.\t.\tSOURCE=ClinVar")
    return damage


def _past_contig(d):
    with gzip.open(d / "variants.vcf.gz", "rt") as fh:
        text = fh.read()
    header = "".join(line for line in text.splitlines(True)
                     if line.startswith("#") and not line.startswith("##contig=<ID=chr1,"))
    header = header.replace("#CHROM", "##contig=<ID=chr1,length=100>\n#CHROM")
    (d / "variants.vcf.gz").unlink()
    (d / "variants.vcf.gz.tbi").unlink(missing_ok=True)
    (d / "variants.vcf").write_text(header + "chr1\t101\trs1\tA\tG\t.\t.\tSOURCE=ClinVar\n")
    return "variants.vcf", header.count("\n") + 1


def _truncated_fasta(d):
    data = gzip.compress((d / "regions.fa").read_bytes())
    (d / "regions.fa").unlink()
    (d / "regions.fa.gz").write_bytes(data[: len(data) // 2])
    return "regions.fa.gz", None


def _gtf_exon(d):
    with gzip.open(d / "annotation.gtf.gz", "rt") as fh:
        lines = fh.read().splitlines()
    cols = lines[-1].split("\t")
    cols[2], cols[3] = "exon", "12x45"
    lines.append("\t".join(cols))
    with gzip.open(d / "annotation.gtf.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return "annotation.gtf.gz", len(lines)


def _no_regions(d):
    (d / "regions.fa").unlink()
    return None, None


DAMAGES = {
    "POS abc": (_pos("abc"), "POS 'abc': expected a 1-based position"),
    "POS -5": (_pos("-5"), "POS '-5': expected a 1-based position"),
    "POS 0": (_pos("0"), "POS '0': expected a 1-based position"),
    "POS past ##contig": (_past_contig, "POS 101 is past the end of chr1 (100 bp"),
    "truncated gzip FASTA": (_truncated_fasta, "truncated gzip file"),
    "damaged exon line": (_gtf_exon, "bad coordinates start='12x45'"),
    "missing regions.fa": (_no_regions, "but not its reference regions.fa"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_build_dataset_damaged_bundle(case, small_bundle, tmp_path):
    damage, cause = DAMAGES[case]
    d = shutil.copytree(small_bundle.path, tmp_path / "bundle")
    name, line = damage(d)
    out = tmp_path / "out"
    r = runner.invoke(app, ["build-dataset", "--data", str(d), "--out", str(out)])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "error:" in text and cause in text and "Traceback" not in r.output, text
    if name is not None:
        where = f"{d / name}:{line}" if line is not None else str(d / name)
        assert where in text, text
    assert not out.exists()


def test_plain_gzip_vcf_builds(small_bundle, tmp_path):
    d = shutil.copytree(small_bundle.path, tmp_path / "bundle")
    with gzip.open(d / "variants.vcf.gz", "rb") as fh:
        plain = fh.read()
    (d / "variants.vcf.gz").write_bytes(gzip.compress(plain))  # gzip, not bgzip
    (d / "variants.vcf.gz.tbi").unlink()
    r = runner.invoke(app, ["build-dataset", "--data", str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output


def test_splash_damaged_reads_and_sheet(tmp_path):
    reads = "".join(f"@r{i}\nACGTACGTAC\n+\nIIIIIIIIII\n" for i in range(3000)).encode()
    (tmp_path / "a.fq.gz").write_bytes(gzip.compress(reads))
    data = gzip.compress(reads)
    (tmp_path / "b.fq.gz").write_bytes(data[: len(data) // 2])
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tpath\na\ta.fq.gz\nb\tgone.fq.gz\n")
    out = tmp_path / "anchors.tsv"
    r = runner.invoke(app, ["splash", "--samples", str(sheet), "--out", str(out)])
    assert r.exit_code == 2 and f"{sheet}:3: sample 'b': reads file" in " ".join(r.output.split())
    sheet.write_text("sample\tpath\na\ta.fq.gz\nb\tb.fq.gz\n")
    r = runner.invoke(app, ["splash", "--samples", str(sheet), "--out", str(out)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{tmp_path / 'b.fq.gz'}:" in text and "truncated gzip file" in text
    assert "record 0 (line 0)" not in text and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fq.gz", "b.fq.gz", "s.tsv"]
