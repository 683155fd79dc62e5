"""Input files and options through the command line, as a careless user gives them: exit status
2 and one line naming the file (and line) with the true cause, no traceback, nothing left behind;
or, for input a user may rightly give (a FASTA with a byte-order mark, a record of N only), a
result that says what was done with it."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import threading
from dataclasses import asdict

import numpy as np
import pytest
from typer.testing import CliRunner

from llamadna.cli import app
from tests.test_annotate import save_tiny_model

runner = CliRunner()
RNG = np.random.default_rng(7)
SEQS = ["".join(RNG.choice(list("ACGT"), n)) for n in (60, 23, 41, 80)]


def _one_line_error(r, *causes: str) -> str:
    """The run stopped with exit 2 and one `error:` line holding every cause; returns the text
    with its line breaks (rich wraps long lines) folded."""
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    text = " ".join(r.output.split())
    assert text.count("error:") == 1, text
    for cause in causes:
        assert cause in text, (cause, text)
    return text


# ------------------------------------------------------------------------------ tiny model
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny untrained model of tests/test_annotate.py, saved as `train` saves one."""
    return save_tiny_model(tmp_path_factory.mktemp("model"), llm_layers=1)


def _annotate(fasta, model_dir, out, *extra):
    return runner.invoke(app, ["annotate", str(fasta), "--model", str(model_dir), "--out", str(out),
                               "--batch-size", "2", "--max-new-tokens", "4", *extra])


def _fasta_bytes(records) -> bytes:
    return "".join(f">{i} desc\n{s}\n" for i, s in records).encode()


# ------------------------------------------------------------------------------ splash
@pytest.mark.parametrize("option,value", [("--anchor-len", "40"), ("--target-len", "0")])
def test_splash_kmer_length_outside_the_packing_is_refused_up_front(option, value, tmp_path):
    reads = "".join(f"@r{i}\nACGTACGTACGTAAGT\n+\nIIIIIIIIIIIIIIII\n" for i in range(20))
    for name in ("a", "b"):
        (tmp_path / f"{name}.fq").write_text(reads)
    out = tmp_path / "anchors.tsv"
    r = runner.invoke(app, ["splash", "--sample", f"a={tmp_path / 'a.fq'}",
                            "--sample", f"b={tmp_path / 'b.fq'}", "--out", str(out), option, value])
    _one_line_error(r, f"{option} {value}:", "must be 1 to 32 bases", "64-bit word")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fq", "b.fq"]


# ------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def dataset_dir(small_bundle, tmp_path_factory):
    from llamadna.data.build import BuildConfig, build_dataset
    from llamadna.io.dataset import write_dataset

    d = tmp_path_factory.mktemp("dataset")
    write_dataset(*build_dataset(small_bundle.path, BuildConfig(window=64)), d)
    return d


