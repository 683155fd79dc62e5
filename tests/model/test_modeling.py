import math

import pytest
import torch

from llamadna.model.modeling import LlamaDNAForAnnotation
from llamadna.model.processing import splash_text
from tests.model.conftest import make_model, make_processor, rows

GEN_KEYS = ("input_ids", "attention_mask", "dna_input_ids", "dna_attention_mask")


def generate(model, batch, n=8):
    return model.generate(**{k: batch[k] for k in GEN_KEYS}, max_new_tokens=n, do_sample=False,
                          pad_token_id=make_processor().text_tokenizer.pad_token_id)


def test_only_lora_projector_head_trainable_by_default(tiny_model):
    trainable = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    assert trainable and all(
        n.startswith(("projector.", "cls_head.")) or ("lora_" in n and n.startswith("language_model."))
        for n in trainable)
    assert any("lora_A" in n and "q_proj" in n for n in trainable)
    assert any("lora_A" in n and "v_proj" in n for n in trainable)
    assert not any(n.startswith("dna_encoder.") for n in trainable)
    full = make_model(encoder_training="full")
    assert any(n.startswith("dna_encoder.") and p.requires_grad for n, p in full.named_parameters())
    lora_enc = make_model(encoder_training="lora")
    enc = [n for n, p in lora_enc.named_parameters() if p.requires_grad and n.startswith("dna_encoder.")]
    assert enc and all("lora_" in n for n in enc)


def test_save_load_round_trip_identical_generations(tiny_model, tmp_path):
    from llamadna.model.processing import LlamaDNAProcessor

    proc = make_processor()
    b = proc(rows(3), padding_side="left")
    tiny_model.eval()
    before = generate(tiny_model, b)
    tiny_model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")  # beside the model: the pure model writes none of it
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "dna_tokenizer", "text_tokenizer",
            "processor_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    loaded = LlamaDNAForAnnotation.from_pretrained(tmp_path / "m").eval()
    loaded_proc = LlamaDNAProcessor.from_pretrained(tmp_path / "m")
    assert loaded_proc.prompt_mode == "leak-free" and not hasattr(loaded, "processor")
    b2 = loaded_proc(rows(3), padding_side="left")
    assert torch.equal(b["input_ids"], b2["input_ids"])
    assert torch.equal(before, generate(loaded, b2))
    sd1, sd2 = tiny_model.state_dict(), loaded.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)


def test_prompts_leak_free_and_seed_faithful():
    r = rows(1)[0]
    leak_free = make_processor("leak-free")
    seed = make_processor("seed-faithful")
    p = leak_free.prompt_text(r)
    for field in ("gene_name", "gene_description", "phenotype", "clinical_significance"):
        assert r[field] not in p
    assert "SPLASH effect 0.50, p-value 1.0e-01, entropy 1.25" in p
    s = seed.prompt_text(r)
    for field in ("gene_name", "gene_description", "phenotype", "clinical_significance"):
        assert r[field] in s
    # the tokens given to the model carry the same text
    ids = leak_free(rows(1))["input_ids"][0]
    text = leak_free.text_tokenizer.decode(ids, skip_special_tokens=True)
    assert "GENE0" not in text and "secret" not in text and "SPLASH effect" in text


def test_splash_text_not_available():
    assert splash_text({"SPLASH_Effect": math.nan, "SPLASH_pval": 0.1, "SPLASH_entropy": 1}) == (
        "SPLASH scores not available")
    assert splash_text({}) == "SPLASH scores not available"


def test_labels_only_on_target_and_padding_masks():
    m = make_model()
    proc = make_processor()
    rs = rows(2, length=60) + rows(1, length=200, seed=3)
    b = proc(rs, targets=[r["Annotation"] for r in rs], class_ids=[0, 1, 2])
    lab, am, pm = b["labels"], b["attention_mask"], b["prompt_mask"]
    assert ((lab != -100) <= (am == 1)).all()  # no loss on padding
    assert ((lab != -100) & (pm == 1)).sum() == 0  # nor on the prompt
    tt = proc.text_tokenizer
    for i, r in enumerate(rs):
        target = lab[i][lab[i] != -100].tolist()
        assert target[-1] == tt.eos_token_id
        assert tt.decode(target[:-1]).strip() == r["Annotation"]
    # unequal lengths: the same row gives the same loss alone or in a padded batch
    m.eval()
    with torch.no_grad():
        alone = proc(rs[:1], targets=[rs[0]["Annotation"]], class_ids=[0])
        lone = m(**alone).lm_loss
        batch1 = {k: v[:1] for k, v in b.items() if k not in ("dna_input_ids", "dna_attention_mask")}
        n0 = len(proc.dna_chunks(rs[0]["Sequence"]))
        batch1["dna_input_ids"] = b["dna_input_ids"][:n0]
        batch1["dna_attention_mask"] = b["dna_attention_mask"][:n0]
        assert torch.allclose(m(**batch1).lm_loss, lone, atol=1e-5)


