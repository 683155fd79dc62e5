"""Projector: DNA encoder states -> the LLM's token-embedding space."""

from __future__ import annotations

from torch import nn

from llamadna.errors import ConfigError


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """"linear" = one Linear; "mlp2x_gelu" = Linear-GELU-Linear (LLaVA-1.5's projector)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ConfigError(f"unknown projector {kind!r}: expected 'linear' or 'mlp2x_gelu'")
