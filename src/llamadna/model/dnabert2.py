"""DNABERT-2's encoder, carried by the project so that loading it never runs a model directory's code.

DNABERT-2 (Zhou et al. 2023, `zhihan1996/DNABERT-2-117M`) is a 117M-parameter BERT-style DNA
encoder over a BPE vocabulary of 4096 tokens. Its architecture is MosaicBERT:

- embeddings: word + token-type (type 0 unless given), **no position embeddings**, then LayerNorm
  and dropout;
- attention: one fused `Wqkv` Linear(H, 3H) whose output is laid out [q | k | v], each split into
  heads as (heads, head_dim); scores q.k / sqrt(head_dim) plus an ALiBi bias
  `slope_h * -|i - j|` (symmetric: a bidirectional encoder), padded keys masked out, softmax,
  dropout, context; then `dense`, dropout, residual add and post-LayerNorm;
- feed-forward: a gated linear unit: `gated_layers` = Linear(H, 2I, no bias), the first I
  columns go through the activation (`hidden_act`, exact GELU for DNABERT-2) and multiply the
  last I columns; dropout, `wo` = Linear(I, H), residual add and post-LayerNorm;
- pooler (optional): tanh(Linear(H, H)) of the first token's state.

Shapes: input_ids / attention_mask (B, T) -> last_hidden_state (B, T, H) (zeros at padded
positions, as the original returns them), pooler_output (B, H) or None.

Why here and not `AutoModel.from_pretrained(dir, trust_remote_code=True)`: that imports and runs
`bert_layers.py` & co. from the model directory, so any directory a user points us at could run
arbitrary code; it also tries a Triton flash-attention kernel that fails on CPU. `load_dnabert2`
reads `config.json` as JSON (`auto_map` is dropped, never imported) and the weights as plain
tensors (`model.safetensors`, else `pytorch_model.bin` with `weights_only=True`). Attention runs
in PyTorch (`scaled_dot_product_attention` with an additive float bias) on padded batches; the
original unpads, which only saves compute: padded keys get a zero attention weight here, so real
tokens' states do not depend on padding.

Verified against (read, not copied) MosaicML's `mosaicml/examples`
(`examples/benchmarks/bert/src/bert_layers.py`, which DNABERT-2's `bert_layers.py` is derived from)
and against copies of DNABERT-2's own `bert_layers.py` kept in other repositories (e.g.
`millanp95/reproduce_dnabert_2`; the Hugging Face repository itself was not available): parameter
names, the `b s (t h d)` split of `Wqkv`, the 1/sqrt(head_dim) scaling, the ALiBi slopes (the
ALiBi paper's rule, including its non-power-of-2 head count rule) and the symmetric `-|i - j|`
distance, post-LN residual order in both sub-blocks, which GLU half is activated, the pooler, and
that `BertForMaskedLM` (what the published checkpoint was saved from) has no pooler, so
that checkpoint holds `bert.`-prefixed encoder weights and `cls.` head weights but no
`bert.pooler.*`. The original masks padded keys with -10000 added to the bias; here they get the
dtype's minimum, which gives the same (zero) weights.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling

from llamadna.errors import ConfigError, InputError

log = logging.getLogger(__name__)
DEFAULT_ALIBI_STARTING_SIZE = 512  # DNABERT-2's config value; in the original only a cache-size hint
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference
ENCODER_PREFIX = "bert."  # the published checkpoint was saved from BertForMaskedLM (self.bert, self.cls)
HEAD_PREFIX = "cls."
_SHOW_KEYS = 5  # how many offending keys an error names


# ---------------------------------------------------------------------------------------- ALiBi
def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al. 2022).

    For n a power of 2: 2**(-8k/n), k = 1..n. Otherwise, with p the largest power of 2 below n,
    the p slopes for p heads followed by every other slope of the 2p-head sequence (the 1st, 3rd,
    ...), n - p of them.

    Parameters
    ----------
    n_heads : number of attention heads (>= 1).

    Returns
    -------
    list of n_heads floats, one per head in head order.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")

    def power_of_2(n: int) -> list[float]:
        return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]

    if n_heads & (n_heads - 1) == 0:
        return power_of_2(n_heads)
    p = 2 ** int(math.floor(math.log2(n_heads)))
    return power_of_2(p) + power_of_2(2 * p)[0::2][: n_heads - p]


def alibi_bias(n_heads: int, length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The symmetric ALiBi bias `slope_h * -|i - j|` for query i and key j, in float32.

    Returns
    -------
    Tensor (n_heads, length, length).
    """
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=torch.float32, device=device)  # (nh,)
    pos = torch.arange(length, device=device)
    distance = (pos[None, :] - pos[:, None]).abs().to(torch.float32)  # (T, T)
    return slopes[:, None, None] * -distance  # (nh, T, T)