def test_decision_mask_marks_the_words_that_decide_the_outcome():
    from llamadna.constants import NONE_SENTENCE

    proc = make_processor()
    rs = rows(2)
    targets = [rs[0]["Annotation"], NONE_SENTENCE]
    b = proc(rs, targets=targets, decision_mask=True)
    mask, lab = b["decision_mask"], b["labels"]
    assert not (mask & (lab == -100)).any()  # only target tokens, never the prompt or padding
    tt = proc.text_tokenizer
    for i, t in enumerate(targets):
        decided = tt.decode(lab[i][mask[i]].tolist()).strip()
        assert t.startswith(decided) and decided
        # the first target tokens, up to the words that decide: "... chromosome part of"
        start = int((lab[i] != -100).nonzero()[0])
        assert mask[i].nonzero().flatten().tolist() == list(range(start, start + int(mask[i].sum())))
    assert tt.decode(lab[0][mask[0]].tolist()).strip().endswith("chromosome part of")
    assert "decision_mask" not in proc(rs)  # no targets: nothing to weigh
    # only when asked for (training): scoring sentences at annotation time does not tokenize it
    assert "decision_mask" not in proc(rs, targets=targets)
    assert "decision_mask" not in proc(rs, decision_mask=True)


@pytest.mark.parametrize("copy_head", [False, True])
def test_decision_weight_weighs_the_deciding_tokens_only(copy_head):
    rs = rows(2)
    proc = make_processor()
    b = proc(rs, targets=[r["Annotation"] for r in rs], decision_mask=True)
    plain = make_model(copy_head=copy_head).eval()
    with torch.no_grad():
        base = plain(**b).lm_loss
        # weight 1, or no mask: the plain mean over the target tokens
        assert torch.equal(plain(**{k: v for k, v in b.items() if k != "decision_mask"}).lm_loss, base)
        heavy = make_model(copy_head=copy_head, decision_weight=5.0).eval()
        heavy.load_state_dict(plain.state_dict())
        weighted = heavy(**b).lm_loss
        # the same per-token losses, recombined by hand: deciding tokens count five times
        out = plain(**b).logits  # log-probabilities (B, T-1, V) with the copy head
        logp = (out if copy_head else out[:, :-1].float().log_softmax(-1)).flatten(0, 1)
        gold = b["labels"][:, 1:].flatten()
        keep = gold != -100
        nll = -logp[keep].gather(1, gold[keep, None]).squeeze(1)
        w = 1 + 4 * b["decision_mask"][:, 1:].flatten()[keep].float()
    assert torch.allclose(weighted, (nll * w).sum() / w.sum(), atol=1e-5)
    assert not torch.allclose(weighted, base)


def test_long_sequences_are_chunked_not_truncated():
    m = make_model(chunk=16).eval()
    proc = make_processor(chunk=16)
    long = rows(1, length=2000)
    chunks = proc.dna_chunks(long[0]["Sequence"])
    assert len(chunks) > 3 and all(len(c) <= 16 for c in chunks)
    ids = [t for c in chunks for t in c[1:-1]]
    assert proc.dna_tokenizer.decode(ids).replace(" ", "") == long[0]["Sequence"]
    b = proc(long + rows(1, length=50), padding_side="left")
    assert int((b["input_ids"] == m.config.dna_placeholder_id).sum()) == int(b["dna_attention_mask"].sum())
    out = generate(m, b, n=3)
    assert out.shape == (2, 3)


def test_placeholder_feature_mismatch_raises(tiny_model):
    b = make_processor()(rows(2))
    with pytest.raises(ValueError, match="DNA features but .* <dna> placeholders"):
        tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                   dna_input_ids=b["dna_input_ids"][:1], dna_attention_mask=b["dna_attention_mask"][:1])
    with pytest.raises(ValueError, match="placeholders but no DNA input"):
        tiny_model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])


