"""`LlamaDNAConfig`: a DNA encoder config and a causal-LM config, nested (the Llava pattern).

Both sub-configs are built with AutoConfig from their `model_type` ("bert" for the DNA encoder,
DNABERT-2 at full scale; "llama" for the LLM), so `save_pretrained`/`from_pretrained` round-trip
the whole model from config.json + one safetensors file.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from llamadna.constants import DEFAULT_SOURCES, LORA_ALPHA, LORA_DROPOUT, LORA_R, PROMPT_MODES
from llamadna.errors import ConfigError


class LlamaDNAConfig(PreTrainedConfig):
    r"""
    Parameters
    ----------
    dna_config, text_config : encoder and LLM configs (dicts or configs).
    projector_type : "linear" or "mlp2x_gelu" (Linear-GELU-Linear, LLaVA-1.5's projector).
    dna_chunk_tokens : encoder tokens per chunk including [CLS]/[SEP]; longer sequences are split
        into chunks whose states are concatenated (never truncated).
    dna_placeholder_id : text-token id of `<dna>`, one per projected DNA state in the prompt.
    class_labels : source-database classes of the classification head.
    cls_loss_weight : weight of the classification loss added to the LM loss.
    decision_weight : how many times a target token of the words that decide its sentence's
        outcome (gene, intergenic, repeat, similar, none) counts in the LM loss; 1: as any token.
    prompt_mode : "leak-free" (sequence + SPLASH) or "seed-faithful" (adds gene metadata).
    encoder_training : "frozen" (default), "full", or "lora" (LoRA on the encoder's attention).
    llm_training : "lora" (default: LoRA adapters on the frozen LLM, peft) or "full" (every
        LLM weight trained, no adapter; for the tiny preset's own LLM, not a pretrained one read
        from `llm_path`, whose weights our checkpoints do not hold).
    copy_head : a pointer-generator copy head (`model.copying`): the next token may be copied
        from the prompt's text (the reference evidence), for the tiny LLM.
    lora_r, lora_alpha, lora_dropout, lora_target_modules : LoRA on the LLM (peft).
    encoder_lora_target_modules : LoRA targets in the encoder when encoder_training == "lora".
    dna_model_path, llm_path : local directories of pretrained weights (full preset); when set,
        their frozen weights are loaded from there and not copied into our checkpoints.
    llm_quantization : None, "8bit" or "4bit" (NF4): how the frozen LLM from `llm_path` is loaded
        (bitsandbytes), at training and again whenever the saved model is loaded.
    """

    model_type = "llamadna"
    sub_configs_defaults = {
        "dna_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    dna_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_type: str = "mlp2x_gelu"
    dna_chunk_tokens: int = 512
    dna_placeholder_id: int = 0
    class_labels: list[str] | tuple[str, ...] = DEFAULT_SOURCES
    cls_loss_weight: float = 0.5
    decision_weight: float = 1.0
    prompt_mode: str = "leak-free"
    encoder_training: str = "frozen"
    llm_training: str = "lora"
    copy_head: bool = False
    lora_r: int = LORA_R
    lora_alpha: int = LORA_ALPHA
    lora_dropout: float = LORA_DROPOUT
    lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "v_proj")
    encoder_lora_target_modules: list[str] | tuple[str, ...] = ("query", "value")
    dna_model_path: str | None = None
    llm_path: str | None = None
    llm_quantization: str | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.class_labels = list(self.class_labels)
        self.lora_target_modules = list(self.lora_target_modules)
        self.encoder_lora_target_modules = list(self.encoder_lora_target_modules)
        if self.projector_type not in ("linear", "mlp2x_gelu"):
            raise ConfigError(f"projector_type must be 'linear' or 'mlp2x_gelu', got {self.projector_type!r}")
        if self.encoder_training not in ("frozen", "full", "lora"):
            raise ConfigError(
                f"encoder_training must be 'frozen', 'full' or 'lora', got {self.encoder_training!r}"
            )
        if self.llm_training not in ("lora", "full"):
            raise ConfigError(f"llm_training must be 'lora' or 'full', got {self.llm_training!r}")
        if self.llm_training == "full" and self.llm_path:
            raise ConfigError("llm_training 'full' trains the tiny preset's own LLM; a pretrained LLM "
                              "(llm_path) is adapted with LoRA")
        if self.prompt_mode not in PROMPT_MODES:
            raise ConfigError(f"prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}")
        if self.llm_quantization not in (None, "8bit", "4bit"):
            raise ConfigError(
                f"llm_quantization must be None, '8bit' or '4bit', got {self.llm_quantization!r}")
        if self.llm_quantization and not self.llm_path:
            raise ConfigError("llm_quantization needs llm_path: only a pretrained LLM read from its own "
                              "directory is loaded quantized")
        if self.dna_chunk_tokens < 3:
            raise ConfigError("dna_chunk_tokens must leave room for [CLS], [SEP] and one token")
