"""Command-line options generated from a pydantic settings model (or pydantic dataclass).

One field, one option: ``max_batch_size: int = Field(default=64, ge=1)`` with a docstring under
it becomes ``--max-batch-size MAX_BATCH_SIZE`` whose help is that docstring plus the default
(and the environment variable, for ``pydantic_settings.BaseSettings``). The model checks the
values, so the CLI declares no type, default or bound of its own: an option the user does not
give is left out, and the model's default (or environment variable) applies.

How a field's type becomes an option:
    - ``bool``: ``--x`` / ``--no-x``;
    - ``Literal["a", "b"]``: one of the choices (listed in ``--help``);
    - ``int``, ``float``, ``str``, ``Path`` and their ``| None``: one value;
    - ``list[Path]`` (or any ``list[...]``): repeatable, ``--x A --x B``.

Bad values become one line (:func:`model_from_args` raises :class:`~lc2d.errors.UsageError`,
which the CLI prints and exits 2 with), naming the option and what was expected and received.

Example:
    >>> add_model_options(parser, ServeSettings)
    >>> settings = model_from_args(ServeSettings, parser.parse_args(argv))
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, TypeVar

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lc2d.errors import UsageError

T = TypeVar("T")


def model_fields(model: type[Any]) -> dict[str, FieldInfo]:
    """The fields of a pydantic model or pydantic dataclass, in declaration order."""
    return dict(model.__pydantic_fields__)


def option_strings(name: str, names: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """How field ``name`` is spelled on the command line (``["--max-batch-size"]`` by default)."""
    if names and name in names:
        return list(names[name])
    return ["--" + name.replace("_", "-")]


def add_model_options(parser: argparse.ArgumentParser, model: type[Any], *,
                      names: Mapping[str, Sequence[str]] | None = None, exclude: Sequence[str] = ()) -> None:
    """Adds one option per field of ``model``.

    Args:
        parser: the (sub)command's parser.
        model: a pydantic model or pydantic dataclass whose fields have docstrings
            (``use_attribute_docstrings=True`` in its config).
        names: option spellings that differ from ``--field-name``; a spelling without a leading
            ``-`` makes the field positional (``{"model_path": ["model"]}``).
        exclude: fields that are not options.
    """
    env_prefix = _env_prefix(model)
    for name, info in model_fields(model).items():
        if name in exclude:
            continue
        spelled = option_strings(name, names)
        kind, choices = _option_kind(info.annotation)
        help_text = _help(info, env_prefix + name.upper() if env_prefix else None, kind)
        if not spelled[0].startswith("-"):
            parser.add_argument(name, help=help_text, metavar=spelled[0].upper())
            continue
        options: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if kind == "flag":
            options["action"] = argparse.BooleanOptionalAction
        elif choices:
            options["metavar"] = "{" + ",".join(choices) + "}"
        else:
            options["metavar"] = _metavar(info.annotation)
        if kind == "list":
            options["action"] = "append"
        if info.is_required():
            options["required"] = True
        parser.add_argument(*spelled, **options)


def model_from_args(model: type[T], args: argparse.Namespace, *,
                    names: Mapping[str, Sequence[str]] | None = None, **values: Any) -> T:
    """Builds ``model`` from the options the user gave (plus ``values``), or raises UsageError.

    Args:
        model: the class given to :func:`add_model_options`.
        args: the parsed command line.
        names: the same spellings as given to :func:`add_model_options` (for messages).
        values: fields set by the command itself rather than by an option.

    Raises:
        UsageError: one line per bad value, joined with ``;``.
    """
    given = {name: getattr(args, name) for name in model_fields(model)
             if getattr(args, name, None) is not None}
    try:
        return model(**{**given, **values})
    except pydantic.ValidationError as err:
        raise UsageError(validation_message(err, model, names)) from err


def validation_message(err: pydantic.ValidationError, model: type[Any],
                       names: Mapping[str, Sequence[str]] | None = None) -> str:
    """One line for a validation error: each bad option, what was expected, what was received."""
    env_prefix = _env_prefix(model)
    parts = []
    for problem in err.errors():
        loc = problem.get("loc", ())
        expected = _expected(problem)
        if not loc:
            parts.append(expected)
            continue
        field = str(loc[0])
        where = "/".join(option_strings(field, names))
        if env_prefix:
            where += f" (or {env_prefix}{field.upper()})"
        received = "" if "received" in expected else f", received {problem.get('input')!r}"
        parts.append(f"{where}: {expected}{received}")
    return "; ".join(parts)


_EXPECTED = {
    "greater_than": "expected a value greater than {gt}",
    "greater_than_equal": "expected a value of at least {ge}",
    "less_than": "expected a value less than {lt}",
    "less_than_equal": "expected a value of at most {le}",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
    "literal_error": "expected one of {expected}",
    "path_type": "expected a path",
}


def _expected(problem: Mapping[str, Any]) -> str:
    template = _EXPECTED.get(str(problem.get("type")))
    if template is not None:
        return template.format(**(problem.get("ctx") or {}))
    message = str(problem.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def _env_prefix(model: type[Any]) -> str:
    from pydantic_settings import BaseSettings

    if isinstance(model, type) and issubclass(model, BaseSettings):
        return str(model.model_config.get("env_prefix", ""))
    return ""


def _option_kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    """``("flag" | "list" | "value", choices)`` for a field annotation."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _option_kind(present[0]) if len(present) == 1 else ("value", ())
    if annotation is bool:
        return "flag", ()
    if origin in (list, tuple, set, Sequence):
        return "list", ()
    if origin is typing.Literal:
        return "value", tuple(str(arg) for arg in typing.get_args(annotation))
    return "value", ()


_METAVARS = {int: "N", float: "NUMBER", str: "TEXT"}


def _metavar(annotation: Any) -> str:
    """``N`` for integers, ``PATH`` for paths...: the innermost non-None type's placeholder."""
    for part in [annotation, *typing.get_args(annotation)]:
        while typing.get_origin(part) is typing.Annotated:
            part = typing.get_args(part)[0]
        if part in _METAVARS:
            return _METAVARS[part]
        if isinstance(part, type) and issubclass(part, PurePath):
            return "PATH"
        if typing.get_origin(part) is not None and part is not annotation:
            return _metavar(part)
    return "VALUE"


def _help(info: FieldInfo, env: str | None, kind: str) -> str:
    text = re.sub(r"\s+", " ", (info.description or "").replace("``", "")).strip().removesuffix(".")
    notes = []
    if info.default is not PydanticUndefined and info.default is not None and info.default != []:
        default = info.default
        if kind == "flag":
            default = "on" if default else "off"
        notes.append(f"default: {default}")
    if kind == "list":
        notes.append("repeatable")
    if env:
        notes.append(f"env {env}")
    if notes:
        text += f" ({'; '.join(notes)})"
    return text.replace("%", "%%")
