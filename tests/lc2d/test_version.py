"""One version: the installed distribution's, read by the CLI, the server and the exporter."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from fastapi.testclient import TestClient

import lc2d
from lc2d.cli import main
from service.app import create_app
from service.settings import ServeSettings
from tests.service.conftest import write_classifier


def test_version_is_the_installed_distributions(capsys) -> None:
    assert lc2d.__version__ == metadata.version("lc2d-serve")
    try:
        main(["--version"])
    except SystemExit as exited:
        assert exited.code == 0
    assert capsys.readouterr().out.strip() == f"lc2d {lc2d.__version__}"


def test_server_metadata_and_openapi_carry_the_version(tmp_path: Path) -> None:
    write_classifier(tmp_path / "tiny.onnx")
    with TestClient(create_app(ServeSettings(model=[tmp_path / "tiny.onnx"], device="cpu"))) as client:
        assert client.get("/v2").json()["version"] == lc2d.__version__
        assert client.get("/openapi.json").json()["info"]["version"] == lc2d.__version__