def test_no_dna_prompt_and_class_head(tiny_model):
    b = make_processor()(rows(2), with_dna=False)
    assert "dna_input_ids" not in b and not (b["input_ids"] == tiny_model.config.dna_placeholder_id).any()
    out = tiny_model(**b)
    assert out.cls_logits.shape == (2, 3) and out.loss is None


def test_loss_and_gradients_reach_trainable_parts(tiny_model):
    rs = rows(2)
    b = make_processor()(rs, targets=[r["Annotation"] for r in rs], class_ids=[0, 2])
    out = tiny_model(**b)
    assert out.loss > 0 and out.lm_loss > 0 and out.cls_loss > 0
    out.loss.backward()
    grads = {n: p.grad for n, p in tiny_model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for n, g in grads.items() if n.startswith("projector."))


def test_greedy_generation_agrees_with_the_forward_pass():
    """Each greedily generated token is the argmax of the teacher-forced forward pass over the
    prompt (DNA merged) + the tokens before it: generate's KV cache, positions and left padding
    match forward's, for a batch of unequal sequences."""
    m = make_model().eval()
    proc = make_processor()
    rs = rows(2, length=60) + rows(1, length=200, seed=3)
    b = proc(rs, padding_side="left")
    n = 10
    gen = generate(m, b, n=n)
    assert gen.shape == (3, n)
    eos = proc.text_tokenizer.eos_token_id
    # after an end-of-sequence token generate pads: those positions are not compared
    done = torch.cumsum((gen == eos).long(), 1) - (gen == eos).long() > 0
    ids = torch.cat([b["input_ids"], gen], 1)
    mask = torch.cat([b["attention_mask"], (~done).long()], 1)
    with torch.no_grad():
        logits = m(input_ids=ids, attention_mask=mask, dna_input_ids=b["dna_input_ids"],
                   dna_attention_mask=b["dna_attention_mask"]).logits
    T = b["input_ids"].shape[1]
    pred = logits[:, T - 1 : T - 1 + n].argmax(-1)
    assert (pred == gen)[~done].all()
    assert (~done).sum() >= 3 * 3  # enough tokens were compared


def test_padding_side_does_not_change_outputs():
    m = make_model().eval()
    proc = make_processor()
    rs = rows(2, length=60) + rows(1, length=200, seed=3)
    right, left = proc(rs), proc(rs, padding_side="left")
    with torch.no_grad():
        a, b = m(**right).cls_logits, m(**left).cls_logits
        c = m.classify(**left)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)


def test_generate_with_class_is_generate_and_classify_in_one_pass():
    m = make_model().eval()
    proc = make_processor()
    left = proc(rows(2, length=60) + rows(1, length=200, seed=3), padding_side="left")
    eos = proc.text_tokenizer.eos_token_id
    kw = dict(max_new_tokens=6, do_sample=False, eos_token_id=eos,
              pad_token_id=proc.text_tokenizer.pad_token_id)
    out, cls = m.generate_with_class(**left, **kw)
    alone = m.generate(**{k: v for k, v in left.items() if k != "prompt_mask"}, **kw)
    torch.testing.assert_close(cls, m.classify(**left), rtol=1e-5, atol=1e-6)
    assert torch.equal(out.sequences, alone)
    assert out.hidden_states is None  # not kept


def _dnabert2_dir(d, vocab_size: int, marker):
    """A tiny DNABERT-2 directory in the hub layout: config.json with an `auto_map` into its own
    `bert_layers.py`, which here writes `marker` when imported or run."""
    import json

    from safetensors.torch import save_file
    from transformers import BertConfig

    from llamadna.model.dnabert2 import DnaBert2Model

    d.mkdir()
    raw = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "alibi_starting_size": 32,
           "auto_map": {"AutoModel": "bert_layers.BertModel", "AutoConfig": "configuration_bert.BertConfig"},
           "vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 48, "max_position_embeddings": 32, "attention_probs_dropout_prob": 0.0}
    (d / "config.json").write_text(json.dumps(raw))
    for name in ("bert_layers.py", "configuration_bert.py"):
        (d / name).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    torch.manual_seed(0)
    enc = DnaBert2Model(BertConfig(**{k: v for k, v in raw.items() if k != "auto_map"}),
                        add_pooling_layer=False)
    save_file({f"bert.{k}": v.contiguous() for k, v in enc.state_dict().items()},
              str(d / "model.safetensors"))
    return d


