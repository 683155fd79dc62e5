"""Fine-tuning on a generated bundle: loss falls, the model dir loads, kill -9 + --resume
reaches the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llamadna.data.template import outcome_of
from llamadna.errors import ConfigError
from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.train.config import TrainConfig
from llamadna.train.train import epoch_batches, load_checkpoint, process_share, train
from tests.conftest import model_workspace
from tests.train.launch import torchrun_train

TINY = dict(batch_size=4, llm_pretrain_steps=40, text_vocab_size=300, llm_hidden_size=48,
            llm_layers=2, max_val_rows=8, patience=1000, warmup_steps=2)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, bundle_factory):
    root = tmp_path_factory.mktemp("train")
    model_workspace(root, bundle_factory, seed=7)
    return root


def cfg(ws: Path, out: str, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(ws / "dataset"), out=str(ws / out), encoder=str(ws / "encoder"),
                       **{**TINY, **kw})


@pytest.mark.slow
def test_loss_falls_and_model_loads(workspace):
    # the LoRA path (a pretrained LLM's; the tiny preset trains its LLM fully by default)
    s = train(cfg(workspace, "m1", max_steps=80, lr=5e-3, checkpoint_every=0, epochs=100, llm_training="lora"))
    assert s["steps"] == 80 and len(s["losses"]) == 80
    first, last = s["losses"][:10], s["losses"][-10:]
    assert sum(last) < 0.9 * sum(first)
    assert s["val"] and s["trainable_parameters"] < s["total_parameters"]
    # the packages that trained it, in the summary written beside the model
    summary = json.loads((workspace / "m1" / "train_summary.json").read_text())
    saved = summary["versions"]
    assert saved["torch"] == torch.__version__ and saved["llamadna"] and saved["peft"]
    assert summary["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    from llamadna.model.processing import LlamaDNAProcessor

    m = LlamaDNAForAnnotation.from_pretrained(workspace / "m1")
    assert LlamaDNAProcessor.from_pretrained(workspace / "m1").text_tokenizer is not None  # saved beside it
    assert m.config.class_labels and not hasattr(m, "processor")  # a pure model
    # only LoRA + projector + head were trained: the saved LLM base equals the stage-1 base
    base = load_file(workspace / "m1" / "base" / "model.safetensors")
    final = load_file(workspace / "m1" / "model.safetensors")
    for k, v in base.items():
        changed = not torch.equal(v, final[k])
        assert changed == (k.startswith(("projector.", "cls_head.")) or "lora_B" in k or "lora_A" in k), k


def _trainable(path: Path) -> dict[str, torch.Tensor]:
    sd = load_file(path / "model.safetensors")
    return {k: v for k, v in sd.items() if k.startswith(("projector.", "cls_head.")) or "lora_" in k}


@pytest.mark.slow
def test_kill9_then_resume_matches_uninterrupted(workspace):
    kw = dict(max_steps=60, checkpoint_every=5, epochs=100)
    train(cfg(workspace, "ref", **kw))
    out = workspace / "killed"
    # a separate process, killed with SIGKILL once it has written a checkpoint past step 20
    script = (
        "from llamadna.train.config import TrainConfig; from llamadna.train.train import train;"
        f"train(TrainConfig(dataset={str(workspace / 'dataset')!r}, out={str(out)!r},"
        f" encoder={str(workspace / 'encoder')!r}, **{TINY!r}, **{kw!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        ckpts = sorted((out / "checkpoints").glob("checkpoint-*")) if out.exists() else []
        if ckpts and int(ckpts[-1].name.split("-")[1]) >= 20:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = int(ckpts[-1].name.split("-")[1])
            break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run ended before it could be killed"
    assert killed_at < 60 and proc.returncode == -signal.SIGKILL
    assert not (out / "train_summary.json").exists()
    s = train(cfg(workspace, "killed", **kw), resume=True)
    assert s["steps"] == 60
    a, b = _trainable(workspace / "ref"), _trainable(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(workspace):
    train(cfg(workspace, "m2", max_steps=3, checkpoint_every=0))
    with pytest.raises(ConfigError, match=r"other settings than the interrupted run: lr \(0\.002 -> 1\.0\)$"):
        train(cfg(workspace, "m2", max_steps=3, checkpoint_every=0, lr=1.0), resume=True)


def test_config_errors():
    with pytest.raises(ConfigError, match="needs --encoder"):
        TrainConfig(dataset="d", out="o")
    with pytest.raises(ConfigError, match="--split must be one of"):
        TrainConfig(dataset="d", out="o", encoder="e", split="split_x")
    with pytest.raises(ConfigError, match="--preset full needs"):
        TrainConfig(dataset="d", out="o", preset="full", encoder="e")
    with pytest.raises(ConfigError, match="calibration_rows must be >= 1, got 0"):
        TrainConfig(dataset="d", out="o", encoder="e", calibration_rows=0)
    with pytest.raises(ConfigError, match=r"negative_rate must be in \[0, 1\], got 1.5"):
        TrainConfig(dataset="d", out="o", encoder="e", negative_rate=1.5)
    assert TrainConfig(dataset="d", out="o", encoder="e").negative_rate == 0.4
    with pytest.raises(ConfigError, match="--decision-weight must be > 0, got 0"):
        TrainConfig(dataset="d", out="o", encoder="e", decision_weight=0)


def test_a_config_from_before_negatives_reads_as_trained_without_them(tmp_path):
    """A cached model's train_config.json without negative_rate was trained with none: reading it
    back gives 0 (and a retrained one would differ from it), not today's default."""
    from dataclasses import asdict

    from llamadna.train.cache import saved_config

    raw = asdict(TrainConfig(dataset="d", out="o", encoder="e", decision_weight=3.0))
    (tmp_path / "new.json").write_text(json.dumps(raw))
    raw.pop("negative_rate")
    raw.pop("decision_weight")
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert saved_config(tmp_path / "old.json")["negative_rate"] == 0.0
    assert saved_config(tmp_path / "new.json")["negative_rate"] == TrainConfig.negative_rate == 0.4
    # nor with deciding tokens weighed: every target token alike, whatever today's default
    assert saved_config(tmp_path / "old.json")["decision_weight"] == 1.0
    assert saved_config(tmp_path / "new.json")["decision_weight"] == 3.0


