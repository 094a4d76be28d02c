"""Oddly named version folders are not versions: the server starts and serves the real ones."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.repository import is_version_name, scan_model_directory
from service.settings import ServeSettings

ODD_NAMES = ["²", "١٢", "01", "1" * 30, "1 ", "-1", "1.5"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_is_version_name_refuses_what_is_not_plain_ascii_digits(name: str) -> None:
    assert not is_version_name(name)


def test_odd_version_folders_are_ignored_and_the_server_serves_version_1(tmp_path: Path, tiny_model) -> None:
    model_dir = tmp_path / "repo" / "tiny"
    for name in ["1", *ODD_NAMES]:
        (model_dir / name).mkdir(parents=True)
        shutil.copy(tiny_model.path, model_dir / name / "model.onnx")
    assert list(scan_model_directory(model_dir).versions) == ["1"]
    settings = ServeSettings(model_repository=tmp_path / "repo", device="cpu", threads=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/models/tiny").json()["versions"] == ["1"]
        batch = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype(np.float32)
        answer = client.post("/v2/models/tiny/versions/1/infer", json={"inputs": [
            {"name": "input", "shape": [2, 8, 8, 1], "datatype": "FP32", "data": batch.ravel().tolist()}]})
        np.testing.assert_allclose(np.reshape(answer.json()["outputs"][0]["data"], (2, 10)),
                                   tiny_model.reference(batch), rtol=1e-5, atol=1e-6)
        assert client.get("/v2/models/tiny/versions/²/ready").status_code == 404
