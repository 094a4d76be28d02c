"""Where the rows to score come from: a ``.npy`` file, one array of a ``.npz``, or an image folder.

Every source reads rows ``[start, stop)`` on demand and never holds more than those rows, so
scoring memory is bounded by the batch size, not by the input size:

* ``.npy`` and arrays stored uncompressed in a ``.npz`` (``numpy.savez``) are read with
  positional reads at ``offset + start * row_bytes``. The file is never mapped whole: pages of
  a memory map that were touched count as resident memory until the kernel evicts them, so a
  2 GB memory-mapped input would show 2 GB of RSS; explicit reads keep RSS near one batch.
* arrays compressed in a ``.npz`` (``numpy.savez_compressed``) are streamed through the
  decompressor; reading forwards is cheap, going backwards restarts the stream.
* an image folder lists its PNG/JPEG files in file-name order and decodes only the requested
  ones, resized and converted to the model's input shape (see :mod:`service.scoring.images`).

Sources are picklable (a Ray read task carries one to a worker); open file handles are dropped
when pickled and reopened on first use.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from service.contract import InputContract
from service.scoring.errors import ScoringInputError
from service.scoring.images import IMAGE_SUFFIXES, ImageLayout, read_image

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip local file header (PKZIP appnote 4.3.7)


class RowSource(Protocol):
    """Rows to score, read a slice at a time.

    A source must pickle (a Ray read task carries it to a worker): it drops its open handles
    when pickled (``__getstate__``) and reopens them on the next :meth:`read`.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        """The whole input's shape, rows first."""

    @property
    def dtype(self) -> np.dtype:
        """The dtype :meth:`read` returns."""

    @property
    def description(self) -> str:
        """What the input is, for messages and the summary (e.g. ``"x.npz[x]"``)."""

    @property
    def row_names(self) -> tuple[str, ...] | None:
        """One name per row (image file names), or ``None`` for arrays."""

    @property
    def read_ahead(self) -> bool:
        """Whether reading costs enough (decoding, decompressing) to overlap with inference."""

    def read(self, start: int, stop: int) -> np.ndarray:
        """Returns rows ``[start, stop)`` as a new array."""

    def close(self) -> None:
        """Releases open files; a later :meth:`read` reopens them."""


@dataclass
class NpyRows:
    """Rows of a C-order ``.npy`` array stored at ``offset`` in ``path`` (or in a zip member).

    Attributes:
        path: the ``.npy`` or ``.npz`` file.
        shape: the array's shape, rows first.
        dtype: the array's dtype.
        offset: where the array data starts in ``path`` (for plain reads).
        member: the ``.npz`` member to stream through the decompressor, or ``None`` for plain
            reads of ``path``.
        description: how messages name this input.
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    member: str | None = None
    description: str = ""
    _file: IO[bytes] | None = field(default=None, init=False, repr=False, compare=False)
    _archive: zipfile.ZipFile | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def row_names(self) -> tuple[str, ...] | None:
        return None

    @property
    def read_ahead(self) -> bool:
        return self.member is not None  # decompression; plain reads are a memcpy from page cache

    @functools.cached_property
    def row_bytes(self) -> int:
        """Bytes of one row."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, start: int, stop: int) -> np.ndarray:
        """Reads rows ``[start, stop)`` into a fresh array (one copy, no memory map)."""
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"rows [{start}, {stop}) are outside [0, {self.shape[0]})")
        rows = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        view = memoryview(rows).cast("B") if rows.size else memoryview(b"")  # type: ignore[arg-type]
        offset = self.offset + start * self.row_bytes
        handle = self._handle()
        if self.member is None:  # one pread per batch, no seek
            filled = _pread_exactly(handle.fileno(), view, offset)
        else:
            handle.seek(offset)
            filled = _read_exactly(handle, view)
        if filled != len(view):
            raise ScoringInputError(f"{self.description} ended early: expected {self.shape[0]} rows of "
                                    f"{self.row_bytes} bytes, the file is truncated")
        return rows

    def close(self) -> None:
        """Closes the open file handles (they reopen on the next read)."""
        for handle in (self._file, self._archive):
            if handle is not None:
                handle.close()
        self._file = self._archive = None

    def _handle(self) -> IO[bytes]:
        if self._file is None:
            if self.member is None:
                # unbuffered: each read is one large readinto, a buffer would only add a copy
                self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open
            else:
                self._archive = zipfile.ZipFile(self.path)
                self._file = self._archive.open(self.member)
        return self._file

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = state["_archive"] = None
        return state


