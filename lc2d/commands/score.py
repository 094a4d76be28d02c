"""`lc2d score`: score a .npy, a .npz array or an image folder with an .onnx model, offline."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from lc2d.errors import UsageError
from lc2d.options import add_model_options, model_from_args
from service.scoring.job import ScoringJob

HELP = ("Score a .npy, .npz or image folder with an .onnx model, streaming, on this machine "
        "or on Ray; write an .npy of outputs and a JSON summary.")
# ScoringJob fields spelled differently on the command line (a name without "-" is positional).
OPTION_NAMES = {"model_path": ["model"], "input_path": ["input"], "output_path": ["-o", "--output"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`~service.scoring.ScoringJob`, and ``--no-progress``."""
    add_model_options(parser, ScoringJob, names=OPTION_NAMES)
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")


class _ProgressBar:
    """A tqdm bar on stderr showing rows and rows per second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def start(self, total: int, description: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="row", unit_scale=True, desc="scoring",
                        disable=not self.enabled, file=sys.stderr, dynamic_ncols=True)

    def advance(self, rows: int) -> None:
        self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Terminated(BaseException):
    """SIGTERM arrived: unwinds the job like Ctrl-C does, so its partial output is deleted."""


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def run(args: argparse.Namespace) -> int:
    from service.errors import ServiceError
    from service.scoring import run_scoring_job

    job = model_from_args(ScoringJob, args, names=OPTION_NAMES)
    progress = _ProgressBar(enabled=not args.no_progress)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        summary = run_scoring_job(job, progress)
    except ServiceError as err:
        if err.exit_code == 2:
            raise UsageError(err.message) from err
        print(f"lc2d score: failed: {err.message}", file=sys.stderr)
        return err.exit_code
    except _Terminated:
        print(f"lc2d score: stopped by SIGTERM; {job.output_path} was not written", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    print(f"scored {summary.count:,} rows in {summary.scoring_time_s:.2f} s "
          f"({summary.throughput_rows_per_s:,.0f} rows/s, {job.engine}, {summary.providers[0]}) -> "
          f"{summary.output} {summary.output_shape}; summary {job.summary_path}"
          + (f"; order {summary.order_file}" if summary.order_file else ""))
    return 0
