"""Command line: parses arguments and calls the package; nothing else.

Defaults come from the package's config dataclasses and constants (one home each); a command
that builds a config declares how its options map onto the config's fields (`_configures`), and
tests/test_cli_config.py checks every option and its default against them. Each command
prints the errors a user can fix (bad input files, a missing data directory, invalid settings)
as one line and exits 2; a sharded run whose other process died says which in one line and exits
1; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import json
import logging
import operator
import os
import signal
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from llamadna import __version__
from llamadna.constants import (
    DECODINGS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_PART_ROWS,
    DEFAULT_PROCESSES,
    DEFAULT_SPLIT,
    DEFAULT_TILE,
    MIN_PARTS,
    MINIMAP2_LOCI,
    WITHHOLD_BELOW,
)
from llamadna.constants import SPLIT_COLUMNS as SPLIT_NAMES
from llamadna.data.build import BuildConfig
from llamadna.data.fetch import FetchConfig
from llamadna.data.simulate import SimulateConfig
from llamadna.errors import ConfigError, DataDirError, InputError, RankError
from llamadna.evaluate.config import COMPARE_AGAINST, EvalConfig
from llamadna.evaluate.systems import SYSTEM_NAMES
from llamadna.launch import check_processes, idle_process
from llamadna.retrieve.config import (
    DEFAULT_EMBED_WHEN,
    DEFAULT_K,
    EMBED_WHEN,
    FAISS_KINDS,
    INDEX_TILES,
    IndexConfig,
)
from llamadna.splash.config import SplashConfig
from llamadna.splash.stats import FilterConfig
from llamadna.train.config import PretrainConfig, TrainConfig

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
    if not verbose:
        # bitsandbytes (when installed) tries to fetch a faster CPU 4-bit kernel from a model hub
        # at import and reports the failure on every command; its built-in kernel is used instead
        logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(
            lambda r: "kernels-community" not in r.getMessage())
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it tried
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum, frame) -> None:
    """SIGTERM unwinds like Ctrl-C (exit 143), so that partial outputs and temporary files are
    removed on the way out (io.atomic) instead of being left behind."""
    raise SystemExit(128 + signum)


@contextmanager
def _errors() -> Iterator[None]:
    """The errors a user can fix become one line and exit code 2, a dead process of a sharded
    run (RankError) one line and exit code 1; anything else is a bug and keeps its traceback.
    The message is printed as plain text: no markup, no emoji codes (a `file:100:` must not
    become an emoji)."""
    try:
        yield
    except (InputError, DataDirError, ConfigError, RankError) as exc:  # RankError: another process died
        console.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True,
                      highlight=False)
        raise typer.Exit(1 if isinstance(exc, RankError) else 2) from None


Convert = Callable[[Any], Any] | str | tuple[str, Callable[[Any], Any]]


@dataclass(frozen=True)
class ConfigOptions:
    """How a command's parameters map onto the config dataclass it builds (`_config`).

    A parameter named like a field of `config`, or of a config in `nested`, is that field, its
    value passed as is (paths as strings, as configs store them). `convert` maps the others that
    are config fields: `{param: fn}` (the field of that name gets `fn(value)`), `{param: "field"}`
    (a field named otherwise) or `{param: ("field", fn)}`. `cli` names the parameters that are no
    config field (output paths the command checks, --resume, --show). A parameter that is none
    of these is a bug (`_config` raises), and tests/test_cli_config.py checks every command: its
    options map onto fields, with the fields' defaults.
    """

    config: type
    cli: tuple[str, ...] = ()
    convert: Mapping[str, Convert] = field(default_factory=dict)
    nested: Mapping[str, type] = field(default_factory=dict)  # field -> config of its own options

    def target(self, param: str) -> tuple[type, str, Callable[[Any], Any] | None] | None:
        """(config class, field, conversion or None) of a parameter; None for a CLI-only one."""
        if param in self.cli:
            return None
        if param in self.convert:
            conv = self.convert[param]
            if isinstance(conv, str):
                return self.config, conv, None
            name, fn = conv if isinstance(conv, tuple) else (param, conv)
            return self.config, name, fn
        for cls in (self.config, *self.nested.values()):
            if param in {f.name for f in fields(cls)}:
                return cls, param, None
        raise TypeError(f"the parameter {param!r} is no field of {self.config.__name__} and not "
                        "declared: name it in the command's ConfigOptions (cli or convert)")


def _configures(config: type, *, cli: tuple[str, ...] = (), convert: Mapping[str, Convert] | None = None,
                nested: Mapping[str, type] | None = None) -> Callable:
    """Declares the config a command builds and how its parameters map onto it (ConfigOptions);
    the command itself is returned unchanged for typer."""
    def declare(command: Callable) -> Callable:
        command.config_options = ConfigOptions(config, cli, convert or {}, nested or {})
        return command
    return declare


def _config(command: Callable, values: dict, **extra):
    """The config a command declares (`_configures`) from its arguments (`locals()`), plus `extra`
    (fields that no option sets). Raises TypeError (a bug) on an undeclared parameter."""
    spec: ConfigOptions = command.config_options
    args: dict[type, dict] = {cls: {} for cls in (spec.config, *spec.nested.values())}
    for param in inspect.signature(command).parameters:
        target = spec.target(param)
        if target is not None:
            cls, name, fn = target
            value = values[param]
            args[cls][name] = fn(value) if fn else str(value) if isinstance(value, Path) else value
    top = args[spec.config]
    for name, cls in spec.nested.items():
        top[name] = cls(**args[cls])
    return spec.config(**(top | extra))


@contextmanager
def _progress() -> Iterator:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=False,
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


def _print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]],
                 right: Collection[str] = ()) -> None:
    """A table on the console: a header of `columns` (those in `right` right-justified) over
    `rows` of strings (rich markup allowed)."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    for row in rows:
        t.add_row(*row)
    console.print(t)


def _print_fields(title: str, rows: Iterable[tuple[str, str]]) -> None:
    """One record on the console: a headerless two-column table of (name, value) under a title."""
    t = Table(show_header=False, title=title, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for name, value in rows:
        t.add_row(name, value)
    console.print(t)


def _out_file(out: Path, inputs: dict | None = None, formats: tuple[str, ...] = ()) -> Path:
    """Before any work: the output file is none of the run's inputs and can be written
    (io.outputs.check_output)."""
    from llamadna.io.outputs import check_output

    return check_output(out, inputs, kind="file", formats=formats)


@contextmanager
def _out_dir(out: Path, inputs: dict | None = None, beside: bool = False) -> Iterator[Path]:
    """Before any work: the output directory is none of the run's inputs, holds none and can be
    written; then it is held for the run, so that a second run writing it now is refused
    (io.atomic.exclusive_dir). Data-parallel processes other than the main one hold nothing."""
    from llamadna.io.atomic import exclusive_dir
    from llamadna.io.outputs import check_output

    check_output(out, inputs, kind="dir", beside=beside)
    if int(os.environ.get("RANK", "0")) > 0:
        yield out
        return
    with exclusive_dir(out):
        yield out


def _model_inputs(model: Path | None, index: Path | None = None, encoder: Path | None = None,
                  llm: Path | None = None) -> dict:
    """The inputs a command that loads a model reads, for the output checks."""
    return {"the model directory": model, "the index directory": index,
            "the encoder directory": encoder, "the LLM directory": llm}


def _anchor_paths(specs: list[str] | None) -> list[Path]:
    """The files of `[BUILD=]ANCHORS.tsv` options."""
    from llamadna.splash.scores import parse_anchor_specs

    return list(parse_anchor_specs(specs).values()) if specs else []


@app.command("build-dataset")
@_configures(BuildConfig, cli=("out", "data", "splash"),
             convert={"sources": _csv, "cap_sources": ("capped_sources", _csv)})
def build_dataset_cmd(
    out: Annotated[Path, typer.Option(help="Output directory (dataset.parquet, summary.json).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Data bundle directory (default: $LLAMADNA_DATA, else ../shared/data)."),
    ] = None,
    window: Annotated[int, typer.Option(help="Window length W in bases.")] = BuildConfig.window,
    sources: Annotated[
        str, typer.Option(help="Comma-separated variant sources to keep.")
    ] = ",".join(BuildConfig.sources),
    max_per_gene_source: Annotated[
        int, typer.Option(help="Cap of rows per (gene, source) for --cap-sources; 0 = no cap.")
    ] = BuildConfig.max_per_gene_source,
    cap_sources: Annotated[str, typer.Option(help="Comma-separated sources the cap applies to.")] = (
        ",".join(BuildConfig.capped_sources)
    ),
    edge: Annotated[
        str, typer.Option(help="Windows running off the sequence: 'shift' inside or 'drop'.")
    ] = BuildConfig.edge,
    max_n_fraction: Annotated[
        float, typer.Option(help="Drop windows with a larger fraction of N bases.")
    ] = BuildConfig.max_n_fraction,
    seed: Annotated[int, typer.Option(help="Seed for the cap and the splits.")] = BuildConfig.seed,
    splash: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[BUILD=]ANCHORS.tsv",
            help="SPLASH anchors TSV (`llamadna splash` output) filling the SPLASH_* columns: one "
            "for all rows, or BUILD=ANCHORS.tsv per build (repeatable).",
        ),
    ] = None,
) -> None:
    """Build the annotation dataset (one row per variant in a gene) from a data bundle."""
    from llamadna.data.build import build_dataset
    from llamadna.data.paths import default_data_dir
    from llamadna.io.dataset import check_output_dir, write_dataset

    with _errors():
        check_output_dir(out)  # before the work, not after it
        data_dir = data if data is not None else default_data_dir()
        opts = _config(build_dataset_cmd, locals())
        with _out_dir(out, {"the data directory": data_dir,
                            "a SPLASH anchors table": _anchor_paths(splash)}):
            with _progress() as step:
                df, summary = build_dataset(data_dir, opts, progress=step,
                                            splash_anchors=splash or None)
            pq, js = write_dataset(df, summary, out)
    _print_summary(summary)
    if splash:
        console.print(f"SPLASH scores: {summary['splash_rows_scored']} rows scored, "
                      f"{summary['splash_missing_rows']} without a tested anchor")
    console.print(f"wrote [bold]{pq}[/] ({summary['rows']} rows) and [bold]{js}[/]")


