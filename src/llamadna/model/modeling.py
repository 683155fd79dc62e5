"""`LlamaDNAForAnnotation`: DNA encoder -> projector -> causal LM (LoRA), plus a source-class head.

    dna_input_ids (C, L) --encoder--> (C, L, Hd) --projector--> (C, L, H) --[valid tokens]--> (N, H)
    input_ids (B, T) with N `<dna>` placeholders --LLM embeddings--> (B, T, H)
    masked_scatter: placeholders <- DNA features (one merge path, used by forward and generate)
    LLM(inputs_embeds) -> logits (B, T, V)  [LM loss on target tokens only]
                       -> last hidden (B, T, H) --mean over prompt tokens--> cls_head -> (B, K)

LoRA (peft) is injected into the LLM only (q_proj/v_proj by default), and optionally into the
encoder; the projector and the head are ordinary trainable modules. Everything sits in one module
tree, so `save_pretrained` writes one safetensors file (the processor, with both tokenizers, is
saved beside it by its own `save_pretrained`). The model is a pure PreTrainedModel: what
annotating needs beside it (processor, retriever, calibration) is the `annotate.Annotator`'s.
With the full preset (`dna_model_path`/`llm_path`), the frozen pretrained weights are read from
those directories and not copied into our checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    PreTrainedModel,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import ModelOutput

from llamadna.constants import IGNORE_INDEX
from llamadna.errors import ConfigError, InputError
from llamadna.io.atomic import usual_permissions
from llamadna.io.text import read_json_object
from llamadna.model.configuration import LlamaDNAConfig
from llamadna.model.copying import CopyHead, copyable_mask, greedy_decode, teacher_forced_log_probs
from llamadna.model.dnabert2 import DnaBert2Model, is_dnabert2_config, load_dnabert2
from llamadna.model.positions import position_ids_from
from llamadna.model.presets import check_local_dir
from llamadna.model.projector import build_projector
from llamadna.model.safe_loading import refuse_custom_code, require_safetensors


@dataclass
class LlamaDNAOutput(ModelOutput):
    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    cls_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V)
    cls_logits: torch.Tensor | None = None  # (B, K)


def build_dna_encoder(dna_config) -> nn.Module:
    """The encoder a config describes: DNABERT-2 (the project's own implementation,
    `model.dnabert2`) or a plain Hugging Face BERT (the tiny preset's); never remote code."""
    if is_dnabert2_config(dna_config):
        return DnaBert2Model(dna_config, add_pooling_layer=False)
    return AutoModel.from_config(dna_config, add_pooling_layer=False, trust_remote_code=False)


@contextmanager
def quiet_transformers():
    """transformers' own log at error level only (e.g. no load report for a saved pooler that
    is deliberately not loaded)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_dna_encoder(path: str | Path, dtype: torch.dtype | None = None) -> nn.Module:
    """A local pretrained DNA encoder directory: DNABERT-2 (config.json with
    `alibi_starting_size` or an `auto_map` into its `bert_layers.py`) loaded into the project's
    own architecture, or a plain BERT directory (`model_type` "bert", no `auto_map`). Code files
    in the directory are never imported; any other architecture is refused, and so are a
    DNABERT-2 config whose auto_map names other code and a BERT directory with pickled weights
    only (`model.safe_loading`)."""

    d = check_local_dir(path, "DNA encoder (DNABERT-2)")
    raw = read_json_object(d / "config.json")
    if is_dnabert2_config(raw):
        refuse_custom_code(d)  # DNABERT-2's own auto_map passes (never followed); any other not
        return load_dnabert2(d, dtype=dtype, add_pooling_layer=False)
    if raw.get("model_type") == "bert" and "auto_map" not in raw:
        from transformers import BertModel

        require_safetensors(d, "DNA encoder")
        with quiet_transformers():  # a saved pooler is not used: no load report for it
            return BertModel.from_pretrained(d, dtype=dtype, add_pooling_layer=False, use_safetensors=True,
                                             local_files_only=True)
    raise InputError(d / "config.json", f"unsupported DNA encoder (model_type {raw.get('model_type')!r}"
                     f"{', with an auto_map into its own code' if 'auto_map' in raw else ''}): expected "
                     "DNABERT-2 or a BERT directory; code shipped in a model directory is never run")


def mean_pool_body(states: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the encoder states (B, T, H) over each chunk's sequence tokens (its first token,
    [CLS], and last valid token, [SEP], left out) and their count (B,): a sequence's embedding is
    the sum over its chunks divided by the count (retrieval, contrastive training)."""
    body = attention_mask.clone()
    body[:, 0] = 0
    body[torch.arange(len(body)), attention_mask.sum(1) - 1] = 0
    return (states * body.unsqueeze(-1).to(states.dtype)).sum(1), body.sum(1)


def dna_token_chunks(tokenizer, sequences: list[str], body: int) -> tuple[list[list[int]], list[int]]:
    """Each sequence's DNA tokens cut into [CLS] + at most `body` tokens + [SEP] chunks, and the
    sequence each chunk belongs to (a sequence with no token has no chunk)."""
    encs = tokenizer.backend_tokenizer.encode_batch([s.upper() for s in sequences], add_special_tokens=False)
    chunks, owner = [], []
    for i, e in enumerate(encs):
        for a in range(0, len(e.ids), body):
            chunks.append([tokenizer.cls_token_id, *e.ids[a : a + body], tokenizer.sep_token_id])
            owner.append(i)
    return chunks, owner


def encoder_states(encoder: nn.Module, chunks: list[list[int]], pad_id: int,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's last states over token chunks padded on the right (C, W, H; float32) and
    their attention mask (C, W)."""
    width = max(map(len, chunks))
    ids = torch.full((len(chunks), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunks), width), dtype=torch.long)
    for r, c in enumerate(chunks):
        ids[r, : len(c)] = torch.tensor(c)
        mask[r, : len(c)] = 1
    mask = mask.to(device)
    out = encoder(input_ids=ids.to(device), attention_mask=mask)
    return (out[0] if isinstance(out, tuple) else out.last_hidden_state).float(), mask


def encode_chunks(encoder: nn.Module, chunks: list[list[int]], pad_id: int,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`mean_pool_body` of the encoder's last states over token chunks (padded on the right):
    per chunk the sum of its sequence tokens' states (C, H) and their count (C,)."""
    return mean_pool_body(*encoder_states(encoder, chunks, pad_id, device))


class _StopCriterion(StoppingCriteria):
    """A `stop` callable ((row, its new tokens) -> finish it now) as `generate`'s stopping
    criterion (generation runs on `inputs_embeds`, so the ids it passes are the new tokens only)."""

    def __init__(self, stop):
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.tensor([bool(self.stop(b, ids.tolist())) for b, ids in enumerate(input_ids)],
                            dtype=torch.bool, device=input_ids.device)


def _inject_lora(module: nn.Module, config, targets) -> None:
    """LoRA adapters (peft) into `module`'s `targets`. peft is imported here, not with this module:
    its import (with bitsandbytes, which it loads when installed) takes ~2 s of every process that
    loads a model, and a model without LoRA (the tiny preset trains its LLM in full) needs none of
    it (docs/BENCHMARKS.md)."""
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                       lora_dropout=config.lora_dropout, target_modules=list(targets)),
                            module)