def test_class_loss_leaves_out_rows_without_a_source_class():
    """Negatives carry IGNORE_INDEX as class label: the class loss is that of the labelled rows
    only, and 0 (finite, with a graph) when no row has a label."""
    import torch.nn.functional as F

    from llamadna.constants import IGNORE_INDEX
    from tests.model.conftest import make_model, make_processor, rows

    model, rs = make_model(), rows(3)
    targets = [r["Annotation"] for r in rs]
    b = make_processor()(rs, targets=targets, class_ids=[IGNORE_INDEX] * 3)
    out = model(**b)
    assert out.cls_loss.item() == 0.0 and math.isfinite(out.loss.item())
    assert out.loss.item() == pytest.approx(out.lm_loss.item())
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    mixed = make_processor()(rs, targets=targets, class_ids=[IGNORE_INDEX, 2, 0])
    out = model(**mixed)
    want = F.cross_entropy(out.cls_logits[1:].float(), torch.tensor([2, 0]))
    assert out.cls_loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_predict_dataset_writes_truth_beside_predictions(workspace):
    import polars as pl

    from llamadna.annotate import Annotator
    from llamadna.evaluate.predict import predict_dataset

    if not (workspace / "m1" / "model.safetensors").exists():
        train(cfg(workspace, "m1", max_steps=5, checkpoint_every=0))
    out = workspace / "preds.tsv"
    s = predict_dataset(Annotator.from_pretrained(workspace / "m1"), workspace / "dataset", out,
                        split="split_random", subset="test", max_new_tokens=12, batch_size=4)
    df = pl.read_csv(out, separator="\t")
    truth = pl.read_parquet(workspace / "dataset" / "dataset.parquet").filter(
        pl.col("split_random") == "test")
    assert df.height == s["rows"] == truth.height
    assert df["reference"].to_list() == truth["Annotation"].to_list()
    assert df["label_true"].to_list() == truth["Dataset"].to_list()
    # the source class is given where the sentence claims a gene or states no outcome (the class
    # head's answer), and not where it states another outcome
    claims = [outcome_of(t) in ("gene", None) for t in df["prediction"].fill_null("").to_list()]
    assert df["label_pred"].is_not_null().to_list() == claims == df["label_prob"].is_not_null().to_list()
    assert set(df["label_pred"].drop_nulls()) <= set(truth["Dataset"]) | {"ClinVar", "COSMIC", "dbSNP"}
    assert ((df["label_prob"].drop_nulls() > 0) & (df["label_prob"].drop_nulls() <= 1)).all()
    # examples: the first row of each gene first (up to 10 genes), then further rows
    genes = [e["gene_name"] for e in s["examples"]]
    n_genes = truth["gene_name"].n_unique()
    assert len(genes) == min(10, truth.height) and len(set(genes)) == min(10, n_genes)
    assert genes[: min(10, n_genes)] == list(dict.fromkeys(truth["gene_name"]))[:10] or n_genes < 10