def _print_summary(s: dict) -> None:
    _print_table(f"dataset: {s['rows']} rows, {s['genes']} genes", ("build", "chrom", "rows"),
                 [(b, c, str(n)) for b, chroms in s["rows_per_chrom"].items() for c, n in chroms.items()],
                 right=("rows",))
    splits = list(s["rows_per_split"])

    def cell(sp: str, src: str) -> str:  # train / val / test rows of a source in a split
        d = s["rows_per_split_source"][sp]
        return " / ".join(str(d.get(k, {}).get(src, 0)) for k in ("train", "val", "test"))

    _print_table("rows per source and split", ("source", *splits),
                 [(src, *[cell(sp, src) for sp in splits]) for src in s["rows_per_source"]])
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


def _source_overrides(items: list[str] | None) -> dict[str, str]:
    from llamadna.data.fetch import parse_source_overrides

    return parse_source_overrides(items or [])


@app.command("fetch-data")
@_configures(FetchConfig, cli=("out",), convert={
    "chromosomes": _csv, "source": ("sources", _source_overrides), "no_verify": ("verify", operator.not_)})
def fetch_data_cmd(
    out: Annotated[
        Path, typer.Option(help="Output directory (bundle files; raw downloads in OUT/.download).")
    ],
    chromosomes: Annotated[
        str, typer.Option(help="Comma-separated chromosomes for regions.fa, GTF and variants.")
    ] = ",".join(FetchConfig.chromosomes),
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
    from llamadna.data.fetch import fetch_data

    with _errors():
        opts = _config(fetch_data_cmd, locals())
        with _out_dir(out), _byte_progress() as step:
            summary = fetch_data(out, opts, step=step)
    _print_table(f"fetch-data: {', '.join(summary['chromosomes'])}", ("file", "contents"),
                 [(name, json.dumps(next(iter(info.values())))) for name, info in summary["outputs"].items()])
    new = sum(d["downloaded_now"] for d in summary["downloads"])
    console.print(f"wrote the bundle to [bold]{escape(str(out))}[/] ({new} of "
                  f"{len(summary['downloads'])} files downloaded now; OMIM, COSMIC and dbSNP "
                  "are not fetched)")


@app.command("simulate-samples")
@_configures(SimulateConfig, cli=("out", "data"))
def simulate_samples_cmd(
    out: Annotated[Path, typer.Option(help="Output directory (one folder of samples per build).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Data bundle directory (default: $LLAMADNA_DATA, else ../shared/data)."),
    ] = None,
    n_samples: Annotated[int, typer.Option(help="Samples; group A = first half, B = the rest.")] = (
        SimulateConfig.n_samples),
    depth: Annotated[float, typer.Option(help="Mean read depth per sample.")] = SimulateConfig.depth,
    read_len: Annotated[int, typer.Option(help="Read length in bases.")] = SimulateConfig.read_len,
    error_rate: Annotated[float, typer.Option(help="Per-base substitution error rate.")] = (
        SimulateConfig.error_rate),
    seed: Annotated[int, typer.Option(help="Seed for genotypes, drawn alleles and reads.")] = (
        SimulateConfig.seed),
    default_af: Annotated[
        float, typer.Option(help="ALT frequency of germline records without a maf.")
    ] = SimulateConfig.default_af,
    threads: Annotated[int, typer.Option(help="Parallel FASTQ writers; 0 = one per CPU.")] = (
        SimulateConfig.threads),
) -> None:
    """Write SIMULATED FASTQ samples (not real data) for SPLASH: the bundle's reference regions
    with its real variants applied (germline at their frequencies, COSMIC/ClinVar/HGMD in group A)."""
    from llamadna.data.paths import default_data_dir
    from llamadna.data.simulate import simulate_samples

    with _errors():
        data_dir = data if data is not None else default_data_dir()
        opts = _config(simulate_samples_cmd, locals())
        with _out_dir(out, {"the data directory": data_dir}), _progress() as step:
            summary = simulate_samples(data_dir, out, opts, progress=step)
    _print_table(f"simulated samples (SIMULATED, not real data) in {summary['seconds']} s",
                 ("build", "sample", "group", "reads", "depth", "germline", "events"),
                 [(b, s, st["group"], str(st["reads"]), f"{st['depth']:.1f}",
                   str(info["applied_per_sample"][s].get("germline", 0)),
                   str(info["applied_per_sample"][s].get("event", 0)))
                  for b, info in summary["builds"].items() for s, st in info["samples"].items()])
    console.print(f"wrote [bold]{escape(str(out))}[/] (samples.tsv, truth.tsv, README.txt per build)")


def _gap(value: str) -> int | str:
    """--gap: a number of bases or 'auto'."""
    if value != "auto" and not value.isdigit():
        raise ConfigError(f"--gap {value!r}: expected a number >= 0 or 'auto'")
    return "auto" if value == "auto" else int(value)


@app.command("splash")
@_configures(SplashConfig, cli=("out", "sample", "samples"), convert={"gap": _gap},
             nested={"filters": FilterConfig})
def splash_cmd(
    out: Annotated[Path, typer.Option(help="Anchors TSV (a .summary.json is written beside it).")],
    sample: Annotated[
        list[str] | None,
        typer.Option("--sample", metavar="NAME=PATH[,PATH]",
                     help="A sample (repeatable); comma-join paired files (R1,R2)."),
    ] = None,
    samples: Annotated[
        Path | None, typer.Option(help="Sample sheet TSV with columns sample, path.")
    ] = None,
    anchor_len: Annotated[int, typer.Option(help="Anchor length a (<= 32).")] = SplashConfig.anchor_len,
    target_len: Annotated[int, typer.Option(help="Target length t (<= 32).")] = SplashConfig.target_len,
    gap: Annotated[
        str, typer.Option(help="Bases between anchor and target, or 'auto' = (L - a - t) // 2.")
    ] = str(SplashConfig.gap),
    splits: Annotated[int, typer.Option(help="Train/test splits (p = min over splits x splits).")] = (
        SplashConfig.splits),
    seed: Annotated[int, typer.Option(help="Seed of the splits and random starts.")] = SplashConfig.seed,
    threads: Annotated[int, typer.Option(help="Samples counted in parallel.")] = SplashConfig.threads,
    min_sample_count: Annotated[
        int, typer.Option(help="Drop an anchor's counts in a sample when they total <= this.")
    ] = FilterConfig.min_sample_count,
    min_anchor_count: Annotated[
        int, typer.Option(help="Drop anchors whose total count M is <= this.")
    ] = FilterConfig.min_anchor_count,
    min_targets: Annotated[
        int, typer.Option(help="Drop anchors with fewer distinct targets.")
    ] = FilterConfig.min_targets,
    min_samples: Annotated[int, typer.Option(help="Drop anchors seen in fewer samples.")] = (
        FilterConfig.min_samples),
    max_run: Annotated[
        int, typer.Option(help="Drop anchors with a single-base run of >= this; 0 = off.")
    ] = FilterConfig.max_run,
    max_memory_gb: Annotated[
        float, typer.Option(help="Budget for the distinct (anchor, target) count tables.")
    ] = SplashConfig.max_memory_gb,
) -> None:
    """Run SPLASH (reference-free, sample-specific target usage after anchors) on read files.

    Reads FASTQ/FASTA (plain or gzip) or BAM (reads as sequenced); writes one row per anchor
    that passes the filters, sorted by pval_opt.
    """
    from llamadna.splash.run import load_samples, run_splash, summary_path, write_results

    with _errors():
        sample_list = load_samples(sample, samples)
        cfg = _config(splash_cmd, locals())
        for path in (out, summary_path(out)):
            _out_file(path, {"a read file": [p for s in sample_list for p in s.paths],
                             "the sample sheet": samples})
        with _progress() as step:
            df, summary = run_splash(sample_list, cfg, progress=step)
        tsv, js = write_results(df, summary, out)
    f = summary["filters"]
    _print_table(f"SPLASH: {f['anchors_tested']} of {f['anchors_counted']} anchors tested",
                 ("filter", "anchors removed"), [(name, str(n)) for name, n in f["removed"].items()],
                 right=("anchors removed",))
    console.print(f"{summary['anchors_q_below_0.05']} anchors with pval_opt_corrected < 0.05")
    console.print(f"wrote [bold]{escape(str(tsv))}[/] and [bold]{escape(str(js))}[/]")


@app.command("splash-scores")
def splash_scores_cmd(
    dataset_dir: Annotated[Path, typer.Argument(help="build-dataset output (dataset.parquet).")],
    anchors: Annotated[
        list[str],
        typer.Argument(
            metavar="[BUILD=]ANCHORS.tsv...",
            help="Anchors TSV written by `llamadna splash`, for all rows; or BUILD=ANCHORS.tsv "
            "per build (GRCh38=a.tsv GRCh37=b.tsv) so that builds are never mixed.",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Write dataset.parquet/summary.json here (default: in place).")
    ] = None,
) -> None:
    """Fill the dataset's SPLASH_pval / SPLASH_Effect / SPLASH_entropy from an anchors table.

    Per row: the tested anchor (either strand) with the smallest pval_opt, Bonferroni-corrected
    over the n_a anchors found; rows without a tested anchor stay null and are counted.
    """
    from llamadna.splash.scores import score_dataset_dir

    with _errors():
        # in place (no --out) the dataset directory is rewritten as documented
        with _out_dir(out, {"a SPLASH anchors table": _anchor_paths(anchors)}) if out else nullcontext():
            pq, js, summary = score_dataset_dir(dataset_dir, anchors, out)
    for scope, st in summary["splash_runs"].items():
        console.print(f"SPLASH scores ({scope}): {st['rows_scored']} of {st['rows']} rows scored "
                      f"({st['anchors']} anchors, k={st['k']})")
    console.print(f"{summary['splash_rows_scored']} rows scored in all, "
                  f"{summary['splash_missing_rows']} without a tested anchor")
    console.print(f"wrote [bold]{escape(str(pq))}[/] and [bold]{escape(str(js))}[/]")


@app.command("train")
@_configures(TrainConfig, cli=("resume",))
def train_cmd(
    dataset: Annotated[Path, typer.Option(help="build-dataset output directory (or its parquet).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    split: Annotated[str, typer.Option(help="split_gene (leak-free default), split_chrom, split_random.")] = (
        TrainConfig.split),
    preset: Annotated[str, typer.Option(help="tiny (offline) or full (local DNABERT-2 + Llama-2).")] = (
        TrainConfig.preset),
    encoder: Annotated[
        Path | None,
        typer.Option(help="tiny: `pretrain-encoder` output; full: local DNABERT-2 directory."),
    ] = None,
    llm: Annotated[Path | None, typer.Option(help="full: local Llama-2-7b-hf directory.")] = None,
    prompt_mode: Annotated[
        str, typer.Option(help="leak-free (sequence + SPLASH) or seed-faithful (adds gene metadata).")
    ] = TrainConfig.prompt_mode,
    use_dna: Annotated[
        bool, typer.Option("--dna/--no-dna", help="--no-dna: the baseline trained on the prompt only.")
    ] = TrainConfig.use_dna,
    use_splash: Annotated[
        bool, typer.Option("--splash/--no-splash", help="--no-splash: the SPLASH text left out of the "
                           "prompt (an ablation).")] = TrainConfig.use_splash,
    index: Annotated[Path | None, typer.Option(
        help="Reference index (`llamadna index`): the prompt holds the candidates a search of it "
             "finds (reference evidence), genes held out of the split masked out while training. "
             "Without it: no retrieval (the seed's architecture).")] = None,
    evidence_k: Annotated[int, typer.Option(help="Candidates in the prompt.")] = TrainConfig.evidence_k,
    evidence_max_rate: Annotated[float, typer.Option(
        help="Training queries diverged at a rate drawn in [0, this].")] = TrainConfig.evidence_max_rate,
    evidence_swap: Annotated[float, typer.Option(
        help="Probability that a row kept in its candidates has its gene renamed in evidence and "
             "target (copying).")] = (
        TrainConfig.evidence_swap),
    evidence_drop: Annotated[float, typer.Option(
        help="Probability that a row's gene is removed from its candidates (the target then says "
             "what the evidence shows: a repeat, a partial similarity or no match).")] = (
        TrainConfig.evidence_drop),
    evidence_pseudo: Annotated[float, typer.Option(
        help="Probability that a renamed gene's name, description and phenotype are made unseen "
             "text of a real one's shape (copying any text, not only known words).")] = (
        TrainConfig.evidence_pseudo),
    evidence_truncate: Annotated[float, typer.Option(
        help="Probability that only the first n candidates are kept (n in [1, k - 1]), as a query "
             "in a gene-poor region gets.")] = TrainConfig.evidence_truncate,
    evidence_names: Annotated[str, typer.Option(
        help="Genes whose text training uses (renamed fields, tokenizer, LLM pretraining): index "
             "(every gene of the training index) or training (the training rows' genes only).")] = (
        TrainConfig.evidence_names),
    negative_rate: Annotated[float, typer.Option(
        help="With --index: share of training examples replaced by a sequence of no gene (random, "
             "shuffled, foreign, intergenic, similar, repeat; from the training part of the "
             "reference), whose target says what the evidence shows.")] = TrainConfig.negative_rate,
    decision_weight: Annotated[float, typer.Option(
        help="How many times the target tokens of the words that decide a sentence's outcome (gene, "
             "intergenic, repeat, similar, none) count in the LM loss.")] = TrainConfig.decision_weight,
    llm_training: Annotated[str | None, typer.Option(
        help="lora or full (default: full for tiny, whose LLM is ours; lora for full).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs.")] = TrainConfig.epochs,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows per batch (per process).")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (LLM, projector, head).")] = TrainConfig.lr,
    seed: Annotated[int, typer.Option(help="Seed (model init, batch order, dropout).")] = TrainConfig.seed,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0 = epoch ends).")] = (
        TrainConfig.checkpoint_every),
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without val improvement.")] = (
        TrainConfig.patience),
    max_train_rows: Annotated[int | None, typer.Option(help="Seeded subsample of the train rows.")] = None,
    encoder_training: Annotated[str, typer.Option(help="frozen, full or lora.")] = (
        TrainConfig.encoder_training),
    projector_type: Annotated[str, typer.Option("--projector", help="mlp2x_gelu or linear.")] = (
        TrainConfig.projector_type),
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = TrainConfig.lora_r,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = TrainConfig.lora_alpha,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = TrainConfig.lora_dropout,
    llm_pretrain_steps: Annotated[
        int, typer.Option(help="tiny: steps of the small LLM's own text pretraining.")] = (
        TrainConfig.llm_pretrain_steps),
    bf16: Annotated[bool, typer.Option(help="full: bf16 mixed precision.")] = TrainConfig.bf16,
    gradient_checkpointing: Annotated[bool, typer.Option(help="full: gradient checkpointing.")] = (
        TrainConfig.gradient_checkpointing),
    load_in_8bit: Annotated[
        bool, typer.Option(help="full: load the LLM in 8 bits (bitsandbytes; GPU or CPU).")] = (
        TrainConfig.load_in_8bit),
    load_in_4bit: Annotated[
        bool, typer.Option(help="full: load the LLM in 4 bits, NF4 (QLoRA; bitsandbytes).")] = (
        TrainConfig.load_in_4bit),
    fsdp: Annotated[bool, typer.Option(
        help="Shard the model over the launched processes (FSDP2, one unit per LLM layer) instead "
             "of replicating it (DDP).")] = TrainConfig.fsdp,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in OUT.")] = False,
) -> None:
    """Fine-tune the model (encoder -> projector -> LLM, in full or with LoRA, + source head) on a split.

    Runs on accelerate: `accelerate launch --multi_gpu --num_processes N -m llamadna.cli train ...`
    trains data-parallel on N GPUs (--batch-size is per process); add --fsdp to shard the model
    across them instead of copying it to each.
    """
    from llamadna.train.train import train

    with _errors():
        cfg = _config(train_cmd, locals())
        with _out_dir(out, {"the dataset": dataset, "the encoder directory": encoder,
                            "the LLM directory": llm, "the index directory": index}):
            if int(os.environ.get("RANK", "0")) > 0:  # data parallel: the main process reports
                train(cfg, resume=resume)
                return
            with _progress() as step:
                summary = train(cfg, resume=resume, progress=step)
            if cfg.index is not None:  # train() calibrated the retrieval model
                from llamadna.model.calibration import OutcomeCalibration

                cal = OutcomeCalibration.load(cfg.out)
                if cal is not None:  # right / rows per truth kind in the summary
                    _print_calibration(cal, summary.get("calibration") or {})
    cols = ("val_loss", "val_lm_loss", "val_cls_loss", "val_cls_accuracy")
    _print_table(f"trained {summary['steps']} steps in {summary['seconds']} s", ("epoch", *cols),
                 [(str(ev["epoch"]), *[f"{ev[c]:.4f}" for c in cols]) for ev in summary["val"]])
    console.print(f"{summary['trainable_parameters']:,} of {summary['total_parameters']:,} parameters "
                  f"trained; wrote [bold]{escape(str(out))}[/]")


