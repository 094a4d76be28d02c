"""Entry point of the `lc2d` console script.

Each verb lives in its own module under ``lc2d/commands`` exposing ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import nothing heavy at top
level, so ``lc2d --help`` and ``lc2d serve`` never load TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from lc2d import __version__
from lc2d.errors import UsageError
from lc2d.tensorflow_logs import VERBOSE_HELP

# Verbs that import TensorFlow: quiet by default, --verbose shows its log lines.
TENSORFLOW_VERBS = ("train", "import-legacy", "export")

# verb -> module under lc2d.commands
VERBS: dict[str, str] = {
    "train": "train",
    "import-legacy": "import_legacy",
    "export": "export",
    "serve": "serve",
    "score": "score",
    "bench": "bench",
}


def _available_verbs() -> dict[str, object]:
    modules: dict[str, object] = {}
    for verb, name in VERBS.items():
        try:
            modules[verb] = importlib.import_module(f"lc2d.commands.{name}")
        except ModuleNotFoundError as err:  # a verb whose module is not written yet
            if err.name != f"lc2d.commands.{name}":
                raise
    return modules


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``lc2d VERB: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="lc2d", description="Train, export and serve LocallyConnected2D models.")
    parser.add_argument("--version", action="version", version=f"lc2d {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=OneLineParser)
    for verb, module in _available_verbs().items():
        verb_parser = sub.add_parser(verb, help=module.HELP, description=module.HELP)  # type: ignore[attr-defined]
        module.add_arguments(verb_parser)  # type: ignore[attr-defined]
        if verb in TENSORFLOW_VERBS:
            verb_parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
        verb_parser.set_defaults(_run=module.run)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UsageError as err:
        print(f"lc2d {args.verb}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"lc2d {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
