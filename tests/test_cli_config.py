"""Every CLI option maps onto a field of the config its command builds, with that field's default
(cli.ConfigOptions), so that the CLI and the configs cannot drift apart."""

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llamadna import cli
from llamadna.cli import app
from llamadna.data.build import BuildConfig

runner = CliRunner()

# commands that build no config dataclass from their options (they pass them as arguments)
NO_CONFIG = {"splash-scores", "annotate", "search", "predict", "benchmark", "score", "calibrate", "compare"}
REQUIRED = object()


def _commands() -> dict:
    return {c.name: c.callback for c in app.registered_commands}


def _field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def _as_config_value(value, fn):
    if value is inspect.Parameter.empty:
        return REQUIRED
    if fn is not None:
        return fn(value)
    return str(value) if isinstance(value, Path) else value


def option_problems(command) -> list[str]:
    """What is wrong with a command's declared mapping: undeclared parameters, targets that are
    no field, CLI-only parameters that are fields, and defaults that differ from the field's."""
    spec = command.config_options
    params = inspect.signature(command).parameters
    classes = (spec.config, *spec.nested.values())
    all_fields = {f.name: f for cls in classes for f in dataclasses.fields(cls)}
    problems = [f"{p}: declared but no parameter" for p in (*spec.cli, *spec.convert) if p not in params]
    problems += [f"nested {n}: no field of {spec.config.__name__}" for n in spec.nested
                 if n not in {f.name for f in dataclasses.fields(spec.config)}]
    for name, param in params.items():
        try:
            target = spec.target(name)
        except TypeError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if target is None:
            if name in all_fields:
                problems.append(f"{name}: declared CLI-only but a config field")
            continue
        cls, field_name, fn = target
        field = {f.name: f for f in dataclasses.fields(cls)}.get(field_name)
        if field is None:
            problems.append(f"{name}: {field_name} is no field of {cls.__name__}")
            continue
        got, want = _as_config_value(param.default, fn), _field_default(field)
        if got != want:
            problems.append(f"{name}: default {got!r}, {cls.__name__}.{field_name} has {want!r}")
    return problems


def test_every_command_is_declared():
    """A command either declares the config it builds or builds none (and never calls _config)."""
    for name, command in _commands().items():
        if name in NO_CONFIG:
            assert not hasattr(command, "config_options"), name
            assert not re.search(r"\b_config\(", inspect.getsource(command)), name
        else:
            assert isinstance(command.config_options, cli.ConfigOptions), name


@pytest.mark.parametrize("name", sorted(set(_commands()) - NO_CONFIG))
def test_every_option_maps_onto_its_config_with_its_default(name):
    assert option_problems(_commands()[name]) == []


def test_inference_options_have_the_annotator_defaults():
    """annotate, predict and benchmark pass --batch-size, --max-new-tokens, --decoding and
    --withhold-below to the Annotator's InferenceConfig: their defaults are its defaults (the
    CLI's --withhold-below 0 is its None, off)."""
    from llamadna.annotate import InferenceConfig

    want = {f.name: _field_default(f) for f in dataclasses.fields(InferenceConfig)}
    want["withhold_below"] = want["withhold_below"] or 0.0
    seen = 0
    for name in NO_CONFIG:
        for param in inspect.signature(_commands()[name]).parameters.values():
            if param.name in want:
                assert param.default == want[param.name], (name, param.name)
                seen += 1
    assert seen == 12  # four options in each of the three commands


def _renamed(cls, old: str, new: str, **defaults):
    """A copy of a config dataclass with field `old` named `new` (and other defaults)."""
    specs = []
    for f in dataclasses.fields(cls):
        kw = ({"default": defaults[f.name]} if f.name in defaults
              else {"default": f.default} if f.default is not dataclasses.MISSING
              else {"default_factory": f.default_factory})
        specs.append((new if f.name == old else f.name, f.type, dataclasses.field(**kw)))
    return dataclasses.make_dataclass(f"Fake{cls.__name__}", specs)


@pytest.fixture
def renamed_window(monkeypatch):
    """build-dataset's config with `window` renamed `window_bases`, as a refactor might."""
    command = cli.build_dataset_cmd
    fake = _renamed(BuildConfig, "window", "window_bases")
    monkeypatch.setattr(command, "config_options",
                        dataclasses.replace(command.config_options, config=fake))
    return command


def test_a_renamed_field_fails_the_check(renamed_window):
    problems = option_problems(renamed_window)
    assert len(problems) == 1 and problems[0].startswith("window: the parameter 'window' is no field")


def test_a_renamed_field_is_a_bug_not_a_silently_dropped_option(renamed_window, tmp_path):
    """_config raises (exit 1, the traceback kept) instead of building the config without it."""
    r = runner.invoke(app, ["build-dataset", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                            "--window", "48"])
    assert r.exit_code == 1 and isinstance(r.exception, TypeError), r.output
    assert "'window'" in str(r.exception) and "error:" not in r.output


def test_a_changed_field_default_fails_the_check(monkeypatch):
    command = cli.build_dataset_cmd
    fake = _renamed(BuildConfig, "seed", "seed", seed=BuildConfig.seed + 1)
    monkeypatch.setattr(command, "config_options",
                        dataclasses.replace(command.config_options, config=fake))
    assert option_problems(command) == [
        f"seed: default {BuildConfig.seed}, FakeBuildConfig.seed has {BuildConfig.seed + 1}"]


def test_a_converted_option_and_a_cli_only_one(monkeypatch):
    """Conversions and CLI-only parameters are checked too: a stale declaration fails."""
    command = cli.build_dataset_cmd
    spec = command.config_options
    monkeypatch.setattr(command, "config_options", dataclasses.replace(
        spec, convert={**spec.convert, "cap_sources": ("capped", cli._csv)}, cli=(*spec.cli, "seed", "gone")))
    assert option_problems(command) == [
        "gone: declared but no parameter",
        "cap_sources: capped is no field of BuildConfig",
        "seed: declared CLI-only but a config field",
    ]


def test_config_converts_and_nests(tmp_path):
    """splash: --gap converted, the filter options into the nested FilterConfig."""
    values = {p.name: p.default for p in inspect.signature(cli.splash_cmd).parameters.values()}
    cfg = cli._config(cli.splash_cmd, values | {"gap": "7", "min_targets": 5, "out": tmp_path})
    assert cfg.gap == 7 and cfg.filters.min_targets == 5
    assert cli._config(cli.splash_cmd, values | {"gap": "auto"}).gap == "auto"