def _print_calibration(cal, per_truth: dict) -> None:
    """What an outcome calibration was fitted on: annotations, right ones, and per truth kind."""
    console.print(f"outcome confidence calibrated on {cal.rows} validation annotations "
                  f"({cal.right} with the right outcome)")
    if per_truth:
        console.print("  per truth: " + ", ".join(f"{k} {c['right']}/{c['rows']}"
                                                  for k, c in per_truth.items()))


@app.command("calibrate")
def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="A retrieval model directory (`llamadna train --index`).")],
    dataset: Annotated[Path | None, typer.Option(
        help="The dataset it was trained on, where it is not at the path train_config.json records.")] = None,
    index: Annotated[Path | None, typer.Option(
        help="Its reference index, where it is not at the path train_config.json records.")] = None,
    rows: Annotated[int | None, typer.Option(
        help="Validation rows to annotate (default: the model's calibration_rows), and as many "
             "negatives of each kind.")] = None,
) -> None:
    """Refit a trained retrieval model's outcome confidence (MODEL/calibration.json), as `train`
    does at its end: on its split's validation rows, diverged and with their genes masked, and on
    negatives of the validation part of the reference. For a model calibrated by an older version
    (about a minute; the model itself is unchanged)."""
    from dataclasses import replace

    from llamadna.train.cache import saved_config
    from llamadna.train.calibrate import fit_calibration

    with _errors():
        cfg_path = model / "train_config.json"
        if not cfg_path.is_file():
            raise InputError(model, "no train_config.json: expected a model directory written by "
                             "`llamadna train`")
        cfg = TrainConfig(**saved_config(cfg_path))
        if cfg.index is None:
            raise InputError(model, "trained without --index: only a retrieval model has an outcome "
                             "confidence to calibrate")
        if rows is not None and rows < 1:
            raise ConfigError(f"--rows must be >= 1, got {rows}")
        moved = {"dataset": dataset, "index": index}
        cfg = replace(cfg, **{k: str(v) for k, v in moved.items() if v is not None})
        for option, path in (("dataset", cfg.dataset), ("index", cfg.index)):
            if not Path(path).exists():
                raise InputError(path, f"the model's {option} is not there: give its place with --{option}")
        with console.status("annotating validation rows and negatives"):
            fitted = fit_calibration(model, cfg, rows)
        if fitted is None:
            raise InputError(cfg.dataset, f"no validation rows in {cfg.split}: nothing to calibrate on")
    _print_calibration(*fitted)
    console.print(f"wrote [bold]{escape(str(model / 'calibration.json'))}[/]")