@pytest.mark.slow
def test_no_dna_baseline_trains_without_dna(workspace):
    from llamadna.annotate import Annotator

    train(cfg(workspace, "nodna", max_steps=4, checkpoint_every=0, use_dna=False))
    m = Annotator.from_pretrained(workspace / "nodna").with_config(max_new_tokens=8)
    assert m.processor.use_dna is False
    import polars as pl

    rows = pl.read_parquet(workspace / "dataset" / "dataset.parquet").head(3).to_dicts()
    b = m.processor(rows)
    assert "dna_input_ids" not in b
    assert not (b["input_ids"] == m.model.config.dna_placeholder_id).any()
    # the prediction cannot depend on the sequence
    other = [{**r, "Sequence": r["Sequence"][::-1]} for r in rows]
    a1, a2 = m.annotate_rows(rows), m.annotate_rows(other)
    assert [p["annotation"] for p in a1] == [p["annotation"] for p in a2]


def test_process_share_gives_every_process_rows_and_covers_the_batch():
    for n, per_process, world in [(10, 3, 2), (7, 2, 3), (5, 4, 2), (9, 1, 4)]:
        seen = []
        for batch in epoch_batches(n, per_process * world, 0, 0):
            shares = [process_share(batch, r, world) for r in range(world)]
            assert all(1 <= len(s) <= per_process for s in shares)
            if len(batch) >= world:  # a partition of the batch
                assert sorted(np.concatenate(shares).tolist()) == sorted(batch.tolist())
            seen += np.concatenate(shares).tolist()
        assert set(seen) == set(range(n))
    b = np.array([4, 9, 2])
    assert process_share(b, 0, 1).tolist() == [4, 9, 2]


def _torchrun(workspace: Path, out: Path, *extra: str, use_cpu: bool = True):
    return torchrun_train("--dataset", str(workspace / "dataset"), "--encoder", str(workspace / "encoder"),
                          "--out", str(out), "--epochs", "2", "--batch-size", "2", "--checkpoint-every", "3",
                          "--llm-pretrain-steps", "20", *extra, use_cpu=use_cpu)