def test_a_model_directory_never_runs_code(tmp_path, caplog):
    """A saved model whose config points at an encoder folder with code and an `auto_map`: loading
    and annotating run none of it (the marker is never written), and the log says why."""
    import logging
    import runpy

    from transformers import LlamaConfig

    from llamadna.annotate import Annotator, InferenceConfig
    from llamadna.model.configuration import LlamaDNAConfig
    from llamadna.model.dnabert2 import DnaBert2Model
    from llamadna.model.processing import LlamaDNAProcessor
    from tests.model.conftest import make_tokenizers

    marker = tmp_path / "REMOTE_CODE_RAN"
    dna, txt = make_tokenizers()
    enc_dir = _dnabert2_dir(tmp_path / "dnabert2", len(dna), marker)
    proc = LlamaDNAProcessor(dna, txt, dna_chunk_tokens=32)
    cfg = LlamaDNAConfig(
        dna_config={"model_type": "bert"},
        text_config=LlamaConfig(vocab_size=len(txt), hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                max_position_embeddings=1024).to_dict(),
        dna_placeholder_id=proc.placeholder_id, dna_chunk_tokens=32, dna_model_path=str(enc_dir))
    with caplog.at_level(logging.WARNING):
        model = LlamaDNAForAnnotation.from_base(cfg)
        model.save_pretrained(tmp_path / "model")
        proc.save_pretrained(tmp_path / "model")
        loaded = Annotator.from_pretrained(tmp_path / "model", device="cpu",
                                           config=InferenceConfig(max_new_tokens=3))
        preds = loaded.annotate_rows(rows(2))
    assert len(preds) == 2 and isinstance(loaded.model.dna_encoder, DnaBert2Model)
    assert not marker.exists()
    assert "auto_map ignored" in caplog.text and "never runs code" in caplog.text
    runpy.run_path(str(enc_dir / "bert_layers.py"))  # the payload is live: run, it does write
    assert marker.exists()


def test_encoders_that_exist_only_as_their_own_code_and_hub_ids_are_refused(tmp_path):
    import json

    from llamadna.errors import InputError
    from llamadna.model.modeling import load_dna_encoder

    d = tmp_path / "custom"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "hyena", "auto_map": {"AutoModel": "m.M"}}))
    with pytest.raises(InputError, match=r"unsupported DNA encoder \(model_type 'hyena', with an "
                       r"auto_map into its own code\).*never run"):
        load_dna_encoder(d)
    with pytest.raises(InputError, match="no such directory .*model hub id: model hubs are not used"):
        load_dna_encoder("zhihan1996/DNABERT-2-117M")


def test_saved_model_files_have_the_usual_permissions(tiny_model, tmp_path):
    """safetensors writes 0600; a model directory is shared with colleagues (issue: 0600 weights)."""
    from llamadna.io.atomic import current_umask

    tiny_model.save_pretrained(tmp_path / "m")
    for p in (tmp_path / "m").rglob("*"):
        assert p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~current_umask(), p


