"""Where the data bundle lives, and which files form each assembly set."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from llamadna.constants import BUILD_FILE_TAGS, ENV_DATA
from llamadna.errors import DataDirError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_data_dir() -> Path:
    """`$LLAMADNA_DATA`, else `../shared/data` (beside the working directory or the checkout)."""
    env = os.environ.get(ENV_DATA)
    if env:
        p = Path(env)
        if not p.is_dir():
            raise DataDirError(f"{ENV_DATA}={env} is not a directory")
        return p
    for cand in (Path.cwd().parent / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"):
        if cand.is_dir():
            return cand
    raise DataDirError(
        f"no data directory found: set {ENV_DATA}, pass --data DIR, or download the public "
        "files with `llamadna fetch-data --out DIR`"
    )


@dataclass
class AssemblySet:
    """Reference + annotation + variants of one genome build (builds are never mixed)."""

    build: str
    fasta: Path
    annotations: list[Path]
    variants: Path
    extra: dict[str, Path] = field(default_factory=dict)


def _first(d: Path, names: list[str]) -> Path | None:
    for n in names:
        if (d / n).exists():
            return d / n
    return None


def discover_sets(data_dir: str | Path) -> list[AssemblySet]:
    """Find the assembly sets of a bundle laid out like `../shared/data` (MANIFEST.md).

    Per build tag t ("" for GRCh38, ".grch37" for GRCh37): `regions{t}.fa[.gz]`,
    `annotation{t}.gtf.gz` and/or `annotation{t}.features.tsv.gz`, `variants{t}.vcf.gz`
    (or `variants{t}.tsv.gz`). A build with none of its files is skipped; one with some but not
    all of them is an error naming what is missing.
    """
    d = Path(data_dir)
    if not d.is_dir():
        raise DataDirError(f"data directory {d} does not exist")
    sets = []
    for build, t in BUILD_FILE_TAGS.items():
        fasta = _first(d, [f"regions{t}.fa", f"regions{t}.fa.gz", f"regions{t}.fasta"])
        ann = [
            p for p in (
                _first(d, [f"annotation{t}.gtf.gz", f"annotation{t}.gtf"]),
                _first(d, [f"annotation{t}.features.tsv.gz", f"annotation{t}.features.tsv"]),
            ) if p is not None
        ]
        var = _first(d, [f"variants{t}.vcf.gz", f"variants{t}.vcf", f"variants{t}.tsv.gz"])
        if fasta is None:
            if ann or var is not None:  # a build's files without its reference: never skip quietly
                found = ", ".join(p.name for p in [*ann, var] if p is not None)
                raise DataDirError(f"{d}: found {found} ({build}) but not its reference "
                                   f"regions{t}.fa (or regions{t}.fa.gz)")
            continue
        if not ann or var is None:
            missing = (f"annotation (annotation{t}.gtf.gz or annotation{t}.features.tsv.gz)"
                       if not ann else f"variants (variants{t}.vcf.gz)")
            raise DataDirError(f"{d}: found {fasta.name} ({build}) but not its {missing}")
        sets.append(AssemblySet(build=build, fasta=fasta, annotations=ann, variants=var))
    if not sets:
        raise DataDirError(
            f"{d}: no reference FASTA (regions.fa / regions.grch37.fa); "
            "run `llamadna fetch-data --out DIR` to download one"
        )
    return sets


def shared_table(data_dir: str | Path, name: str) -> Path:
    p = Path(data_dir) / name
    if not p.exists():
        raise DataDirError(f"{p} not found (expected the bundle's {name})")
    return p
