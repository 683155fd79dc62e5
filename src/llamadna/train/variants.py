"""A model variant: the given model's training settings with a few fields changed.

`train.cache.TrainedModels` trains a variant for any split the given model was not trained on;
the variants themselves (which fields each one changes) are listed by their users
(`evaluate.systems`), so that this stage knows no variant by name. No heavy imports: the CLI
reads them at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from llamadna.train.config import TrainConfig


@dataclass(frozen=True)
class ModelVariant:
    """A model trained with the given model's settings as a leak-free DNA model (`use_dna` on,
    `prompt_mode` "leak-free"), then `edits` (TrainConfig field -> value) applied.

    The variant without edits is the given model itself wherever it fits (trained on that split
    with DNA and a leak-free prompt). `needs_index`: a variant of a retrieval model only (one
    trained with an index)."""

    name: str
    edits: dict[str, Any] = field(default_factory=dict, hash=False)
    needs_index: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.edits) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"variant {self.name}: {sorted(unknown)} are not TrainConfig fields")

    @property
    def is_given(self) -> bool:
        """No edits: the given model's own settings."""
        return not self.edits

    def apply(self, base: TrainConfig, **settings: Any) -> TrainConfig:
        """`base` as a leak-free DNA model with `settings` (dataset, out, split, ...) and this
        variant's edits."""
        return replace(base, **{**settings, "use_dna": True, "prompt_mode": "leak-free", **self.edits})
