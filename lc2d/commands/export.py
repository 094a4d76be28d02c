"""`lc2d export`: a .keras model to a checked standard-ONNX file (see docs/export.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError

HELP = "Export a .keras model to standard ONNX, LocallyConnected2D lowered as asked; parity-checked."
# the same as export.LOWERING_CHOICES, kept here so that `lc2d --help` imports no TensorFlow
LOWERINGS = ("implementation", "local", "chunked", "adaptive", "dense", "sparse", "auto", "int8")
DEFAULT_DENSE_BUDGET_MIB = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.keras", help="the Keras model to export")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="MODEL.onnx",
                        help="where to write the ONNX file; default: MODEL with the suffix .onnx")
    parser.add_argument("--lowering", choices=LOWERINGS, default="implementation",
                        help="how each LocallyConnected2D is lowered: as its implementation says "
                             "(1 local, 2 dense, 3 sparse), one strategy for all, auto (fastest "
                             "measured), or int8 (8-bit integer products, opt-in: changes the "
                             "numbers, parity tolerance 5%%); default: implementation")
    parser.add_argument("--opset", type=int, default=20, help="ONNX opset, at least 17; default: 20")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the parity check (ONNX Runtime vs Keras on random inputs)")
    parser.add_argument("--dense-budget-mib", type=float, default=DEFAULT_DENSE_BUDGET_MIB,
                        help="largest dense kernel the dense lowering may create, in MiB; "
                             f"default: {DEFAULT_DENSE_BUDGET_MIB}")
    parser.add_argument("--provider", default="CPUExecutionProvider",
                        help="ONNX Runtime provider for the parity check and auto timings; "
                             "default: CPUExecutionProvider")
    parser.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")


def _check_args(args: argparse.Namespace) -> Path:
    if not args.model.exists():
        raise UsageError(f"MODEL: expected an existing .keras file. Received: {str(args.model)!r} "
                         "(no such file)")
    if not args.model.is_file():
        raise UsageError(f"MODEL: expected a .keras file. Received: {str(args.model)!r} (not a file)")
    if args.dense_budget_mib <= 0:
        raise UsageError(f"--dense-budget-mib: expected a positive number. Received: {args.dense_budget_mib}")
    output: Path = args.output if args.output is not None else args.model.with_suffix(".onnx")
    if output.suffix != ".onnx":
        raise UsageError(f"--output: expected a path ending in .onnx. Received: {str(output)!r}")
    return output


def _load_model(path: Path) -> Any:
    import keras

    import models  # noqa: F401 - registers LocallyConnected2D and ClassLabels for deserialization

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile/JSON errors for bad files
        raise UsageError(f"MODEL: expected a Keras model file (.keras). Received: {str(path)!r}, "
                         f"which Keras cannot load ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                         ) from err


def run(args: argparse.Namespace) -> int:
    output = _check_args(args)
    model = _load_model(args.model)
    from export import ExportError, ParityError, to_onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = to_onnx(model, output, lowering=args.lowering, opset=args.opset, check=not args.no_check,
                         dense_budget_bytes=int(args.dense_budget_mib * 2**20), provider=args.provider)
    except ParityError as err:
        print(f"lc2d export: error: {err}", file=sys.stderr)
        return err.exit_code
    except ExportError as err:
        raise UsageError(str(err)) from err
    print(report.summary())
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
