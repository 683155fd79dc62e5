import json
from dataclasses import asdict

import polars as pl
from typer.testing import CliRunner

from llamadna.cli import app
from llamadna.train.config import TrainConfig

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


def test_error_lines_are_printed_verbatim(tmp_path, small_bundle):
    # rich would turn ":100:" into an emoji and "[b]" into markup
    import shutil

    d = tmp_path / "bundle"
    shutil.copytree(small_bundle.path, d)
    (d / "regions.fa").write_text(">chr1\n" + "ACGT\n" * 98 + "AC[b]T\n")
    r = runner.invoke(app, ["build-dataset", "--data", str(d), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "regions.fa:100 (record 'chr1'): invalid character '['" in " ".join(r.output.split())


def test_a_bug_keeps_its_traceback(monkeypatch, small_bundle, tmp_path):
    """Only the errors a user can fix become one line; an internal ValueError is a bug."""
    import llamadna.data.build

    def broken(*args, **kwargs):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(llamadna.data.build, "build_dataset", broken)
    r = runner.invoke(app, ["build-dataset", "--data", str(small_bundle.path), "--out",
                            str(tmp_path / "o")])
    assert r.exit_code == 1 and isinstance(r.exception, ValueError)
    assert "error:" not in r.output


def test_train_options_map_onto_the_config(monkeypatch, tmp_path):
    """Every option lands in its TrainConfig field; the rest keep the config's own defaults."""
    import llamadna.train.train

    seen = {}
    monkeypatch.setattr(llamadna.train.train, "train", lambda cfg, **kw: seen.setdefault("cfg", cfg)
                        and {"steps": 0, "seconds": 0, "val": [], "trainable_parameters": 0,
                             "total_parameters": 0})
    r = runner.invoke(app, ["train", "--dataset", "ds", "--out", str(tmp_path / "m"), "--encoder",
                            "enc", "--no-dna", "--projector", "linear", "--lora-r", "4",
                            "--epochs", "7", "--negative-rate", "0.5"])
    assert r.exit_code == 0, r.output
    got = asdict(seen["cfg"])
    want = asdict(TrainConfig(dataset="ds", out=str(tmp_path / "m"), encoder="enc", use_dna=False,
                              projector_type="linear", lora_r=4, epochs=7, negative_rate=0.5))
    assert got == want


def test_build_dataset_refuses_an_output_that_is_a_file_before_any_work(tmp_path, monkeypatch):
    import llamadna.data.build

    out = tmp_path / "ds"
    out.write_text("not a directory")
    monkeypatch.setattr(llamadna.data.build, "build_dataset", lambda *a, **k: 1 / 0)  # never reached
    r = runner.invoke(app, ["build-dataset", "--data", str(tmp_path), "--out", str(out)])
    assert r.exit_code == 2 and "exists and is not a directory" in r.output
    assert out.read_text() == "not a directory"


def test_the_cli_starts_without_the_heavy_libraries():
    """`import llamadna.cli` (every command, `--help` included) loads none of torch, transformers,
    pandas and peft: each command imports what it runs (pandas: SPLASH's tables only)."""
    import subprocess
    import sys

    code = ("import sys, llamadna.cli\n"
            "print(' '.join(m for m in ('torch', 'transformers', 'pandas', 'peft') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "", (r.stdout, r.stderr[-2000:])
