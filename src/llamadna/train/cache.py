"""The models an evaluation compares, trained on demand and cached on disk.

`TrainedModels(model_dir, dataset, out_dir)` hands `llamadna evaluate` (`evaluate.systems.ModelSource`)
the given model for the split it was trained on, and for every other (split, variant) a model
trained here with the given model's own settings, in OUT_DIR/models/SPLIT/VARIANT. A cached
model is reused when its train_config.json equals the settings it would be trained with now.

Variants (`train.variants.ModelVariant`: a name and the TrainConfig fields it changes) come from
the caller: `evaluate.systems` lists them; this module knows none by name.
A retrieval model trained here comes out calibrated (`train()` calls `train.calibrate`); a
cached one without its calibration.json, or with one of an older format, is calibrated before
use. `get` hands out an `Annotator`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from llamadna.errors import InputError
from llamadna.model.calibration import calibration_current
from llamadna.train.config import TrainConfig
from llamadna.train.variants import ModelVariant

log = logging.getLogger(__name__)


class TrainedModels:
    def __init__(self, model_dir: str | Path, dataset: str | Path, out_dir: str | Path,
                 epochs: int | None = None, max_steps: int | None = None):
        self.model_dir, self.dataset, self.out_dir = Path(model_dir), str(dataset), Path(out_dir)
        cfg_path = self.model_dir / "train_config.json"
        if not cfg_path.exists():
            raise InputError(self.model_dir, "no train_config.json: expected a model directory "
                             "written by `llamadna train`")
        self.base = TrainConfig(**saved_config(cfg_path))
        self.train_config = asdict(self.base)
        self.epochs, self.max_steps = epochs, max_steps
        self.loaded: dict[tuple[str, ModelVariant], object] = {}

    def config_for(self, split: str, variant: ModelVariant, dataset: str | None = None) -> TrainConfig | None:
        """The settings a (split, variant) model is trained with; None for the given model.
        `dataset`: the table holding the split column (evaluation folds live in a copy)."""
        b = self.base
        if variant.needs_index and b.index is None:
            raise ValueError(f"the {variant.name} variant is of a retrieval model; {self.model_dir} was "
                             "trained without --index")
        if variant.is_given and b.split == split and b.use_dna and b.prompt_mode == "leak-free":
            return None
        return variant.apply(
            b, dataset=dataset or self.dataset, out=str(self.out_dir / "models" / split / variant.name),
            split=split, epochs=self.epochs or b.epochs,
            max_steps=self.max_steps if self.max_steps is not None else b.max_steps,
        )

    @property
    def retrieval(self) -> bool:
        """The given model reads reference evidence (trained with an index)."""
        return self.base.index is not None

    def get(self, split: str, variant: ModelVariant, dataset: str | None = None):
        """The (split, variant) model's `Annotator`, loaded once; trained first unless cached."""
        from llamadna.annotate import Annotator
        from llamadna.train.calibrate import calibrate_model
        from llamadna.train.train import train

        key = (split, variant)
        if key not in self.loaded:
            tc = self.config_for(split, variant, dataset)
            path = self.model_dir if tc is None else Path(tc.out)
            if tc is not None:
                rows = split_fingerprint(tc.dataset, tc.split)
                trained = not _cached(path, tc, rows)
                if trained:
                    log.info("training %s for %s (same settings as %s)", variant.name, split, self.model_dir)
                    train(tc)  # a retrieval model: calibrated at the end
                elif tc.index is not None and not calibration_current(path):
                    calibrate_model(path, tc)  # cached uncalibrated (an interrupted calibration) or older
                (path / FINGERPRINT_FILE).write_text(rows + "\n")
            self.loaded[key] = Annotator.from_pretrained(path)
        return self.loaded[key]


def saved_config(path: Path) -> dict:
    """A train_config.json with the settings added since it was written at the values it was
    trained with: no `llm_training` = LoRA on the LLM (the only mode then), no `negative_rate` =
    no negatives (issue 29), no `decision_weight` = every target token alike, then every other
    later setting at its default (TrainConfig's)."""
    raw = json.loads(path.read_text())
    raw.setdefault("llm_training", "lora")
    raw.setdefault("negative_rate", 0.0)
    raw.setdefault("decision_weight", 1.0)
    return asdict(TrainConfig(**raw))


# What a cached model was trained on: a hash of its split's training and validation rows, so
# that the same rows in another table (an evaluation's fold copy of the dataset) reuse it.
FINGERPRINT_FILE = "split_rows.sha256"


def split_fingerprint(dataset: str | Path, split: str) -> str:
    """SHA-256 of the rows (sequence, sentence, label, split) a model of `split` trains and
    validates on, in table order."""
    import hashlib

    import polars as pl

    from llamadna.io.dataset import dataset_parquet

    df = pl.read_parquet(dataset_parquet(dataset), columns=["Sequence", "Annotation", "Dataset", split])
    h = hashlib.sha256()
    for row in df.filter(pl.col(split).is_in(["train", "val"])).iter_rows():
        h.update("\t".join(map(str, row)).encode() + b"\n")
    return h.hexdigest()


def _cached(path: Path, tc: TrainConfig, rows: str) -> bool:
    """Trained with these settings on these rows: the same config; or, where the model records
    the rows it was trained on, the same config but for the table's path and its own (a report
    directory copied or moved elsewhere keeps its models)."""
    if not (path / "train_summary.json").exists():
        return False
    saved, now = saved_config(path / "train_config.json"), asdict(tc)
    if saved == now:
        return True
    fp = path / FINGERPRINT_FILE
    for key in ("dataset", "out"):
        saved.pop(key, None)
        now.pop(key)
    return fp.exists() and fp.read_text().strip() == rows and saved == now
