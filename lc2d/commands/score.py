"""`lc2d score`: score a .npy, a .npz array or an image folder with an .onnx model, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError
from service.providers import DEVICES

HELP = ("Score a .npy, .npz or image folder with an .onnx model, streaming, on this machine "
        "or on Ray; write an .npy of outputs and a JSON summary.")
ENGINES = ("local", "ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the .onnx model (as written by lc2d export)")
    parser.add_argument("input", type=Path,
                        help=".npy file (read a batch at a time, any size), .npz file (see --key) or "
                             "a folder of PNG/JPEG images (file-name order)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the .npy to write; OUTPUT.summary.json (and OUTPUT.order.txt for "
                             "image folders) go next to it")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="rows per ONNX Runtime call; bounds memory; default: 256")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto (CUDA when available), cpu, cuda or tensorrt; default: auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (per actor with --engine ray, default 1 "
                             "there); default: ONNX Runtime decides")
    parser.add_argument("--key", default=None,
                        help="the array of a .npz to score; optional when it holds one array")
    parser.add_argument("--output-name", default=None,
                        help="the model output to write; default: the first graph output")
    parser.add_argument("--allow-non-finite", action="store_true",
                        help="accept NaN and infinities (refused by default, as by the server)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local (one process) or ray (Ray Data, actor pool); default: local")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster to join (e.g. ray://head:10001); default: start a local "
                             "Ray instance")
    parser.add_argument("--actors", type=int, default=2,
                        help="ONNX Runtime actors (one session each) with --engine ray; default: 2")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")


def _check_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "actors"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive integer, "
                             f"received {getattr(args, name)}")
    if args.threads is not None and args.threads <= 0:
        raise UsageError(f"--threads: expected a positive integer, received {args.threads}")
    if args.output.suffix != ".npy":
        raise UsageError(f"-o/--output: expected a path ending in .npy, received {str(args.output)!r}")
    if args.ray_address is not None and args.engine != "ray":
        raise UsageError("--ray-address: expected together with --engine ray, received "
                         f"--engine {args.engine}")


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


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from service.errors import ServiceError
    from service.scoring import ScoringJob, run_scoring_job

    if args.engine == "ray":
        _require_ray()
    job = ScoringJob(model_path=args.model, input_path=args.input, output_path=args.output,
                     batch_size=args.batch_size, device=args.device, threads=args.threads,
                     key=args.key, output_name=args.output_name,
                     allow_non_finite=args.allow_non_finite, engine=args.engine,
                     ray_address=args.ray_address, actors=args.actors)
    progress = _ProgressBar(enabled=not args.no_progress)
    try:
        summary = run_scoring_job(job, progress)
    except ServiceError as err:
        if err.exit_code == 2:
            raise UsageError(err.message) from err
        print(f"lc2d score: failed: {err.message}", file=sys.stderr)
        return err.exit_code
    finally:
        progress.close()
    print(f"scored {summary.count:,} rows in {summary.scoring_time_s:.2f} s "
          f"({summary.throughput_rows_per_s:,.0f} rows/s, {args.engine}, {summary.providers[0]}) -> "
          f"{summary.output} {summary.output_shape}; summary {job.summary_path}"
          + (f"; order {summary.order_file}" if summary.order_file else ""))
    return 0


def _require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray: expected Ray Data to be installed, received an environment "
                         "without it; pip install 'lc2d-serve[ray]'")