def test_retrieval_prompt_holds_the_evidence_and_never_the_rows_own_fields():
    from llamadna.model.processing import LlamaDNAProcessor, evidence_text

    base = make_processor()
    proc = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True, evidence_k=2)
    r = rows(1)[0]  # its gene fields: GENE0, "secret" description, ...
    cand = {"kind": "gene", "gene": "TUFT1", "chrom": "chr1", "description": "tuftelin 1",
            "transcript_type": "protein coding", "phenotype": "not specified", "source": "ClinVar",
            "score": 1.97, "identity": 0.98, "aligned_fraction": 0.994, "cosine": 0.4, "via": "both",
            "loci": 1}
    emb = {**cand, "gene": "OTHER", "identity": None, "aligned_fraction": None, "score": 0.05,
           "cosine": 0.5, "via": "embed"}
    third = {**cand, "gene": "THIRD"}
    p = proc.prompt_text({**r, "evidence": [cand, emb, third]})
    for field in ("gene_name", "gene_description", "phenotype", "clinical_significance"):
        assert r[field] not in p  # only retrieved fields
    assert p.endswith(" Reference evidence: [1] part of chr1 chromosome part of TUFT1 gene. This gene is "
                      "described as tuftelin 1 and a protein coding transcript type. It is of not "
                      "specified phenotype. Nearest known variant ClinVar, aligned 0.99 (whole) of it at "
                      "identity 0.98 (near-identical), 1 loci. [2] OTHER gene on chr1, similar 0.50. "
                      "Annotation:")
    assert "THIRD" not in p  # evidence_k candidates only
    assert proc.prompt_text({**r, "evidence": []}).endswith(
        " Reference evidence: no reference match. Annotation:")
    assert evidence_text(None) == " Reference evidence: no reference match."
    # an intergenic candidate: first, in the intergenic sentence's words; later, by its kind
    between = {"kind": "intergenic", "gene": None, "chrom": "chr21", "description": None,
               "transcript_type": None, "phenotype": None, "source": None, "score": 1.99,
               "identity": 0.991, "aligned_fraction": 1.0, "cosine": None, "via": "align", "loci": 4,
               "left_gene": "APP", "left_distance": 12_000, "right_gene": None, "right_distance": None}
    assert evidence_text([between, cand]) == (
        " Reference evidence: [1] part of chr21 chromosome between APP (12 kb) and no annotated gene; "
        "no gene contains it, aligned 1.00 (whole) of it at identity 0.99 (near-identical), 4 loci. "
        "[2] TUFT1 gene on chr1, aligned 0.99 (whole) of it at identity 0.98 (near-identical), 1 loci.")
    assert evidence_text([cand, {**between, "right_gene": "ADAMTS1", "right_distance": 850}]).endswith(
        " [2] intergenic on chr21, aligned 1.00 (whole) of it at identity 0.99 (near-identical), 4 loci.")
    # the bands' words (constants.COVERAGE_WORDS, IDENTITY_WORDS), at and below each band's edge
    partial = {**cand, "aligned_fraction": 0.35, "identity": 1.0}
    assert "aligned 0.35 (part) of it at identity 1.00 (near-identical)" in evidence_text([cand, partial])
    for fraction, identity, words in ((0.85, 0.95, "(whole) of it at identity 0.95 (near-identical)"),
                                      (0.849, 0.949, "(most) of it at identity 0.95 (close)"),
                                      (0.55, 0.66, "(most) of it at identity 0.66 (diverged)"),
                                      (0.549, 0.659, "(part) of it at identity 0.66 (weak)"),
                                      (0.0, 0.0, "(part) of it at identity 0.00 (weak)")):
        assert words in evidence_text([{**cand, "aligned_fraction": fraction, "identity": identity}])
    two_sided = evidence_text([{**between, "right_gene": "ADAMTS1", "right_distance": 4_200}])
    assert "between APP (12 kb) and ADAMTS1 (4.2 kb); no gene contains it" in two_sided
    with pytest.raises(ValueError, match="no 'evidence'"):
        proc.prompt_text(r)
    # without retrieval the prompt is the previous architecture's, to the character
    assert base.prompt_text(r) == "DNA:<dna> SPLASH effect 0.50, p-value 1.0e-01, entropy 1.25. Annotation:"
    no_splash = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, use_splash=False)
    assert no_splash.prompt_text(r) == "DNA:<dna> Annotation:"
    with pytest.raises(Exception, match="exclude|one or the other"):
        LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, prompt_mode="seed-faithful", retrieval=True)


def test_processor_settings_round_trip(tmp_path):
    from llamadna.model.processing import LlamaDNAProcessor

    base = make_processor()
    proc = LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True, evidence_k=3,
                             use_splash=False, index="/some/index")
    proc.save_pretrained(tmp_path)
    back = LlamaDNAProcessor.from_pretrained(tmp_path)
    assert (back.retrieval, back.evidence_k, back.use_splash, back.index) == (True, 3, False, "/some/index")


