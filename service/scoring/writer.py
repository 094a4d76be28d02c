"""An ``.npy`` file written a batch at a time, never held whole in memory.

The header (final shape and dtype) is written first; each batch then goes to its place with a
positional write at ``header + first_row * row_bytes``. Rows may arrive in any order (the Ray
engine) and the file is still in input order. The data goes to ``OUTPUT.partial`` and is renamed
to ``OUTPUT`` only once every row is there, so a failed job never leaves a plausible-looking
result behind.

Example:
    >>> with NpyRowWriter(Path("scores.npy"), rows=1000, row_shape=(10,)) as writer:
    ...     writer.write(0, first_batch)          # rows 0..len(first_batch)-1
    ...     ...
    ...     writer.commit()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np


@dataclass(frozen=True)
class WriterStats:
    """What the writer has done so far.

    Attributes:
        writes: positional writes made (one per batch).
        rows_written: rows written so far.
        bytes_written: data bytes written so far (header excluded).
    """

    writes: int
    rows_written: int
    bytes_written: int


class NpyRowWriter:
    """Writes a ``[rows, *row_shape]`` array to an ``.npy`` file batch by batch.

    Args:
        path: the final ``.npy`` path.
        rows: number of rows the finished file holds.
        row_shape: shape of one row.
        dtype: the array's dtype.
    """

    def __init__(self, path: Path, rows: int, row_shape: tuple[int, ...],
                 dtype: np.dtype | type = np.float32) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.shape = (int(rows), *(int(d) for d in row_shape))
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._written = np.zeros(self.shape[0], dtype=bool)
        self._writes = 0
        self._rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.partial_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._data_offset = self._write_header()

    def write(self, start: int, rows: np.ndarray) -> None:
        """Writes ``rows`` as rows ``[start, start + len(rows))`` of the file.

        Raises:
            ValueError: rows of the wrong shape or dtype, outside the file, or written twice.
        """
        if rows.shape[1:] != self.shape[1:] or rows.dtype != self.dtype:
            raise ValueError(f"expected rows of shape [n, {', '.join(map(str, self.shape[1:]))}] and "
                             f"dtype {self.dtype}, received {list(rows.shape)} {rows.dtype}")
        stop = start + len(rows)
        if not 0 <= start <= stop <= self.shape[0]:
            raise ValueError(f"rows [{start}, {stop}) are outside the file's [0, {self.shape[0]})")
        if self._written[start:stop].any():
            raise ValueError(f"rows [{start}, {stop}) overlap rows already written")
        data = memoryview(np.ascontiguousarray(rows)).cast("B")  # type: ignore[arg-type]
        offset = self._data_offset + start * self.row_bytes
        while data:
            count = os.pwrite(self._fd, data, offset)
            data, offset = data[count:], offset + count
        self._written[start:stop] = True
        self._writes += 1
        self._rows += len(rows)

    @property
    def stats(self) -> WriterStats:
        """Writes, rows and bytes so far."""
        return WriterStats(writes=self._writes, rows_written=self._rows,
                           bytes_written=self._rows * self.row_bytes)

    def commit(self) -> Path:
        """Closes the file and renames it to its final path.

        Raises:
            ValueError: when some rows were never written.
        """
        missing = int((~self._written).sum())
        if missing:
            raise ValueError(f"{missing} of {self.shape[0]} rows were never written to {self.path}")
        self._close()
        os.replace(self.partial_path, self.path)
        return self.path

    def abort(self) -> None:
        """Closes and deletes the unfinished file."""
        self._close()
        self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._fd >= 0:
            self.abort()

    def _write_header(self) -> int:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": self.shape}
        with os.fdopen(os.dup(self._fd), "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            return handle.tell()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
