"""The incremental .npy writer: rows land at their place, partial files never pass for results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.scoring.writer import NpyRowWriter


def test_write_rows_out_of_order_gives_a_file_in_row_order(tmp_path: Path, rng: np.random.Generator) -> None:
    expected = rng.random((10, 3), dtype=np.float32)
    writer = NpyRowWriter(tmp_path / "y.npy", rows=10, row_shape=(3,))
    for start, stop in [(8, 10), (0, 4), (4, 8)]:
        writer.write(start, expected[start:stop])
    assert not (tmp_path / "y.npy").exists()
    writer.commit()
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert writer.stats.writes == 3 and writer.stats.rows_written == 10
    assert not writer.partial_path.exists()


def test_commit_raises_when_rows_are_missing(tmp_path: Path) -> None:
    writer = NpyRowWriter(tmp_path / "y.npy", rows=4, row_shape=(2,))
    writer.write(0, np.ones((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="1 of 4 rows were never written"):
        writer.commit()
    writer.abort()
    assert not writer.partial_path.exists() and not (tmp_path / "y.npy").exists()


def test_write_raises_for_overlap_wrong_shape_and_out_of_range(tmp_path: Path) -> None:
    with NpyRowWriter(tmp_path / "y.npy", rows=4, row_shape=(2,)) as writer:
        writer.write(0, np.ones((2, 2), dtype=np.float32))
        with pytest.raises(ValueError, match="overlap"):
            writer.write(1, np.ones((2, 2), dtype=np.float32))
        with pytest.raises(ValueError, match=r"expected rows of shape \[n, 2\] and dtype float32"):
            writer.write(2, np.ones((2, 3), dtype=np.float32))
        with pytest.raises(ValueError, match="outside"):
            writer.write(3, np.ones((2, 2), dtype=np.float32))
    assert not writer.partial_path.exists()
