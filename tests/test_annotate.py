import csv
import gzip
import json
import math
import tracemalloc
from itertools import islice
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llamadna.annotate import Annotator, InferenceConfig, annotate_fasta
from llamadna.annotate import decoding as dec
from llamadna.annotate import pipeline as pipe
from llamadna.constants import NONE_SENTENCE, OUTPUT_COLUMNS, PREDICTION_COLUMNS, REPEAT_MIN_LOCI
from llamadna.data.template import parse_annotation
from llamadna.errors import ConfigError
from llamadna.io.predictions import gff3_escape, output_format
from llamadna.model.loading import PROMPT_BUCKET, load_model
from llamadna.model.processing import LlamaDNAProcessor
from llamadna.retrieve.outcome import Thresholds

RNG = np.random.default_rng(0)
SEQS = ["".join(RNG.choice(list("ACGT"), n)) for n in (60, 23, 41, 90, 12, 33, 75)]
MAX_NEW = 6


# ------------------------------------------------------------------------------ tiny model
pytestmark = pytest.mark.usefixtures("one_thread")


def _tokenizers():
    """Throwaway tokenizers (a small BPE for DNA, a byte-level BPE for text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE(unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.train_from_iterator(SEQS, trainers.BpeTrainer(
        vocab_size=80, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        initial_alphabet=list("ACGTN"), show_progress=False))
    dna = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="[PAD]", unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    texts = ["This sequence is part of chr1 chromosome part of GENE1 gene. This gene is described "
             "as a kinase and a protein coding transcript type. It is of not specified phenotype. "
             "It is part of the ClinVar dataset."] * 5
    u = Tokenizer(models.BPE())
    u.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    u.decoder = decoders.ByteLevel()
    u.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<unk>", "<pad>", "<dna>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    txt = PreTrainedTokenizerFast(tokenizer_object=u, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>", additional_special_tokens=["<dna>"])
    return dna, txt


def save_tiny_model(d, llm_layers: int = 2):
    """A tiny untrained model saved in `d` as `train` saves one (its processor included)."""
    from transformers import BertConfig, LlamaConfig

    from llamadna.model.configuration import LlamaDNAConfig
    from llamadna.model.modeling import LlamaDNAForAnnotation

    torch.manual_seed(0)
    dna, txt = _tokenizers()
    proc = LlamaDNAProcessor(dna, txt, dna_chunk_tokens=8)  # several chunks per sequence
    cfg = LlamaDNAConfig(
        dna_config=BertConfig(vocab_size=len(dna), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=64).to_dict(),
        text_config=LlamaConfig(vocab_size=len(txt), hidden_size=32, num_hidden_layers=llm_layers,
                                num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                max_position_embeddings=256).to_dict(),
        dna_placeholder_id=proc.placeholder_id)
    LlamaDNAForAnnotation(cfg).save_pretrained(d)
    proc.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def annotator(model_dir):
    return Annotator.from_pretrained(model_dir, device="cpu")


def annotate_rows(annotator: Annotator, rows, **config) -> list[dict]:
    """`annotator.annotate_rows(rows)` with the inference settings `config` changes."""
    return annotator.with_config(**config).annotate_rows(rows)


def iter_annotations(annotator: Annotator, rows, **config):
    """`annotator.annotate(rows)` with the inference settings `config` changes."""
    return annotator.with_config(**config).annotate(rows)


def _fasta(path, records, width=20):
    text = "".join(f">{i} desc\n" + "".join(s[j : j + width] + "\n" for j in range(0, len(s), width))
                   for i, s in records)
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


IDS = ["s1", "odd;id=a&b,c%d", "s3", "s4"]


@pytest.fixture
def fasta(tmp_path):
    return _fasta(tmp_path / "seqs.fa", list(zip(IDS, SEQS)))


def _rows(seqs=SEQS):
    return [{"id": f"r{i}", "Sequence": s, "SPLASH_Effect": None, "SPLASH_pval": None,
             "SPLASH_entropy": None} for i, s in enumerate(seqs)]


# ------------------------------------------------------------------------------ predictions
def test_batching_does_not_change_predictions(annotator):
    one = annotate_rows(annotator, _rows(), batch_size=1, max_new_tokens=MAX_NEW)
    three = annotate_rows(annotator, _rows(), batch_size=3, max_new_tokens=MAX_NEW)
    assert [p["annotation"] for p in one] == [p["annotation"] for p in three]
    assert [p["source"] for p in one] == [p["source"] for p in three]
    for a, b in zip(one, three):
        assert a["id"] == b["id"]
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
        assert a["source_prob"] == pytest.approx(b["source_prob"], abs=1e-5)
    assert len({p["annotation"] for p in one}) > 1  # the DNA reaches the generation


def test_columns_confidence_and_class_probability(annotator, monkeypatch):
    preds = annotate_rows(annotator, _rows(), batch_size=4, max_new_tokens=MAX_NEW)
    for p in preds:  # an untrained model: the source only where no other outcome is stated
        assert list(p) == PREDICTION_COLUMNS
        assert math.isfinite(p["confidence"]) and p["confidence"] <= 0
        assert (p["source"] is None) == (p["source_prob"] is None) == (p["outcome"] not in ("gene", None))
    _script_gene_sentence(annotator, monkeypatch, len(_rows()))  # the class head reads the prompt
    preds = annotate_rows(annotator, _rows(), batch_size=len(_rows()))
    labels = annotator.model.config.class_labels
    for row, p in zip(_rows(), preds):
        assert p["outcome"] == "gene" and list(p) == PREDICTION_COLUMNS
        batch = annotator.processor([row])
        with torch.no_grad():
            probs = torch.softmax(annotator.model(**batch).cls_logits[0], -1)
        assert p["source_prob"] == pytest.approx(float(probs.max()), abs=1e-6)
        assert p["source"] == labels[int(probs.argmax())]


def test_confidence_is_the_mean_log_probability_of_the_generated_tokens(annotator):
    # teacher-forced check on the real model: feed prompt + generated tokens back in
    row = _rows()[0]
    g = annotator.processor([row], padding_side="left")
    with torch.no_grad():
        out = annotator.model.generate(g["input_ids"], g["attention_mask"], g["dna_input_ids"],
                             g["dna_attention_mask"], max_new_tokens=MAX_NEW, do_sample=False)
        ids = torch.cat([g["input_ids"], out], 1)
        emb = annotator.model.embed_inputs(ids, g["dna_input_ids"], g["dna_attention_mask"])
        logits = annotator.model.language_model(inputs_embeds=emb, attention_mask=torch.ones_like(ids)).logits
    n = g["input_ids"].shape[1]
    logp = torch.log_softmax(logits[0, n - 1 : -1], -1).gather(1, out[0][:, None]).squeeze(1)
    eos = annotator.processor.text_tokenizer.eos_token_id
    stop = (out[0] == eos).nonzero()
    k = int(stop[0]) + 1 if len(stop) else out.shape[1]
    (p,) = annotate_rows(annotator, [row], max_new_tokens=MAX_NEW)
    assert p["confidence"] == pytest.approx(float(logp[:k].mean()), abs=1e-4)


def _script_generation(model, monkeypatch, output) -> list[dict]:
    """Generation replaced by `output` (the class head still reads the prompt); returns the
    keyword arguments of each call."""
    calls = []

    def scripted(**kw):
        calls.append(kw)
        keys = ("input_ids", "attention_mask", "dna_input_ids", "dna_attention_mask", "prompt_mask")
        return output, model.classify(**{k: kw[k] for k in keys if k in kw})

    monkeypatch.setattr(model, "generate_with_class", scripted)
    return calls


def _script_gene_sentence(annotator, monkeypatch, rows: int) -> str:
    """Generation scripted to write one gene sentence for each of `rows` rows (uniform logits)."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    sentence = _greedy_text("chr7", "CFTR", "CF regulator")
    tt = annotator.processor.text_tokenizer
    ids = tt(" " + sentence, add_special_tokens=False)["input_ids"] + [tt.eos_token_id]
    _script_generation(annotator.model, monkeypatch, GenerateDecoderOnlyOutput(
        sequences=torch.tensor([ids] * rows), logits=tuple(torch.zeros(rows, len(tt)) for _ in ids)))
    return sentence


