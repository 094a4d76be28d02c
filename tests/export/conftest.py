"""Fixtures of the export tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def export_rng() -> np.random.Generator:
    return np.random.default_rng(20261126)
