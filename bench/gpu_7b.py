"""Full-shape throughput benchmark (random weights, no checkpoint needed; not run by `make test`).

Builds LlamaDNAForAnnotation at full scale — a DNABERT-2-size encoder (BERT, 12 layers, 768
wide, 4096 BPE vocabulary) and a Llama-2-7b-shape LLM (32 layers, 4096 wide, vocab 32000) —
with random weights in bf16, LoRA r=16 on q_proj/v_proj, and measures in one run:

1. training tokens/s of encoder + projector + LLM (LoRA) against the LLM alone (LoRA) on the same
   number of LLM tokens (goal: >= 0.9x), and MFU = achieved model FLOP/s / peak bf16 FLOP/s.
   Model FLOPs per LLM token = 4 x N_llm (forward 2N + activation gradients 2N; the frozen base
   gets no weight gradients) + the encoder's forward 2 x N_enc per DNA token.
2. annotations/s: 64 new tokens after a 512-token DNA input + prompt, batch 32, greedy, with
   the LLM's static KV cache and torch.compile (`llamadna.model.loading.compile_generation`, what
   `annotate --compile` does), against plain HF generate.

    python bench/gpu_7b.py                  # H100/H200, full shapes
    python bench/gpu_7b.py --shapes tiny    # CPU smoke run of the same code path
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from llamadna.model.configuration import LlamaDNAConfig
from llamadna.model.modeling import LlamaDNAForAnnotation

PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak (SXM)

SHAPES = {
    "full": dict(
        enc=dict(vocab_size=4096, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512),
        llm=dict(vocab_size=32000, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, intermediate_size=11008, max_position_embeddings=4096),
        batch=8, dna_tokens=512, text_tokens=128, gen_batch=32, gen_tokens=64, steps=10,
    ),
    "tiny": dict(
        enc=dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, max_position_embeddings=128),
        llm=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=2, intermediate_size=128, max_position_embeddings=512),
        batch=2, dna_tokens=64, text_tokens=32, gen_batch=4, gen_tokens=8, steps=3,
    ),
}


def build(shape: dict, device: str, dtype: torch.dtype) -> LlamaDNAForAnnotation:
    placeholder = shape["llm"]["vocab_size"] - 1
    cfg = LlamaDNAConfig(dna_config={"model_type": "bert", **shape["enc"]},
                         text_config={"model_type": "llama", **shape["llm"]},
                         dna_placeholder_id=placeholder)
    return LlamaDNAForAnnotation(cfg).to(device=device, dtype=dtype)


def batch(shape: dict, b: int, device: str, with_targets: bool = True) -> dict:
    L, T = shape["dna_tokens"], shape["text_tokens"]
    V, Vd = shape["llm"]["vocab_size"] - 1, shape["enc"]["vocab_size"]
    ids = torch.randint(5, V - 1, (b, L + T), device=device)
    ids[:, 1 : 1 + L] = V  # placeholders: one per DNA token
    out = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids),
        "dna_input_ids": torch.randint(5, Vd, (b, L), device=device),
        "dna_attention_mask": torch.ones(b, L, dtype=torch.long, device=device),
    }
    if with_targets:
        labels = ids.clone()
        labels[:, : 1 + L + T // 2] = -100  # loss on the last half of the text only
        out["labels"] = labels
        out["class_labels"] = torch.zeros(b, dtype=torch.long, device=device)
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(step, n: int, device: str) -> float:
    step()  # warm-up (allocations, kernels)
    step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) / n


def _checkpointing(m, on: bool) -> None:
    # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
    new = hasattr(m, "activation_checkpointing_enable")
    name = "activation_checkpointing_" if new else "gradient_checkpointing_"
    getattr(m, name + ("enable" if on else "disable"))()


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in m.named_parameters() if "lora_" not in n)


def train_throughput(model: LlamaDNAForAnnotation, shape: dict, device: str, gpu: str,
                     res: dict) -> tuple[int, int]:
    """Training tokens/s of the whole model against the LLM alone (same LoRA, same tokens), and
    their MFU on a known GPU, into `res`. Returns the LLM's and the encoder's parameter counts."""
    B = shape["batch"]
    llm_tokens = B * (shape["dna_tokens"] + shape["text_tokens"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def full_step():
        out = model(**batch(shape, B, device))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_full = time_steps(full_step, shape["steps"], device)

    # the LLM alone (same LoRA, same number of tokens, embeddings instead of DNA features)
    llm = model.language_model

    def llm_step():
        b = batch(shape, B, device)
        ids = b["input_ids"].clamp(max=shape["llm"]["vocab_size"] - 2)
        out = llm(input_ids=ids, attention_mask=b["attention_mask"], labels=b["labels"])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_llm = time_steps(llm_step, shape["steps"], device)
    n_llm, n_enc = n_params(llm), n_params(model.dna_encoder)
    flops_full = 4 * n_llm * llm_tokens + 2 * n_enc * B * shape["dna_tokens"]
    res["train_tokens_per_s_full"] = round(llm_tokens / t_full, 1)
    res["train_tokens_per_s_llm_only"] = round(llm_tokens / t_llm, 1)
    res["train_ratio_full_vs_llm"] = round(t_llm / t_full, 3)
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    if peak:
        res["mfu_full"] = round(flops_full / t_full / peak, 3)
        res["mfu_llm_only"] = round(4 * n_llm * llm_tokens / t_llm / peak, 3)
    return n_llm, n_enc


def generation_throughput(model: LlamaDNAForAnnotation, shape: dict, device: str, compiled: bool,
                          res: dict) -> None:
    """Annotations/s: gen_tokens new tokens after DNA + prompt, batch gen_batch, plain HF generate
    and (`compiled`) with the static KV cache and torch.compile, into `res`."""
    G, N = shape["gen_batch"], shape["gen_tokens"]
    g = batch(shape, G, device, with_targets=False)
    common = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=0)

    def gen_plain():
        model.generate(**g, **common)

    t_plain = time_steps(gen_plain, 2, device)
    res["annotations_per_s_plain"] = round(G / t_plain, 2)
    if compiled:
        from llamadna.model.loading import compile_generation

        compile_generation(model)  # what `llamadna annotate --compile` does

        def gen_static():
            model.generate(**g, **common)

        t_static = time_steps(gen_static, 2, device)
        res["annotations_per_s_static_compiled"] = round(G / t_static, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", choices=list(SHAPES), default="full")
    args = ap.parse_args()
    shape = SHAPES[args.shapes]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    torch.manual_seed(0)
    model = build(shape, device, dtype)
    _checkpointing(model.language_model, True)
    model.train()
    res: dict = {"device": gpu, "shapes": args.shapes, "dtype": str(dtype)}
    n_llm, n_enc = train_throughput(model, shape, device, gpu, res)
    _checkpointing(model.language_model, False)
    model.eval()
    if device == "cuda":
        torch.cuda.empty_cache()
    # tiny: the CPU smoke run covers the compiled path too
    generation_throughput(model, shape, device, device == "cuda" or args.shapes == "tiny", res)
    res["params_llm"], res["params_encoder"] = n_llm, n_enc
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
