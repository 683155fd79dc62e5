"""Command line: parses arguments and calls the package; nothing else.

Each command catches the package's input errors and prints them as one clear line (exit 2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llamadna import __version__
from llamadna.constants import DEFAULT_MAX_PER_GENE_SOURCE, DEFAULT_SOURCES, DEFAULT_WINDOW
from llamadna.errors import DataDirError, InputError

app = typer.Typer(
    help="Llama-DNA: functional annotation of unknown human DNA sequences.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llamadna {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


@contextmanager
def _errors() -> Iterator[None]:
    """Turn input problems into a one-line message and exit code 2 (no traceback)."""
    try:
        yield
    except (InputError, DataDirError, ValueError, FileNotFoundError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _progress() -> Iterator:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as prog:
        tasks: dict[str, int] = {}

        def step(desc: str, done: int, total: int) -> None:
            key = desc.split(":")[0]
            if key not in tasks:
                tasks[key] = prog.add_task(desc, total=total)
            prog.update(tasks[key], completed=done, description=desc)

        yield step


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@app.command("build-dataset")
def build_dataset_cmd(
    out: Annotated[Path, typer.Option(help="Output directory (dataset.parquet, summary.json).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Data bundle directory [default: $LLAMADNA_DATA or ../shared/data]."),
    ] = None,
    window: Annotated[int, typer.Option(help="Window length W in bases.")] = DEFAULT_WINDOW,
    sources: Annotated[
        str, typer.Option(help="Comma-separated variant sources to keep.")
    ] = ",".join(DEFAULT_SOURCES),
    max_per_gene_source: Annotated[
        int, typer.Option(help="Cap of rows per (gene, source) for --cap-sources; 0 = no cap.")
    ] = DEFAULT_MAX_PER_GENE_SOURCE,
    cap_sources: Annotated[str, typer.Option(help="Comma-separated sources the cap applies to.")] = (
        "dbSNP"
    ),
    edge: Annotated[
        str, typer.Option(help="Windows running off the sequence: 'shift' inside or 'drop'.")
    ] = "shift",
    max_n_fraction: Annotated[
        float, typer.Option(help="Drop windows with a larger fraction of N bases.")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for the cap and the splits.")] = 0,
) -> None:
    """Build the annotation dataset (one row per variant in a gene) from a data bundle."""
    from llamadna.data.build import BuildOptions, build_dataset, write_dataset
    from llamadna.data.paths import default_data_dir

    with _errors():
        data_dir = data if data is not None else default_data_dir()
        opts = BuildOptions(
            window=window, sources=_csv(sources), max_per_gene_source=max_per_gene_source,
            capped_sources=_csv(cap_sources), seed=seed, edge=edge, max_n_fraction=max_n_fraction,
        )
        with _progress() as step:
            df, summary = build_dataset(data_dir, opts, step=step)
        pq, js = write_dataset(df, summary, out)
    _print_summary(summary)
    console.print(f"wrote [bold]{pq}[/] ({summary['rows']} rows) and [bold]{js}[/]")


def _print_summary(s: dict) -> None:
    t = Table(title=f"dataset: {s['rows']} rows, {s['genes']} genes")
    t.add_column("build")
    t.add_column("chrom")
    t.add_column("rows", justify="right")
    for b, chroms in s["rows_per_chrom"].items():
        for c, n in chroms.items():
            t.add_row(b, c, str(n))
    console.print(t)
    t = Table(title="rows per source and split")
    splits = list(s["rows_per_split"])
    t.add_column("source")
    for sp in splits:
        t.add_column(sp)
    for src in s["rows_per_source"]:
        cells = []
        for sp in splits:
            d = s["rows_per_split_source"][sp]
            cells.append(" / ".join(str(d.get(k, {}).get(src, 0)) for k in ("train", "val", "test")))
        t.add_row(src, *cells)
    console.print(t)
    console.print("dropped or capped: " + json.dumps(s["dropped"]))


@contextmanager
def _byte_progress() -> Iterator:
    """One progress bar per description, in bytes (downloads and conversions)."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeElapsedColumn(), console=console, transient=False,
    ) as prog:
        tasks: dict[str, int] = {}

        def step(desc: str, done: int, total: int | None) -> None:
            if desc not in tasks:
                tasks[desc] = prog.add_task(desc, total=total)
            prog.update(tasks[desc], completed=done, total=total)

        yield step


@app.command("fetch-data")
def fetch_data_cmd(
    out: Annotated[
        Path, typer.Option(help="Output directory (bundle files; raw downloads in OUT/.download).")
    ],
    chromosomes: Annotated[
        str, typer.Option(help="Comma-separated chromosomes for regions.fa, GTF and variants.")
    ] = "chr21,chr22,chrM",
    mirror: Annotated[
        str | None, typer.Option(help="Replace scheme://host of every source URL (path kept).")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", metavar="NAME=URL",
            help="Override one source URL (repeatable). Names: hg38 (URL with {chrom}), gencode, "
            "gene_info, clinvar_genes, orphanet, hpo, clinvar_vcf.",
        ),
    ] = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Do not check the md5 sums the sources publish.")
    ] = False,
) -> None:
    """Download the public source files and convert them into a data bundle for build-dataset.

    UCSC hg38 chromosomes, GENCODE GTF, NCBI gene_info, ClinVar (gene conditions and GRCh38
    VCF), Orphanet and HPO. Not downloaded: OMIM (needs a licence key), COSMIC (needs a login
    and licence) and dbSNP (tens of GB). Downloads resume; a rerun reuses verified files.
    """
    from llamadna.data.fetch import FetchOptions, fetch_data, parse_source_overrides

    with _errors():
        opts = FetchOptions(
            chromosomes=_csv(chromosomes), mirror=mirror,
            sources=parse_source_overrides(source or []), verify=not no_verify,
        )
        with _byte_progress() as step:
            summary = fetch_data(out, opts, step=step)
    t = Table(title=f"fetch-data: {', '.join(summary['chromosomes'])}")
    t.add_column("file")
    t.add_column("contents")
    for name, info in summary["outputs"].items():
        t.add_row(name, json.dumps(next(iter(info.values()))))
    console.print(t)
    new = sum(d["downloaded_now"] for d in summary["downloads"])
    console.print(f"wrote the bundle to [bold]{escape(str(out))}[/] ({new} of "
                  f"{len(summary['downloads'])} files downloaded now; OMIM, COSMIC and dbSNP "
                  "are not fetched)")


if __name__ == "__main__":
    app()
