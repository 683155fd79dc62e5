"""Position ids of padded batches, shared by the model's forward/generate (`model.modeling`)
and the copy head's decoding (`model.copying`)."""

from __future__ import annotations

import torch


def position_ids_from(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left and right padding give the same result.

    attention_mask : (B, T) 1 for tokens, 0 for padding; returns (B, T) long, padding at 0.
    """
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)
