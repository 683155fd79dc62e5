"""DNABERT-2 carried in the project: loading a hub-layout directory without running its code, the
architecture against a naive reference written from the math, padding, ALiBi slopes, errors."""

from __future__ import annotations

import json
import math
import runpy

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, PreTrainedModel

from llamadna.errors import InputError
from llamadna.model.dnabert2 import (
    DnaBert2Model,
    alibi_slopes,
    is_dnabert2_config,
    load_dnabert2,
)

VOCAB, HIDDEN, LAYERS, INTER = 40, 32, 2, 48
AUTO_MAP = {
    "AutoConfig": "configuration_bert.BertConfig",
    "AutoModel": "bert_layers.BertModel",
    "AutoModelForMaskedLM": "bert_layers.BertForMaskedLM",
    "AutoModelForSequenceClassification": "bert_layers.BertForSequenceClassification",
}


def hub_config(heads: int = 4, hidden: int = HIDDEN) -> dict:
    """A tiny config.json in DNABERT-2's shape (a BertConfig with MosaicBERT's extra keys)."""
    return {
        "_name_or_path": "zhihan1996/DNABERT-2-117M", "architectures": ["BertForMaskedLM"],
        "alibi_starting_size": 8, "attention_probs_dropout_prob": 0.0, "auto_map": AUTO_MAP,
        "classifier_dropout": None, "flash_attn": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": INTER, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8, "model_type": "bert", "num_attention_heads": heads,
        "num_hidden_layers": LAYERS, "pad_token_id": 0, "position_embedding_type": "absolute",
        "type_vocab_size": 2, "vocab_size": VOCAB,
    }


def encoder_state(seed: int = 0, hidden: int = HIDDEN, pooler: bool = False) -> dict[str, torch.Tensor]:
    """Random encoder weights under DNABERT-2's parameter names (listed here, not taken from the module)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.3, loc=0.0):
        return (loc + scale * torch.randn(*shape, generator=g)).float()

    s = {"embeddings.word_embeddings.weight": rnd(VOCAB, hidden),
         "embeddings.token_type_embeddings.weight": rnd(2, hidden),
         "embeddings.LayerNorm.weight": rnd(hidden, scale=0.1, loc=1.0),
         "embeddings.LayerNorm.bias": rnd(hidden, scale=0.1)}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        s |= {p + "attention.self.Wqkv.weight": rnd(3 * hidden, hidden),
              p + "attention.self.Wqkv.bias": rnd(3 * hidden, scale=0.1),
              p + "attention.output.dense.weight": rnd(hidden, hidden),
              p + "attention.output.dense.bias": rnd(hidden, scale=0.1),
              p + "attention.output.LayerNorm.weight": rnd(hidden, scale=0.1, loc=1.0),
              p + "attention.output.LayerNorm.bias": rnd(hidden, scale=0.1),
              p + "mlp.gated_layers.weight": rnd(2 * INTER, hidden),
              p + "mlp.wo.weight": rnd(hidden, INTER),
              p + "mlp.wo.bias": rnd(hidden, scale=0.1),
              p + "mlp.layernorm.weight": rnd(hidden, scale=0.1, loc=1.0),
              p + "mlp.layernorm.bias": rnd(hidden, scale=0.1)}
    if pooler:
        s |= {"pooler.dense.weight": rnd(hidden, hidden), "pooler.dense.bias": rnd(hidden, scale=0.1)}
    return s


def hub_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As BertForMaskedLM saves it: `bert.`-prefixed encoder plus the `cls.` MLM head."""
    ckpt = {f"bert.{k}": v.clone() for k, v in state.items()}
    ckpt["cls.predictions.bias"] = torch.zeros(VOCAB)
    ckpt["cls.predictions.transform.dense.weight"] = torch.zeros(HIDDEN, HIDDEN)
    return ckpt


def payload(marker) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('remote code ran')\n"


def write_hub_dir(directory, state, fmt: str = "safetensors", config: dict | None = None, marker=None):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config or hub_config()))
    if marker is not None:
        for name in ("bert_layers.py", "configuration_bert.py", "bert_padding.py", "flash_attn_triton.py"):
            (directory / name).write_text(payload(marker))
    ckpt = hub_checkpoint(state)
    if fmt == "safetensors":
        save_file(ckpt, str(directory / "model.safetensors"))
    else:
        torch.save(ckpt, directory / "pytorch_model.bin")
    return directory


