"""`lc2d export`: a .keras model to a checked standard-ONNX file (see docs/export.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from export.options import PRECISIONS, ExportOptions
from lc2d.errors import UsageError
from lc2d.tensorflow_logs import import_tensorflow

HELP = "Export a .keras model to standard ONNX, LocallyConnected2D lowered as asked; parity-checked."
DEFAULTS = ExportOptions()
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class RegisteredPolicies(Sequence[str]):
    """The policies of ``export.lowerings.POLICIES``, read on first use.

    argparse reads ``choices`` only to check ``--lowering`` and to print ``lc2d export --help``,
    so ``lc2d --help`` and the other verbs never import the registry (and TensorFlow).
    """

    def _names(self) -> tuple[str, ...]:
        from export.lowerings import POLICIES

        return POLICIES

    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.keras", help="the Keras model to export")
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="MODEL.onnx",
                        help="where to write the ONNX file; default: MODEL with the suffix .onnx")
    parser.add_argument("--lowering", dest="policy", choices=RegisteredPolicies(), default=DEFAULTS.policy,
                        metavar="POLICY",
                        help="how each LocallyConnected2D is lowered, one of %(choices)s: as its "
                             "implementation says (1 local, 2 dense, 3 sparse), one strategy for all, "
                             "auto (the fastest float strategy measured), or int8 (8-bit integer "
                             "products, opt-in: changes the numbers, parity tolerance 5%%); "
                             "default: %(default)s")
    parser.add_argument("--opset", type=int, default=DEFAULTS.opset,
                        help="ONNX opset, at least 17; default: %(default)s")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the parity check (ONNX Runtime vs Keras on random inputs)")
    parser.add_argument("--dense-budget-mib", type=float, default=DEFAULTS.dense_budget_bytes / 2**20,
                        help="largest dense kernel the dense strategy may create, in MiB; "
                             "default: %(default)g")
    parser.add_argument("--provider", default=DEFAULTS.provider,
                        help="ONNX Runtime provider for the parity check and auto timings; "
                             "default: %(default)s")
    parser.add_argument("--precision", choices=PRECISIONS, default=DEFAULTS.precision,
                        help="fp16: weights and compute in float16, float32 inputs and outputs (parity "
                             "tolerance 1e-2, see docs/export.md); default: %(default)s")
    parser.add_argument("--outputs", action="extend", nargs="+", default=[], metavar="LAYER",
                        help="export the sub-model ending at these layers, in this order, each ONNX "
                             "output named after its layer (repeatable: --outputs F7 --outputs L6); "
                             "default: the model's own outputs")
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


def export_options(args: argparse.Namespace) -> ExportOptions:
    """The :class:`ExportOptions` the arguments ask for; their checks are the options' own."""
    from export.errors import ExportError

    try:
        return ExportOptions(policy=args.policy, opset=args.opset, check=args.check, provider=args.provider,
                             dense_budget_bytes=int(args.dense_budget_mib * 2**20), outputs=args.outputs,
                             precision=args.precision)
    except ExportError as err:
        raise UsageError(str(err)) from err


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
    options = export_options(args)
    import_tensorflow(args.verbose)
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