def test_generation_stops_at_eos_and_confidence_counts_it(annotator, monkeypatch):
    # scripted generate: row 0 says "A" then eos (then padding), row 1 never stops
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    tt = annotator.processor.text_tokenizer
    a, eos, pad = tt.convert_tokens_to_ids("A"), tt.eos_token_id, tt.pad_token_id
    seqs = torch.tensor([[a, eos, pad], [a, a, a]])
    other = tt.bos_token_id  # never generated here: holds the rest of the probability
    logits = []
    for t, p in enumerate((0.5, 0.25, 0.125)):
        step = torch.full((2, len(tt)), -1e4)
        step[torch.arange(2), seqs[:, t]] = math.log(p)
        step[:, other] = math.log(1 - p)
        logits.append(step)

    out = _script_generation(annotator.model, monkeypatch,
                             GenerateDecoderOnlyOutput(sequences=seqs, logits=tuple(logits)))
    p0, p1 = annotate_rows(annotator, _rows()[:2], batch_size=2)
    assert out[0]["do_sample"] is False and out[0]["eos_token_id"] == eos
    assert p0["annotation"] == "A" and p1["annotation"] == "AAA"
    lp = [math.log(x) for x in (0.5, 0.25, 0.125)]
    assert p0["confidence"] == pytest.approx((lp[0] + lp[1]) / 2, abs=1e-6)  # eos in, padding out
    assert p1["confidence"] == pytest.approx(sum(lp) / 3, abs=1e-6)


def test_parsed_fields_come_from_the_sentence(annotator, monkeypatch, tmp_path):
    sentence = ("This sequence is part of chr7 chromosome part of CFTR gene. This gene is described "
                "as CF transmembrane conductance regulator and a protein coding transcript type. "
                "It is of cystic fibrosis, 50% of cases phenotype. It is part of the COSMIC dataset.")
    tt = annotator.processor.text_tokenizer
    ids = tt(" " + sentence, add_special_tokens=False)["input_ids"] + [tt.eos_token_id]
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    logits = tuple(torch.zeros(1, len(tt)) for _ in ids)
    _script_generation(annotator.model, monkeypatch, GenerateDecoderOnlyOutput(
        sequences=torch.tensor([ids]), logits=logits))
    (p,) = annotate_rows(annotator, _rows()[:1])
    assert p["annotation"] == sentence
    assert (p["chrom"], p["gene"], p["transcript_type"], p["phenotype"], p["source_from_text"]) == (
        "chr7", "CFTR", "protein coding", "cystic fibrosis, 50% of cases", "COSMIC")
    assert p["description"] == "CF transmembrane conductance regulator"
    with torch.no_grad():  # the source column is the class head's answer, not the sentence's
        head = annotator.model(**annotator.processor(_rows()[:1])).cls_logits.argmax(-1)
    assert p["source"] == annotator.model.config.class_labels[int(head)]
    assert p["confidence"] == pytest.approx(-math.log(len(tt)))
    # the same prediction as GFF3: Name is the parsed gene, the Note keeps , and % escaped
    fa = _fasta(tmp_path / "one.fa", [("x", SEQS[0])])
    annotate_fasta(annotator, fa, tmp_path / "p.gff3", batch_size=1)
    (g,) = _read_gff3(tmp_path / "p.gff3")
    assert g["Name"] == "CFTR" and g["Note"] == sentence and g["source"] == p["source"]
    assert "fibrosis%2C 50%25 of cases" in (tmp_path / "p.gff3").read_text()


def test_annotate_rows_keeps_training_mode_and_checks_inputs(annotator):
    annotator.model.train()
    try:
        annotate_rows(annotator, _rows()[:1], max_new_tokens=2)
        assert annotator.model.training
    finally:
        annotator.model.eval()
    with pytest.raises(ValueError, match="batch_size"):
        annotate_rows(annotator, _rows(), batch_size=0)
    with pytest.raises(ValueError, match="Sequence"):
        annotate_rows(annotator, [{"id": 1}])


def test_rows_are_read_lazily(annotator):
    pulled = [0]

    def rows():
        for i in range(10**6):
            pulled[0] += 1
            yield {"Sequence": SEQS[i % len(SEQS)]}

    got = list(islice(iter_annotations(annotator, rows(), batch_size=4, max_new_tokens=2), 6))
    assert [p["id"] for p in got] == list(range(6))  # position when a row has no id
    assert pulled[0] == 8  # two batches of 4, not the million


def _seed_faithful(annotator: Annotator) -> Annotator:
    """The same model read through a seed-faithful processor (gene metadata in the prompt)."""
    proc = annotator.processor
    return Annotator(annotator.model, LlamaDNAProcessor(proc.dna_tokenizer, proc.text_tokenizer,
                                                        prompt_mode="seed-faithful", dna_chunk_tokens=8))


def test_seed_faithful_model(annotator, monkeypatch):
    seed = _seed_faithful(annotator)
    with pytest.raises(ValueError, match="seed-faithful.*gene_name"):
        annotate_rows(seed, _rows()[:1])
    metas = [{"gene_name": "G", "gene_description": "d", "phenotype": "p"},
             {"gene_name": "TP53", "gene_description": "tumor protein p53", "phenotype": "Li-Fraumeni"}]
    rows = [dict(_rows()[0], **meta) for meta in metas]  # one sequence, two sets of gene metadata
    plain = annotate_rows(annotator, rows, max_new_tokens=2)
    assert plain[0]["annotation"] == plain[1]["annotation"]  # the leak-free model never reads them
    _script_gene_sentence(annotator, monkeypatch, 1)  # a gene sentence: the source is given
    preds = annotate_rows(seed, rows, batch_size=1)
    for row, meta, p in zip(rows, metas, preds):
        assert math.isfinite(p["confidence"]) and p["confidence"] <= 0
        prompt = seed.processor.prompt_text(row)
        assert all(v in prompt for v in meta.values())  # the row's own metadata is in its prompt
        # the class head read that prompt: the source probability is the one of the prompt with
        # this row's metadata (dropping or mixing up the metadata gives another probability)
        with torch.no_grad():
            probs = torch.softmax(seed.model(**seed.processor([row])).cls_logits[0], -1)
        assert p["source_prob"] == pytest.approx(float(probs.max()), abs=1e-6)
    # the metadata reaches the model: the same sequence with other metadata reads otherwise,
    # where the leak-free model, which never reads it, answers the same
    assert abs(preds[0]["source_prob"] - preds[1]["source_prob"]) > 1e-4
    plain = annotate_rows(annotator, rows, batch_size=1)
    assert plain[0]["source_prob"] == pytest.approx(plain[1]["source_prob"], abs=1e-6)


def test_seed_faithful_model_refuses_a_fasta(annotator, fasta, tmp_path):
    with pytest.raises(ConfigError, match="seed-faithful.*FASTA"):
        annotate_fasta(_seed_faithful(annotator), fasta, tmp_path / "p.tsv")
    assert not (tmp_path / "p.tsv").exists()


