"""ServeSettings from options and LC2D_* variables."""

import pytest

from lc2d.cli import build_parser
from service.settings import ServeSettings


def test_spin_is_on_by_default_and_turned_off_by_variable_or_option(monkeypatch, tmp_path) -> None:
    model = tmp_path / "m.onnx"
    assert ServeSettings(model=[model]).spin is True
    monkeypatch.setenv("LC2D_SPIN", "false")
    assert ServeSettings(model=[model]).spin is False
    args = build_parser().parse_args(["serve", "--model", str(model), "--no-spin"])
    assert args.spin is False
    assert build_parser().parse_args(["serve", "--model", str(model)]).spin is None  # variable decides


def test_bad_variable_values_fail_clearly(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LC2D_SPIN", "sometimes")
    with pytest.raises(ValueError, match="spin"):
        ServeSettings(model=[tmp_path / "m.onnx"])