@dataclass
class ImageFolderRows:
    """Rows decoded from the PNG/JPEG files of a folder, in file-name order.

    Attributes:
        folder: the folder.
        files: file names, sorted.
        layout: how one image becomes one model input.
    """

    folder: Path
    files: tuple[str, ...]
    layout: ImageLayout

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.layout.instance_shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def description(self) -> str:
        return f"image folder {str(self.folder)!r}"

    @property
    def row_names(self) -> tuple[str, ...] | None:
        return self.files

    @property
    def read_ahead(self) -> bool:
        return True

    def read(self, start: int, stop: int) -> np.ndarray:
        """Decodes images ``[start, stop)`` into a float32 batch."""
        rows = np.empty((stop - start, *self.layout.instance_shape), dtype=np.float32)
        for i, name in enumerate(self.files[start:stop]):
            rows[i] = read_image(self.folder / name, self.layout)
        return rows

    def close(self) -> None:
        """Nothing to release: each image file is opened and closed as it is decoded."""


def open_source(path: str | Path, contract: InputContract, key: str | None = None) -> RowSource:
    """Opens a scoring input without reading its data.

    Args:
        path: a ``.npy`` file, a ``.npz`` file or a folder of PNG/JPEG images.
        contract: the model's input contract (image folders are resized to it).
        key: the array of a ``.npz`` to score; optional when it holds a single array.

    Returns:
        A source whose ``read`` returns rows on demand.

    Raises:
        ScoringInputError: missing path, unknown kind of file, unreadable header, ``--key``
            given for something else than a ``.npz`` or naming no array, empty image folder.
    """
    path = Path(path)
    if not path.exists():
        raise ScoringInputError(f"expected an existing .npy file, .npz file or image folder, "
                                f"received {str(path)!r}, which does not exist")
    if key is not None and path.suffix.lower() != ".npz":
        raise ScoringInputError(f"--key picks an array of a .npz file, received it with {str(path)!r}")
    if path.is_dir():
        return open_image_folder(path, contract)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return open_npy(path)
    if suffix == ".npz":
        return open_npz(path, key)
    raise ScoringInputError(f"expected a .npy file, a .npz file or a folder of images, received "
                            f"{str(path)!r}")


def open_npy(path: Path) -> NpyRows:
    """Reads the header of a ``.npy`` file (the data stays on disk)."""
    with open(path, "rb") as handle:
        shape, dtype, offset = _read_npy_header(handle, str(path))
    _check_data_size(shape, dtype, path.stat().st_size - offset, str(path))
    return NpyRows(path=path, shape=shape, dtype=dtype, offset=offset, description=str(path))


