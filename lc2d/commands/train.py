"""`lc2d train`: train a LocallyConnected2D classifier and save it as a .keras file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lc2d.errors import UsageError
from lc2d.tensorflow_logs import import_tensorflow

HELP = "Train a LocallyConnected2D classifier on digits or an .npz file; save a .keras model."
DEFAULT_EPOCHS = 20  # same as models.training.DEFAULT_EPOCHS, kept here so --help needs no Keras


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (scikit-learn's bundled 8x8 digits, scaled to [0, 1]) or a "
                             ".npz file with x (N×H×W[×C]) and y (N integer labels); "
                             "default: digits")
    parser.add_argument("--implementation", type=int, choices=(1, 2, 3), default=1,
                        help="LocallyConnected2D implementation; default: 1")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"passes over the training split; default: {DEFAULT_EPOCHS}")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--seed", type=int, default=0, help="random seed; default: 0")
    parser.add_argument("--out", required=True, type=Path, help="where to write the model (.keras)")
    parser.add_argument("--report", type=Path, default=None,
                        help="where to write the JSON report (test_accuracy, val_accuracy, ...)")


def _check_args(args: argparse.Namespace) -> None:
    if args.out.suffix != ".keras":
        raise UsageError(f"--out: expected a path ending in .keras. Received: {str(args.out)!r}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive integer. "
                             f"Received: {getattr(args, name)}")


def _write_report(path: Path, report: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    import_tensorflow(args.verbose)
    from models.datasets import DatasetError, load_dataset
    from models.training import train

    try:
        dataset = load_dataset(args.dataset)
    except DatasetError as err:
        raise UsageError(f"--dataset: {err}") from err
    print(f"Training on {dataset.name}: {len(dataset.train.y)} train / "
          f"{len(dataset.validation.y)} validation / {len(dataset.test.y)} test images of "
          f"{dataset.input_shape}, {len(dataset.labels)} classes, implementation "
          f"{args.implementation}", flush=True)
    model, report = train(dataset, implementation=args.implementation, epochs=args.epochs,
                          seed=args.seed, batch_size=args.batch_size,
                          verbose=1 if sys.stdout.isatty() else 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    if args.report is not None:
        _write_report(args.report, report.to_dict())
    print(f"test accuracy: {report.test_accuracy:.4f} (validation {report.val_accuracy:.4f}, "
          f"{report.parameters:,} parameters, {report.wall_time_s:.1f} s)")
    print(f"saved {args.out}" + (f" and {args.report}" if args.report else ""))
    return 0