@contextmanager
def _record_progress(unit: str = "records") -> Iterator:
    """One progress bar counting `unit` (records; tiles for `annotate`), with its rate per second
    and the projected time left (a `progress.Progress` callback). Under `accelerate launch` the
    main process shows the whole run's; the others show nothing."""
    from rich.progress import MofNCompleteColumn, ProgressColumn

    from llamadna.progress import no_progress

    if _rank() > 0:
        yield no_progress
        return

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f} {unit}/s" if task.speed else f"- {unit}/s")

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
        transient=False,
    ) as prog:
        task = prog.add_task("", total=None)

        def step(desc: str, done: int, total: int | None) -> None:
            prog.update(task, description=desc, completed=done, total=total)

        yield step


def _rank() -> int:
    """This process's rank under `accelerate launch` / torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def _print_parts(summary: dict, unit: str) -> None:
    """A sharded run's per-process counts and the parts it reused (annotate, predict, benchmark)."""
    for rank, r in summary["per_rank"].items():
        rate = f" ({r['rows'] / r['seconds']:.2f} {unit}/s)" if r["seconds"] else ""
        console.print(f"  process {rank}: {r['parts']} parts, {r['rows']} {unit} in {r['seconds']} s{rate}")
    console.print(f"{summary['parts_reused']} parts reused, {summary['parts_computed']} computed "
                  f"(of {summary['parts']})")


def _loader(model: Path, index: Path | None = None, encoder: Path | None = None, **kw):
    """How each process loads the model (annotate.distributed.ModelLoader): on its own device,
    a retrieval model's index once per machine."""
    from llamadna.annotate.distributed import ModelLoader

    return ModelLoader(model, index=index, encoder=encoder, **kw)


ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Finish the interrupted run whose parts OUT.parts/ holds (same model, input and "
    "options): only the parts not done are computed.")]
AlignThreadsOption = Annotated[int | None, typer.Option(
    "--threads", help="Retrieval models: minimap2's threads in the process that searches (one per "
    "machine under `accelerate launch`). Default: the CPUs, shared out between forked ranks "
    "(--processes, or a launcher's on CPUs).", show_default=False)]
WithholdOption = Annotated[float, typer.Option(
    help="Calibrated retrieval models: a gene answer whose gene confidence is under this is "
    "withheld where the reference evidence's own rule claims no gene (a repeat of which the named "
    "gene holds a whole copy keeps its gene); the annotation then says what the evidence shows "
    "(similar, repeat, intergenic, no match). 0: every gene answer stands (docs/RESULTS.md).")]
ProcessesOption = Annotated[int, typer.Option(
    "--processes", help="CPU processes on this machine (Linux), without a launcher: > 1 forks the others "
    "from this one once the model and index are loaded (shared, not copied), each running the CPUs / N "
    "threads (torch; minimap2 unless --threads); the same answers as one process.")]
