"""The one AdamW + schedule helper (train.optim): learning rates at known steps, the parameter
groups, and the same floats as the schedules it replaced."""

from __future__ import annotations

import itertools

import pytest
import torch

from llamadna.train.optim import adamw_with_schedule, lr_factor


def params() -> list[torch.nn.Parameter]:
    """A weight matrix, a bias, another matrix, a LayerNorm-like vector: mixed on purpose."""
    return [torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(3)),
            torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))]


def lrs(opt, sched, steps: int) -> list[float]:
    """The rate of each optimizer step, and the one after the last."""
    out = [opt.param_groups[0]["lr"]]
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_linear_warmup_from_zero_then_decay_to_zero():
    opt, sched = adamw_with_schedule(params(), 1.0, weight_decay=0.0, warmup_steps=4, total_steps=10)
    assert lrs(opt, sched, 10) == [0.0, 0.25, 0.5, 0.75, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]


def test_warmup_offset_starts_one_step_in():
    opt, sched = adamw_with_schedule(params(), 2.0, weight_decay=0.01, exempt_1d=True, warmup_steps=2,
                                     total_steps=6, warmup_offset=1)
    assert lrs(opt, sched, 6) == [1.0, 2.0, 2.0, 1.5, 1.0, 0.5, 0.0]


def test_overlapping_warmup_and_floored_decay():
    opt, sched = adamw_with_schedule(params(), 1.0, warmup_steps=20, total_steps=100, warmup_offset=1,
                                     overlap=True, min_factor=0.05)
    got = lrs(opt, sched, 100)
    assert got[0] == 1 / 20  # (0 + 1) / 20 x (1 - 0)
    assert got[9] == pytest.approx(10 / 20 * (1 - 9 / 100))  # still warming up, already decaying
    assert got[50] == 0.5  # warm-up done: 1 - 50 / 100
    assert got[97] == got[100] == 0.05  # the floor


def test_warmup_longer_than_the_run_ends_at_zero():
    # the fine-tuning run caps warm-up at the total; the last step then divides by max(1, 0)
    opt, sched = adamw_with_schedule(params(), 1.0, weight_decay=0.0, warmup_steps=3, total_steps=3)
    assert lrs(opt, sched, 3) == [0.0, 1 / 3, 2 / 3, 0.0]


def test_the_same_floats_as_the_schedules_it_replaced():
    # LambdaLR's rate is base rate x factor: equal factors (==, not approx) give equal rates
    from transformers import get_linear_schedule_with_warmup

    def same(old, **schedule) -> bool:
        _, sched = adamw_with_schedule(params(), 1.0, weight_decay=0.0, **schedule)
        new = sched.lr_lambdas[0]
        return all(old(s) == new(s) for s in range(schedule["total_steps"] + 1))

    for warm, total in itertools.product([0, 1, 7, 20], [1, 3, 20, 57, 333]):  # fine-tuning
        o = torch.optim.AdamW(params(), lr=1.0)
        old = get_linear_schedule_with_warmup(o, min(warm, total), total).lr_lambdas[0]
        assert same(old, warmup_steps=min(warm, total), total_steps=total)
    for steps in [1, 19, 20, 21, 300]:  # the tiny LLM's text stage
        assert same(lambda s, n=steps: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / n), warmup_steps=20,
                    total_steps=steps, warmup_offset=1, overlap=True, min_factor=0.05)
    for steps, frac in itertools.product([2, 10, 33, 300], [0.0, 0.1, 0.3, 0.9]):  # masked-LM
        w = max(1, int(frac * steps))
        assert same(lambda s, n=steps, w=w: (s + 1) / w if s < w else max(0.0, (n - s) / (n - w)),
                    warmup_steps=w, total_steps=steps, warmup_offset=1)


def test_parameter_groups():
    ps = params()
    opt, _ = adamw_with_schedule(ps, 1e-3, weight_decay=0.05, exempt_1d=True, total_steps=5)
    assert [g["params"] for g in opt.param_groups] == [[ps[0], ps[2]], [ps[1], ps[3]]]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    opt, sched = adamw_with_schedule(ps, 1e-3, weight_decay=0.0)
    assert sched is None and len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == ps
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[0]["lr"] == 1e-3
    opt, _ = adamw_with_schedule(iter(ps), 1e-3)  # None: torch's default decay, as the tiny LLM's stage
    assert opt.param_groups[0]["weight_decay"] == torch.optim.AdamW(ps).defaults["weight_decay"]


def test_the_scheduler_checkpoints_as_before():
    # train.train writes sched.state_dict() into a checkpoint's state.json
    from transformers import get_linear_schedule_with_warmup

    o = torch.optim.AdamW(params(), lr=1e-3, weight_decay=0.0)
    _, sched = adamw_with_schedule(params(), 1e-3, weight_decay=0.0, warmup_steps=2, total_steps=9)
    assert sched.state_dict() == get_linear_schedule_with_warmup(o, 2, 9).state_dict()
    assert lr_factor(5, warmup_steps=2, total_steps=9) == 4 / 7