# ------------------------------------------------------------------------------ output formats
def _read_tsv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == OUTPUT_COLUMNS
    out = []
    for r in rows[1:]:
        d = {k: (v if v != "" else None) for k, v in zip(rows[0], r)}
        d["confidence"] = float(d["confidence"])
        d["source_prob"] = None if d["source_prob"] is None else float(d["source_prob"])
        d["start"], d["end"] = int(d["start"]), int(d["end"])
        out.append(d)
    return out


def _read_gff3(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "##gff-version 3"
    out = []
    for line in lines[1:]:
        cols = line.split("\t")
        assert len(cols) == 9 and cols[1:3] == ["llamadna", "region"] and cols[6:8] == [".", "."]
        attrs = dict(kv.split("=") for kv in cols[8].split(";"))  # escaping keeps ; and = unique
        out.append({"seqid": unquote(cols[0]), "start": int(cols[3]), "end": int(cols[4]),
                    "score": float(cols[5]), **{k: unquote(v) for k, v in attrs.items()}})
    return out


def test_three_formats_round_trip(annotator, fasta, tmp_path):
    summary = annotate_fasta(annotator, fasta, tmp_path / "p.jsonl", batch_size=3, max_new_tokens=MAX_NEW)
    assert summary["records"] == 4 and summary["format"] == "jsonl" and summary["tiles_per_s"] > 0
    assert summary["splash_scored"] is None
    ref = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in ref] == IDS and all(list(r) == OUTPUT_COLUMNS for r in ref)
    assert [(r["record"], r["start"], r["end"]) for r in ref] == [(i, 1, len(s)) for i, s in zip(IDS, SEQS)]

    annotate_fasta(annotator, fasta, tmp_path / "p.tsv", batch_size=2, max_new_tokens=MAX_NEW)
    tsv = _read_tsv(tmp_path / "p.tsv")
    assert [r["id"] for r in tsv] == IDS
    for a, b in zip(tsv, ref):
        assert a["annotation"] == b["annotation"] and a["source"] == b["source"]
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)

    annotate_fasta(annotator, fasta, tmp_path / "p.gff3", batch_size=4, max_new_tokens=MAX_NEW)
    gff = _read_gff3(tmp_path / "p.gff3")
    for g, r, s in zip(gff, ref, SEQS):
        assert g["seqid"] == g["ID"] == r["id"] and (g["start"], g["end"]) == (1, len(s))
        assert g["Note"] == r["annotation"] and g.get("source") == r["source"]  # only for a gene
        assert g.get("outcome") == r["outcome"] and ("source_prob" in g) == (r["source_prob"] is not None)
        assert r["source_prob"] is None or float(g["source_prob"]) == pytest.approx(r["source_prob"], abs=1e-5)
        assert g["score"] == pytest.approx(r["confidence"], abs=1e-5)
        assert g.get("Name") == r["gene"]
    assert "odd%3Bid%3Da%26b%2Cc%25d" in (tmp_path / "p.gff3").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gff3", "p.jsonl", "p.tsv", "seqs.fa"]


def test_gff3_escaping():
    raw = "a;b=c&d,e%f\tg\nh\ri\x01 j é"
    esc = gff3_escape(raw)
    assert not set(";=&,\t\n\r\x01") & set(esc) and " j é" in esc
    assert unquote(esc) == raw


def test_unknown_output_format(annotator, fasta, tmp_path):
    for name in ("p.csv", "p", "p.gff"):
        with pytest.raises(ConfigError, match=r"unknown output format.*\.tsv, \.jsonl, \.gff3"):
            annotate_fasta(annotator, fasta, tmp_path / name)
    assert output_format(tmp_path / "P.TSV") == ".tsv"


def test_failure_leaves_no_output_but_its_parts_for_resume(annotator, fasta, tmp_path, monkeypatch):
    calls = [0]
    real = Annotator.predict_batch

    def flaky(self, rows):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("out of memory")
        return real(self, rows)

    monkeypatch.setattr(Annotator, "predict_batch", flaky)
    with pytest.raises(RuntimeError):
        annotate_fasta(annotator, fasta, tmp_path / "p.tsv", batch_size=2, max_new_tokens=2, part_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tsv.parts", "seqs.fa"]  # no output
    assert sorted(p.name for p in (tmp_path / "p.tsv.parts").glob("part-*.jsonl")) == ["part-000000.jsonl"]
    s = annotate_fasta(annotator, fasta, tmp_path / "p.tsv", batch_size=2, max_new_tokens=2, part_size=2,
                       resume=True)
    assert (s["parts"], s["parts_reused"], s["parts_computed"]) == (2, 1, 1) and calls[0] == 3
    annotate_fasta(annotator, fasta, tmp_path / "q.tsv", batch_size=2, max_new_tokens=2)
    assert (tmp_path / "p.tsv").read_bytes() == (tmp_path / "q.tsv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tsv", "q.tsv", "seqs.fa"]


# ------------------------------------------------------------------------------ SPLASH
def test_splash_scores_reach_the_prompt(annotator, tmp_path, monkeypatch):
    seqs = ["ACGTACGGATCCATTGCAAGT" * 3, "TTTTTGGGGGCCCCCAAAAATT"]
    fa = _fasta(tmp_path / "s.fa", [("hit", seqs[0]), ("miss", seqs[1])])
    anchors = tmp_path / "anchors.tsv"
    anchors.write_text("anchor\tpval_opt\teffect_size_bin\ttarget_entropy\n"
                       f"{seqs[0][3:15]}\t0.002\t0.7\t1.5\nAAAAAAAAAAAA\t0.5\t0.1\t0.2\n")
    seen = []
    real = LlamaDNAProcessor.__call__

    def spy(self, rows, *args, **kwargs):
        seen.extend(dict(r) for r in rows)
        return real(self, rows, *args, **kwargs)

    monkeypatch.setattr(LlamaDNAProcessor, "__call__", spy)
    s = annotate_fasta(annotator, fa, tmp_path / "p.tsv", splash=anchors, max_new_tokens=2)
    assert s["splash_scored"] == 1
    by_id = {r["id"]: r for r in seen}
    assert by_id["hit"]["SPLASH_pval"] == pytest.approx(0.002)  # one anchor found: p * 1
    assert (by_id["hit"]["SPLASH_Effect"], by_id["hit"]["SPLASH_entropy"]) == (0.7, 1.5)
    assert by_id["miss"]["SPLASH_pval"] is None  # no tested anchor: null, never a default
    assert "SPLASH effect 0.70, p-value 2.0e-03" in annotator.processor.prompt_text(by_id["hit"])
    assert "not available" in annotator.processor.prompt_text(by_id["miss"])
    with pytest.raises(ConfigError, match="one SPLASH anchors table"):
        annotate_fasta(annotator, fa, tmp_path / "q.tsv", splash=[f"GRCh38={anchors}", f"GRCh37={anchors}"])


# ------------------------------------------------------------------------------ FASTA input
def test_fasta_pipeline_memory_is_flat(tmp_path, monkeypatch):
    # the real reader -> rows -> batches -> writer path with a stand-in for the model
    class Stub:
        training = False

        def eval(self):
            return self

        def train(self, mode=True):
            return self

    def fake_predict(self, rows):
        return [dict.fromkeys(PREDICTION_COLUMNS[1:], None) | {"confidence": -1.0, "source_prob": 0.5}
                for _ in rows]

    monkeypatch.setattr(Annotator, "predict_batch", fake_predict)
    stub = Annotator(Stub(), type("P", (), {"prompt_mode": "leak-free"})())
    def peak(n_records):
        fa = tmp_path / f"{n_records}.fa"
        with open(fa, "w") as fh:
            for i in range(n_records):
                fh.write(f">r{i}\n{'ACGT' * 1000}\n")  # 4 kb per record
        tracemalloc.start()
        try:
            # one part: memory per record is what is measured here. Each part adds its file names
            # to the interpreter's interned strings (pathlib interns them), and a resize of that
            # table (~8 MB once torch's names are in it) can land in any call: bounded by the
            # parts (~4 names each), not the records, but it would hide what this test measures
            s = annotate_fasta(stub, fa, tmp_path / "p.jsonl", batch_size=16, tile=4000,
                               part_size=100_000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert s["records"] == n_records
        with open(tmp_path / "p.jsonl") as fh:
            assert sum(1 for _ in fh) == n_records
        return peak, fa.stat().st_size

    peak(10)  # first call: lazy imports
    small, size = peak(500)  # 2 MB of FASTA
    large, _ = peak(2000)  # 8 MB
    # what grows is the set of ids seen (duplicate check), ~100 bytes a record, not 4 kb
    assert small < size / 4 and (large - small) / 1500 < 400, (small, large, size)


# ------------------------------------------------------------------------------ CLI
def test_cli_annotate(model_dir, fasta, tmp_path):
    from llamadna.cli import app

    runner = CliRunner()
    out = tmp_path / "preds.tsv"
    r = runner.invoke(app, ["annotate", str(fasta), "--model", str(model_dir), "--out", str(out),
                            "--batch-size", "2", "--max-new-tokens", "3"])
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in _read_tsv(out)] == IDS
    # records counted as records, the rate in tiles (what the progress bar counts)
    assert "4 records" in r.output and "tiles/s" in r.output and "records/s" not in r.output
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACXT\n")
    r = runner.invoke(app, ["annotate", str(bad), "--model", str(model_dir), "--out", str(out)])
    assert r.exit_code == 2 and "error:" in r.output and "invalid character 'X'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["annotate", str(fasta), "--model", str(model_dir), "--out", str(out),
                            "--withhold-below", "1.5"])
    (said,) = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert r.exit_code == 2 and "--withhold-below 1.5: a gene confidence in (0, 1]" in said