PartSizeOption = Annotated[int | None, typer.Option(
    help="Rows per part (rounded up to a multiple of --batch-size): the unit each process takes, "
    f"writes and --resume skips when done. Default: the rows / {MIN_PARTS}, at most "
    f"{DEFAULT_PART_ROWS}.", show_default=False)]


# model loading options shared by `annotate`, `predict` and `evaluate`
DtypeOption = Annotated[str | None, typer.Option(
    help="float32 (default), bfloat16 or float16: the model's weights and compute.")]
CompileOption = Annotated[bool, typer.Option(
    "--compile", help="Static KV cache + torch.compile, for long runs on a GPU.")]
LlmOption = Annotated[Path | None, typer.Option(
    help="full preset: the local Llama-2 directory, when it is no longer where training found it.")]
EncoderOption = Annotated[Path | None, typer.Option(
    help="The local DNA encoder directory, when it is no longer where it was recorded: a full-preset "
         "model's DNABERT-2, and a retrieval model's index's encoder (`llamadna index --encoder`).")]
IndexOption = Annotated[Path | None, typer.Option(
    help="Retrieval models: the reference index to search (`llamadna index`; e.g. your own "
         "reference); default: the index the model was trained with.")]
BatchSizeOption = Annotated[int, typer.Option(help="Sequences per batch.")]
MaxNewTokensOption = Annotated[int, typer.Option(help="Most tokens generated per sequence.")]
DecodingOption = Annotated[str, typer.Option(
    help=f"Retrieval models: {', '.join(DECODINGS)}. greedy writes the greedy sentence; rerank "
         "keeps it or the top reference candidate's own sentence, whichever the model scores "
         "higher (mean log-probability per token); grounded writes the fields of the candidate "
         "whose gene the greedy sentence names, else of the candidate the model scores highest.")]


@app.command("annotate")
def annotate_cmd(
    seqs: Annotated[Path, typer.Argument(metavar="SEQS.fa",
                                         help="FASTA of the sequences to annotate (plain or gzip).")],
    model: Annotated[Path, typer.Option(help="Trained model directory (`llamadna train` output).")],
    out: Annotated[Path, typer.Option(help="Predictions: .tsv, .jsonl or .gff3 (by suffix).")],
    splash: Annotated[
        Path | None,
        typer.Option(metavar="ANCHORS.tsv",
                     help="SPLASH anchors TSV (`llamadna splash` output) giving each sequence its "
                     "SPLASH scores; without it the prompt says they are not available."),
    ] = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    decoding: DecodingOption = DEFAULT_DECODING,
    withhold_below: WithholdOption = WITHHOLD_BELOW or 0.0,
    dtype: DtypeOption = None,
    compile: CompileOption = False,
    llm: LlmOption = None,
    encoder: EncoderOption = None,
    tile: Annotated[int, typer.Option(
        help="Records longer than this many bases are annotated tile by tile (one row per tile, "
             "with its start and end on the record).")] = DEFAULT_TILE,
    index: IndexOption = None,
    resume: ResumeOption = False,
    part_size: PartSizeOption = None,
    threads: AlignThreadsOption = None,
    processes: ProcessesOption = DEFAULT_PROCESSES,
) -> None:
    """Annotate unknown DNA sequences: a generated sentence (greedy; a retrieval model writes the
    fields of the reference candidate it names, --decoding), its fields, the source
    database from the class head and a confidence (mean log-probability of the sentence's tokens).
    A retrieval model also reports the reference evidence it read (top candidate, its score, the
    retriever that found it) and a calibrated gene confidence.
    U (RNA) is read as T and IUPAC ambiguity codes as N; both are counted in the summary.
    Under `accelerate launch` every process annotates parts of the FASTA and the main one writes
    the output, the same bytes as one process.
    """
    if idle_process():  # a fork of local rank 0 does this process's share (annotate.distributed)
        return
    from llamadna.annotate import annotate_fasta
    from llamadna.io.predictions import OUTPUT_FORMATS

    with _errors():
        check_processes(processes)
        _out_file(out, {"the input FASTA": seqs, **_model_inputs(model, index, encoder, llm),
                        "the SPLASH anchors table": splash}, formats=OUTPUT_FORMATS)
        with _record_progress("tiles") as step:
            summary = annotate_fasta(
                _loader(model, index, encoder, dtype=dtype, compile=compile, llm=llm, threads=threads,
                        withhold_below=withhold_below),
                seqs, out, splash=splash, batch_size=batch_size, max_new_tokens=max_new_tokens,
                progress=step, tile=tile, decoding=decoding, resume=resume, part_size=part_size,
                processes=processes)
    if summary is None:  # not the main process: it wrote nothing
        return
    if summary["splash_scored"] is not None:
        console.print(f"SPLASH scores: {summary['splash_scored']} of {summary['tiles']} "
                      "tiles hold a tested anchor")
    for key, what in (("u_to_t", "RNA bases U read as T"),
                      ("iupac_to_n", "IUPAC ambiguity codes read as N"),
                      ("all_n_tiles", "tiles without any A/C/G/T base (all N) not annotated: empty "
                       "fields, the reason in the `skipped` column")):
        if summary[key]:
            console.print(f"{summary[key]} {what}")
    tiled = (f" ({summary['tiles']} tiles of <= {tile} bases)"
             if summary["tiles"] != summary["records"] else "")
    _print_parts(summary, "tiles")
    console.print(f"annotated {summary['records']} records{tiled} in {summary['seconds']} s "
                  f"({summary['tiles_per_s']} tiles/s); wrote [bold]{escape(str(out))}[/]")


