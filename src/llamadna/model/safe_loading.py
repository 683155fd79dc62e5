"""What Llama-DNA reads from a directory it is handed (a model, a DNA encoder, an LLM, a
tokenizer): JSON, tokenizer files and safetensors; never code, never a pickle.

transformers follows an `auto_map` in config.json or tokenizer_config.json into Python files
shipped in the directory. Unless `trust_remote_code` is given it asks on stdin ("[y/N]"), so
`echo y | llamadna annotate ...` would import them (and copy them into the Hugging Face modules
cache), and with no stdin the run ends in a traceback. And a pickle (`pytorch_model.bin`) is
loaded by unpickling. So every loader of the package goes through this module:

- `refuse_custom_code`: a directory whose config.json or tokenizer_config.json names custom code
  (`auto_map`) is refused in one line naming the file, whatever stdin says; nothing falls back
  silently to another class;
- `load_tokenizer`: AutoTokenizer after that check, with `trust_remote_code=False` and
  `local_files_only=True` as well (no prompt, no model hub, even if a check were missed);
- `require_safetensors` / `refuse_pickle_only`: weights are read from safetensors only (loaders
  also pass `use_safetensors=True`); a directory holding only a pickle is refused in one line
  that says to convert it.

One deliberate exception, DNABERT-2 (`model.dnabert2`): its published config.json has an
`auto_map` into its own `bert_layers.py`/`configuration_bert.py`. Llama-DNA carries that
architecture itself, so exactly that auto_map is accepted and dropped, never followed. Its
published weights are a `pytorch_model.bin`; `read_dnabert2_weights` reads it with
`torch.load(weights_only=True)`, PyTorch's restricted unpickler, which rebuilds tensors and
plain containers only and refuses any other object (so no code runs; tested with a pickle whose
object would write a file). Refusing it would leave the full preset unusable with the weights
as published; every other loader refuses pickles outright.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from llamadna.errors import InputError
from llamadna.io.text import read_json_object

NO_CODE = "Llama-DNA never runs code from a model directory"
CODE_NAMING_FILES = ("config.json", "tokenizer_config.json")  # where transformers reads auto_map
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# DNABERT-2's own code files, named by its published auto_map; never imported (module docstring)
DNABERT2_CODE = frozenset({"bert_layers", "configuration_bert"})


def read_json(path: Path) -> dict | None:
    """A JSON object file; None when there is no such file. A damaged one is one line."""
    return read_json_object(path) if path.is_file() else None


def _auto_maps(raw: dict) -> Iterator[tuple[str, object]]:
    """(where, auto_map) at the top level and in nested sub-configs (a model's dna_config and
    text_config)."""
    if "auto_map" in raw:
        yield "", raw["auto_map"]
    for key, value in raw.items():
        if isinstance(value, dict) and "auto_map" in value:
            yield f" in {key}", value["auto_map"]


def is_dnabert2_auto_map(auto_map: object) -> bool:
    """Whether an auto_map is DNABERT-2's own: every entry a class of `bert_layers` or
    `configuration_bert` in the same directory (no other repository, no other file)."""
    if not isinstance(auto_map, dict) or not auto_map:
        return False
    refs = [r for v in auto_map.values() for r in (v if isinstance(v, list | tuple) else [v])]
    return all(isinstance(r, str) and "--" not in r and r.rpartition(".")[0] in DNABERT2_CODE
               for r in refs)


def refuse_custom_code(directory: str | Path) -> None:
    """InputError when the directory's config.json or tokenizer_config.json names custom code
    (an `auto_map`, top level or in a sub-config), bar DNABERT-2's own in config.json (see the
    module docstring). Files that are absent are not required here."""
    d = Path(directory)
    for name in CODE_NAMING_FILES:
        raw = read_json(d / name)
        for where, auto_map in _auto_maps(raw or {}):
            if name == "config.json" and is_dnabert2_auto_map(auto_map):
                continue
            shown = json.dumps(auto_map)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise InputError(d / name, f"names custom code (auto_map{where} {shown}): {NO_CODE}; use "
                             "a directory whose classes transformers itself provides")


def load_tokenizer(directory: str | Path):
    """A local tokenizer directory through AutoTokenizer: no code (refused, and
    `trust_remote_code=False`), no model hub (`local_files_only`)."""
    from transformers import AutoTokenizer

    d = Path(directory)
    refuse_custom_code(d)
    return AutoTokenizer.from_pretrained(d, trust_remote_code=False, local_files_only=True)


def refuse_pickle_only(directory: str | Path) -> None:
    """InputError when the directory holds pickled weights (`pytorch_model.bin`, `*.pt`, ...)
    and no safetensors: they are never unpickled."""
    d = Path(directory)
    if any((d / n).is_file() for n in SAFETENSORS_FILES) or any(d.glob("*.safetensors")):
        return
    pickled = sorted(p for p in d.glob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file())
    pickled += sorted(d.glob("pytorch_model*.bin.index.json"))
    if pickled:
        raise InputError(pickled[0], "pickle weights are never loaded (unpickling a file can run "
                         "code): convert them to safetensors (model.safetensors, e.g. with "
                         "safetensors.torch.save_file) where you trust the file, and pass the "
                         "directory again")


def require_safetensors(directory: str | Path, what: str) -> None:
    """The directory's weights are safetensors: a pickle only is refused (`refuse_pickle_only`),
    and no weights at all is one line too."""
    d = Path(directory)
    refuse_pickle_only(d)
    if not (any((d / n).is_file() for n in SAFETENSORS_FILES) or any(d.glob("*.safetensors"))):
        raise InputError(d, f"no weights: expected model.safetensors in this {what} directory")
