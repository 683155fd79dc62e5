"""Helpers of `--fsdp` that need no process group (the sharded runs are in test_train.py and
test_full_preset.py, on two CPU processes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from llamadna.train.sharding import (
    decoder_layers,
    load_optimizer_state,
    load_trainable,
    local_numel,
    optimizer_state,
    trainable_state,
)


def test_decoder_layers_are_the_llms_blocks():
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=3, num_attention_heads=2))
    layers = decoder_layers(llm)
    assert len(layers) == 3 and all(type(m).__name__ == "LlamaDecoderLayer" for m in layers)
    with pytest.raises(ValueError, match="no decoder layers"):
        decoder_layers(nn.Linear(2, 2))


def test_trainable_state_round_trip_and_errors():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    m[0].weight.requires_grad_(False)
    sd = trainable_state(m)
    assert set(sd) == {"0.bias", "1.weight", "1.bias"}
    assert local_numel(m[1].weight) == 8
    other = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    other[0].weight.requires_grad_(False)
    load_trainable(other, sd)
    assert all(torch.equal(a, b) for a, b in zip(trainable_state(other).values(), sd.values()))
    assert not torch.equal(other[0].weight, m[0].weight)  # frozen weights are not touched
    with pytest.raises(ValueError, match="ckpt: lacks trainable weights"):
        load_trainable(other, {k: v for k, v in sd.items() if k != "1.bias"}, origin="ckpt")
    with pytest.raises(ValueError, match="does not have"):
        load_trainable(other, {**sd, "2.weight": torch.zeros(1)})


def test_optimizer_state_round_trip():
    torch.manual_seed(0)
    m = nn.Linear(3, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    sd = optimizer_state(opt)
    opt2 = torch.optim.AdamW(nn.Linear(3, 2).parameters(), lr=0.1)
    load_optimizer_state(opt2, sd)
    for i, st in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][i]["exp_avg"], st["exp_avg"])