@app.command("pretrain-encoder")
@_configures(PretrainConfig, cli=("out", "data", "init"))
def pretrain_encoder_cmd(
    out: Annotated[
        Path, typer.Option(help="Encoder directory (BertModel + DNA tokenizer + pretrain_config.json).")
    ],
    data: Annotated[
        Path | None,
        typer.Option(help="Data bundle directory (default: $LLAMADNA_DATA, else ../shared/data)."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Masked-LM training steps.")] = PretrainConfig.steps,
    vocab_size: Annotated[int, typer.Option(help="DNA BPE vocabulary size.")] = PretrainConfig.vocab_size,
    hidden_size: Annotated[
        int, typer.Option(help="BERT hidden size (4 heads; feed-forward 4 x hidden).")
    ] = PretrainConfig.hidden_size,
    num_hidden_layers: Annotated[int, typer.Option("--layers", help="BERT layers.")] = (
        PretrainConfig.num_hidden_layers),
    window: Annotated[int, typer.Option(help="Bases per training window.")] = PretrainConfig.window,
    batch_size: Annotated[int, typer.Option(help="Windows per step.")] = PretrainConfig.batch_size,
    lr: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = PretrainConfig.lr,
    seed: Annotated[int, typer.Option(help="Seed for the model, batches and masking.")] = (
        PretrainConfig.seed),
    contrastive_steps: Annotated[int, typer.Option(
        help="Contrastive steps after masked-LM (a window and its mutated copy are positives; "
             "mutation-robust embeddings for retrieval). 0 = none.")] = PretrainConfig.contrastive_steps,
    contrastive_batch: Annotated[int, typer.Option(help="Windows per contrastive step.")] = (
        PretrainConfig.contrastive_batch),
    contrastive_max_rate: Annotated[float, typer.Option(
        help="Highest divergence of a positive (substitutions + indels).")] = (
        PretrainConfig.contrastive_max_rate),
    init: Annotated[Path | None, typer.Option(
        help="An encoder directory written here: keep its tokenizer and masked-LM training and "
             "run only the contrastive stage on it.")] = None,
) -> None:
    """Train the DNA tokenizer (BPE) and a small BERT (masked-LM) on the bundle's reference, then
    optionally a contrastive stage (--contrastive-steps).

    Uses every reference FASTA (both builds), cut into windows; the output directory loads with
    AutoModel/AutoTokenizer.from_pretrained and is the DNA encoder of the tiny preset.
    """
    from llamadna.data.paths import default_data_dir
    from llamadna.train.pretrain_encoder import pretrain_encoder

    with _errors():
        data_dir = data if data is not None else default_data_dir()
        cfg = _config(pretrain_encoder_cmd, locals(), intermediate_size=4 * hidden_size)
        with _out_dir(out, {"the data directory": data_dir, "the --init encoder": init},
                      beside=True), _progress() as step:
            s = pretrain_encoder(data_dir, out, cfg, progress=step, init=init)
    console.print(f"masked-LM loss {s['initial_loss']:.3f} -> {s['final_loss']:.3f} in {s['steps']} "
                  f"steps (context-free baseline {s['unigram_loss']:.3f}) on {s['windows']} windows "
                  f"({s['tokens_per_window']:.1f} tokens per window, vocabulary "
                  f"{s['vocab_size']}){' (kept from ' + escape(str(init)) + ')' if init else ''}")
    if s.get("contrastive_steps"):
        console.print(f"contrastive loss {s['contrastive_initial_loss']:.3f} -> "
                      f"{s['contrastive_final_loss']:.3f} in {s['contrastive_steps']} steps (chance "
                      f"{s['contrastive_chance_loss']:.3f}), {s['contrastive_seconds']:.1f} s")
    console.print(f"{s['seconds']:.1f} s in all")
    console.print(f"wrote [bold]{escape(str(out))}[/]")


def _gene_list(path: Path | None) -> tuple[str, ...]:
    from llamadna.io.genes import read_gene_list

    return read_gene_list(path) if path else ()


def _loci_tier(on: bool) -> dict | None:
    """--loci-tier: the loci tier's minimap2 settings (constants.MINIMAP2_LOCI), else None."""
    return dict(MINIMAP2_LOCI) if on else None


@app.command("index")
@_configures(IndexConfig, convert={"exclude_genes": _gene_list, "loci_tier": ("minimap2_loci", _loci_tier)})
def index_cmd(
    encoder: Annotated[Path, typer.Option(
        help="DNA encoder directory (`pretrain-encoder` output, or DNABERT-2).")],
    out: Annotated[Path, typer.Option(help="Index directory to write.")],
    data: Annotated[Path | None, typer.Option(
        help="Data bundle directory (default: $LLAMADNA_DATA, else ../shared/data).")] = None,
    window: Annotated[int, typer.Option(help="Bases per index window.")] = IndexConfig.window,
    stride: Annotated[int, typer.Option(help="Bases between window starts.")] = IndexConfig.stride,
    tile: Annotated[str, typer.Option(
        help=f"What is tiled: {' or '.join(INDEX_TILES)} (all = every record of the reference whole, "
             "windows outside genes included; genes = each gene +- --flank).")] = IndexConfig.tile,
    flank: Annotated[int, typer.Option(help="Bases around each gene tiled too (--tile genes).")] = (
        IndexConfig.flank),
    dataset: Annotated[Path | None, typer.Option(
        help="build-dataset output: the windows carry the known variants of its --split TRAINING "
             "rows (never validation or test rows).")] = None,
    split: Annotated[str, typer.Option(help="Split whose training rows give the variants.")] = (
        IndexConfig.split),
    exclude_genes: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Gene names or ids (one per line) left out of the index, e.g. a fold's "
        "held-out genes for a novel-gene test.")] = None,
    faiss: Annotated[str, typer.Option(
        help=f"FAISS index: {' or '.join(FAISS_KINDS)} (IVF-PQ for large references).")] = IndexConfig.faiss,
    nlist: Annotated[int | None, typer.Option(help="IVF lists (ivfpq; default 4 x sqrt(windows)).")] = None,
    pq_m: Annotated[int, typer.Option(help="PQ sub-quantizers (ivfpq).")] = IndexConfig.pq_m,
    whiten: Annotated[bool, typer.Option(
        help="PCA-whiten the embeddings in the FAISS index (fitted on the windows, stored with it; "
             "skipped with a warning under 2 windows per dimension).")] = IndexConfig.whiten,
    scale_k: Annotated[bool, typer.Option(
        help="Raise minimap2's k with the reference size (log4 of indexed bases over the 3.1 Mb "
             "the settings were tuned on), so a large reference does not flood chaining.")] = (
        IndexConfig.scale_k),
    deep: Annotated[bool, typer.Option(
        help="On a reference large enough for --scale-k to raise k, a third minimap2 tier (every "
             "k-mer, k one less) for the queries the first two map poorly.")] = IndexConfig.deep,
    loci_tier: Annotated[bool, typer.Option(
        help="A fourth minimap2 index (minimap2's default k and w, every chain kept) that counts "
             "each query's loci, so a repeat's copies a few percent diverged are counted (README: "
             "a model trained with it answered fewer repeats; off by default).")] = False,
) -> None:
    """Build a reference index: the reference of each build tiled whole (or, --tile genes, over
    every annotated gene, flanks included), each window with the dataset builder's fields at its
    centre (none outside genes) and the training variants inside it; a minimap2 index and a
    FAISS index of the encoder's embeddings.
    Embedding runs data-parallel under `accelerate launch --num_processes N` (one share a GPU).
    """
    from llamadna.retrieve.index import ReferenceIndex

    with _errors():
        cfg = _config(index_cmd, locals())
        with _out_dir(out, {"the encoder directory": encoder, "the data directory": data,
                            "the dataset": dataset, "the gene list": exclude_genes}), \
                _progress() as step:
            index = ReferenceIndex.build(cfg, progress=step)
    if index is None:  # a data-parallel process other than the main one
        return
    m = index.meta
    console.print(f"{m['windows']:,} windows of {cfg.window} bases over {m['genes']:,} genes "
                  f"({', '.join(m['builds'])}; {m['segment_bases']:,} bases aligned-indexed), "
                  f"variants: {m['variants']}; {m['seconds']} s")
    e = m["embedding"]
    shares = ", ".join(f"{n:,}" for n in e["windows_per_process"])
    console.print(f"embedded by {e['processes']} process(es) ({shares} windows) in {e['seconds']} s "
                  f"({e['windows_per_s']} windows/s)")
    console.print(f"wrote [bold]{escape(str(out))}[/]")


@app.command("search")
def search_cmd(
    seqs: Annotated[Path, typer.Argument(metavar="SEQS.fa", help="FASTA of the query sequences.")],
    index: Annotated[Path, typer.Option(help="Index directory (`llamadna index` output).")],
    out: Annotated[Path, typer.Option(help="Candidates: .tsv or .jsonl (by suffix).")],
    k: Annotated[int, typer.Option(help="Candidates per query.")] = DEFAULT_K,
    mode: Annotated[str, typer.Option(
        help="hybrid, align (minimap2 only) or embed (FAISS only).")] = "hybrid",
    encoder: Annotated[Path | None, typer.Option(
        help="DNA encoder directory (default: the one the index was built with).")] = None,
    embed_when: Annotated[str, typer.Option(
        help="hybrid: embed every query (always) or only those that align poorly (unaligned: "
             "faster; an aligned query's list then holds aligned genes only).")] = DEFAULT_EMBED_WHEN,
) -> None:
    """The reference genes each query resembles: alignment (minimap2) and embedding (FAISS)
    candidates merged per gene, ranked, with their evidence (identity, aligned fraction, cosine,
    position, the nearest training variant's source)."""
    from llamadna.retrieve.retriever import MODES, open_retriever
    from llamadna.retrieve.search import SEARCH_FORMATS, search_fasta

    with _errors():
        _out_file(out, {"the query FASTA": seqs, "the index directory": index,
                        "the encoder directory": encoder}, formats=SEARCH_FORMATS)
        if mode not in MODES:
            raise ConfigError(f"--mode {mode!r}: expected one of {', '.join(MODES)}")
        if k < 1:
            raise ConfigError(f"--k must be >= 1, got {k}")
        if embed_when not in EMBED_WHEN:
            raise ConfigError(f"--embed-when {embed_when!r}: expected one of {', '.join(EMBED_WHEN)}")
        retriever = open_retriever(index, str(encoder) if encoder else None, k=k, mode=mode,
                                   embed_when=embed_when)
        with _record_progress() as step:
            s = search_fasta(retriever, seqs, out, progress=step)
    console.print(f"{s['queries']} queries, {s['with_candidates']} with candidates, in {s['seconds']} s "
                  f"({s['queries_per_s']} queries/s); wrote [bold]{escape(str(out))}[/]")