class LlamaDNAForAnnotation(PreTrainedModel):
    config_class = LlamaDNAConfig
    base_model_prefix = "llamadna"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer", "BertLayer", "DnaBert2Layer"]

    def __init__(
        self, config: LlamaDNAConfig, dna_encoder: nn.Module | None = None,
        language_model: nn.Module | None = None,
    ):
        super().__init__(config)
        self.dna_encoder = (dna_encoder if dna_encoder is not None
                            else build_dna_encoder(config.dna_config))
        self.language_model = (language_model if language_model is not None else
                               AutoModelForCausalLM.from_config(config.text_config, trust_remote_code=False))
        h_dna, h_txt = config.dna_config.hidden_size, config.text_config.hidden_size
        self.projector = build_projector(config.projector_type, h_dna, h_txt)
        self.cls_head = nn.Linear(h_txt, len(config.class_labels))
        self.copy_head = CopyHead(h_txt) if config.copy_head else None
        if config.llm_training == "lora":
            _inject_lora(self.language_model, config, config.lora_target_modules)
        if config.encoder_training == "lora":
            _inject_lora(self.dna_encoder, config, config.encoder_lora_target_modules)
        self.post_init()
        self.set_trainable()

    # ------------------------------------------------------------------ parameters
    def _init_weights(self, module: nn.Module) -> None:
        # Only our own layers: the encoder and the LLM initialise themselves (or are pretrained).
        ours = [*self.projector.modules(), *(self.copy_head.modules() if self.copy_head is not None else [])]
        if module is self.cls_head or any(module is m for m in ours):
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def set_trainable(self) -> None:
        """Projector + head trainable; the LLM per `llm_training` (its LoRA adapters, or all of
        it), the encoder per `encoder_training`."""
        mode, full_llm = self.config.encoder_training, self.config.llm_training == "full"
        for name, p in self.named_parameters():
            if name.startswith(("projector.", "cls_head.", "copy_head.")):
                p.requires_grad = True
            elif name.startswith("language_model."):
                p.requires_grad = full_llm or "lora_" in name
            elif name.startswith("dna_encoder."):
                p.requires_grad = mode == "full" or (mode == "lora" and "lora_" in name)

    @property
    def encoder_trainable(self) -> bool:
        return any(p.requires_grad for p in self.dna_encoder.parameters())

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    # ------------------------------------------------------------------ DNA features
    def get_dna_features(self, dna_input_ids: torch.Tensor, dna_attention_mask: torch.Tensor,
                         dna_states: torch.Tensor | None = None) -> torch.Tensor:
        """Projected encoder states of every valid DNA token, chunks in order: (N, H).
        `dna_states` (C, L, Hd): this encoder's last states of these chunks, computed elsewhere
        (the retriever's, `annotate.shared_states`); the encoder is then not run."""
        if dna_states is None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoder_trainable):
                out = self.dna_encoder(input_ids=dna_input_ids, attention_mask=dna_attention_mask)
            dna_states = out[0] if isinstance(out, tuple) else out.last_hidden_state  # (C, L, Hd)
        feats = self.projector(dna_states.to(self.projector_dtype))  # (C, L, H)
        return feats[dna_attention_mask.bool()]

    @property
    def projector_dtype(self) -> torch.dtype:
        return next(self.projector.parameters()).dtype

    def embed_inputs(
        self, input_ids: torch.Tensor, dna_input_ids: torch.Tensor | None = None,
        dna_attention_mask: torch.Tensor | None = None, dna_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The one merge path: LLM embeddings with `<dna>` slots replaced by DNA features
        (`dna_states`: see `get_dna_features`)."""
        mask = input_ids == self.config.dna_placeholder_id  # (B, T)
        embeds = self.get_input_embeddings()(input_ids.masked_fill(mask, 0))  # (B, T, H)
        n_slots = int(mask.sum())
        if dna_input_ids is None:
            if n_slots:
                raise ValueError(f"{n_slots} <dna> placeholders but no DNA input")
            return embeds
        feats = self.get_dna_features(dna_input_ids, dna_attention_mask, dna_states)
        if feats.shape[0] != n_slots:
            raise ValueError(
                f"{feats.shape[0]} DNA features but {n_slots} <dna> placeholders: the prompt and "
                "the DNA chunks come from different sequences or processors")
        return embeds.masked_scatter(mask.unsqueeze(-1), feats.to(embeds.dtype))

    # ------------------------------------------------------------------ forward
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        dna_input_ids: torch.Tensor | None = None, dna_attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None, decision_mask: torch.Tensor | None = None, **kwargs,
    ) -> LlamaDNAOutput:
        embeds = self.embed_inputs(input_ids, dna_input_ids, dna_attention_mask)
        out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                  position_ids=position_ids_from(attention_mask),
                                  output_hidden_states=True, use_cache=False)
        logits = out.logits  # (B, T, V)
        hidden = out.hidden_states[-1]
        cls_logits = self._class_logits(hidden, prompt_mask, attention_mask)
        lm_loss = cls_loss = loss = None
        if labels is not None:
            if self.copy_head is not None:  # next-token log-probabilities with copying
                copyable = self.copyable(input_ids, prompt_mask, attention_mask)
                logits = teacher_forced_log_probs(self.copy_head, logits, hidden, input_ids, copyable)
            lm_loss = self._lm_loss(logits, labels, decision_mask)
            loss = lm_loss
        if class_labels is not None:
            # rows without a source class (negatives: IGNORE_INDEX) are left out; 0 when none has one
            cls_loss = F.cross_entropy(cls_logits.float(), class_labels, ignore_index=IGNORE_INDEX,
                                       reduction="sum") / (class_labels != IGNORE_INDEX).sum().clamp(min=1)
            loss = cls_loss * self.config.cls_loss_weight + (loss if loss is not None else 0)
        return LlamaDNAOutput(loss=loss, lm_loss=lm_loss, cls_loss=cls_loss, logits=logits,
                              cls_logits=cls_logits)

    def _lm_loss(self, logits: torch.Tensor, labels: torch.Tensor, decision_mask: torch.Tensor | None):
        """The mean next-token loss over the target tokens; with config.decision_weight != 1 and a
        `decision_mask` (the processor's: the words that decide each target's outcome), a weighted
        mean in which those tokens count decision_weight times. `logits`: log-probabilities
        (B, T-1, V) with the copy head, else the LM's logits (B, T, V)."""
        gold = labels[:, 1:].flatten()
        weighted = decision_mask is not None and self.config.decision_weight != 1
        reduction = "none" if weighted else "mean"
        if self.copy_head is not None:
            loss = F.nll_loss(logits.flatten(0, 1), gold, ignore_index=IGNORE_INDEX, reduction=reduction)
        else:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), gold, ignore_index=IGNORE_INDEX,
                                   reduction=reduction)
        if not weighted:
            return loss
        extra = (self.config.decision_weight - 1) * decision_mask[:, 1:].flatten()
        weight = (gold != IGNORE_INDEX) * (1 + extra)
        return (loss * weight).sum() / weight.sum().clamp(min=1)

    def copyable(self, input_ids: torch.Tensor, prompt_mask, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) the prompt's text tokens the copy head may copy."""
        tc = self.config.text_config
        specials = [i for i in (tc.bos_token_id, tc.eos_token_id, tc.pad_token_id) if i is not None]
        pm = prompt_mask if prompt_mask is not None else attention_mask
        return copyable_mask(input_ids, pm, attention_mask, self.config.dna_placeholder_id, specials)

    def _class_logits(self, hidden: torch.Tensor, prompt_mask, attention_mask) -> torch.Tensor:
        """Mean of the last hidden states (B, T, H) over prompt tokens -> class logits (B, K)."""
        pm = (prompt_mask if prompt_mask is not None else attention_mask).to(hidden.dtype)
        pooled = (hidden * pm.unsqueeze(-1)).sum(1) / pm.sum(1, keepdim=True).clamp(min=1)
        return self.cls_head(pooled.to(self.cls_head.weight.dtype))

    @torch.no_grad()
    def classify(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        dna_input_ids: torch.Tensor | None = None, dna_attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None, **kwargs,
    ) -> torch.Tensor:
        """Source-class logits (B, K) from the prompt alone, without the LM head's (B, T, V) logits."""
        embeds = self.embed_inputs(input_ids, dna_input_ids, dna_attention_mask)
        out = self.language_model.base_model(
            inputs_embeds=embeds, attention_mask=attention_mask,
            position_ids=position_ids_from(attention_mask), use_cache=False)
        return self._class_logits(out.last_hidden_state, prompt_mask, attention_mask)

    @torch.no_grad()
    def target_log_probs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
        dna_input_ids: torch.Tensor | None = None, dna_attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None, **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced scores of given annotations after their prompts, as generation computes
        them (the copy head mixed in): per row the summed log-probability of the target tokens,
        eos included, and their count, both (B,). The batch is left-padded (`processor(rows,
        targets, padding_side="left")`), so every target ends at the last position."""
        embeds = self.embed_inputs(input_ids, dna_input_ids, dna_attention_mask)
        is_target = labels != IGNORE_INDEX
        last = int(is_target.long().sum(1).max())
        # logits at the positions that predict a target token only, not over the prompts
        out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                  position_ids=position_ids_from(attention_mask),
                                  output_hidden_states=True, use_cache=False, logits_to_keep=last + 1)
        gold = labels[:, -last:]
        if self.copy_head is not None:
            copyable = self.copyable(input_ids, prompt_mask, attention_mask)
            lp = teacher_forced_log_probs(self.copy_head, out.logits, out.hidden_states[-1], input_ids,
                                          copyable, last=last)
        else:
            lp = torch.log_softmax(out.logits[:, -last - 1:-1].float(), -1)
        keep = gold != IGNORE_INDEX
        tok = lp.gather(-1, gold.clamp(min=0)[..., None]).squeeze(-1)  # (B, last)
        return (tok * keep).sum(1), keep.sum(1)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        dna_input_ids: torch.Tensor | None = None, dna_attention_mask: torch.Tensor | None = None,
        **generate_kwargs,
    ):
        """Generate the annotation after a (left-padded) prompt. The DNA features enter through
        `embed_inputs`, then the LLM's own `generate` runs on `inputs_embeds` (its KV cache,
        sampling and stopping rules apply unchanged)."""
        embeds = self.embed_inputs(input_ids, dna_input_ids, dna_attention_mask)
        return self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)

    @torch.no_grad()
    def generate_with_class(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        dna_input_ids: torch.Tensor | None = None, dna_attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None, stop=None,
        drafts: Sequence[Sequence[Sequence[int]]] | None = None, draft_tokens: int = 0,
        dna_states: torch.Tensor | None = None, **generate_kwargs,
    ) -> tuple[object, torch.Tensor]:
        """`generate` and `classify` in one pass over the prompt: the class logits (B, K) come
        from the last hidden states of generation's prefill, which are the states `classify`
        computes (tested), so the DNA encoder and the LLM read the prompt once, not twice.
        `stop`: optional callable, (row, its new tokens so far) -> whether to finish it now.
        `drafts`, `draft_tokens`: token sequences per row and how many of them to verify a pass
        (`greedy_decode`: the copy head's loop, the tiny preset's retrieval models; `generate`,
        without a copy head, decodes one token a step).
        `dna_states`: the DNA chunks' encoder states when already computed (`get_dna_features`).
        Returns (the `generate` output with `return_dict_in_generate`, class logits)."""
        embeds = self.embed_inputs(input_ids, dna_input_ids, dna_attention_mask, dna_states)
        if self.copy_head is not None:  # our own greedy loop: the copy head mixes every step
            copyable = self.copyable(input_ids, prompt_mask, attention_mask)
            out, prefill = greedy_decode(
                self, embeds, input_ids, attention_mask, copyable, generate_kwargs["max_new_tokens"],
                generate_kwargs["eos_token_id"], generate_kwargs["pad_token_id"], stop=stop,
                drafts=drafts, draft_tokens=draft_tokens)
            return out, self._class_logits(prefill, prompt_mask, attention_mask)
        if stop is not None:
            generate_kwargs["stopping_criteria"] = StoppingCriteriaList([_StopCriterion(stop)])
        out = self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=True,
            return_dict_in_generate=True, **generate_kwargs)
        prefill = out.hidden_states[0][-1]  # (B, T, H): the final (normed) states of the prompt
        cls_logits = self._class_logits(prefill, prompt_mask, attention_mask)
        out.hidden_states = None  # every layer of every step: not kept
        return out, cls_logits

    # ------------------------------------------------------------------ save / load
    def _external_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes whose frozen weights come from local pretrained directories."""
        out = []
        if self.config.dna_model_path and self.config.encoder_training == "frozen":
            out.append("dna_encoder.")
        if self.config.llm_path:
            out.append("language_model.")
        return tuple(out)

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """config.json + model.safetensors. Frozen weights read from `dna_model_path`/`llm_path`
        are not copied."""
        ext = self._external_prefixes()
        if ext:
            sd = {k: v for k, v in self.state_dict().items()
                  if not k.startswith(ext) or "lora_" in k}
            kwargs["state_dict"] = sd
        super().save_pretrained(save_directory, safe_serialization=True, **kwargs)
        usual_permissions(save_directory)  # safetensors writes 0600

    @classmethod
    def from_pretrained(cls, path: str | Path, *args, llm_path: str | Path | None = None,
                        dna_model_path: str | Path | None = None, **kwargs) -> LlamaDNAForAnnotation:
        """Load a saved model directory (never unpickles: safetensors + JSON only).

        A full-preset model records the directories of its frozen pretrained parts as they were
        given at training (`llm_path`, `dna_model_path`; a relative path is taken from the
        current directory); `llm_path`/`dna_model_path` here point at them elsewhere.
        """
        path = Path(path)
        config = LlamaDNAConfig.from_pretrained(path)
        if llm_path is not None:
            config.llm_path = str(llm_path)
        if dna_model_path is not None and config.dna_model_path:
            # only a model that reads its encoder from a directory; one that holds its encoder's
            # weights (the tiny preset) keeps them (--encoder then serves its index alone)
            config.dna_model_path = str(dna_model_path)
        if config.dna_model_path or config.llm_path:
            _check_base_dirs(path, config)
            model = cls.from_base(config, torch_dtype=kwargs.get("dtype"))
            from safetensors.torch import load_file

            sd = load_file(path / "model.safetensors")
            missing, unexpected = model.load_state_dict(sd, strict=False)
            ext = model._external_prefixes()
            bad = [k for k in missing if not k.startswith(ext) or "lora_" in k]
            if bad or unexpected:
                raise InputError(path / "model.safetensors", "checkpoint does not match the model: "
                                 f"missing {bad[:5]}, unexpected {list(unexpected)[:5]}")
        else:
            model = super().from_pretrained(path, *args, use_safetensors=True, **kwargs)
        model.set_trainable()
        return model

    @classmethod
    def from_base(
        cls, config: LlamaDNAConfig, torch_dtype: torch.dtype | None = None,
    ) -> LlamaDNAForAnnotation:
        """Build around pretrained encoder/LLM directories (`config.dna_model_path`/`llm_path`);
        parts without a path are built from their config. `config.llm_quantization` loads the
        LLM in 8 or 4 bits (bitsandbytes >= 0.50, on CUDA or the CPU)."""
        enc = llm = None
        if config.dna_model_path:
            enc = load_dna_encoder(config.dna_model_path, torch_dtype)
            config.dna_config = enc.config
        if config.llm_path:
            llm = load_llm(config.llm_path, torch_dtype, config.llm_quantization)
            config.text_config = llm.config
        return cls(config, dna_encoder=enc, language_model=llm)


