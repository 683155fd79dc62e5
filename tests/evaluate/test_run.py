"""`evaluate` end to end on a generated bundle: every system on the same rows, the divergence
curve, metrics.json and report.html."""

from __future__ import annotations

import json

import pytest

from llamadna.evaluate.run import REPORTED, SYSTEMS, EvalConfig, evaluate
from llamadna.train.cache import TrainedModels
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


def test_evaluate_all_systems_and_report(trained):
    root, data = trained
    cfg = EvalConfig(model=str(root / "model"), dataset=str(root / "dataset"),
                     out=str(root / "report"), splits=("split_random",), data_dir=str(data),
                     limit=8, divergence_rates=(0.0, 0.3), max_new_tokens=24)
    m = evaluate(cfg, TrainedModels(cfg.model, cfg.dataset, cfg.out, max_steps=3))
    res = m["splits"]["split_random"]
    assert res["rows"] == 8 and set(res["systems"]) == set(SYSTEMS)
    for name, sm in res["systems"].items():
        for k in ("accuracy", "f1_macro", "bleu", "rougeL", "meteor"):
            assert 0 <= sm[k] <= 1, (name, k)
    # the reference lookup recovers chromosome and gene of undiverged reference windows
    look = res["divergence"]["systems"]["reference_lookup"]["field_accuracy"]
    assert look["chrom"][0] == 1.0 and look["gene"][0] == 1.0
    assert set(res["divergence"]["systems"]) == {"model", "reference_lookup"}
    assert m["reported"] == REPORTED
    saved = json.loads((root / "report" / "metrics.json").read_text())
    assert saved["splits"]["split_random"]["rows"] == 8
    html = (root / "report" / "report.html").read_text()
    assert "reference_lookup" in html and "reported" in html
    for name in SYSTEMS:
        assert (root / "report" / "predictions" / f"split_random.{name}.tsv").exists()
    # the given model was used for its own split; baselines were trained with its settings
    assert not (root / "report" / "models" / "split_random" / "model").exists()
    tc = json.loads((root / "report" / "models" / "split_random" / "no_dna" / "train_config.json")
                    .read_text())
    assert tc["use_dna"] is False and tc["split"] == "split_random" and tc["max_steps"] == 3
    tc = json.loads((root / "report" / "models" / "split_random" / "seed_faithful"
                     / "train_config.json").read_text())
    assert tc["prompt_mode"] == "seed-faithful"


def test_example_indices_cover_different_genes_first():
    from llamadna.evaluate.predict import example_indices

    genes = ["A", "A", "A", "B", "B", "C", "A", "D"]
    assert example_indices(genes, 3) == [0, 3, 5]
    assert example_indices(genes, 5) == [0, 1, 3, 5, 7]  # 4 genes, then the next row
    assert example_indices(genes, 6) == [0, 1, 2, 3, 5, 7]
    assert example_indices(genes, 20) == list(range(8))
    assert example_indices([], 10) == []
