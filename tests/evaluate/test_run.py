"""`evaluate` end to end on a generated bundle: every system on the same rows, intervals, the
template floor, the audits, the nested divergence curves, folds and a benchmark directory."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from llamadna.evaluate.config import EvalConfig
from llamadna.evaluate.run import evaluate
from llamadna.evaluate.schema import read_metrics
from llamadna.evaluate.systems import BY_NAME, LOOKUPS, RETRIEVAL_SYSTEMS, SYSTEM_NAMES
from llamadna.train.cache import FINGERPRINT_FILE, TrainedModels, _cached, split_fingerprint
from llamadna.train.config import TrainConfig
from llamadna.train.train import train
from tests.conftest import model_workspace

TINY = dict(batch_size=4, llm_pretrain_steps=10, text_vocab_size=300, llm_hidden_size=32,
            llm_layers=1, max_val_rows=8, warmup_steps=2, checkpoint_every=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bundle_factory):
    root = tmp_path_factory.mktemp("eval")
    data = model_workspace(root, bundle_factory, seed=11, n_variants=150)
    train(TrainConfig(dataset=str(root / "dataset"), out=str(root / "model"),
                      encoder=str(root / "encoder"), split="split_random", max_steps=6, **TINY))
    return root, data


def _cfg(root, data, **kw):
    return EvalConfig(model=str(root / "model"), dataset=str(root / "dataset"), data_dir=str(data),
                      max_new_tokens=24, n_boot=50, **kw)


@pytest.fixture(scope="module")
def evaluated(trained):
    """The default systems of a model without retrieval on 8 test rows of split_random."""
    root, data = trained
    cfg = _cfg(root, data, out=str(root / "report"), splits=("split_random",), limit=8,
               divergence_rates=(0.0, 0.3), divergence_rows=5, negatives_per_kind=3,
               tuning_negatives_per_kind=2)
    return root, cfg, evaluate(cfg, TrainedModels(cfg.model, cfg.dataset, cfg.out, max_steps=3))


@pytest.mark.slow
def test_evaluate_all_systems_and_report(evaluated):
    root, cfg, m = evaluated
    res = m["splits"]["split_random"]
    # a model without retrieval: every system but the retrieval model's own
    assert res["rows"] == 8 and set(res["systems"]) == set(SYSTEM_NAMES) - set(RETRIEVAL_SYSTEMS)
    for name, sm in res["systems"].items():
        for k in ("accuracy", "rougeL", "meteor", "field_mean"):  # means: the point lies inside
            lo, hi = sm["intervals"][k]
            assert 0 <= lo <= sm[k] + 1e-9 and sm[k] <= hi + 1e-9 <= 1 + 1e-9, (name, k)
        for k in ("f1_macro", "bleu"):  # not means: a percentile interval may miss the point on 8 rows
            lo, hi = sm["intervals"][k]
            assert 0 <= lo <= hi <= 1, (name, k)
    # the template floor: every field wrong, the text metrics it gets for free
    floor = res["template_floor"]
    assert all(v == 0 for v in floor["field_accuracy"].values() if v is not None) and floor["rougeL"] > 0.3
    assert 0 < res["ceiling"]["ceiling"] <= 1 and "n_conflicting_groups" in res["ceiling"]
    assert set(res["leak_audit"]) == {"split_random"}
    # the lookups recover chromosome and gene of undiverged reference windows
    div = res["divergence"]
    assert set(div["systems"]) == {"model", *LOOKUPS} and div["rates"] == [0.0, 0.3]
    assert (div["rows"], div["of_rows"]) == (5, 8)
    for name in LOOKUPS:
        look = div["systems"][name]["field_accuracy"]
        assert look["chrom"][0] == 1.0 and look["gene"][0] == 1.0, name
    # one note per system run, in the table's order; the lookups' say where their source came from
    assert list(m["systems"]) == [n for n in SYSTEM_NAMES if n not in RETRIEVAL_SYSTEMS]
    assert m["systems"]["model"] == BY_NAME["model"].note
    assert all("training split" in m["systems"][n] for n in LOOKUPS)
    saved = read_metrics(root / "report" / "metrics.json")  # the schema's every required key
    assert saved["splits"]["split_random"]["systems"]["model"]["n"] == 8
    html = (root / "report" / "report.html").read_text()
    assert "blastn" in html and "template floor" in html and "reported" in html
    for name in SYSTEM_NAMES:
        path = root / "report" / "predictions" / f"split_random.{name}.tsv"
        assert path.exists() == (name not in RETRIEVAL_SYSTEMS), name


@pytest.mark.slow
def test_evaluate_out_of_reference_section(evaluated):
    """A model without retrieval: its own outcomes on the test rows and on 3 negatives of each
    kind, against blastn with thresholds tuned on validation rows, and the floor."""
    from llamadna.data.negatives import NEGATIVE_KINDS
    from llamadna.evaluate.out_of_reference import PRED_LABELS

    root, cfg, m = evaluated
    section = m["out_of_reference"]
    assert section["split"] == "split_random" and section["units"] == ["split_random"]
    assert section["rows"]["gene"] == 8 and "novel" not in section["rows"]  # no index: no novel setting
    assert set(section["rows"]) - {"gene"} <= {*NEGATIVE_KINDS, "repeat_in_gene"}
    assert {"random", "shuffled", "foreign"} <= set(section["rows"])
    assert all(0 < n <= 3 for k, n in section["rows"].items() if k != "gene")
    # no retriever without an index; blastn's rule tuned as it was and on diverged copies too
    assert list(section["systems"]) == ["model", "blastn_tuned", "blastn_tuned_diverged"]
    # tuning rows: 8 validation genic rows (--limit), at most 2 negatives of each kind, the genic rows again
    assert 2 * 8 < section["validation_rows"] <= 2 * 8 + 2 * len(NEGATIVE_KINDS)
    assert list(section["thresholds"]["blastn_tuned"]) == ["split_random"]  # per unit
    assert list(section["thresholds"]["blastn_tuned_diverged"]) == ["split_random"]
    assert "max_evalue" in section["thresholds"]["blastn_tuned"]["split_random"]
    n = sum(section["rows"].values())
    for name, s in section["systems"].items():
        assert s["rows"] == n and s["confusion"]["columns"] == list(PRED_LABELS)
        assert sum(map(sum, s["confusion"]["matrix"])) == n
        lo, hi = s["macro_f1_interval"]
        assert 0 <= lo <= hi <= 1 and 0 <= s["macro_f1"] <= 1, name
    # blastn never aligns a uniformly random window to the reference: no gene claimed there
    assert section["systems"]["blastn_tuned"]["kinds"]["random"]["gene_claims"] == 0
    assert 0 <= section["floor"]["macro_f1"] < 1
    v = section["model_versus"]["blastn_tuned"]  # the model against the baseline, row by row
    assert set(section["model_versus"]) == {"blastn_tuned", "blastn_tuned_diverged"}
    assert v["model_only"] + v["other_only"] <= n
    assert v["macro_f1_difference"] == pytest.approx(section["systems"]["model"]["macro_f1"]
                                                     - section["systems"]["blastn_tuned"]["macro_f1"])
    table = pl.read_csv(root / "report" / "predictions" / "out_of_reference.model.tsv", separator="\t")
    assert table.height == n and set(table["kind"].to_list()) == set(section["rows"])
    # `llamadna compare` reads the run back and, from the tables' clusters, computes the same
    # paired interval the run did
    from llamadna.evaluate.compare import compare_runs

    again = compare_runs([str(root / "report")], against="blastn_tuned", n_boot=cfg.n_boot,
                         seed=cfg.seed)["runs"][0]["test"]
    assert again["recomputed"]["difference"] == pytest.approx(v["macro_f1_difference"])
    assert again["recomputed"]["interval"] == pytest.approx(v["macro_f1_difference_interval"])
    assert sum(d["rows"] for d in again["disagreements"]) == v["model_only"] + v["other_only"]
    page = (root / "report" / "report.html").read_text()
    assert "Out of reference" in page and "Diverged copies of known genes" in page
    # the divergence curves' 5 rows at each rate, answered by the model and the tuned rule
    d = section["diverged"]
    assert d["rates"] == [0.0, 0.3] and d["rows"] == 5 and list(d["systems"]) == list(section["systems"])
    for name, s in d["systems"].items():
        assert [sum(o.values()) for o in s["outcomes"]] == [5, 5], name
        assert all(lo - 1e-9 <= g <= hi + 1e-9 for g, (lo, hi) in zip(s["gene"], s["interval"])), name
    assert d["model_versus"]["blastn_tuned"]["difference"] == pytest.approx(
        [a - b for a, b in zip(d["systems"]["model"]["gene"], d["systems"]["blastn_tuned"]["gene"])])


def test_evaluate_trains_the_baselines_and_reuses_them(evaluated):
    root, cfg, _ = evaluated
    splash_prompt = BY_NAME["splash_prompt"].variant
    # the given model was used for its own split; baselines were trained with its settings
    assert not (root / "report" / "models" / "split_random" / "model").exists()
    tc = json.loads((root / "report" / "models" / "split_random" / "splash_prompt" / "train_config.json")
                    .read_text())
    assert tc["use_dna"] is False and tc["split"] == "split_random" and tc["max_steps"] == 3
    # the same rows in another table (a fold copy) reuse the cached model; other rows retrain
    cached = root / "report" / "models" / "split_random" / "splash_prompt"
    assert (cached / FINGERPRINT_FILE).exists()
    stamp = (cached / "train_summary.json").stat().st_mtime_ns
    shutil.copytree(root / "dataset", root / "dataset_copy")
    TrainedModels(cfg.model, root / "dataset_copy", cfg.out, max_steps=3).get("split_random", splash_prompt)
    assert (cached / "train_summary.json").stat().st_mtime_ns == stamp
    # ... and so does a copy of the report directory (its models record the old path)
    moved = root / "report_copy"
    shutil.copytree(root / "report" / "models", moved / "models")
    copied = moved / "models" / "split_random" / "splash_prompt"
    stamp = (copied / "train_summary.json").stat().st_mtime_ns
    TrainedModels(cfg.model, root / "dataset_copy", moved, max_steps=3).get("split_random", splash_prompt)
    assert (copied / "train_summary.json").stat().st_mtime_ns == stamp
    changed = pl.read_parquet(root / "dataset" / "dataset.parquet").with_columns(
        pl.when(pl.col("split_random") == "val").then(pl.lit("train")).otherwise(pl.col("split_random"))
        .alias("split_random"))
    changed.write_parquet(root / "dataset_copy" / "dataset.parquet")
    models = TrainedModels(cfg.model, root / "dataset_copy", cfg.out, max_steps=3)
    tc2 = models.config_for("split_random", splash_prompt)
    assert not _cached(cached, tc2, split_fingerprint(tc2.dataset, "split_random"))


@pytest.mark.slow
def test_split_gene_folds_cover_every_gene_once_and_a_benchmark(trained, tmp_path):
    root, data = trained
    bench = tmp_path / "bench"
    bench.mkdir()
    df = pl.read_parquet(root / "dataset" / "dataset.parquet")
    r0 = df.row(0, named=True)
    (bench / "queries.fa").write_text(f">q_00\n{r0['Sequence']}\n")
    (bench / "truth.tsv").write_text(
        "id\tspecies\tgene\ttranscript_type\tchrom\tidentity_to_human\n"
        f"q_00\thuman\t{r0['gene_name']}\t{r0['transcript_type']}\t{r0['chrom']}\t100\n")
    cfg = _cfg(root, data, out=str(tmp_path / "r"), splits=("split_gene",), folds=2,
               systems=("model", "majority", "reference_lookup"), divergence_rates=(0.0,),
               benchmark=str(bench), negatives_per_kind=2, tuning_negatives_per_kind=2)
    m = evaluate(cfg, TrainedModels(cfg.model, cfg.dataset, cfg.out, max_steps=2))
    res = m["splits"]["split_gene"]
    assert res["units"] == ["split_gene", "split_gene_fold1"]
    genes = df.select("gene_id", "gene_name").unique().height
    assert res["genes"] == genes and res["rows"] == df.height - 0  # every row tested once
    assert (tmp_path / "r" / "models" / "split_gene_fold1" / "model" / "train_summary.json").exists()
    # out of reference: every fold's test rows (each answered by its fold's model), thresholds
    # tuned per fold on its own validation rows
    oor = m["out_of_reference"]
    assert oor["units"] == res["units"] and oor["rows"]["gene"] == df.height
    assert all(list(t) == res["units"] for t in oor["thresholds"].values())
    assert all(list(p) == res["units"] for p in oor["per_unit"].values())
    assert sum(c["gene"][1] for c in oor["per_unit"]["model"].values()) == df.height
    b = m["benchmark"]["systems"]
    assert b["reference_lookup"]["all"]["gene"] == 1.0 and b["model"]["all"]["n"] == 1


def test_example_indices_cover_different_genes_first():
    from llamadna.evaluate.predict import example_indices

    genes = ["A", "A", "A", "B", "B", "C", "A", "D"]
    assert example_indices(genes, 3) == [0, 3, 5]
    assert example_indices(genes, 5) == [0, 1, 3, 5, 7]  # 4 genes, then the next row
    assert example_indices(genes, 6) == [0, 1, 2, 3, 5, 7]
    assert example_indices(genes, 20) == list(range(8))
    assert example_indices([], 10) == []


def test_config_checks():
    from llamadna.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown system 'no_such'"):
        EvalConfig(model="m", dataset="d", out="o", systems=("no_such",))
    with pytest.raises(ConfigError, match="--folds must be >= 1"):
        EvalConfig(model="m", dataset="d", out="o", folds=0)
    with pytest.raises(ConfigError, match="--divergence-rows must be >= 1"):
        EvalConfig(model="m", dataset="d", out="o", divergence_rows=0)
    with pytest.raises(ConfigError, match="--negatives-per-kind must be >= 1, got 0"):
        EvalConfig(model="m", dataset="d", out="o", negatives_per_kind=0)
    with pytest.raises(ConfigError, match="--tuning-negatives-per-kind must be >= 1, got 0"):
        EvalConfig(model="m", dataset="d", out="o", tuning_negatives_per_kind=0)
    with pytest.raises(ConfigError, match="--decoding must be one of greedy, rerank, grounded, got 'beam'"):
        EvalConfig(model="m", dataset="d", out="o", decoding="beam")
    with pytest.raises(ConfigError, match=r"--withhold-below 1.5: a gene confidence in \(0, 1\]"):
        EvalConfig(model="m", dataset="d", out="o", withhold_below=1.5)
    assert EvalConfig(model="m", dataset="d", out="o", withhold_below=0.7).withhold_below == 0.7


def test_divergence_subsample_is_seeded_and_spread_over_units():
    from llamadna.evaluate.divergence import divergence_subsample

    cfg = EvalConfig(model="m", dataset="d", out="o", divergence_rows=10)
    picks = divergence_subsample(cfg, [7, 0, 12, 5])
    assert sum(len(p) for p in picks) == 10 and len(picks[1]) == 0
    for p, n in zip(picks, [7, 0, 12, 5]):
        assert list(p) == sorted(set(p)) and all(0 <= i < n for i in p)
    again = divergence_subsample(cfg, [7, 0, 12, 5])
    assert all((a == b).all() for a, b in zip(picks, again))
    other = divergence_subsample(EvalConfig(model="m", dataset="d", out="o", divergence_rows=10, seed=1),
                                 [7, 0, 12, 5])
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(picks, other))
    every = divergence_subsample(EvalConfig(model="m", dataset="d", out="o", divergence_rows=None), [3, 2])
    assert [p.tolist() for p in every] == [[0, 1, 2], [0, 1]]
    assert [p.tolist() for p in divergence_subsample(cfg, [3, 2])] == [[0, 1, 2], [0, 1]]  # 10 > 5 rows


def test_gene_clusters_read_only_the_gene_columns():
    from llamadna.evaluate.scoring import gene_clusters

    rows = [{"gene_id": None, "build": "GRCh37", "gene_name": "A", "clinical_significance": None},
            {"gene_id": "ENSG1", "build": "GRCh38", "gene_name": "B", "clinical_significance": "pathogenic"},
            {"gene_id": "ENSG1", "build": "GRCh38", "gene_name": "B", "clinical_significance": 5}]
    assert gene_clusters(rows).tolist() == ["GRCh37:A", "ENSG1", "ENSG1"]


def test_retrieval_systems_only_for_a_retrieval_model():
    from types import SimpleNamespace

    from llamadna.errors import ConfigError
    from llamadna.evaluate.run import _retrieval_setup

    plain = SimpleNamespace(retrieval=False, train_config={})
    cfg, ref = _retrieval_setup(EvalConfig(model="m", dataset="d", out="o"), plain)
    assert ref is None and not set(RETRIEVAL_SYSTEMS) & set(cfg.systems) and "model" in cfg.systems
    with pytest.raises(ConfigError, match="model_novel: systems of a retrieval model"):
        _retrieval_setup(EvalConfig(model="m", dataset="d", out="o", systems=("model", "model_novel")), plain)