@pytest.mark.parametrize("version", [None, 1, 2, "3"])
def test_a_retrieval_model_of_an_older_prompt_wording_is_refused(tmp_path, version):
    """A retrieval model's processor records the prompt wording it was trained on; one without
    PROMPT_VERSION (or an older one) read other evidence text: a one-line error, retrain. A model
    without retrieval reads no evidence and loads as before."""
    import json

    from llamadna.errors import InputError
    from llamadna.model.processing import PROCESSOR_FILE, PROMPT_VERSION, LlamaDNAProcessor

    base = make_processor()
    LlamaDNAProcessor(base.dna_tokenizer, base.text_tokenizer, retrieval=True).save_pretrained(tmp_path)
    path = tmp_path / PROCESSOR_FILE
    cfg = json.loads(path.read_text())
    assert cfg["prompt_version"] == PROMPT_VERSION == 3
    assert LlamaDNAProcessor.from_pretrained(tmp_path).retrieval
    if version is None:
        del cfg["prompt_version"]
    else:
        cfg["prompt_version"] = version
    path.write_text(json.dumps(cfg))
    with pytest.raises(InputError) as err:
        LlamaDNAProcessor.from_pretrained(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    recorded = version if isinstance(version, int) else "none recorded"
    assert f"older prompt wording (prompt_version {recorded}; now 3: outcome-aware evidence" in msg
    assert "retrain" in msg and "llamadna train" in msg
    path.write_text(json.dumps({**cfg, "retrieval": False}))  # the same, without retrieval: loads
    back = LlamaDNAProcessor.from_pretrained(tmp_path)
    assert not back.retrieval and back.prompt_text(rows(1)[0]).startswith("DNA:<dna> SPLASH effect")


def test_full_llm_training_trains_every_llm_weight_and_no_adapter():
    m = make_model(llm_training="full")
    names = [n for n, p in m.named_parameters() if n.startswith("language_model.")]
    assert names and not any("lora_" in n for n in names)
    assert all(p.requires_grad for n, p in m.named_parameters() if n.startswith("language_model."))
    from llamadna.errors import ConfigError
    from llamadna.model.configuration import LlamaDNAConfig

    with pytest.raises(ConfigError, match="LoRA"):
        LlamaDNAConfig(llm_training="full", llm_path="/x/llama")


def test_copy_head_decoding_is_the_forward_passs_distribution():
    """The copy head's greedy loop (KV cache) gives, at every step, the log-probabilities the
    training forward computes over prompt + generated tokens; it can copy a prompt token the LM
    alone would not write."""
    m = make_model(copy_head=True, llm_training="full").eval()
    proc = make_processor()
    b = proc(rows(2), padding_side="left")
    tt = proc.text_tokenizer
    out, cls = m.generate_with_class(**b, max_new_tokens=6, eos_token_id=tt.eos_token_id,
                                     pad_token_id=tt.pad_token_id)
    assert torch.allclose(cls, m.classify(**b), atol=1e-5)
    seq = out.sequences
    ids = torch.cat([b["input_ids"], seq], 1)
    am = torch.cat([b["attention_mask"], torch.ones_like(seq)], 1)
    pm = torch.cat([b["prompt_mask"], torch.zeros_like(seq)], 1)
    labels = torch.cat([torch.full_like(b["input_ids"], -100), seq], 1)
    with torch.no_grad():
        fwd = m(input_ids=ids, attention_mask=am, prompt_mask=pm, labels=labels,
                dna_input_ids=b["dna_input_ids"], dna_attention_mask=b["dna_attention_mask"])
    T = b["input_ids"].shape[1]
    for t, step in enumerate(out.logits):  # fwd.logits[:, i] predicts token i + 1
        assert torch.allclose(step, fwd.logits[:, T - 1 + t], atol=1e-4)
    # a copy head forced to copy, attending to one prompt token, writes that token
    with torch.no_grad():
        m.copy_head.gate.weight.zero_()
        m.copy_head.gate.bias.fill_(-30.0)
    out, _ = m.generate_with_class(**b, max_new_tokens=1, eos_token_id=tt.eos_token_id,
                                   pad_token_id=tt.pad_token_id)
    copyable = m.copyable(b["input_ids"], b["prompt_mask"], b["attention_mask"])
    for r in range(2):
        assert int(out.sequences[r, 0]) in set(b["input_ids"][r][copyable[r]].tolist())


def test_copy_head_round_trips(tmp_path):
    m = make_model(copy_head=True, llm_training="full").eval()
    proc = make_processor()
    m.save_pretrained(tmp_path / "m")
    back = LlamaDNAForAnnotation.from_pretrained(tmp_path / "m").eval()
    assert back.config.copy_head and back.copy_head is not None
    b = proc(rows(2), padding_side="left")
    tt = proc.text_tokenizer
    kw = dict(max_new_tokens=5, eos_token_id=tt.eos_token_id, pad_token_id=tt.pad_token_id)
    assert torch.equal(m.generate_with_class(**b, **kw)[0].sequences, back.generate_with_class(**b, **kw)[0].sequences)


def test_copy_continuation_follows_the_tokens_just_written():
    """With content attention switched off, the copy distribution goes to the prompt token that
    follows the two tokens just written (not to every token after the last one)."""
    from llamadna.model.copying import CopyHead
    head = CopyHead(hidden=4, dim=2)
    with torch.no_grad():
        head.q.weight.zero_()
        head.gate.weight.zero_()
        head.gate.bias.fill_(-30.0)  # copy only
    V = 10
    source = torch.tensor([[3, 5, 6, 4, 5, 8]])
    copyable = torch.ones_like(source, dtype=torch.bool)
    keys = torch.zeros(1, 6, 2)
    head.requires_grad_(False)
    lp = head.log_probs(torch.zeros(1, 1, V), torch.zeros(1, 1, 4), keys, source, copyable,
                        current=torch.tensor([[5]]), previous=torch.tensor([[4]]))[0, 0]
    assert int(lp.argmax()) == 8  # "4 5" is followed by 8; "3 5" by 6
    assert lp[6] > lp[3]  # after a single-token match, above unmatched tokens
    copyable[0, 3] = False  # a non-copyable token is no context
    lp = head.log_probs(torch.zeros(1, 1, V), torch.zeros(1, 1, 4), keys, source, copyable,
                        current=torch.tensor([[5]]), previous=torch.tensor([[4]]))[0, 0]
    assert lp[8] == pytest.approx(float(lp[6]), abs=1e-5)


@pytest.mark.parametrize("copy_head", [True, False])
def test_target_log_probs_are_the_training_forwards(copy_head):
    """The rerank scorer (left-padded prompts, only the targets' positions) gives each row the
    summed log-probability the training forward's loss is made of, eos included."""
    m = make_model(copy_head=copy_head, llm_training="full").eval()
    proc = make_processor()
    rs = rows(3)
    targets = [rs[0]["Annotation"], "This sequence is part of chr2 chromosome.", rs[2]["Annotation"]]
    b = proc(rs, targets=targets, padding_side="left")
    total, count = m.target_log_probs(**b)
    tt = proc.text_tokenizer
    assert count.tolist() == [len(tt(" " + t, add_special_tokens=False)["input_ids"]) + 1 for t in targets]
    for i in range(3):  # one row at a time, right-padded as in training: mean NLL = -total / count
        one = proc([rs[i]], targets=[targets[i]], padding_side="right")
        with torch.no_grad():
            loss = m(**one).lm_loss
        assert float(-total[i] / count[i]) == pytest.approx(float(loss), rel=1e-4)


@pytest.mark.parametrize("copy_head", [False, True])
def test_generation_finishes_the_rows_a_stop_names(copy_head):
    """`stop` ((row, its new tokens so far) -> finish it now) ends those rows where it says, both
    in the copy head's loop and in `generate` (a stopping criterion); the other rows are unchanged."""
    m = make_model(copy_head=copy_head, llm_training="full").eval()
    proc = make_processor()
    b = proc(rows(2), padding_side="left")
    tt = proc.text_tokenizer
    kw = dict(max_new_tokens=6, eos_token_id=tt.eos_token_id, pad_token_id=tt.pad_token_id,
              do_sample=False, num_beams=1, output_logits=True)
    full = m.generate_with_class(**b, **kw)[0].sequences
    seen = []

    def stop(row, tokens):
        seen.append((row, len(tokens)))
        return row == 0 and len(tokens) == 2

    short = m.generate_with_class(**b, stop=stop, **kw)[0].sequences
    assert seen[:4] == [(0, 1), (1, 1), (0, 2), (1, 2)]  # with the new tokens only, every step
    assert torch.equal(short[0, :2], full[0, :2]) and bool((short[0, 2:] == tt.pad_token_id).all())
    assert torch.equal(short[1], full[1, : short.shape[1]])


@pytest.mark.slow
def test_peft_is_imported_only_for_a_model_with_lora():
    """A model without LoRA (the tiny preset trains its LLM in full) loads without peft, whose
    import costs every process ~2 s; a LoRA model imports it and gets its adapters."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys\n"
            "from tests.model.conftest import make_model\n"
            "m = make_model(llm_training='full')\n"
            "assert 'peft' not in sys.modules, 'peft imported for a model without LoRA'\n"
            "assert not any('lora_' in n for n, _ in m.named_parameters())\n"
            "m = make_model()\n"
            "assert 'peft' in sys.modules\n"
            "assert any('lora_A' in n for n, _ in m.named_parameters())\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