# ---------------------------------------------------------------------------------------- reference
def paper_slopes(n: int) -> list[float]:
    """ALiBi paper: geometric sequence starting at 2**(-8/n) with that ratio; for n not a power
    of 2, the closest lower power's slopes then every other one of twice that power's."""
    def geometric(m):
        start = 2 ** (-(2 ** -(math.log2(m) - 3)))
        return [start * start ** i for i in range(m)]

    if math.log2(n).is_integer():
        return geometric(n)
    p = 2 ** math.floor(math.log2(n))
    return geometric(p) + paper_slopes(2 * p)[0::2][: n - p]


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def reference_forward(state, heads, input_ids, attention_mask):
    """Naive float64 DNABERT-2, head by head and sequence by sequence."""
    w = {k: v.double() for k, v in state.items()}
    bsz, t = input_ids.shape
    hidden = w["embeddings.word_embeddings.weight"].shape[1]
    d = hidden // heads
    slopes = paper_slopes(heads)
    dist = torch.tensor([[abs(i - j) for j in range(t)] for i in range(t)], dtype=torch.float64)
    x = w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        qkv = x @ w[p + "attention.self.Wqkv.weight"].T + w[p + "attention.self.Wqkv.bias"]
        q, k, v = qkv[..., :hidden], qkv[..., hidden:2 * hidden], qkv[..., 2 * hidden:]
        ctx = torch.zeros_like(x)
        for b in range(bsz):
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                scores = q[b, :, sl] @ k[b, :, sl].T / math.sqrt(d) - slopes[h] * dist
                scores[:, attention_mask[b] == 0] = -math.inf
                ctx[b, :, sl] = torch.softmax(scores, -1) @ v[b, :, sl]
        attn = ctx @ w[p + "attention.output.dense.weight"].T + w[p + "attention.output.dense.bias"]
        attn = layer_norm(attn + x, w[p + "attention.output.LayerNorm.weight"],
                          w[p + "attention.output.LayerNorm.bias"])
        glu = attn @ w[p + "mlp.gated_layers.weight"].T
        gated, plain = glu[..., :INTER], glu[..., INTER:]
        act = 0.5 * gated * (1 + torch.erf(gated / math.sqrt(2)))  # exact GELU
        out = (act * plain) @ w[p + "mlp.wo.weight"].T + w[p + "mlp.wo.bias"]
        x = layer_norm(out + attn, w[p + "mlp.layernorm.weight"], w[p + "mlp.layernorm.bias"])
    return x


def inputs(t=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (3, t), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    return ids, mask


# ---------------------------------------------------------------------------------------- tests
def test_hub_directory_loads_every_weight_and_both_files_agree(tmp_path):
    state = encoder_state()
    a = load_dnabert2(write_hub_dir(tmp_path / "st", state, "safetensors"))
    b = load_dnabert2(write_hub_dir(tmp_path / "bin", state, "bin"))
    for model in (a, b):
        sd = model.state_dict()
        assert set(sd) == set(state)  # every checkpoint tensor consumed, nothing left at its init
        assert all(torch.equal(sd[k], state[k]) for k in state)
        assert model.pooler is None and not model.training
        assert not hasattr(model.config, "auto_map") and is_dnabert2_config(model.config)
    ids, mask = inputs()
    out_a, out_b = a(ids, attention_mask=mask), b(ids, attention_mask=mask)
    assert torch.equal(out_a.last_hidden_state, out_b.last_hidden_state)
    assert out_a[0].shape == (3, 11, HIDDEN) and out_a.pooler_output is None


def test_loading_never_runs_the_directory_code(tmp_path):
    marker = tmp_path / "remote_code_ran"
    d = write_hub_dir(tmp_path / "dnabert2", encoder_state(), marker=marker)
    (d / "pytorch_model.bin").write_bytes(b"")  # present but not preferred
    model = load_dnabert2(d)
    ids, mask = inputs()
    model(ids, attention_mask=mask)
    assert not marker.exists()
    runpy.run_path(str(d / "bert_layers.py"))  # the payload does fire when the file is run
    assert marker.exists()


def test_pickle_beyond_tensors_is_refused(tmp_path):
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    d = tmp_path / "evil"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hub_config()))
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2), "x": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(InputError, match="plain tensors"):
        load_dnabert2(d)
    assert not marker.exists()


@pytest.mark.parametrize("heads,hidden", [(4, 32), (6, 36)])
def test_matches_naive_reference(tmp_path, heads, hidden):
    state = encoder_state(seed=heads, hidden=hidden)
    cfg = hub_config(heads=heads, hidden=hidden)
    model = DnaBert2Model(BertConfig(**cfg), add_pooling_layer=False).eval()
    model.load_state_dict(state, strict=True)
    ids, mask = inputs(t=11)  # longer than alibi_starting_size (8)
    with torch.no_grad():
        got = model(ids, attention_mask=mask).last_hidden_state.double()
    want = reference_forward(state, heads, ids, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=0)
    assert torch.all(got[~real] == 0)  # the original returns zeros at padded positions
    got_nomask = model(ids).last_hidden_state.double()
    torch.testing.assert_close(got_nomask, reference_forward(state, heads, ids, torch.ones_like(ids)),
                               atol=1e-5, rtol=0)