@pytest.fixture(scope="module")
def ddp_run(workspace) -> Path:
    out = workspace / "ddp"
    r = _torchrun(workspace, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (r.stdout + r.stderr).count("parameters trained; wrote") == 1  # only the main one reports
    return out


@pytest.mark.slow
def test_data_parallel_two_processes(workspace, ddp_run, tmp_path):
    """Two processes on the CPU: each step trains on 2 x batch rows, only the main process
    writes, the checkpoint holds both processes' RNG states, the replicas end equal (train()
    checks) and the model loads."""
    # without a GPU and without ACCELERATE_USE_CPU, accelerate sees no distributed device: refused
    r = _torchrun(workspace, tmp_path / "refused", use_cpu=False)
    assert r.returncode != 0 and "ACCELERATE_USE_CPU" in r.stdout + r.stderr
    assert not (tmp_path / "refused" / "train_summary.json").exists()
    out = ddp_run
    s = json.loads((out / "train_summary.json").read_text())
    assert s["processes"] == 2 and s["rows_per_step"] == 4 and s["parallelism"] == "ddp"
    assert s["parameters_in_process"] == s["total_parameters"]  # every process holds a replica
    assert s["steps"] == 2 * math.ceil(s["train_rows"] / 4) == len(s["losses"])
    assert len(s["val"]) == 2
    ckpt = sorted((out / "checkpoints").glob("checkpoint-*"))[-1]
    rng = load_file(ckpt / "rng.safetensors")
    assert set(rng) == {"torch.0", "torch.1"} and not torch.equal(rng["torch.0"], rng["torch.1"])
    assert not list(out.glob(".tmp*"))
    m = LlamaDNAForAnnotation.from_pretrained(out)
    trained = _trainable(out)
    base = load_file(out / "base" / "model.safetensors")
    assert any(not torch.equal(v, base[k]) for k, v in trained.items())
    assert m.config.class_labels
    # a single-process resume of this run is refused with a clear message
    with pytest.raises(ValueError, match="data-parallel run"):
        load_checkpoint(ckpt, m, None, None)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


@pytest.mark.slow
def test_fsdp_trains_like_ddp_on_sharded_weights_and_resumes(workspace, ddp_run):
    """--fsdp: the same steps as DDP (same global batches; gradients reduce-scattered instead of
    all-reduced) on parameters split between the processes. Checkpoints are gathered into the
    unsharded format, and --resume from one in the middle of the last epoch reaches the same
    final weights."""
    out = workspace / "fsdp"
    r = _torchrun(workspace, out, "--fsdp")
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "train_summary.json").read_text())
    d = json.loads((ddp_run / "train_summary.json").read_text())
    assert s["parallelism"] == "fsdp" and s["total_parameters"] == d["total_parameters"]
    assert s["parameters_in_process"] < 0.6 * s["total_parameters"]  # rank 0 holds about half
    assert s["steps"] == d["steps"] and np.allclose(s["losses"], d["losses"], atol=1e-5)
    assert _close(_trainable(out), _trainable(ddp_run))
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"))
    ddp_last = sorted((ddp_run / "checkpoints").glob("checkpoint-*"))[-1]
    assert _close(load_file(ckpts[-1] / "trainable.safetensors"), load_file(ddp_last / "trainable.safetensors"))
    opt_f = torch.load(ckpts[-1] / "optimizer.pt", weights_only=True)
    opt_d = torch.load(ddp_last / "optimizer.pt", weights_only=True)
    assert opt_f["state"].keys() == opt_d["state"].keys()
    for i, st in opt_f["state"].items():
        assert torch.allclose(st["exp_avg_sq"], opt_d["state"][i]["exp_avg_sq"], rtol=1e-5, atol=1e-9)
    assert LlamaDNAForAnnotation.from_pretrained(out).config.class_labels

    # interrupted after the second-to-last checkpoint (mid-epoch): resume reaches the same weights
    final = _trainable(out)
    state = json.loads((ckpts[-2] / "state.json").read_text())
    assert 0 < state["batch"] and state["step"] < s["steps"]
    shutil.rmtree(ckpts[-1])
    for f in ("model.safetensors", "train_summary.json"):
        (out / f).unlink()
    r = _torchrun(workspace, out, "--fsdp", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _close(_trainable(out), final)
    assert json.loads((out / "train_summary.json").read_text())["losses"] == s["losses"]


def test_fsdp_needs_several_processes_and_no_quantization(workspace):
    with pytest.raises(ConfigError, match="several processes"):
        train(cfg(workspace, "fsdp1", fsdp=True, max_steps=1))
    with pytest.raises(ValueError, match="--fsdp does not shard"):
        TrainConfig(dataset="d", out="o", preset="full", encoder="e", llm="l", fsdp=True, load_in_4bit=True)


@pytest.mark.slow
def test_source_class_is_learned_from_the_dna(workspace, tmp_path):
    """Rows whose source is written only in their base composition (ClinVar GC-rich, dbSNP
    AT-rich; same prompt for all): the model learns it, the no-DNA baseline cannot."""
    import polars as pl

    from llamadna.annotate import Annotator

    df = pl.read_parquet(workspace / "dataset" / "dataset.parquet")
    base, rng, rows = df.to_dicts(), np.random.default_rng(3), []
    for i in range(240):
        lab = ("ClinVar", "dbSNP")[i % 2]
        p = [0.1, 0.4, 0.4, 0.1] if lab == "ClinVar" else [0.4, 0.1, 0.1, 0.4]  # A C G T
        r = {**base[i % len(base)], "Dataset": lab, "SPLASH_Effect": None, "SPLASH_pval": None,
             "SPLASH_entropy": None, "Sequence": "".join(rng.choice(list("ACGT"), 96, p=p)),
             "split_random": "train" if i < 180 else "val" if i < 200 else "test"}
        r["Annotation"] = r["Annotation"].rsplit("It is part of", 1)[0] + f"It is part of the {lab} dataset."
        rows.append(r)
    (tmp_path / "ds").mkdir()
    pl.DataFrame(rows, schema=df.schema).write_parquet(tmp_path / "ds" / "dataset.parquet")
    test = [r for r in rows if r["split_random"] == "test"]
    acc = {}
    for use_dna in (True, False):
        out = tmp_path / f"m_{use_dna}"
        train(TrainConfig(dataset=str(tmp_path / "ds"), out=str(out), encoder=str(workspace / "encoder"),
                          split="split_random", max_steps=40, epochs=100, checkpoint_every=0, lr=5e-3,
                          use_dna=use_dna, llm_training="lora", **{**TINY, "batch_size": 8}))
        # the class head on the prompt (annotations give the source only with a gene sentence,
        # which 40 steps do not teach)
        a = Annotator.from_pretrained(out)
        with torch.no_grad():
            heads = a.model(**a.processor(test)).cls_logits.argmax(-1).tolist()
        labels = a.model.config.class_labels
        acc[use_dna] = np.mean([labels[h] == r["Dataset"] for h, r in zip(heads, test, strict=True)])
    assert acc[True] >= 0.9, acc
    assert acc[False] <= 0.6, acc
