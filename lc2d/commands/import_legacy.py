"""`lc2d import-legacy`: bring a tf_keras (Keras 2) .h5 model onto Keras 3 as a .keras file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError
from lc2d.tensorflow_logs import import_tensorflow

HELP = ("Import a tf_keras .h5 model (or weights file + --architecture) onto Keras 3 with "
        "LocallyConnected2D; verify against tf_keras when it is installed.")
ARCHITECTURES = ("deepface", "seed_example", "digits_classifier")


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected ROWS,COLS,CHANNELS (3 positive integers, e.g. 152,152,3); received {text!r}")
    return shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.h5",
                        help="tf_keras .h5 file: a full model (model.save) or weights only "
                             "(model.save_weights, needs --architecture)")
    parser.add_argument("-o", "--out", required=True, type=Path, metavar="MODEL.keras",
                        help="where to write the Keras 3 model")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default=None,
                        help="builder to load a weights-only file into (layers matched by name)")
    parser.add_argument("--classes", type=int, default=None,
                        help="builder argument: number of classes (deepface, digits_classifier)")
    parser.add_argument("--input-shape", type=_input_shape, default=None,
                        help="builder argument: ROWS,COLS,CHANNELS, e.g. 152,152,3")
    parser.add_argument("--implementation", type=int, choices=(1, 2, 3), default=None,
                        help="builder argument; default: the one the file's kernels were saved with")
    parser.add_argument("--labels", type=Path, default=None,
                        help="text file of class names, one per line, stored with the model")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the comparison with tf_keras on random inputs")
    parser.add_argument("--report", type=Path, default=None, help="write the import report as JSON")


def _builder_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    names = {"classes": args.classes, "input_shape": args.input_shape,
             "implementation": args.implementation}
    kwargs = {k: v for k, v in names.items() if v is not None}
    if kwargs and args.architecture is None:
        raise UsageError(f"--{', --'.join(kwargs).replace('_', '-')}: expected together with "
                         "--architecture. Received no --architecture.")
    if "classes" in kwargs and args.architecture == "seed_example":
        raise UsageError("--classes: expected only with deepface or digits_classifier. "
                         "Received --architecture seed_example.")
    return kwargs


def _read_labels(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    try:
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels: expected a readable text file, one class name per line. "
                         f"Received: {str(path)!r} ({err})") from err
    if not labels:
        raise UsageError(f"--labels: expected at least one class name. Received: {str(path)!r}, "
                         "which is empty")
    return labels


def run(args: argparse.Namespace) -> int:
    if args.out.suffix != ".keras":
        raise UsageError(f"-o/--out: expected a path ending in .keras. Received: {str(args.out)!r}")
    kwargs = _builder_kwargs(args)
    labels = _read_labels(args.labels)
    import_tensorflow(args.verbose)
    from models.legacy import LegacyImportError, import_legacy

    try:
        model, report = import_legacy(args.model, architecture=args.architecture,
                                      builder_kwargs=kwargs, labels=labels,
                                      verify=not args.no_verify)
    except LegacyImportError as err:
        raise UsageError(str(err)) from err
    except ValueError as err:  # e.g. ClassLabels: label count differs from the output units
        raise UsageError(f"cannot import {str(args.model)!r}: {err}") from err
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    for layer, keys in report.dropped_config_keys.items():
        print(f"note: layer {layer!r}: dropped Keras 2 config keys {keys}")
    print(f"imported {report.kind} {report.architecture} ({report.layers} layers, "
          f"{report.parameters:,} parameters, saved by Keras {report.keras_version})")
    print(f"check: {report.verification_note}" if report.verification_note else "check: skipped")
    print(f"saved {args.out}")
    return 0
