"""Generates the Python modules of ``service/grpc/inference.proto`` (checked in), or checks them.

The generated modules are checked in so that the serving image and a plain ``pip install .``
need only grpcio and protobuf at run time, not grpcio-tools (a compiler and 10 MB more); this
script is the one way to regenerate them, and ``tests/service/test_grpc_units.py`` fails when the
checked-in files differ from what it generates. The dev extra pins grpcio-tools to the version
that generated them (its output carries version checks); regenerate when changing the pin.

Usage:
    python scripts/generate_grpc_stubs.py           # rewrite service/grpc/inference_pb2*.py(i)
    python scripts/generate_grpc_stubs.py --check   # exit 1 when they are out of date
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("service/grpc/inference.proto")
GENERATED = ("inference_pb2.py", "inference_pb2.pyi", "inference_pb2_grpc.py")


def generate(out_dir: Path) -> dict[str, bytes]:
    """Runs protoc (from grpcio-tools) on the proto; returns generated file name -> content.

    The proto is compiled relative to the repository root, so the modules import each other
    as ``service.grpc.inference_pb2``.
    """
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = ["grpc_tools.protoc", f"-I{REPO_ROOT}", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", str(REPO_ROOT / PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    produced = out_dir / PROTO.parent
    files = {name: (produced / name).read_bytes() for name in GENERATED}
    files["inference_pb2.py"] = _private_pool(files["inference_pb2.py"])
    return files


def _private_pool(module: bytes) -> bytes:
    """Registers the messages in a pool of their own instead of protobuf's default pool.

    Any client library generated from the same protocol (tritonclient's ``service_pb2``)
    declares the same names, ``inference.ModelInferRequest`` and the rest, from another file;
    in protobuf's default pool the second module imported fails with "duplicate symbol". A
    private pool lets the server's messages and a client's live in one process (tests,
    benchmarks). Nothing else changes: the wire format knows field numbers, not pools.
    """
    default = b"DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
    if module.count(default) != 1:
        raise RuntimeError("protoc's output changed: expected one Default().AddSerializedFile(")
    return module.replace(default, b"DESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile(")


def stale_files() -> list[str]:
    """Names of the checked-in generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    target = REPO_ROOT / PROTO.parent
    return [name for name, content in fresh.items()
            if not (target / name).is_file() or (target / name).read_bytes() != content]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(f"out of date: {stale}; run python scripts/generate_grpc_stubs.py", file=sys.stderr)
            return 1
        print(f"{', '.join(GENERATED)} match {PROTO}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
    for name, content in fresh.items():
        (REPO_ROOT / PROTO.parent / name).write_bytes(content)
        print(f"wrote {PROTO.parent / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
