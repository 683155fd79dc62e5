"""The one AdamW + learning-rate schedule of every training loop here, and its optimizer step.

Four loops use it (all AdamW):

    fine-tuning (train.train.Trainer)     linear warm-up from 0, then linear decay to 0
                                          (transformers' `get_linear_schedule_with_warmup`)
    tiny LLM text pretraining (train.train.pretrain_tiny_llm)
                                          the warm-up factor times a decay over the whole run,
                                          floored at 5 %: `overlap=True, min_factor=0.05`
    masked-LM (train.pretrain_encoder)    warm-up starting one step in (`warmup_offset=1`), then
                                          linear decay to 0; no weight decay on biases and
                                          LayerNorm (`exempt_1d=True`)
    contrastive (train.contrastive)       a constant rate: no schedule (`total_steps=None`)

The schedules differ in how they are written, and their floats differ with it; each keeps its
own arithmetic here, so a run gives the same learning rates, to the last bit, as before the
loops shared this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, warmup_offset: int = 0,
              overlap: bool = False, min_factor: float = 0.0) -> float:
    """The multiplier of the peak learning rate after `step` scheduler steps.

    Parameters
    ----------
    step : scheduler steps taken (0 before the first optimizer step).
    warmup_steps : steps of the linear warm-up (>= 1 where `overlap` or a warm-up is used).
    total_steps : steps of the run; the rate reaches `min_factor` there.
    warmup_offset : the warm-up factor is (step + warmup_offset) / warmup_steps: 0 starts the
        first step at a rate of 0 (transformers' schedule), 1 at peak / warmup_steps.
    overlap : False: the linear decay follows the warm-up, (total - step) / (total - warmup).
        True: the warm-up factor (capped at 1) multiplies a decay over the whole run,
        1 - step / total.
    min_factor : the floor of the decay (0: down to 0).
    """
    if overlap:
        return min(1.0, (step + warmup_offset) / warmup_steps) * max(min_factor, 1 - step / total_steps)
    if step < warmup_steps:
        return (step + warmup_offset) / max(1, warmup_steps)
    return max(min_factor, (total_steps - step) / max(1, total_steps - warmup_steps))


def adamw_with_schedule(
    params: Iterable[torch.nn.Parameter], lr: float, *, weight_decay: float | None = None,
    exempt_1d: bool = False, warmup_steps: int = 0, total_steps: int | None = None,
    warmup_offset: int = 0, overlap: bool = False, min_factor: float = 0.0,
) -> tuple[torch.optim.AdamW, LambdaLR | None]:
    """AdamW over `params` and its `LambdaLR` schedule (`lr_factor`).

    Parameters
    ----------
    params : the parameters to train, in order (one parameter group, or two with `exempt_1d`).
    lr : the peak learning rate.
    weight_decay : AdamW's; None leaves torch's default (0.01).
    exempt_1d : two groups: the tensors of 2 or more dimensions with `weight_decay`, then the
        others (biases, LayerNorm) with none.
    warmup_steps, total_steps, warmup_offset, overlap, min_factor : the schedule, see
        `lr_factor`; `total_steps=None` = a constant rate and no scheduler (None returned).
    """
    params = list(params)
    if exempt_1d:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=lr)
    elif weight_decay is None:
        opt = torch.optim.AdamW(params, lr=lr)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if total_steps is None:
        return opt, None
    # a partial (not a closure): LambdaLR's state_dict then records it as {} in checkpoints
    factor = partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps,
                     warmup_offset=warmup_offset, overlap=overlap, min_factor=min_factor)
    return opt, LambdaLR(opt, factor)


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, what: str,
                   step: int) -> float:
    """Backward, clip the gradient norm to 1, step; a non-finite loss stops with what to change.
    Returns the loss (rounded to 5 decimals, for the loss curve)."""
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"{what} loss is {loss.item()} at step {step + 1}; lower the learning rate")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return round(loss.item(), 5)
