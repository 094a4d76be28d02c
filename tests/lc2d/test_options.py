"""CLI options generated from pydantic models: every field kind, help from docstrings, one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lc2d.cli import OneLineParser, build_parser, main
from lc2d.errors import UsageError
from lc2d.options import add_model_options, model_from_args
from service.settings import ServeSettings


class Toy(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    source: Path
    """Where to read from."""

    fast: bool = True
    """Go fast."""

    limit: int | None = Field(default=None, ge=1)
    """Most items; 100% sure."""

    ratio: float | None = None
    """A ratio."""

    where: Path | None = None
    """A folder."""

    label: str | None = None
    """A label."""

    mode: Literal["a", "b"] = "a"
    """The mode."""

    extra: list[Path] = Field(default_factory=list)
    """More files."""


class ToySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_", use_attribute_docstrings=True)

    files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """Files."""

    port: int = Field(default=1, le=10)
    """A port."""


def parse(model: type, argv: list[str], **kwargs) -> argparse.Namespace:
    parser = OneLineParser(prog="toy")
    add_model_options(parser, model, **kwargs)
    return parser.parse_args(argv)


def test_every_field_kind_becomes_an_option() -> None:
    args = parse(Toy, ["in", "--no-fast", "--limit", "3", "--ratio", "0.5", "--where", "d", "--label", "x",
                       "--mode", "b", "--extra", "e1", "--extra", "e2"], names={"source": ["source"]})
    toy = model_from_args(Toy, args)
    assert toy == Toy(source=Path("in"), fast=False, limit=3, ratio=0.5, where=Path("d"), label="x",
                      mode="b", extra=[Path("e1"), Path("e2")])


def test_unset_options_leave_the_model_defaults() -> None:
    toy = model_from_args(Toy, parse(Toy, ["--source", "in"]))
    assert toy == Toy(source=Path("in"))


def test_help_is_the_field_docstring_with_default_and_environment_variable(capsys) -> None:
    with pytest.raises(SystemExit):
        parse(ToySettings, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--port N A port (default: 1; env TOY_PORT)" in text
    assert "--files PATH Files (repeatable; env TOY_FILES)" in text


def test_literal_choices_and_percent_signs_show_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        parse(Toy, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--mode {a,b} The mode (default: a)" in text and "100% sure" in text
    assert "--fast, --no-fast Go fast (default: on)" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--source", "in", "--limit", "0"], "--limit: expected a value of at least 1, received '0'"),
    (["--source", "in", "--limit", "x"], "--limit: expected an integer, received 'x'"),
    (["--source", "in", "--ratio", "half"], "--ratio: expected a number, received 'half'"),
    (["--source", "in", "--mode", "c"], "--mode: expected one of 'a' or 'b', received 'c'"),
])
def test_bad_values_are_one_line_naming_the_option(argv, message) -> None:
    with pytest.raises(UsageError) as raised:
        model_from_args(Toy, parse(Toy, argv))
    assert str(raised.value) == message


def test_settings_errors_name_the_environment_variable_too() -> None:
    with pytest.raises(UsageError, match=r"^--port \(or TOY_PORT\): expected a value of at most 10"):
        model_from_args(ToySettings, parse(ToySettings, ["--port", "11"]))


def test_every_serve_setting_is_a_serve_option() -> None:
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    destinations = {action.dest for action in serve._actions}
    assert set(ServeSettings.model_fields) <= destinations


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--model", str(tmp_path / "m.onnx"), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err == ("lc2d serve: error: --port (or LC2D_PORT): expected a value of at most 65535, "
                   "received '70000'\n")
    with pytest.raises(SystemExit) as exited:
        main(["score", "model.onnx", "x.npy"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "required: -o/--output" in err
