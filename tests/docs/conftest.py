"""What the docs' shell examples run with: this checkout's ``lc2d`` and Python first on PATH."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from tests.service.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``lc2d``, ``python`` and ``python3`` of this checkout and interpreter, first on PATH."""
    folder = tmp_path_factory.mktemp("docs_bin")
    commands = {"lc2d": f'exec "{sys.executable}" -m lc2d "$@"', "python": f'exec "{sys.executable}" "$@"',
                "python3": f'exec "{sys.executable}" "$@"'}
    for name, line in commands.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\n{line}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def example_environment(tools: Path, **variables: str) -> dict[str, str]:
    """This process's environment without ``LC2D_`` settings, ``tools`` first on PATH, this checkout
    importable, TensorFlow quiet, and ``variables``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LC2D_")}
    env.update(PATH=f"{tools}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(REPO_ROOT),
               TF_CPP_MIN_LOG_LEVEL="3", **variables)
    return env