def load_llm(path: str | Path, dtype: torch.dtype | None = None, quantization: str | None = None):
    """A local pretrained causal LM directory (Llama-2) with transformers' own classes; a
    directory whose config names its own code (`auto_map`) or whose weights are only a pickle is
    refused (`model.safe_loading`)."""
    d = check_local_dir(path, "LLM (Llama-2)")
    refuse_custom_code(d)
    require_safetensors(d, "LLM")
    try:
        return AutoModelForCausalLM.from_pretrained(
            d, dtype=dtype, trust_remote_code=False, use_safetensors=True, local_files_only=True,
            quantization_config=quantization_config(quantization, dtype))
    except ValueError as exc:
        if "trust_remote_code" not in str(exc):
            raise
        raise InputError(d / "config.json", "this LLM's architecture exists only as code shipped in "
                         "its directory, which is never run: expected a Llama(-2) directory") from None


def _check_base_dirs(path: Path, config: LlamaDNAConfig) -> None:
    """The pretrained directories a full-preset model reads must exist; say which one is missing
    and how to point at it."""
    for value, what, option in ((config.llm_path, "LLM (Llama-2)", "--llm"),
                                (config.dna_model_path, "DNA encoder (DNABERT-2)", "--encoder")):
        if value and not (Path(value) / "config.json").exists():
            raise InputError(
                path / "config.json", f"this model reads its frozen {what} weights from {value!r} "
                f"(as given at training; relative paths start at the current directory "
                f"{Path.cwd()}), which holds no config.json; pass that directory with {option} DIR")


def quantization_config(mode: str | None, compute_dtype: torch.dtype | None = None):
    """transformers' BitsAndBytesConfig for "8bit" or "4bit" (NF4, compute in `compute_dtype`,
    default bf16); None for None."""
    if mode is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise ImportError(f"loading the LLM in {mode} needs bitsandbytes: "
                          "pip install 'llamadna[quant]'") from e
    from transformers import BitsAndBytesConfig

    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if mode == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16)
    raise ConfigError(f"quantization must be '8bit' or '4bit', got {mode!r}")