@app.command("predict")
def predict_cmd(
    dataset: Annotated[Path, typer.Option(help="build-dataset output directory (or its parquet).")],
    model: Annotated[Path, typer.Option(help="Model directory (`llamadna train` output).")],
    out: Annotated[Path, typer.Option(help="Predictions TSV (reference, prediction, labels).")],
    split: Annotated[str, typer.Option(help="Split column.")] = DEFAULT_SPLIT,
    subset: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    limit: Annotated[int | None, typer.Option(help="Only the first N rows of the subset.")] = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    decoding: DecodingOption = DEFAULT_DECODING,
    withhold_below: WithholdOption = WITHHOLD_BELOW or 0.0,
    show: Annotated[int, typer.Option(help="Print this many predictions next to the truth.")] = 5,
    dtype: DtypeOption = None,
    compile: CompileOption = False,
    llm: LlmOption = None,
    encoder: EncoderOption = None,
    index: IndexOption = None,
    resume: ResumeOption = False,
    part_size: PartSizeOption = None,
    threads: AlignThreadsOption = None,
    processes: ProcessesOption = DEFAULT_PROCESSES,
) -> None:
    """Annotate a dataset split's rows (their SPLASH scores included) and keep the truth beside
    each prediction, for `llamadna score` and for reading. Under `accelerate launch` every
    process predicts parts of the rows and the main one writes the table."""
    if idle_process():  # a fork of local rank 0 does this process's share (annotate.distributed)
        return
    from llamadna.evaluate.predict import predict_dataset

    with _errors():  # before the progress bar and any work
        check_processes(processes)
        _out_file(out, {"the dataset": dataset, **_model_inputs(model, index, encoder, llm)})
    with _errors(), _record_progress() as step:
        summary = predict_dataset(
            _loader(model, index, encoder, dtype=dtype, compile=compile, llm=llm, threads=threads,
                    withhold_below=withhold_below),
            dataset, out,
            split=split, subset=subset, limit=limit, batch_size=batch_size,
            max_new_tokens=max_new_tokens, progress=step, decoding=decoding, resume=resume,
            part_size=part_size, processes=processes)
    if summary is None:  # not the main process: it wrote nothing
        return
    for ex in summary["examples"][:show]:
        _print_fields(f"{ex['id']} ({ex['gene_name']})", [
            ("truth", escape(ex["reference"])), ("predicted", escape(ex["prediction"])),
            ("source", f"true {ex['label_true']}, head {ex['label_pred']} "
                       f"(p={ex['label_prob']:.2f}), text {ex['label_from_text']}")])
    _print_parts(summary, "rows")
    console.print(f"{summary['rows']} rows in {summary['seconds']} s "
                  f"({summary['records_per_s']} sequences/s); wrote [bold]{escape(str(out))}[/]")


@app.command("benchmark")
def benchmark_cmd(
    benchmark: Annotated[Path, typer.Argument(
        help="A real benchmark directory (queries.fa + truth.tsv, e.g. ../shared/benchmarks/mito).")],
    model: Annotated[Path, typer.Option(help="Model directory (`llamadna train` output).")],
    out: Annotated[Path | None, typer.Option(help="Predictions TSV, each beside its truth.")] = None,
    index: IndexOption = None,
    encoder: EncoderOption = None,
    show: Annotated[int, typer.Option(help="Print this many annotations next to their truth.")] = 6,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    decoding: DecodingOption = DEFAULT_DECODING,
    withhold_below: WithholdOption = WITHHOLD_BELOW or 0.0,
    resume: ResumeOption = False,
    part_size: PartSizeOption = None,
    threads: AlignThreadsOption = None,
    processes: ProcessesOption = DEFAULT_PROCESSES,
) -> None:
    """Annotate a real benchmark's queries and score the fields its truth holds (gene,
    transcript type, chromosome) overall and per species; print a few next to their truth.
    A test set: never train, tune or index on it. Under `accelerate launch` every process
    annotates parts of the queries; the main one scores them and writes --out."""
    if idle_process():  # a fork of local rank 0 does this process's share (annotate.distributed)
        return
    from llamadna.evaluate.benchmark import BENCHMARK_FIELDS, run_benchmark

    with _errors():  # before the progress bar and any work
        check_processes(processes)
        if out is not None:
            _out_file(out, {"the benchmark directory": benchmark, **_model_inputs(model, index, encoder)})
        elif resume:
            raise ConfigError("--resume needs --out: a benchmark run without an output keeps no parts")
    with _errors(), _record_progress("queries") as step:
        loader = _loader(model, index, encoder, threads=threads, withhold_below=withhold_below)
        done = run_benchmark(loader, benchmark, out,
                             batch_size=batch_size, max_new_tokens=max_new_tokens, decoding=decoding,
                             progress=step, resume=resume, part_size=part_size, processes=processes)
    if done is None:  # not the main process
        return
    table, score, parts = done
    _print_parts(parts, "queries")
    picks = sorted({s: i for i, s in reversed(list(enumerate(table["species"].to_list())))}.values())
    for i in picks[:show]:
        r = table.row(i, named=True)
        c = r["predicted_gene_confidence"]
        conf = "" if c is None else f" (gene confidence {c:.2f})"
        _print_fields(f"{r['id']} ({r['species']}, {r['identity_to_human']} % identical to human)", [
            ("truth", f"{r['gene']} gene, {r['transcript_type']}, {r['chrom']}"),
            ("annotation", escape(r["predicted_annotation"]) + conf)])
    scored = BENCHMARK_FIELDS
    _print_table(f"{benchmark}: {table.height} queries", ("species", "n", *scored),
                 [(name, str(v["n"]), *[f"{v[c]:.3f}" for c in scored])
                  for name, v in {"all": score["all"], **score["species"]}.items()],
                 right=("n", *scored))


def _anchor_tables(specs: list[str] | None) -> dict[str, str]:
    """`BUILD=ANCHORS.tsv` options as EvalConfig.splash: {build ("" = all rows): path}."""
    from llamadna.splash.scores import parse_anchor_specs

    return {(b or ""): str(p) for b, p in parse_anchor_specs(specs).items()} if specs else {}


