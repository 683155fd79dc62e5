import json

import polars as pl
from typer.testing import CliRunner

from llamadna.cli import app

runner = CliRunner()


def test_help_on_every_command():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    names = [c.name for c in app.registered_commands]
    assert "build-dataset" in names
    for name in names:
        r = runner.invoke(app, [name, "--help"])
        assert r.exit_code == 0, name
        assert "Usage" in r.output


def test_build_dataset_command(small_bundle, tmp_path):
    out = tmp_path / "ds"
    r = runner.invoke(app, ["build-dataset", "--data", str(small_bundle.path), "--out", str(out),
                            "--window", "48", "--sources", "ClinVar,dbSNP"])
    assert r.exit_code == 0, r.output
    df = pl.read_parquet(out / "dataset.parquet")
    assert set(df["Dataset"]) == {"ClinVar", "dbSNP"} and df["Sequence"].str.len_chars().max() == 48
    s = json.loads((out / "summary.json").read_text())
    assert s["options"]["sources"] == ["ClinVar", "dbSNP"]
    assert "source_not_selected:COSMIC" in s["dropped"]["GRCh38"]


def test_bad_input_is_one_clear_line(tmp_path, small_bundle):
    r = runner.invoke(app, ["build-dataset", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "error:" in r.output and "no reference FASTA" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["build-dataset", "--data", str(small_bundle.path), "--out",
                            str(tmp_path / "o"), "--edge", "wrap"])
    assert r.exit_code == 2 and "edge must be" in r.output


def test_default_data_dir_error(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMADNA_DATA", str(tmp_path / "missing"))
    r = runner.invoke(app, ["build-dataset", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "LLAMADNA_DATA" in r.output
