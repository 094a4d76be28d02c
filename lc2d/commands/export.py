"""`lc2d export`: a .keras model to a checked standard-ONNX file (see docs/export.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError
from lc2d.options import add_model_options, model_from_args
from lc2d.tensorflow_logs import import_tensorflow

HELP = "Export a .keras model to standard ONNX, LocallyConnected2D lowered as asked; parity-checked."
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
OPTION_NAMES = {"policy": ["--lowering"]}
# Options in other units than their field: the dense budget is given in MiB on the command line.
CONVERTED = ("dense_budget_bytes",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``MODEL``, ``-o``, ``--report``, ``--dense-budget-mib``; the rest from ExportOptions' fields."""
    from export.options import ExportOptions

    parser.add_argument("model", type=Path, metavar="MODEL.keras", help="the Keras model to export")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="MODEL.onnx",
                        help="where to write the ONNX file; default: MODEL with the suffix .onnx")
    add_model_options(parser, ExportOptions, names=OPTION_NAMES, exclude=CONVERTED)
    parser.add_argument("--dense-budget-mib", type=float, default=None, metavar="NUMBER",
                        help="largest dense kernel the dense strategy may create, in MiB (default: "
                             f"{ExportOptions().dense_budget_bytes / 2**20:g})")
    parser.add_argument("--report", type=Path, default=None, help="also write the report as JSON here")


def _check_args(args: argparse.Namespace) -> Path:
    if not args.model.exists():
        raise UsageError(f"MODEL: expected an existing .keras file. Received: {str(args.model)!r} "
                         "(no such file)")
    if not args.model.is_file():
        raise UsageError(f"MODEL: expected a .keras file. Received: {str(args.model)!r} (not a file)")
    if _is_hdf5(args.model):
        raise UsageError(f"MODEL: expected a Keras 3 model file (.keras). Received: {str(args.model)!r}, "
                         "an HDF5 file (tf_keras / Keras 2); convert it first with: lc2d import-legacy "
                         f"{args.model} -o {args.model.with_suffix('.keras')}")
    output: Path = args.output if args.output is not None else args.model.with_suffix(".onnx")
    if output.suffix != ".onnx":
        raise UsageError(f"--output: expected a path ending in .onnx. Received: {str(output)!r}")
    return output


def _is_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with the HDF5 signature (what tf_keras's ``.h5`` files are)."""
    with path.open("rb") as file:
        return file.read(8) == HDF5_SIGNATURE


def export_options(args: argparse.Namespace) -> Any:
    """The :class:`ExportOptions` the arguments ask for, checked before any model is loaded."""
    from export.api import check_options
    from export.errors import ExportError
    from export.options import ExportOptions

    mib = args.dense_budget_mib
    values = {} if mib is None else {"dense_budget_bytes": int(mib * 2**20)}
    names = {**OPTION_NAMES, "dense_budget_bytes": ["--dense-budget-mib"]}  # for messages
    options = model_from_args(ExportOptions, args, names=names, **values)
    try:
        check_options(options)
    except ExportError as err:
        raise UsageError(str(err)) from err
    return options


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
    import_tensorflow(args.verbose)  # before export_options, which imports the registry (and TensorFlow)
    options = export_options(args)
    model = _load_model(args.model)
    from export import ExportError, ParityError, to_onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = to_onnx(model, output, options)
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