@app.command("evaluate")
@_configures(EvalConfig, cli=("epochs", "max_steps"), convert={
    "split": ("splits", lambda split: tuple(SPLIT_NAMES) if split == "all" else (split,)),
    "data": "data_dir", "systems": lambda systems: _csv(systems) if systems else None,
    "splash": _anchor_tables, "divergence_rows": lambda rows: rows or None,
    "withhold_below": lambda below: below or None})
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model directory (`llamadna train` output).")],
    dataset: Annotated[Path, typer.Option(help="build-dataset output directory (or its parquet).")],
    out: Annotated[Path, typer.Option(help="Report directory (report.html, metrics.json, predictions).")],
    split: Annotated[
        str, typer.Option(help="split_gene, split_chrom, split_random, or 'all' for the three.")
    ] = DEFAULT_SPLIT,
    data: Annotated[
        Path | None,
        typer.Option(help="Data bundle for the reference lookup (default: $LLAMADNA_DATA, else "
                     "../shared/data)."),
    ] = None,
    systems: Annotated[str | None, typer.Option(
        help=f"Comma-separated systems to run (default: all: {','.join(SYSTEM_NAMES)}).")] = None,
    limit: Annotated[int | None, typer.Option(help="Seeded subsample of test rows per split.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the models trained here.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Steps of the models trained here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of subsampling, shuffling and mutations.")] = (
        EvalConfig.seed),
    batch_size: BatchSizeOption = EvalConfig.batch_size,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    decoding: DecodingOption = DEFAULT_DECODING,
    withhold_below: WithholdOption = WITHHOLD_BELOW or 0.0,
    folds: Annotated[int, typer.Option(
        help="split_gene as k-fold over genes (every gene a test gene once; 1 = the dataset's "
             "split_gene only).")] = EvalConfig.folds,
    splash: Annotated[list[str] | None, typer.Option(
        metavar="BUILD=ANCHORS.tsv",
        help="SPLASH anchors per build (`llamadna splash` output): the SPLASH scores of mutated "
             "test sequences are recomputed from them (without: null, never carried over).")] = None,
    benchmark: Annotated[Path | None, typer.Option(
        help="A real benchmark directory (queries.fa + truth.tsv, e.g. ../shared/benchmarks/mito): "
             "field accuracy per species and identity bin.")] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the intervals.")] = EvalConfig.n_boot,
    divergence_rows: Annotated[int, typer.Option(
        help="Test rows per split in the divergence curves (a seeded subsample; 0 = all).")] = (
        EvalConfig.divergence_rows),
    index: Annotated[Path | None, typer.Option(
        help="Retrieval models: the full reference index searched for the test rows (default: "
             "the model's own); each split or fold reads it with that unit's training variants "
             "only, and model_novel without the unit's test genes.")] = None,
    out_of_reference: Annotated[bool, typer.Option(
        help="The out-of-reference section: the test rows, their novel-gene setting and "
             "generated negatives (random, shuffled, foreign, intergenic, similar, repeat) of the "
             "reference's test part, against retriever and blastn baselines with thresholds tuned "
             "on validation rows.")] = EvalConfig.out_of_reference,
    negatives_per_kind: Annotated[int, typer.Option(
        help="Generated negatives per kind of the reference's test part in the out-of-reference "
             "section (the part may hold fewer intergenic or repeat windows).")] = (
        EvalConfig.negatives_per_kind),
    tuning_negatives_per_kind: Annotated[int, typer.Option(
        help="Generated negatives per kind of the reference's validation part that the baselines' "
             "thresholds are tuned on (with the validation genic rows).")] = (
        EvalConfig.tuning_negatives_per_kind),
) -> None:
    """Evaluate the model against the alternatives a user has (majority, SPLASH-only and
    SPLASH-prompt baselines, shuffled DNA, minimap2 and BLASTN reference lookups whose source comes
    from training variants only, seed-faithful) on the same rows: per-field accuracy with 95 %
    intervals, the template floor, divergence curves, a leak audit; HTML report.

    Baseline models and models for other splits or folds are trained here with the model's own
    settings and cached in OUT/models.
    """
    from llamadna.evaluate.run import evaluate
    from llamadna.train.cache import TrainedModels

    with _errors():
        cfg = _config(evaluate_cmd, locals())
        with _out_dir(out, {**_model_inputs(model, index), "the dataset": dataset,
                            "the data directory": data, "the benchmark directory": benchmark,
                            "a SPLASH anchors table": _anchor_paths(splash)}):
            models = TrainedModels(model, dataset, out, epochs=epochs, max_steps=max_steps)
            with _progress() as step:
                metrics = evaluate(cfg, models, progress=step)
    cols = ("accuracy", "f1_macro", "bleu", "rougeL", "meteor", "semantic_similarity")

    def cells(m) -> list[str]:
        return ["–" if m.get(c) is None else f"{m[c]:.3f}" for c in cols]

    for sp, res in metrics["splits"].items():
        _print_table(f"{sp}: {res['rows']} test rows", ("system", *cols),
                     [(name, *cells(m)) for name, m in res["systems"].items()]
                     + [(f"[italic]{name}[/]", *cells(m)) for name, m in metrics["reported"].items()],
                     right=cols)
    if "out_of_reference" in metrics:
        _print_out_of_reference(metrics["out_of_reference"])
    console.print(f"wrote [bold]{escape(str(out / 'report.html'))}[/] and metrics.json")


def _print_out_of_reference(section: dict) -> None:
    """`evaluate`'s short out-of-reference table: per system, outcome macro-F1 (and the floor's),
    the share of rows outside known genes claimed as a gene, the novel rows answered without one."""
    from llamadna.evaluate.out_of_reference import (
        diverged_rows,
        summary_rows,
        validation_summary,
        versus_summary,
    )

    cols = ("macro-F1", "95 % interval", "gene claimed (not a gene)", "novel: no gene", "AUROC")
    _print_table(f"out of reference: {sum(section['rows'].values())} rows", ("system", *cols),
                 summary_rows(section), right=cols)
    for line in (validation_summary(section), versus_summary(section)):
        if line is not None:
            console.print(escape(line))
    head, rows = diverged_rows(section)
    if rows:
        _print_table(f"diverged copies of the test rows ({section['diverged']['rows']} per rate): "
                     "answered with their own gene", head, rows, right=head[1:])


@app.command("score")
def score_cmd(
    predictions: Annotated[
        Path, typer.Option(metavar="P.tsv", help="Predictions TSV (`llamadna predict` output): reference, "
                           "prediction [, label_true, label_pred] [, label_from_text].")],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    semantic: Annotated[
        bool, typer.Option(help="Embedding similarity (all-MiniLM-L6-v2, offline).")] = True,
) -> None:
    """Score predictions against their references: source accuracy / macro F1, BLEU, ROUGE-L,
    METEOR, per-field exact match and semantic similarity (definitions in the README)."""
    from llamadna.evaluate.metrics import score_file

    with _errors():
        _out_file(out, {"the predictions": predictions})
        m = score_file(predictions, out, semantic=semantic)
    scalars = ("accuracy", "f1_macro", "accuracy_from_text", "f1_from_text", "bleu", "rougeL",
               "meteor", "semantic_similarity")
    values = [(c, m[c]) for c in scalars] + [(f"field {f}", v) for f, v in m["field_accuracy"].items()]
    _print_table(f"{m['n']} predictions", ("metric", "value"),
                 [(name, "-" if v is None else f"{v:.4f}") for name, v in values], right=("value",))
    console.print(f"wrote [bold]{escape(str(out))}[/]")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[str], typer.Argument(
        metavar="[LABEL=]RUN...",
        help="`llamadna evaluate` output directories of the same rows (e.g. one model trained with "
             "several seeds); runs given the same LABEL are one variant, summarized together.")],
    against: Annotated[str, typer.Option(
        help="The system the model is compared with (one of the run's tuned baselines).")] = COMPARE_AGAINST,
    n_boot: Annotated[int, typer.Option(
        min=0, help="Compute the difference's interval again with this many resamples (0: the run's "
                    "own interval).")] = 0,
    boot_seed: Annotated[int, typer.Option(help="Bootstrap seed of --n-boot.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Also write the figures as JSON here.")] = None,
) -> None:
    """Evaluation runs side by side: per run and per variant (mean, least-most), the validation
    figures a change may be chosen on, the test macro-F1 against a tuned baseline, and where the
    model and that baseline disagree. Retraining with another seed moves these figures more than
    most changes do: compare variants over several seeds each."""
    from llamadna.evaluate.compare import compare_runs, figure_text, interval_text, run_spec

    with _errors():
        if out is not None:
            _out_file(out, {"a run's directory": [run_spec(r)[1] for r in runs]},
                      formats=(".json",))
        res = compare_runs(runs, against, n_boot or None, boot_seed)
        if out is not None:
            from llamadna.io.atomic import atomic_write

            atomic_write(out, lambda tmp: tmp.write_text(json.dumps(res, indent=1) + "\n"))
    for part in ("validation", "diverged", "test"):
        if res["rows"][part] is None:
            console.print(f"{part}: none of the runs has these rows")
            continue
        figs = res["figures"][part]
        names = [n for _, n in figs]
        rows = [(escape(r["label"]), str(r["train_seed"]), *(figure_text(r[part][k]) for k, _ in figs))
                for r in res["runs"]]
        rows += [(f"[bold]{escape(label)}[/] ({v['runs']} runs)", "mean (min-max)",
                  *(figure_text(v[part][k]) for k, _ in figs)) for label, v in res["variants"].items()]
        title = {"diverged": "validation, diverged copies"}.get(part, part)
        _print_table(f"{title}: {res['rows'][part]} rows", ("run", "seed", *names), rows, right=names)
    for r in res["runs"]:
        t = r["test"]
        line = (f"{r['label']} ({r['path']}): model minus {against} {t['difference']:+.4f} "
                f"{interval_text(t['difference_interval'])} ({t['n_boot']} resamples)")
        if "recomputed" in t:
            c = t["recomputed"]
            line += f"; {c['n_boot']} resamples, seed {c['seed']}: {interval_text(c['interval'])}"
        console.print(escape(line))
        _print_table(f"{escape(r['label'])}: test rows only one of model / {against} gets right",
                     ("truth", "model says", f"{against} says", "right", "rows"),
                     [(d["kind"], d["model_says"], d["other_says"],
                       "model" if d["right"] == "model" else against, str(d["rows"]))
                      for d in t["disagreements"]], right=("rows",))
    if out is not None:
        console.print(f"wrote [bold]{escape(str(out))}[/]")


if __name__ == "__main__":
    app()
