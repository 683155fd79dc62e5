"""A trained model directory -> a model ready for inference (device, dtype, compiled decoding)."""

from __future__ import annotations

from pathlib import Path

import torch

from llamadna.errors import ConfigError, InputError, refuse_link_loop

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROMPT_BUCKET = 64  # compiled generation: prompts left-padded to a multiple of this many tokens


def load_model(path: str | Path, device: str | torch.device | None = None, dtype: str | None = None,
               llm: str | Path | None = None, encoder: str | Path | None = None):
    """The model of a trained model directory (`save_pretrained` output), in eval mode on
    `device` (default: CUDA when available, else CPU), in `dtype` (float32, bfloat16 or
    float16; default float32; an 8/4-bit LLM keeps its quantized weights). `llm`/`encoder`: where
    a full-preset model's pretrained Llama-2 / DNABERT-2 directories are now (default: the paths
    recorded at training). The bare model: the processor, calibration and retriever that annotate
    with it are the `annotate.Annotator`'s (`Annotator.from_pretrained`)."""
    from llamadna.model.modeling import LlamaDNAForAnnotation

    path = check_model_dir(path)
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_dtype = DTYPES[dtype] if dtype else None
    model = LlamaDNAForAnnotation.from_pretrained(
        path, llm_path=llm, dna_model_path=encoder, **({"dtype": torch_dtype} if torch_dtype else {}))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cast = torch_dtype is not None and not model.config.llm_quantization  # LoRA, projector, head too
    model = model.to(device, torch_dtype) if cast else model.to(device)
    model.eval()
    return model


def check_model_dir(path: str | Path) -> Path:
    """What a trained model directory must hold, checked before anything is loaded, each problem
    named with its file: config.json (valid JSON), model.safetensors (complete), and the
    processor's two tokenizer folders; none may name custom code or hold only pickled weights
    (`model.safe_loading`)."""

    from safetensors import SafetensorError, safe_open

    from llamadna.model.processing import PROCESSOR_FILE
    from llamadna.model.safe_loading import refuse_custom_code, refuse_pickle_only

    path = Path(path)
    refuse_link_loop(path)
    if not path.is_dir():
        raise InputError(path, "model directory not found (expected the output of `llamadna train`)")
    for p in path.rglob("*"):  # a looping link would read as a missing file below
        if p.is_symlink():
            refuse_link_loop(p)
    cfg = path / "config.json"
    if not cfg.exists():
        raise InputError(path, "not a model directory (no config.json; expected a trained "
                         "LlamaDNAForAnnotation saved with save_pretrained)")
    refuse_custom_code(path)  # reads config.json: invalid JSON is one line there
    weights = path / "model.safetensors"
    refuse_pickle_only(path)
    if not weights.exists():
        raise InputError(weights, "missing: the model directory holds no weights (copy the whole "
                         "directory `llamadna train` wrote)")
    try:
        with safe_open(weights, "pt") as fh:  # the header must cover the file: truncation fails here
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(weights, f"not a complete safetensors file (truncated or damaged copy?): "
                         f"{exc}") from None
    if (path / PROCESSOR_FILE).exists():
        for sub in ("dna_tokenizer", "text_tokenizer"):
            if not (path / sub / "tokenizer_config.json").exists():
                raise InputError(path / sub, "missing: the model's tokenizer folder (copy the whole "
                                 "directory `llamadna train` wrote)")
            refuse_custom_code(path / sub)
    return path


def compile_generation(model, bucket: int = PROMPT_BUCKET) -> int:
    """Faster generation for long runs: the LLM decodes with a static KV cache and its forward
    is compiled (torch.compile; CUDA graphs on a GPU). Prompts are then left-padded to a multiple
    of `bucket` tokens (`pad_to_bucket`), so that a few shapes are compiled rather than one per
    batch. The first batches of each shape pay the compilation. Predictions are those of the
    plain path (tested). Returns `bucket`, for the inference config that pads the prompts
    (`annotate.InferenceConfig.prompt_bucket`)."""
    lm = model.language_model
    lm.generation_config.cache_implementation = "static"
    mode = "reduce-overhead" if model.device.type == "cuda" else None
    lm.forward = torch.compile(lm.forward, mode=mode, dynamic=False)
    return bucket


def pad_to_bucket(batch: dict[str, torch.Tensor], multiple: int, pad_id: int) -> dict:
    """Left-pad the (B, T) prompt tensors to T rounded up to `multiple` (masked padding)."""
    T = batch["input_ids"].shape[1]
    extra = -T % multiple
    if not extra:
        return batch
    fill = {"input_ids": pad_id, "attention_mask": 0, "prompt_mask": 0}
    out = dict(batch)
    for k, v in fill.items():
        if k in batch:
            out[k] = torch.nn.functional.pad(batch[k], (extra, 0), value=v)
    return out