# ------------------------------------------------------------------------------ dtype, compiled generation
def test_prompt_bucket_padding_keeps_predictions(model_dir):
    """Compiled generation left-pads prompts to a multiple of PROMPT_BUCKET tokens; the extra
    padding is masked, so predictions stay those of the plain path."""
    plain = annotate_rows(Annotator.from_pretrained(model_dir, device="cpu"), _rows(), batch_size=3,
                          max_new_tokens=MAX_NEW)
    a = Annotator.from_pretrained(model_dir, device="cpu", config=InferenceConfig(prompt_bucket=64))
    seen = []
    orig = a.model.generate_with_class
    a.model.generate_with_class = lambda **kw: seen.append(kw["input_ids"].shape[1]) or orig(**kw)
    padded = annotate_rows(a, _rows(), batch_size=3, max_new_tokens=MAX_NEW)
    assert seen and all(t % 64 == 0 for t in seen)
    assert [p["annotation"] for p in padded] == [p["annotation"] for p in plain]
    for a, b in zip(plain, padded):
        assert a["source"] == b["source"] and a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)
        assert a["source_prob"] == pytest.approx(b["source_prob"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch's own
def test_compiled_generation_gives_the_plain_predictions(model_dir):
    """--compile: static KV cache + torch.compile (inductor on the CPU here, CUDA graphs on a GPU)."""
    plain = annotate_rows(Annotator.from_pretrained(model_dir, device="cpu"), _rows(), batch_size=2,
                          max_new_tokens=MAX_NEW)
    a = Annotator.from_pretrained(model_dir, device="cpu", compile=True)
    assert a.model.language_model.generation_config.cache_implementation == "static"
    assert a.config.prompt_bucket == PROMPT_BUCKET  # the prompts are padded to a few lengths
    fast = annotate_rows(a, _rows(), batch_size=2, max_new_tokens=MAX_NEW)
    assert [p["annotation"] for p in fast] == [p["annotation"] for p in plain]
    for a, b in zip(plain, fast):
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)


def test_load_model_in_bfloat16(model_dir, fasta, tmp_path):
    a = Annotator.from_pretrained(model_dir, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in a.model.parameters()} == {torch.bfloat16}
    preds = annotate_rows(a, _rows(), max_new_tokens=MAX_NEW)
    ref = annotate_rows(Annotator.from_pretrained(model_dir, device="cpu"), _rows(), max_new_tokens=MAX_NEW)
    # bf16 keeps ~3 significant digits: the same answers as float32, probabilities close
    assert [p["source"] for p in preds] == [p["source"] for p in ref]
    assert [p["annotation"] for p in preds] == [p["annotation"] for p in ref]
    for a, b in zip(preds, ref):
        assert a["source_prob"] == pytest.approx(b["source_prob"], abs=0.02)
        assert a["confidence"] == pytest.approx(b["confidence"], abs=0.05)
    with pytest.raises(ConfigError, match="dtype must be one of"):
        load_model(model_dir, device="cpu", dtype="float8")
    from llamadna.cli import app

    out = tmp_path / "bf16.tsv"
    r = CliRunner().invoke(app, ["annotate", str(fasta), "--model", str(model_dir), "--out", str(out),
                                 "--max-new-tokens", "3", "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert [x["id"] for x in _read_tsv(out)] == IDS


# ------------------------------------------------------------------------------ long and RNA input
def test_long_records_are_annotated_tile_by_tile(annotator, tmp_path):
    assert pipe.tiles(1300, 512) == [(0, 512), (512, 1024), (788, 1300)]  # the last shifted inside
    assert pipe.tiles(512, 512) == [(0, 512)] and pipe.tiles(30, 512) == [(0, 30)]
    long = "".join(RNG.choice(list("ACGT"), 130))
    fa = _fasta(tmp_path / "l.fa", [("long", long), ("short", SEQS[1])])
    s = annotate_fasta(annotator, fa, tmp_path / "p.gff3", max_new_tokens=2, tile=50)
    assert (s["records"], s["tiles"]) == (2, 4)
    gff = _read_gff3(tmp_path / "p.gff3")
    assert [(g["seqid"], g["ID"], g["start"], g["end"]) for g in gff] == [
        ("long", "long:1-50", 1, 50), ("long", "long:51-100", 51, 100), ("long", "long:81-130", 81, 130),
        ("short", "short", 1, len(SEQS[1]))]
    # each tile is annotated as that piece of sequence alone
    (alone,) = annotate_rows(annotator, [{"id": "x", "Sequence": long[80:130], "SPLASH_Effect": None,
                                      "SPLASH_pval": None, "SPLASH_entropy": None}], max_new_tokens=2)
    assert gff[2]["Note"] == alone["annotation"]


def test_a_prompt_past_the_llm_context_is_refused_not_truncated(model_dir, tmp_path):
    from llamadna.cli import app

    m = Annotator.from_pretrained(model_dir, device="cpu")
    limit = m.model.language_model.config.max_position_embeddings  # 256 in this fixture
    long = "".join(RNG.choice(list("ACGT"), 20 * limit))
    rows = [{"id": "huge", "Sequence": long, "SPLASH_Effect": None, "SPLASH_pval": None,
             "SPLASH_entropy": None}]
    with pytest.raises(ConfigError, match=rf"sequence 'huge': its prompt holds \d+ tokens; .* past the "
                       rf"LLM's {limit} positions"):
        annotate_rows(m, rows, max_new_tokens=2)
    fa = _fasta(tmp_path / "huge.fa", [("huge", long)])
    out = tmp_path / "p.tsv"
    r = CliRunner().invoke(app, ["annotate", str(fa), "--model", str(model_dir), "--out", str(out),
                                 "--tile", str(len(long))])
    assert r.exit_code == 2 and "past the LLM's" in r.output and "--tile" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.fa"]  # no output, no temporary
    r = CliRunner().invoke(app, ["annotate", str(fa), "--model", str(model_dir), "--out", str(out),
                                 "--max-new-tokens", "2", "--tile", "100"])  # what the error advises
    assert r.exit_code == 0, r.output
    assert len(_read_tsv(out)) == len(pipe.tiles(len(long), 100))


def test_rna_is_read_as_dna_and_counted(annotator, tmp_path):
    rna = SEQS[0].replace("T", "U")
    fa = _fasta(tmp_path / "r.fa", [("rna", rna), ("dna", SEQS[0]), ("amb", "ACGRYT")])
    s = annotate_fasta(annotator, fa, tmp_path / "p.tsv", max_new_tokens=MAX_NEW)
    assert s["u_to_t"] == rna.count("U") > 0 and s["iupac_to_n"] == 2
    a, b, _ = _read_tsv(tmp_path / "p.tsv")
    assert a["annotation"] == b["annotation"] and a["confidence"] == pytest.approx(b["confidence"])


# ------------------------------------------------------------------------------ damaged model directories
@pytest.mark.parametrize("damage, named, cause", [
    ("no_weights", "model.safetensors", "missing: the model directory holds no weights"),
    ("truncated_weights", "model.safetensors", "not a complete safetensors file"),
    ("no_tokenizer", "text_tokenizer", "missing: the model's tokenizer folder"),
    ("bad_config", "config.json", "not valid JSON"),
])
def test_a_damaged_model_directory_is_one_line(model_dir, fasta, tmp_path, damage, named, cause):
    import shutil

    from llamadna.cli import app

    d = shutil.copytree(model_dir, tmp_path / "m")
    if damage == "no_weights":
        (d / "model.safetensors").unlink()
    elif damage == "truncated_weights":
        data = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "no_tokenizer":
        shutil.rmtree(d / "text_tokenizer")
    else:
        (d / "config.json").write_text("{\n  \"model_type\": \n")
    out = tmp_path / "out" / "p.tsv"
    r = CliRunner().invoke(app, ["annotate", str(fasta), "--model", str(d), "--out", str(out)])
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert f"error: {d / named}" in line and cause in line and "Traceback" not in r.output
    assert not out.parent.exists() or not any(out.parent.iterdir())


# ------------------------------------------------------------------------------ rerank decoding
def _retrieval_model(**config) -> Annotator:
    from tests.model.conftest import make_model, make_processor

    m = make_model(copy_head=True, llm_training="full").eval()
    base = make_processor()
    return Annotator(m, LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True,
                                          dna_chunk_tokens=base.dna_chunk_tokens),
                     config=InferenceConfig(**config))


CANDIDATE = {"gene": "GENE7", "chrom": "chr1", "description": "gene 7", "transcript_type": "protein coding",
             "phenotype": "not specified", "source": "ClinVar", "score": 1.9, "via": "minimap2",
             "identity": 0.9, "cosine": None}


def test_rerank_keeps_the_sentence_the_model_scores_higher():
    m = _retrieval_model()
    rs = [{**r, "evidence": [CANDIDATE]} for r in _rows(SEQS[:4])]
    rs[3]["evidence"] = []  # no reference match: nothing to rerank against
    cand = dec.candidate_sentence(CANDIDATE, "COSMIC")
    assert cand == ("This sequence is part of chr1 chromosome part of GENE7 gene. This gene is described "
                    "as gene 7 and a protein coding transcript type. It is of not specified phenotype. "
                    "It is part of the COSMIC dataset.")
    b = m.processor(rs[1:2], targets=[dec.candidate_sentence(CANDIDATE, "ClinVar")], padding_side="left")
    total, count = m.model.target_log_probs(**b)
    score = dec.SentenceScorer(m.model, m.processor)
    cand_mean = float(total[0] / count[0])
    texts = ["greedy one", "greedy two", dec.candidate_sentence(CANDIDATE, "ClinVar"), "greedy four"]
    # row 0: greedy ended and scores higher (0 = certain) -> kept; row 1: greedy ended but scores
    # lower -> the candidate; row 2: already the candidate; row 3: no evidence
    conf = torch.tensor([0.0, -1e6, -1e6, -1e6])
    out, c = dec.rerank(score, rs, texts, conf, torch.tensor([True, True, True, True]), ["ClinVar"] * 4)
    assert out == ["greedy one", dec.candidate_sentence(CANDIDATE, "ClinVar"), texts[2], "greedy four"]
    assert c[0] == 0.0 and float(c[1]) == pytest.approx(cand_mean, abs=1e-5) and c[2] == c[3] == -1e6
    # a greedy sentence that never reached eos gives way whatever its score; the source comes from
    # the class head when the greedy sentence names none
    out, c = dec.rerank(score, rs, texts, conf, torch.tensor([False] * 4), ["COSMIC"] * 4)
    assert out[0] == out[1] == cand and out[3] == "greedy four"


def test_rerank_decoding_end_to_end(annotator):
    """With a token limit too short to finish any sentence, rerank writes the candidate's fields;
    greedy does not; a model without retrieval is unchanged; an unknown decoding is refused."""
    m = _retrieval_model()
    rs = [{**r, "evidence": [CANDIDATE]} for r in _rows(SEQS[:3])]
    greedy = m.with_config(max_new_tokens=MAX_NEW, decoding="greedy").predict_batch(rs)
    rerank = m.with_config(max_new_tokens=MAX_NEW, decoding="rerank").predict_batch(rs)
    assert all(p["gene"] != "GENE7" for p in greedy)
    for p in rerank:
        assert (p["gene"], p["description"], p["chrom"]) == ("GENE7", "gene 7", "chr1")
        assert p["source_from_text"] == p["source"] and p["confidence"] <= 0
    plain = _rows(SEQS[:3])
    assert (annotator.with_config(max_new_tokens=MAX_NEW, decoding="rerank").predict_batch(plain)
            == annotator.with_config(max_new_tokens=MAX_NEW).predict_batch(plain))
    with pytest.raises(ConfigError, match="--decoding must be one of greedy, rerank"):
        m.with_config(decoding="beam")


def test_an_unknown_decoding_fails_before_any_work(annotator, fasta, tmp_path):
    loads = []
    with pytest.raises(ConfigError, match="--decoding"):
        annotate_fasta(lambda: loads.append(1) or annotator, fasta, tmp_path / "p.tsv", decoding="beam")
    assert not loads and not (tmp_path / "p.tsv").exists()
    with pytest.raises(ConfigError, match="--decoding"):
        next(iter_annotations(annotator, _rows(), decoding="beam"))


# ---------------------------------------------------------------------------- grounded decoding
def _greedy_text(chrom: str, gene: str, description: str, source: str | None = "ClinVar") -> str:
    """A sentence as generation may write it; without a source, broken off before it."""
    from llamadna.data.template import annotation_sentence

    text = annotation_sentence(chrom=chrom, gene_name=gene, gene_description=description,
                               transcript_type="lncRNA", phenotype="not specified", Dataset=source or "x")
    return text if source else text[: text.index(" It is part of")]


GENE7 = {**CANDIDATE, "kind": "gene", "aligned_fraction": 0.95, "loci": 1, "left_gene": None,
         "left_distance": None, "right_gene": None, "right_distance": None}
OTHER2 = {**GENE7, "gene": "OTHER2", "description": "other gene 2", "chrom": "chr2", "identity": 0.7,
          "aligned_fraction": 0.4, "score": 1.28}
BETWEEN = {**GENE7, "kind": "intergenic", "gene": None, "description": None, "transcript_type": None,
           "phenotype": None, "source": None, "chrom": "chr21", "identity": 0.99, "aligned_fraction": 1.0,
           "score": 1.99, "left_gene": "APP", "left_distance": 12_000, "right_gene": "ADAMTS1",
           "right_distance": 30_000}
WEAK = {**OTHER2, "aligned_fraction": 0.1}  # identity x aligned fraction 0.07
EMBEDDED = {**GENE7, "gene": "FAR1", "identity": None, "aligned_fraction": None, "score": 0.04,
            "cosine": 0.4, "via": "embed", "loci": 0}


class _Scores:
    """A scorer that records what it is asked and scores each sentence from a table (default -2)."""

    def __init__(self, table: dict[str, float] | None = None):
        self.table, self.calls = table or {}, []

    def __call__(self, rows, sentences, batch_size=None):
        self.calls.append(list(sentences))
        return torch.tensor([self.table.get(s, -2.0) for s in sentences])


def _never(*args, **kwargs):
    raise AssertionError("the scorer must not be called here")


def _ground(evidence: list[list[dict]], texts: list[str], score=_never, head: str = "COSMIC"):
    rs = [{**r, "evidence": ev} for r, ev in zip(_rows([SEQS[i % len(SEQS)] for i in range(len(texts))]),
                                                 evidence, strict=True)]
    conf = -0.1 * torch.arange(1, len(texts) + 1, dtype=torch.float)
    out, c = dec.ground(score, rs, texts, conf, [head] * len(texts))
    return out, c, conf


def test_grounded_gene_named_among_candidates_is_that_candidates_sentence():
    par_y = {**GENE7, "chrom": "chrY", "description": "gene 7 on Y"}  # one name on two chromosomes
    ev = [GENE7, OTHER2, par_y]
    texts = [_greedy_text("chr1", "GENE7", "gene 7 7 7"),  # its description mis-copied
             _greedy_text("chrY", "GENE7", "gene"),  # named on chrY: that candidate
             _greedy_text("chr2", "OTHER2", "x", source=None)]  # broken off: the class head's source
    out, c, conf = _ground([ev] * 3, texts)
    assert out == [dec.candidate_sentence(GENE7, "ClinVar"), dec.candidate_sentence(par_y, "ClinVar"),
                   dec.candidate_sentence(OTHER2, "COSMIC")]
    assert torch.equal(c, conf)  # the greedy sentence named the gene: its confidence


def test_grounded_gene_no_candidate_has_weighs_the_aligned_genes_against_the_evidence():
    """A name no candidate has: the aligned gene candidates' sentences and what the evidence shows
    are scored (embedding and intergenic candidates are not), the best kept with its score."""
    ev = [GENE7, BETWEEN, OTHER2, EMBEDDED]
    shown = dec.described(ev)  # the rule's answer: the top aligned gene, whole and near-identical
    assert shown == dec.outcome_sentence("gene", GENE7, ev, None)
    score = _Scores({dec.candidate_sentence(OTHER2, "ClinVar"): -0.3, shown: -0.4})
    texts = [_greedy_text("chr1", "GENE", "gene 7"), _greedy_text("chr1", "CCDC74", "x")]
    out, c, _ = _ground([ev, ev], texts, score)
    assert score.calls == [[dec.candidate_sentence(GENE7, "ClinVar"), dec.candidate_sentence(OTHER2, "ClinVar"),
                            shown] * 2]
    assert out == [dec.candidate_sentence(OTHER2, "ClinVar")] * 2 and c.tolist() == pytest.approx([-0.3, -0.3])
    score = _Scores({shown: -0.1})  # the evidence's own sentence scores best: a gene claim dropped
    out, c, _ = _ground([ev], texts[:1], score)
    assert out == [shown] and float(c[0]) == pytest.approx(-0.1)


def test_grounded_gene_with_nothing_aligned_is_the_evidence_unscored():
    """The fast path: a gene the candidates do not have, none aligned (or none at all): what the
    evidence shows, never scored; without any candidate no claim is kept."""
    texts = [_greedy_text("chr1", "TANGO2", "x"), _greedy_text("chr1", "TANGO2", "x"),
             _greedy_text("chr1", "GENE7", "gene 7")]
    out, c, conf = _ground([[EMBEDDED], [BETWEEN, EMBEDDED], []], texts, _never)
    assert out[0] == dec.described([EMBEDDED]) == NONE_SENTENCE  # nothing aligned: no match
    assert out[1] == dec.described([BETWEEN, EMBEDDED])  # an aligned intergenic hit is no gene to weigh
    assert out[2] == NONE_SENTENCE  # "no reference match": the gene claim is not kept
    assert torch.equal(c, conf)


def test_grounded_non_gene_outcomes():
    from llamadna.data.template import intergenic_sentence, parse_outcome, repeat_sentence, similar_sentence

    inter = intergenic_sentence("chr9", "X", 1, "Y", 2)
    similar = similar_sentence("chr2", "OTHER2", 0.5, 0.9)
    repeat = repeat_sentence(5, ["A"])
    rows = [
        ([GENE7, BETWEEN], inter),  # intergenic: the first intergenic candidate's locus, not the text's
        ([{**BETWEEN, "loci": REPEAT_MIN_LOCI}, {**GENE7, "loci": REPEAT_MIN_LOCI}], inter),  # no one place
        ([{**BETWEEN, "loci": REPEAT_MIN_LOCI - 1}], inter),  # under REPEAT_MIN_LOCI: its intergenic locus
        ([GENE7, OTHER2], inter),  # intergenic, no intergenic candidate: what the evidence shows
        ([GENE7, OTHER2], similar),  # similar to a named aligned candidate: that one
        ([GENE7, OTHER2], similar_sentence("chr2", "NOPE1", 0.5, 0.9)),  # to none: the top aligned
        ([EMBEDDED], similar),  # nothing aligned
        ([WEAK], similar),  # too little aligned to be similar (the rule's floor): no match
        ([GENE7, WEAK], similar_sentence("chr2", "OTHER2", 0.1, 0.7)),  # named but weak: the evidence's
        ([{**GENE7, "loci": 4}, {**OTHER2, "loci": 4}], repeat),  # a repeat where the query has loci
        ([GENE7, OTHER2], repeat),  # one locus: no repeat
        ([GENE7, OTHER2], NONE_SENTENCE),  # "no match" against a whole near-identical hit: the evidence's
        ([OTHER2, GENE7], NONE_SENTENCE),  # the top aligned hit covers part of the query: "no match" stands
        ([WEAK], NONE_SENTENCE),  # under the rule's floor: stands
        ([BETWEEN], NONE_SENTENCE),  # a whole intergenic hit: the evidence's
        ([{**OTHER2, "loci": 4}], NONE_SENTENCE),  # a repeat: the evidence's
        ([GENE7, OTHER2], "greedy nonsense"),  # undecided: what the evidence shows
        ([], inter), ([], repeat), ([], "greedy nonsense"),  # no candidate: no claim at all
    ]
    out, c, conf = _ground([ev for ev, _ in rows], [t for _, t in rows])
    rep = [{**GENE7, "loci": 4}, {**OTHER2, "loci": 4}]
    assert WEAK["identity"] * WEAK["aligned_fraction"] < Thresholds.min_similar
    assert out == [
        intergenic_sentence("chr21", "APP", 12_000, "ADAMTS1", 30_000),
        repeat_sentence(REPEAT_MIN_LOCI, ["GENE7"]),  # what the evidence shows: a repeat
        intergenic_sentence("chr21", "APP", 12_000, "ADAMTS1", 30_000),
        dec.described([GENE7, OTHER2]),
        similar_sentence("chr2", "OTHER2", 0.4, 0.7),
        similar_sentence("chr1", "GENE7", 0.95, 0.9),
        NONE_SENTENCE,
        NONE_SENTENCE,
        dec.described([GENE7, WEAK]),
        repeat_sentence(4, ["GENE7", "OTHER2"]),
        dec.described([GENE7, OTHER2]),
        dec.described([GENE7, OTHER2]),
        NONE_SENTENCE,
        NONE_SENTENCE,
        dec.described([BETWEEN]),
        repeat_sentence(4, ["OTHER2"]),
        dec.described([GENE7, OTHER2]),
        NONE_SENTENCE, NONE_SENTENCE, NONE_SENTENCE,
    ]
    assert out[11] == dec.outcome_sentence("gene", GENE7, [GENE7, OTHER2], None)
    assert parse_outcome(out[14])["outcome"] == "intergenic"
    assert out[9] == dec.grounded_choice(rep, repeat, "COSMIC")
    assert "resembles" not in out[8]  # the strong top hit's own outcome, not OTHER2's weak similarity
    assert torch.equal(c, conf)  # nothing weighed: the greedy confidences


def test_grounded_intergenic_keeps_a_locus_only_where_it_aligns_whole():
    """An "intergenic" answer says the query is that locus: kept only for an intergenic candidate
    aligned at identity >= 0.8 over >= 80 % of the query; a chance partial alignment, a weak one
    or one found by embedding only gives what the evidence shows (a foreign window with a 30 %
    local hit is no place in chr21)."""
    from llamadna.data.template import intergenic_sentence, parse_outcome

    inter = intergenic_sentence("chr9", "X", 1, "Y", 2)
    partial = {**BETWEEN, "aligned_fraction": 0.3, "identity": 0.9}  # 0.27: similar, not the locus
    diverged = {**BETWEEN, "identity": 0.7}  # whole, under the rule's identity
    embedded = {**BETWEEN, "identity": None, "aligned_fraction": None, "cosine": 0.5, "via": "embed"}
    far = {**BETWEEN, "left_gene": "FAR1", "left_distance": 90_000}
    rows = [[partial], [diverged], [embedded], [partial, far], [GENE7, partial]]
    out, c, conf = _ground(rows, [inter] * len(rows))
    assert out[:3] == [dec.described([partial]), dec.described([diverged]), NONE_SENTENCE]
    assert [parse_outcome(t)["outcome"] for t in out[:2]] == ["similar", "similar"]
    assert out[3] == intergenic_sentence("chr21", "FAR1", 90_000, "ADAMTS1", 30_000)  # the whole one
    assert out[4] == dec.described([GENE7, partial])  # the rule's answer: the whole gene hit
    assert parse_outcome(out[4])["outcome"] == "gene"
    assert torch.equal(c, conf)  # nothing weighed
    assert dec.whole_locus(BETWEEN) and dec.whole_locus(GENE7) and dec.whole_locus(far)
    assert not any(dec.whole_locus(x) for x in (partial, diverged, embedded, OTHER2, WEAK))


def test_grounded_decoding_end_to_end():
    """A retrieval model's grounded rows are the evidence's sentences of the greedy sentence's
    outcome; a row without candidates says it matches nothing; the confidence stays a mean
    log-probability; source and gene only where the outcome is a gene."""
    m = _retrieval_model()
    rs = [{**r, "evidence": [GENE7, OTHER2]} for r in _rows(SEQS[:3])]
    rs[2]["evidence"] = []
    greedy = m.with_config(max_new_tokens=MAX_NEW, decoding="greedy").predict_batch(rs)
    grounded = m.with_config(max_new_tokens=MAX_NEW, decoding="grounded").predict_batch(rs)
    for r, g, p in zip(rs, greedy, grounded):
        want = dec.grounded_choice(r["evidence"], g["annotation"], "ClinVar")
        assert isinstance(want, str) and p["annotation"] == want and p["confidence"] <= 0
        assert (p["source"] is None) == (p["gene"] is None) == (p["outcome"] != "gene")
    assert grounded[2]["annotation"] == NONE_SENTENCE and grounded[2]["outcome"] == "none"
    assert grounded[2]["chrom"] is None and grounded[2]["evidence_gene"] is None


def _prefix_stops(stop, ids: list[int]) -> list[int]:
    return [t for t in range(1, len(ids) + 1) if stop(0, ids[:t])]


def test_outcome_decided_stops_a_row_once_its_outcome_is_decided():
    from llamadna.data.template import intergenic_sentence, outcome_of, repeat_sentence, similar_sentence

    m = _retrieval_model()
    tt = m.processor.text_tokenizer
    sentences = {"gene": dec.candidate_sentence(GENE7, "ClinVar"),
                 "intergenic": intergenic_sentence("chr21", "APP", 12_000, None, None),
                 "repeat": repeat_sentence(4, ["A", "B"]),
                 "similar": similar_sentence("chr2", "OTHER2", 0.4, 0.7), "none": NONE_SENTENCE}
    for outcome, text in sentences.items():
        ids = tt(" " + text, add_special_tokens=False)["input_ids"]
        stop = dec.OutcomeDecided(tt, [True])
        fired = _prefix_stops(stop, ids)
        assert len(fired) == 1, outcome  # once, then the row is done
        kept = tt.decode(ids[: fired[0]], skip_special_tokens=True)
        before = tt.decode(ids[: fired[0] - 1], skip_special_tokens=True)
        assert outcome_of(kept) == outcome and not dec.decided(before), (outcome, kept)
        assert fired[0] < len(ids)  # before the sentence's end: the evidence writes the rest
        if outcome == "gene":  # not at "part of" already: the gene is named
            assert kept.strip().endswith("part of GENE7 gene") and parse_annotation(kept)["gene"] == "GENE7"
        assert stop.kept(len(ids)).sum(1).tolist() == [fired[0]]
    ids = tt(" " + sentences["none"], add_special_tokens=False)["input_ids"]
    stop = dec.OutcomeDecided(tt, [False, True])  # an inactive row is never stopped
    assert not any(stop(0, ids[:t]) for t in range(1, len(ids) + 1))
    assert stop.kept(len(ids))[0].all()
    garbage = tt(" chromosome part of gene This", add_special_tokens=False)["input_ids"]
    assert _prefix_stops(dec.OutcomeDecided(tt, [True]), garbage) == []  # nothing decided


def test_rerank_writes_an_intergenic_top_candidates_sentence():
    from llamadna.data.template import intergenic_sentence

    rs = [{**r, "evidence": [BETWEEN, GENE7]} for r in _rows(SEQS[:1])]
    score = _Scores()
    out, c = dec.rerank(score, rs, ["greedy"], torch.tensor([-5.0]), torch.tensor([True]), ["COSMIC"])
    assert out == [intergenic_sentence("chr21", "APP", 12_000, "ADAMTS1", 30_000)] and float(c[0]) == -2.0


# ----------------------------------------------------------------- withholding a doubted gene
def test_withhold_gives_a_doubted_gene_answer_what_the_evidence_shows():
    """A doubted gene answer becomes the rule's sentence of its evidence, scored by the model,
    unless that evidence passes as a gene itself; an answer not doubted is never touched."""
    similar = dec.outcome_sentence("similar", OTHER2, [OTHER2], None)
    score = _Scores({similar: -0.7})
    evidence = [[OTHER2], [GENE7, OTHER2], [WEAK], [OTHER2]]
    rows = [{**r, "evidence": ev} for r, ev in zip(_rows(SEQS[:4]), evidence)]
    texts = [dec.candidate_sentence(OTHER2, "ClinVar"), dec.candidate_sentence(GENE7, "ClinVar"),
             dec.candidate_sentence(WEAK, "ClinVar"), dec.candidate_sentence(OTHER2, "ClinVar")]
    conf = torch.tensor([-0.1, -0.2, -0.3, -0.4])
    out, c = dec.withhold(score, rows, texts, conf, [True, True, True, False])
    assert dec.withheld_sentence([GENE7, OTHER2]) is None  # whole and near-identical: a gene
    assert out == [similar, texts[1], NONE_SENTENCE, texts[3]]
    assert score.calls == [[similar, NONE_SENTENCE]]
    assert c.tolist() == pytest.approx([-0.7, -0.2, -2.0, -0.4]) and conf[0] == pytest.approx(-0.1)
    assert dec.withhold(_never, rows, texts, conf, [False] * 4) == (texts, conf)


def test_withhold_keeps_a_gene_whose_whole_copy_is_one_of_a_repeats_loci():
    """At >= REPEAT_MIN_LOCI loci the rule says "repeat"; a doubted answer naming a gene that
    aligns there whole (a copy of part of it) stands, one naming a gene that aligns only in part
    gives way to the repeat sentence, as does one naming no candidate's gene."""
    from llamadna.data.template import repeat_sentence

    loci = REPEAT_MIN_LOCI
    rep = [{**GENE7, "loci": loci}, {**OTHER2, "loci": loci}]  # GENE7 0.9 over 0.95; OTHER2 0.7 over 0.4
    sentence = repeat_sentence(loci, ["GENE7", "OTHER2"])
    assert dec.whole_copy(rep, "GENE7") and not dec.whole_copy(rep, "OTHER2")
    assert not dec.whole_copy(rep, None) and not dec.whole_copy(rep, "ELSE")
    assert dec.withheld_sentence(rep, "GENE7") is None
    assert dec.withheld_sentence(rep, "OTHER2") == sentence == dec.withheld_sentence(rep)
    assert dec.withheld_sentence([{**GENE7, "loci": loci, "aligned_fraction": 0.5}], "GENE7") == (
        repeat_sentence(loci, ["GENE7"]))  # only half of the query: no whole copy
    rows = [{**r, "evidence": rep} for r in _rows(SEQS[:2])]
    texts = [dec.candidate_sentence(GENE7, "ClinVar"), dec.candidate_sentence(OTHER2, "ClinVar")]
    score = _Scores({sentence: -0.9})
    out, c = dec.withhold(score, rows, texts, torch.tensor([-0.1, -0.2]), [True, True])
    assert out == [texts[0], sentence] and c.tolist() == pytest.approx([-0.1, -0.9])
    assert score.calls == [[sentence]]


def _constant_calibration(bias: float):
    """A calibration whose confidence is sigmoid(bias) for every answer."""
    from llamadna.model.calibration import FEATURES, OutcomeCalibration

    return OutcomeCalibration([0.0] * len(FEATURES), bias, rows=10, right=5)


def test_annotator_withholds_gene_answers_its_calibration_doubts(monkeypatch):
    from llamadna.annotate.annotator import _Generated

    m = _retrieval_model()
    rows = [{**r, "evidence": ev} for r, ev in zip(_rows(SEQS[:3]), [[OTHER2], [GENE7], [OTHER2]])]
    texts = [dec.candidate_sentence(OTHER2, "ClinVar"), dec.candidate_sentence(GENE7, "ClinVar"), NONE_SENTENCE]
    monkeypatch.setattr(Annotator, "_forward", lambda self, part, prompt: _Generated(
        list(texts[: len(part)]), torch.full((len(part),), -0.5), torch.zeros(len(part), dtype=torch.long),
        torch.ones(len(part))))

    def predict(bias, **config):
        calibration = None if bias is None else _constant_calibration(bias)
        return Annotator(m.model, m.processor, calibration=calibration,
                         config=InferenceConfig(**config)).predict_batch(rows)

    similar = dec.outcome_sentence("similar", OTHER2, [OTHER2], None)
    doubted = predict(-3.0, withhold_below=0.5)  # every answer's confidence 0.047: under 0.5
    assert [p["outcome"] for p in doubted] == ["similar", "gene", "none"]
    assert doubted[0]["annotation"] == similar and doubted[0]["gene"] is None and doubted[0]["source"] is None
    want = float(dec.SentenceScorer(m.model, m.processor)(rows[:1], [similar])[0])
    assert doubted[0]["confidence"] == pytest.approx(want, abs=1e-5) and want != pytest.approx(-0.5)
    assert doubted[0]["outcome_confidence"] == pytest.approx(1 / (1 + math.exp(3.0)))
    assert doubted[1]["gene"] == "GENE7" and doubted[1]["confidence"] == pytest.approx(-0.5)
    assert [p["outcome"] for p in predict(-3.0)] == ["similar", "gene", "none"]  # on by default, at 0.5
    for stands in (predict(-3.0, withhold_below=None), predict(3.0, withhold_below=0.5),
                   predict(None, withhold_below=0.5), predict(-3.0, withhold_below=0.01)):
        # off; confident; uncalibrated; 0.047 not under 0.01
        assert [p["gene"] for p in stands] == ["OTHER2", "GENE7", None]
        assert stands[0]["annotation"] == texts[0] and stands[0]["confidence"] == pytest.approx(-0.5)
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="--withhold-below"):
            InferenceConfig(withhold_below=bad)


def test_drafts_are_the_evidence_sentences_and_change_no_prediction():
    """A retrieval model's drafts (`decoding.draft_sentences`, as the processor tokenizes a
    target) save passes only: the predictions with drafts are those of one token a step."""
    m = _retrieval_model(max_new_tokens=MAX_NEW)
    evidence = [[GENE7], [BETWEEN, GENE7], [OTHER2], [WEAK], []]
    assert dec.draft_sentences([BETWEEN, GENE7]) == [
        dec.described([BETWEEN, GENE7]), dec.candidate_sentence(GENE7, None), NONE_SENTENCE]
    assert dec.draft_sentences([]) == [NONE_SENTENCE]
    # too little aligns: the rule's sentence is the no-match one, first and not twice
    assert dec.draft_sentences([WEAK]) == [NONE_SENTENCE, dec.candidate_sentence(WEAK, None)]
    rows = [{**r, "evidence": ev} for r, ev in zip(_rows(SEQS[:3] * 2), evidence)]
    prompt = m.preprocess(rows)
    assert prompt.drafts[1] == [m.processor.target_ids(s) for s in dec.draft_sentences([BETWEEN, GENE7])]
    assert Annotator(m.model, m.processor, config=InferenceConfig(draft_tokens=0)).preprocess(rows).drafts is None
    with_drafts = m.predict_batch(rows)
    one_a_step = Annotator(m.model, m.processor,
                           config=InferenceConfig(max_new_tokens=MAX_NEW, draft_tokens=0)).predict_batch(rows)
    for a, b in zip(with_drafts, one_a_step):
        assert (a["annotation"], a["outcome"], a["gene"]) == (b["annotation"], b["outcome"], b["gene"])
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
    with pytest.raises(ConfigError, match="draft_tokens"):
        InferenceConfig(draft_tokens=-1)
