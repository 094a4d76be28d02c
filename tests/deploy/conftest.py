"""Fixtures of the deployment-file tests: the parsed Dockerfile and its serving stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy import container_files as cf

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dockerfile() -> cf.Dockerfile:
    return cf.parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def serve_stage(dockerfile: cf.Dockerfile) -> cf.Stage:
    """The last stage: the serving image."""
    return dockerfile.stages[-1]