def attention_bias(n_heads: int, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ALiBi plus the padding mask, as the additive float mask attention takes.

    Parameters
    ----------
    n_heads : number of attention heads.
    attention_mask : (B, T), 1 (or True) for real tokens, 0 for padding.
    dtype : the attention's dtype (the bias must match it).

    Returns
    -------
    Tensor (B, n_heads, T, T): the ALiBi bias at real keys, the dtype's minimum at padded keys (a
    finite value, so a row of only padding cannot produce NaN).
    """
    keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    alibi = alibi_bias(n_heads, attention_mask.shape[1], attention_mask.device)[None]  # (1, nh, T, T)
    return alibi.masked_fill(~keep, torch.finfo(dtype).min).to(dtype)  # (B, nh, T, T)


# ---------------------------------------------------------------------------------------- modules
class DnaBert2Embeddings(nn.Module):
    """Word + token-type embeddings, LayerNorm, dropout (no position embeddings: ALiBi)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor | None, token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T) or inputs_embeds (B, T, H); token_type_ids (B, T), default 0 -> (B, T, H)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, H)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long,
                                         device=inputs_embeds.device)  # (B, T)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))


class DnaBert2SelfAttention(nn.Module):
    """Multi-head self-attention from one fused `Wqkv` projection, with an additive bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ConfigError(f"hidden_size {config.hidden_size} is not a multiple of "
                              f"num_attention_heads {config.num_attention_heads}")
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout_p = float(config.attention_probs_dropout_prob or 0.0)
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, T, H), bias (B, nh, T, T) -> context (B, T, H), heads concatenated."""
        b, t, _ = hidden_states.shape
        qkv = self.Wqkv(hidden_states).view(b, t, 3, self.num_heads, self.head_dim)  # (B, T, 3, nh, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, d)
        context = F.scaled_dot_product_attention(  # softmax(q.k / sqrt(d) + bias) v
            q, k, v, attn_mask=bias, dropout_p=self.dropout_p if self.training else 0.0)  # (B, nh, T, d)
        return context.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # (B, T, H)