def open_npz(path: Path, key: str | None) -> NpyRows:
    """Reads the header of one array of a ``.npz`` file (the data stays on disk)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise ScoringInputError(f"expected a .npz archive (numpy.savez), received {str(path)!r}, "
                                f"which is not a readable zip file ({err})") from err
    with archive:
        keys = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
        key = _pick_key(path, keys, key)
        info = archive.getinfo(f"{key}.npy")
        description = f"{path}[{key}]"
        if info.compress_type == zipfile.ZIP_STORED:
            return _open_stored_member(path, info, description)
        with archive.open(info) as member:
            shape, dtype, offset = _read_npy_header(member, description)
        _check_data_size(shape, dtype, info.file_size - offset, description)
    return NpyRows(path=path, shape=shape, dtype=dtype, offset=offset, member=info.filename,
                   description=description)


def open_image_folder(folder: Path, contract: InputContract) -> ImageFolderRows:
    """Lists a folder's PNG/JPEG files in file-name order (nothing is decoded yet)."""
    files = tuple(sorted(entry.name for entry in folder.iterdir()
                         if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES))
    if not files:
        raise ScoringInputError(f"expected a folder with PNG or JPEG images "
                                f"({', '.join(IMAGE_SUFFIXES)}), received {str(folder)!r}, which has none")
    return ImageFolderRows(folder=folder, files=files, layout=ImageLayout.from_contract(contract))


# --- helpers --------------------------------------------------------------------------------------


def _pick_key(path: Path, keys: list[str], key: str | None) -> str:
    if key is None and len(keys) == 1:
        return keys[0]
    if key is None:
        raise ScoringInputError(f"{str(path)!r} holds {len(keys)} arrays {keys}; expected --key to "
                                "name the one to score, received none")
    if key not in keys:
        raise ScoringInputError(f"--key: expected one of the arrays of {str(path)!r} {keys}, "
                                f"received {key!r}")
    return key


def _open_stored_member(path: Path, info: zipfile.ZipInfo, description: str) -> NpyRows:
    """An uncompressed member is a plain ``.npy`` at a fixed offset of the zip file."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        name_length, extra_length = fields[-2], fields[-1]
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        handle.seek(start)
        shape, dtype, offset = _read_npy_header(handle, description)
    _check_data_size(shape, dtype, info.file_size - (offset - start), description)
    return NpyRows(path=path, shape=shape, dtype=dtype, offset=offset, description=description)


def _read_npy_header(handle: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Returns shape, dtype and the absolute offset of the data of the ``.npy`` at the handle."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, EOFError) as err:
        raise ScoringInputError(f"expected a .npy array, received {where!r}, whose header numpy "
                                f"cannot read ({err})") from err
    if np.dtype(dtype).hasobject:
        raise ScoringInputError(f"expected an array of numbers, received Python objects (pickled data) in "
                                f"{where!r}")
    if fortran_order and len(shape) > 1:
        raise ScoringInputError(f"expected a C-order (row-major) array, received a Fortran-order one in "
                                f"{where!r}; rewrite it with np.save(path, np.ascontiguousarray(a))")
    if len(shape) == 0:
        raise ScoringInputError(f"expected an array with a batch axis, received a scalar in {where!r}")
    return tuple(int(d) for d in shape), np.dtype(dtype), handle.tell()


def _check_data_size(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str) -> None:
    """Refuses a header that claims more data than follows it, before anything is allocated.

    Memory then stays bounded by the batch size: a short file would otherwise be noticed only
    after an output of the claimed row count had been created.
    """
    needed = math.prod(shape) * dtype.itemsize  # Python integers: no overflow, whatever the claim
    if needed > available:
        raise ScoringInputError(f"expected {where!r} to hold the {needed:,} data bytes its header "
                                f"declares (shape {list(shape)}, {dtype.str}), received a file with "
                                f"{max(available, 0):,} bytes after the header; it is truncated or its "
                                "header is wrong")


def _read_exactly(handle: IO[bytes], view: memoryview) -> int:
    """Fills ``view`` from ``handle``; returns the bytes read (fewer only at end of file)."""
    filled = 0
    while filled < len(view):
        count = handle.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def _pread_exactly(fd: int, view: memoryview, offset: int) -> int:
    """Fills ``view`` from ``fd`` at ``offset``; returns the bytes read (fewer only at end of file)."""
    filled = 0
    while filled < len(view):
        count = os.preadv(fd, [view[filled:]], offset + filled)
        if not count:
            break
        filled += count
    return filled
