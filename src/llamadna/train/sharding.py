"""FSDP for the LLM (`train --fsdp`): PyTorch's FSDP2 (`fully_shard`) over all processes.

    every process builds the same model (seeded), then
    each LLM decoder layer  -> its own FSDP unit (gathered for its forward/backward, resharded after)
    the rest (encoder, projector, head, LLM embeddings/norm/lm_head) -> the root unit
    parameters become DTensors sharded on dim 0 across the processes; the optimizer is built on them

The frozen weights (7B of them at full scale) are thus split N ways instead of copied N times;
LoRA, projector and head are sharded too, and FSDP reduce-scatters their gradients (the mean over
processes, as DDP's all-reduce). Checkpoints stay in the unsharded format of the other runs:
`trainable_state`/`optimizer_state` gather full tensors (collectives: every process calls them,
in the same order) and `load_trainable`/`load_optimizer_state` shard them again.

Works with gloo on CPUs and NCCL on GPUs. Not combined with 8/4-bit LLMs (bitsandbytes' packed
weights are not DTensors).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor


def decoder_layers(language_model: nn.Module) -> list[nn.Module]:
    """The LLM's transformer blocks: modules of the classes its `_no_split_modules` names
    (`LlamaDecoderLayer` for Llama)."""
    names = set(getattr(language_model, "_no_split_modules", None) or ())
    layers = [m for m in language_model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(language_model).__name__}: no decoder layers found to shard "
                         f"(looked for {sorted(names) or 'its _no_split_modules'})")
    return layers


def shard_model(model: nn.Module, device: torch.device, world: int, bf16: bool = False) -> int:
    """Shard `model` in place over `world` processes (one FSDP unit per decoder layer + the
    root); parameters move to `device` one unit at a time. Returns the number of layer units."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world,))
    mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16
          else MixedPrecisionPolicy())
    layers = decoder_layers(model.language_model)
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return len(layers)


def local_numel(p: torch.Tensor) -> int:
    """Elements this process holds of a (possibly sharded) tensor."""
    return p.to_local().numel() if isinstance(p, DTensor) else p.numel()


def _full(t):
    return t.full_tensor() if isinstance(t, DTensor) else t


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Full CPU copies of the trainable parameters, by name (a collective when sharded)."""
    return {n: _full(p.detach()).contiguous().cpu().clone()
            for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, weights: dict[str, torch.Tensor], origin: str = "checkpoint") -> None:
    """Copy full tensors into the (possibly sharded) trainable parameters."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise ValueError(f"{origin}: lacks trainable weights {missing[:3]}")
    unknown = [n for n in weights if n not in params]
    if unknown:
        raise ValueError(f"{origin}: weights the model does not have: {unknown[:3]}")
    with torch.no_grad():
        for n, t in weights.items():
            p = params[n]
            if isinstance(p, DTensor):
                t = distribute_tensor(t.to(p.device, p.dtype), p.device_mesh, p.placements)
            p.copy_(t)


def optimizer_state(opt: torch.optim.Optimizer) -> dict:
    """`opt.state_dict()` with sharded state tensors gathered into full CPU tensors."""
    sd = opt.state_dict()
    sd["state"] = {i: {k: _full(v).cpu() if torch.is_tensor(v) else v for k, v in st.items()}
                   for i, st in sd["state"].items()}
    return sd


def load_optimizer_state(opt: torch.optim.Optimizer, sd: dict) -> None:
    """Load a full optimizer state, sharding per-parameter tensors like their parameters."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, st in sd["state"].items():
        p = params[int(i)]
        if isinstance(p, DTensor):
            for k, v in st.items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    st[k] = distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
    opt.load_state_dict(sd)