class DnaBert2SelfOutput(nn.Module):
    """dense, dropout, residual add, post-LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """context, residual (B, T, H) -> (B, T, H)."""
        return self.LayerNorm(self.dropout(self.dense(context)) + residual)


class DnaBert2Attention(nn.Module):
    """`self` (the attention proper) then `output` (projection and residual LayerNorm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = DnaBert2SelfAttention(config)
        self.output = DnaBert2SelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, T, H), bias (B, nh, T, T) -> (B, T, H)."""
        return self.output(self.self(hidden_states, bias), hidden_states)


class DnaBert2GatedMLP(nn.Module):
    """Gated-linear-unit feed-forward: act(x W_g) * (x W_v), dropout, `wo`, residual, LayerNorm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = ACT2FN[config.hidden_act]
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, T, H) -> (B, T, H)."""
        both = self.gated_layers(hidden_states)  # (B, T, 2I)
        gated, non_gated = both[..., : self.intermediate_size], both[..., self.intermediate_size:]
        x = self.dropout(self.act(gated) * non_gated)  # (B, T, I)
        return self.layernorm(self.wo(x) + hidden_states)  # (B, T, H)


class DnaBert2Layer(GradientCheckpointingLayer):
    """One encoder layer: attention block, then the gated MLP block (both post-LN)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = DnaBert2Attention(config)
        self.mlp = DnaBert2GatedMLP(config)

    def forward(self, hidden_states: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, T, H), bias (B, nh, T, T) -> (B, T, H)."""
        return self.mlp(self.attention(hidden_states, bias))


class DnaBert2Encoder(nn.Module):
    """`num_hidden_layers` layers sharing one ALiBi + padding bias."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.layer = nn.ModuleList(DnaBert2Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """hidden_states (B, T, H), attention_mask (B, T) -> last states (B, T, H) and, when asked,
        the embeddings' and every layer's states (each (B, T, H))."""
        bias = attention_bias(self.num_heads, attention_mask, hidden_states.dtype)  # (B, nh, T, T)
        all_states = [hidden_states] if output_hidden_states else None
        for layer in self.layer:
            hidden_states = layer(hidden_states, bias)  # (B, T, H)
            if all_states is not None:
                all_states.append(hidden_states)
        return hidden_states, tuple(all_states) if all_states is not None else None


class DnaBert2Pooler(nn.Module):
    """tanh(dense(first token's state))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states (B, T, H) -> (B, H)."""
        return self.activation(self.dense(hidden_states[:, 0]))


class DnaBert2Model(PreTrainedModel):
    """DNABERT-2 (MosaicBERT) encoder; parameter names equal those of DNABERT-2's checkpoint
    without its `bert.` prefix.

    Parameters
    ----------
    config : a `transformers.BertConfig` (DNABERT-2's config.json); `alibi_starting_size`,
        `auto_map` and `flash_attn` are not used.
    add_pooling_layer : build the pooler (`pooler.dense`). DNABERT-2's published checkpoint has
        none (saved from BertForMaskedLM).
    """

    config_class = BertConfig
    config: BertConfig
    base_model_prefix = "bert"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DnaBert2Layer"]
    _keys_to_ignore_on_load_unexpected = [r"^cls\."]

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = DnaBert2Embeddings(config)
        self.encoder = DnaBert2Encoder(config)
        self.pooler = DnaBert2Pooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode a batch.

        Parameters
        ----------
        input_ids : (B, T) token ids (or `inputs_embeds` (B, T, H) instead).
        attention_mask : (B, T), 1 for real tokens, 0 for padding (any side); default all ones.
        token_type_ids : (B, T), default all 0.
        position_ids : ignored (positions enter through ALiBi), accepted for API compatibility.
        output_hidden_states : also return the embeddings' and every layer's states.
        return_dict : return a `BaseModelOutputWithPooling` (default) or a tuple.
        **kwargs : ignored, as the original model ignores extra arguments.

        Returns
        -------
        `last_hidden_state` (B, T, H), zero at padded positions (out[0]); `pooler_output` (B, H)
        or None without a pooler; `hidden_states` when asked (padded positions not zeroed).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        ref = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)  # (B, T)
        if output_hidden_states is None:
            output_hidden_states = bool(getattr(self.config, "output_hidden_states", False))
        if return_dict is None:
            return_dict = bool(getattr(self.config, "return_dict", True))
        x = self.embeddings(input_ids, token_type_ids, inputs_embeds)  # (B, T, H)
        states, all_states = self.encoder(x, attention_mask, output_hidden_states)  # (B, T, H)
        states = states.masked_fill(~attention_mask.bool()[..., None], 0.0)  # (B, T, H)
        pooled = self.pooler(states) if self.pooler is not None else None  # (B, H)
        if not return_dict:
            return tuple(v for v in (states, pooled, all_states) if v is not None)
        return BaseModelOutputWithPooling(last_hidden_state=states, pooler_output=pooled,
                                          hidden_states=all_states)


# ---------------------------------------------------------------------------------------- loading
def is_dnabert2_config(config: Mapping[str, Any] | PretrainedConfig) -> bool:
    """Whether a config (config.json's dict, or a loaded config) is DNABERT-2's (MosaicBERT's)
    rather than a plain Hugging Face BERT's: it has `alibi_starting_size`, or an `auto_map` that
    points at `bert_layers` (the original's code file, which is never imported).
    """
    if isinstance(config, PretrainedConfig):
        alibi, auto_map = getattr(config, "alibi_starting_size", None), getattr(config, "auto_map", None)
    else:
        alibi, auto_map = config.get("alibi_starting_size"), config.get("auto_map")
    if alibi is not None:
        return True
    if isinstance(auto_map, Mapping):
        return any("bert_layers" in str(v) for v in auto_map.values())
    return False


def read_dnabert2_config(directory: str | Path) -> BertConfig:
    """Read a DNABERT-2 directory's config.json as a `BertConfig` (JSON only, no code): `auto_map`
    is dropped, so nothing downstream can follow it into remote code, and `alibi_starting_size`
    is kept (default 512), so `is_dnabert2_config` still recognises the config."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise InputError(path, "no config.json here: expected a DNABERT-2 model directory "
                               "(zhihan1996/DNABERT-2-117M layout)")
    try:
        config = BertConfig.from_pretrained(path.parent)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(path, f"not a readable BERT config: {e}") from e
    if hasattr(config, "auto_map"):
        log.warning("%s: auto_map ignored: llamadna carries DNABERT-2's architecture itself "
                    "(llamadna.model.dnabert2) and never runs code shipped in a model directory", path)
        del config.auto_map
    if getattr(config, "alibi_starting_size", None) is None:
        config.alibi_starting_size = DEFAULT_ALIBI_STARTING_SIZE
    return config


def read_dnabert2_weights(directory: str | Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """Read a DNABERT-2 directory's weights as plain tensors (nothing but tensors is unpickled).

    Returns
    -------
    (the file read, its state dict with `bert.` stripped and `cls.` head keys dropped).
    """
    directory = Path(directory)
    path = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if path is None:
        raise InputError(directory, f"no weights: expected {' or '.join(WEIGHT_FILES)} in this directory")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(path, device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle holding more than tensors
        raise InputError(path, f"cannot read the weights as plain tensors: {e}") from e
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()):
        raise InputError(path, "expected a flat mapping of parameter names to tensors")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith(HEAD_PREFIX):
            continue
        name = key.removeprefix(ENCODER_PREFIX)
        if name in state:
            raise InputError(path, f"parameter {name!r} appears both with and without the "
                                   f"{ENCODER_PREFIX!r} prefix")
        state[name] = value
    return path, state


def _resolve_dtype(dtype: torch.dtype | str | None, state: Mapping[str, torch.Tensor]) -> torch.dtype | None:
    """None keeps float32; "auto" takes the checkpoint's floating dtype; a name like "bfloat16"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return next((v.dtype for v in state.values() if v.is_floating_point()), None)
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(f"unknown dtype {dtype!r}: expected e.g. 'float32', 'bfloat16' or 'auto'")
    return resolved


def _first(keys: list[str]) -> str:
    """The first few keys, and ' ...' when there are more."""
    return f"{keys[:_SHOW_KEYS]}{' ...' if len(keys) > _SHOW_KEYS else ''}"


def _check_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise an InputError naming the first missing / unexpected / mis-shaped parameters."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise InputError(path, "weights do not match DNABERT-2's architecture for this config.json: "
                               f"missing {_first(missing)}, unexpected {_first(unexpected)}")
    bad = [f"{k}: {tuple(state[k].shape)} (config.json implies {tuple(v.shape)})"
           for k, v in expected.items() if state[k].shape != v.shape]
    if bad:
        raise InputError(path, f"weights have the wrong shapes: {_first(bad)}")