def _damaged_dataset(dataset_dir, tmp_path, kind: str):
    d = shutil.copytree(dataset_dir, tmp_path / "ds")
    pq = d / "dataset.parquet"
    if kind == "text":
        pq.write_text("Sequence\tAnnotation\nACGT\tsome sentence\n")
    else:  # a copy cut short
        pq.write_bytes(pq.read_bytes()[: pq.stat().st_size // 2])
    return d, pq


DAMAGED = {"text": "not a Parquet file", "truncated": "a truncated Parquet file"}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_predict_on_a_damaged_dataset_table(kind, dataset_dir, model_dir, tmp_path):
    d, pq = _damaged_dataset(dataset_dir, tmp_path, kind)
    out = tmp_path / "p.tsv"
    r = runner.invoke(app, ["predict", "--dataset", str(d), "--model", str(model_dir), "--out", str(out)])
    _one_line_error(r, f"{pq}: {DAMAGED[kind]}", "rebuild it with `llamadna build-dataset`")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def _model_with_train_config(model_dir, tmp_path, dataset):
    """The tiny model with the train_config.json `llamadna train` writes beside it (its encoder
    setting names the model's own directory: evaluate checks the dataset before any training)."""
    from llamadna.train.config import TrainConfig

    m = shutil.copytree(model_dir, tmp_path / "model")
    cfg = TrainConfig(dataset=str(dataset), out=str(m), split="split_random", encoder=str(m))
    (m / "train_config.json").write_text(json.dumps(asdict(cfg)))
    return m


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_evaluate_on_a_damaged_dataset_table_leaves_nothing(kind, dataset_dir, model_dir, tmp_path):
    d, pq = _damaged_dataset(dataset_dir, tmp_path, kind)
    m = _model_with_train_config(model_dir, tmp_path, d)
    out = tmp_path / "report"
    r = runner.invoke(app, ["evaluate", "--model", str(m), "--dataset", str(d), "--out", str(out),
                            "--split", "split_random", "--systems", "majority"])
    text = _one_line_error(r, f"{pq}: {DAMAGED[kind]}")
    assert "index" not in text
    assert not out.exists()  # no report directory, no predictions/


def test_limit_below_one_is_refused_naming_the_option(dataset_dir, model_dir, tmp_path):
    out = tmp_path / "p.tsv"
    for limit in ("0", "-3"):
        r = runner.invoke(app, ["predict", "--dataset", str(dataset_dir), "--model", str(model_dir),
                                "--out", str(out), "--limit", limit])
        text = _one_line_error(r, f"--limit {limit}:", "must be >= 1")
        assert "no rows with" not in text
    m = _model_with_train_config(model_dir, tmp_path, dataset_dir)
    report = tmp_path / "report"
    r = runner.invoke(app, ["evaluate", "--model", str(m), "--dataset", str(dataset_dir),
                            "--out", str(report), "--split", "split_random", "--limit", "0"])
    _one_line_error(r, "--limit 0:", "must be >= 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# ------------------------------------------------------------------------------ FASTA
def test_fasta_with_a_byte_order_mark_is_read(model_dir, tmp_path):
    records = list(zip(["s1", "s2"], SEQS[:2]))
    plain, bom = tmp_path / "plain.fa", tmp_path / "bom.fa"
    plain.write_bytes(_fasta_bytes(records))
    bom.write_bytes(b"\xef\xbb\xbf" + _fasta_bytes(records))
    r = _annotate(bom, model_dir, tmp_path / "bom.jsonl")
    assert r.exit_code == 0, r.output
    assert _annotate(plain, model_dir, tmp_path / "plain.jsonl").exit_code == 0
    got = [json.loads(x) for x in (tmp_path / "bom.jsonl").read_text().splitlines()]
    want = [json.loads(x) for x in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert [g["id"] for g in got] == ["s1", "s2"]
    assert [g["annotation"] for g in got] == [w["annotation"] for w in want]


def test_fifo_as_fasta_names_the_true_cause(model_dir, tmp_path):
    fifo = tmp_path / "seqs.fa"
    os.mkfifo(fifo)
    # a writer that gives EOF at once, should anything open the pipe: the test cannot hang
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    out = tmp_path / "p.tsv"
    try:
        r = _annotate(fifo, model_dir, out)
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
        writer.join(5)
        os.close(fd)
    text = _one_line_error(r, f"{fifo}: is a named pipe (FIFO), not a regular file",
                           "save the stream to a file")
    assert "empty file" not in text and not out.exists()


def test_header_id_that_is_not_utf8_is_refused_with_its_line(model_dir, tmp_path):
    fa = tmp_path / "latin1.fa"
    fa.write_bytes(b">s1 caf\xe9 description\n" + SEQS[0].encode() + b"\n>s\xe9q2\n"
                   + SEQS[1].encode() + b"\n")
    out = tmp_path / "p.tsv"
    r = _annotate(fa, model_dir, out)
    _one_line_error(r, f"{fa}:3:", "the id of record 2 is not UTF-8 text (byte 0xe9 at column 3)")
    assert not out.exists()
    # bytes outside the id (the description, never used) do not change the id: read as given
    fa.write_bytes(b">s1 caf\xe9 description\n" + SEQS[0].encode() + b"\n")
    r = _annotate(fa, model_dir, tmp_path / "ok.jsonl")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ok.jsonl").read_text())["id"] == "s1"


def test_tiles_of_n_only_keep_their_row_without_a_gene_claim(model_dir, tmp_path, caplog):
    fa = tmp_path / "seqs.fa"
    gap = SEQS[2][:40] + "N" * 40  # two tiles of 40: bases, then N only
    fa.write_bytes(_fasta_bytes([("s1", SEQS[0][:40]), ("allN", "N" * 40), ("gap", gap)]))
    out = tmp_path / "p.jsonl"
    r = _annotate(fa, model_dir, out, "--tile", "40")
    assert r.exit_code == 0, r.output
    assert "2 tiles without any A/C/G/T base (all N) not annotated" in " ".join(r.output.split())
    warned = [x.getMessage() for x in caplog.records if x.levelname == "WARNING"]
    assert any(f"{fa}:3 (record 'allN'): 2 tile(s) hold no A/C/G/T base" in w for w in warned), warned
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in rows] == ["s1", "allN", "gap:1-40", "gap:41-80"]
    for row in rows:
        empty = row["id"] in ("allN", "gap:41-80")
        assert (row["skipped"] is not None) == empty, row
        if empty:
            assert "no A/C/G/T base" in row["skipped"]
            assert all(row[c] is None for c in ("annotation", "gene", "chrom", "source", "confidence"))
        else:
            assert row["annotation"] and row["confidence"] is not None
            # a source for a gene or an undecided sentence, none for a stated other outcome
            assert (row["source"] is not None) == (row["outcome"] in ("gene", None))
    r = _annotate(fa, model_dir, tmp_path / "p.gff3", "--tile", "40")
    assert r.exit_code == 0, r.output
    gff = (tmp_path / "p.gff3").read_text().splitlines()[1:]
    skipped = [line.split("\t") for line in gff if "skipped=" in line]
    assert [c[8].split(";")[0] for c in skipped] == ["ID=allN", "ID=gap:41-80"]
    assert all(c[5] == "." and "Note=" not in c[8] for c in skipped)
    # a record with no sequence at all stays an error naming its line
    fa.write_bytes(b">empty\n>s2\n" + SEQS[1].encode() + b"\n")
    _one_line_error(_annotate(fa, model_dir, tmp_path / "e.tsv"), f"{fa}:1", "record has no sequence")


# ------------------------------------------------------------------------------ build-dataset
def _plain_vcf(d, edit):
    """The bundle's VCF as plain text, header and records passed through `edit(header, body)`."""
    with gzip.open(d / "variants.vcf.gz", "rt") as fh:
        lines = fh.read().splitlines()
    header = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    header, body = edit(header, body)
    (d / "variants.vcf.gz").unlink()
    (d / "variants.vcf.gz.tbi").unlink(missing_ok=True)
    (d / "variants.vcf").write_text("\n".join(header + body) + "\n")
    return d / "variants.vcf"


def _build(d, tmp_path):
    out = tmp_path / "out"
    return runner.invoke(app, ["build-dataset", "--data", str(d), "--out", str(out)]), out


HEADERS = {
    "##reference": ("##reference=file:///refs/hg19.fa", "the header says GRCh37 (##reference="),
    "##contig length": ("##contig=<ID=1,length=249250621>",
                        "the header says GRCh37 (##contig 1 is 249,250,621 bp long, GRCh37's chr1)"),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_vcf_header_of_another_build(case, small_bundle, tmp_path):
    line, cause = HEADERS[case]
    d = shutil.copytree(small_bundle.path, tmp_path / "bundle")
    vcf = _plain_vcf(d, lambda h, b: ([h[0], line, *h[1:]], b))
    r, out = _build(d, tmp_path)
    _one_line_error(r, f"{vcf}:2: {cause}", "read as the GRCh38 variants")
    assert not out.exists()


def test_vcf_rows_of_another_build(small_bundle, tmp_path):
    d = shutil.copytree(small_bundle.path, tmp_path / "bundle")

    def shift(header, body):  # every position one base on, as a 0-based file read 1-based
        rows = [x.split("\t") for x in body]
        return header, ["\t".join([c[0], str(int(c[1]) + 1), *c[2:]]) for c in rows]

    vcf = _plain_vcf(d, shift)
    r, out = _build(d, tmp_path)
    text = _one_line_error(r, "REF alleles", "differ from regions.fa", "another build than GRCh38")
    m = re.search(rf"{re.escape(str(vcf))}:(\d+): [\d,]+ of [\d,]+ REF alleles \((\d+)%\)", text)
    assert m and int(m[2]) > 50, text
    line = vcf.read_text().splitlines()[int(m[1]) - 1].split("\t")
    chrom, pos, ref = line[0], int(line[1]), line[3]
    start0, seq = small_bundle.genome[chrom]
    assert seq[pos - 1 - start0 : pos - 1 - start0 + len(ref)].tobytes().decode() != ref
    assert not out.exists()


def _gtf_line(d, edit):
    """Append a copy of the GTF's last line as an exon line changed by `edit(columns)`."""
    with gzip.open(d / "annotation.gtf.gz", "rt") as fh:
        lines = fh.read().splitlines()
    cols = lines[-1].split("\t")
    cols[2] = "exon"
    lines.append("\t".join(edit(cols)))
    with gzip.open(d / "annotation.gtf.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    return d / "annotation.gtf.gz", len(lines)


GTF_DAMAGES = {
    "unknown chromosome": (lambda c: ["chrZZ", *c[1:]], "unknown chromosome name 'chrZZ'"),
    "unclosed quote": (lambda c: [*c[:8], 'gene_id "ENSG00000000001; gene_name "X";'],
                       "malformed GTF attribute column"),
    "GFF3 attributes": (lambda c: [*c[:8], "ID=exon1;Parent=gene1"],
                        "this is GFF3 (key=value); expected GTF's key \"value\"; pairs"),
}


@pytest.mark.parametrize("case", list(GTF_DAMAGES))
def test_gtf_exon_line_damaged(case, small_bundle, tmp_path):
    edit, cause = GTF_DAMAGES[case]
    d = shutil.copytree(small_bundle.path, tmp_path / "bundle")
    gtf, line = _gtf_line(d, edit)
    r, out = _build(d, tmp_path)
    _one_line_error(r, f"{gtf}:{line}:", cause)
    assert not out.exists()


@pytest.mark.slow
def test_evaluate_prints_a_table_per_split(dataset_dir, model_dir, tmp_path):
    """The whole command, options to printed table (the majority system: nothing is trained)."""
    m = _model_with_train_config(model_dir, tmp_path, dataset_dir)
    r = runner.invoke(app, ["evaluate", "--model", str(m), "--dataset", str(dataset_dir), "--out",
                            str(tmp_path / "report"), "--split", "split_random", "--systems",
                            "majority", "--n-boot", "20"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "report" / "metrics.json").read_text())["meta"]["eval_config"]
    assert (cfg["splits"], cfg["systems"], cfg["n_boot"]) == (["split_random"], ["majority"], 20)
    assert (cfg["data_dir"], cfg["splash"], cfg["index"]) == (None, {}, None)
    assert "split_random: " in r.output and "│ majority " in r.output and "metrics.json" in r.output