def test_padding_does_not_change_real_tokens(tmp_path):
    model = load_dnabert2(write_hub_dir(tmp_path / "m", encoder_state()))
    g = torch.Generator().manual_seed(3)
    short = torch.randint(1, VOCAB, (1, 5), generator=g)
    long = torch.randint(1, VOCAB, (1, 13), generator=g)
    with torch.no_grad():
        alone = model(short).last_hidden_state[0]  # (5, H)
        right = torch.cat([long, torch.cat([short, torch.zeros(1, 8, dtype=torch.long)], 1)])
        right_mask = (right != 0).long()
        batched = model(right, attention_mask=right_mask).last_hidden_state
        left = torch.cat([torch.zeros(1, 8, dtype=torch.long), short], 1)
        left_out = model(left, attention_mask=(left != 0).long()).last_hidden_state[0, 8:]
    torch.testing.assert_close(batched[1, :5], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(left_out, alone, atol=1e-5, rtol=0)  # ALiBi is relative: shifts do not matter
    torch.testing.assert_close(batched[0], model(long).last_hidden_state[0], atol=1e-5, rtol=0)


def test_alibi_slopes():
    assert alibi_slopes(4) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    assert alibi_slopes(4) == [2 ** (-8 / 4 * k) for k in range(1, 5)]
    assert alibi_slopes(6) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    for n in (1, 2, 3, 5, 6, 8, 12, 16, 20):
        assert alibi_slopes(n) == pytest.approx(paper_slopes(n), rel=1e-12)
    assert alibi_slopes(12)[8:] == pytest.approx([2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5])


def test_pooler_loaded_when_the_checkpoint_has_one(tmp_path):
    state = encoder_state(pooler=True)
    model = load_dnabert2(write_hub_dir(tmp_path / "p", state))
    ids, mask = inputs()
    out = model(ids, attention_mask=mask)
    want = torch.tanh(out.last_hidden_state[:, 0] @ state["pooler.dense.weight"].T + state["pooler.dense.bias"])
    torch.testing.assert_close(out.pooler_output, want)
    assert model(ids, return_dict=False)[1].shape == (3, HIDDEN)
    with pytest.raises(InputError, match="pooler.dense.weight"):
        load_dnabert2(write_hub_dir(tmp_path / "nop", encoder_state()), add_pooling_layer=True)


def test_mismatched_weights_raise_input_error_naming_the_key(tmp_path):
    missing = encoder_state()
    del missing["encoder.layer.1.mlp.wo.bias"]
    with pytest.raises(InputError, match=r"missing \['encoder.layer.1.mlp.wo.bias'\]") as e:
        load_dnabert2(write_hub_dir(tmp_path / "missing", missing))
    assert e.value.path.endswith("model.safetensors")
    extra = encoder_state()
    extra["encoder.layer.0.attention.self.query.weight"] = torch.zeros(HIDDEN, HIDDEN)
    with pytest.raises(InputError, match="unexpected.*encoder.layer.0.attention.self.query.weight"):
        load_dnabert2(write_hub_dir(tmp_path / "extra", extra, "bin"))
    shape = encoder_state()
    shape["encoder.layer.0.mlp.wo.weight"] = torch.zeros(HIDDEN, INTER + 1)
    with pytest.raises(InputError, match="wrong shapes.*encoder.layer.0.mlp.wo.weight"):
        load_dnabert2(write_hub_dir(tmp_path / "shape", shape))


def test_directory_without_weights_or_config(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hub_config()))
    with pytest.raises(InputError, match="no weights"):
        load_dnabert2(d)
    with pytest.raises(InputError, match="config.json"):
        load_dnabert2(tmp_path / "nothing")


def test_is_dnabert2_config(tmp_path):
    cfg = hub_config()
    assert is_dnabert2_config(cfg) and is_dnabert2_config(BertConfig(**cfg))
    assert is_dnabert2_config({"model_type": "bert", "auto_map": {"AutoModel": "bert_layers.BertModel"}})
    assert is_dnabert2_config({"model_type": "bert", "alibi_starting_size": 512})
    plain = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_attention_heads=4)
    assert not is_dnabert2_config(plain) and not is_dnabert2_config(plain.to_dict())
    plain.save_pretrained(tmp_path / "plain")
    assert not is_dnabert2_config(BertConfig.from_pretrained(tmp_path / "plain"))


def test_dtype_and_training_paths(tmp_path):
    d = write_hub_dir(tmp_path / "m", encoder_state())
    ids, mask = inputs()
    ref = load_dnabert2(d)(ids, attention_mask=mask).last_hidden_state
    half = load_dnabert2(d, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    out = half(ids, attention_mask=mask).last_hidden_state
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    model = load_dnabert2(d)
    model.train()
    model.activation_checkpointing_enable()
    assert model.encoder.layer[0].gradient_checkpointing
    model(ids, attention_mask=mask).last_hidden_state.sum().backward()
    assert model.encoder.layer[0].attention.self.Wqkv.weight.grad is not None


def test_wrapping_model_post_init_keeps_loaded_weights(tmp_path):
    """The project hands the loaded encoder to its own PreTrainedModel, whose post_init must not re-initialise it."""
    state = encoder_state()
    enc = load_dnabert2(write_hub_dir(tmp_path / "m", state))

    class Wrapper(PreTrainedModel):
        config_class = BertConfig

        def __init__(self, config, encoder):
            super().__init__(config)
            self.dna_encoder = encoder
            self.head = torch.nn.Linear(HIDDEN, 2)
            self.post_init()

    Wrapper(enc.config, enc)
    sd = enc.state_dict()
    assert all(torch.equal(sd[k], state[k]) for k in state)