def load_dnabert2(directory: str | Path, dtype: torch.dtype | str | None = None,
                  add_pooling_layer: bool | None = None) -> DnaBert2Model:
    """Load a local DNABERT-2 directory (zhihan1996/DNABERT-2-117M layout) without running its code.

    Parameters
    ----------
    directory : holds config.json and model.safetensors (preferred) or pytorch_model.bin; any
        `*.py` files there are never imported.
    dtype : parameter dtype (a torch.dtype, a name such as "bfloat16", or "auto" for the
        checkpoint's); None keeps float32.
    add_pooling_layer : build the pooler; None (default) builds it only when the checkpoint has
        `pooler.*` weights (DNABERT-2's has none). True with no pooler weights is an error.

    Returns
    -------
    DnaBert2Model in eval mode, every checkpoint tensor (bar the `cls.` MLM head) loaded.

    Raises
    ------
    InputError : no config.json, no weights file, an unreadable one, or weights whose names or
        shapes do not match the architecture (naming the first offending keys).
    """
    config = read_dnabert2_config(directory)
    path, state = read_dnabert2_weights(directory)
    if add_pooling_layer is None:
        add_pooling_layer = any(k.startswith("pooler.") for k in state)
    resolved = _resolve_dtype(dtype, state)
    model = DnaBert2Model(config, add_pooling_layer=add_pooling_layer)
    _check_state(model, state, path)
    model.load_state_dict(state, strict=True)
    if resolved is not None:
        model.to(resolved)
    return model.eval()
