"""Finding model files: a repository ``DIR/<name>/<version>/model.onnx`` or single ``--model`` files.

:class:`ModelCatalog` answers "which models exist, with which version files and which
``config.json``" each time it is asked, so the registry can rescan (poll, SIGHUP, a load
request). :class:`FileDigest` tells whether a version's file changed since it was loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import ModelLoadError
from service.model_config import CONFIG_FILENAME

MODEL_FILENAME = "model.onnx"
_HASH_CHUNK = 1 << 20
_VERSION_NAME = re.compile(r"0|[1-9][0-9]{0,17}")  # ASCII digits, no leading zero, fits in int64


def is_version_name(name: str) -> bool:
    """Whether a directory or version name is a version number as the repository writes it.

    ``str.isdigit`` also accepts "²" and "١٢", which ``int`` then refuses or reads as another
    version; "01" would shadow "1". Such folders are not versions (and so never stop start-up).
    """
    return _VERSION_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class ModelEntry:
    """One model as found on disk.

    Attributes:
        name: the served name.
        versions: version string -> ``.onnx`` file (which may be missing: the version is then
            not ready). A repository model directory without any numeric version directory
            gets version ``"1"`` with a missing file, so that it shows up instead of vanishing.
        config_path: its ``config.json`` (which may not exist), or None for a ``--model`` file.
        required: a failure to load it stops start-up (``--model``) instead of marking it not
            ready (repository).
    """

    name: str
    versions: dict[str, Path] = field(default_factory=dict)
    config_path: Path | None = None
    required: bool = False


@dataclass(frozen=True)
class FileDigest:
    """What a loaded file was: its stat signature and the SHA-256 of its content."""

    signature: tuple[int, int, int]
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileDigest:
        """Hashes ``path`` (reads the whole file)."""
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
        return cls(_signature(path), digest.hexdigest())

    def changed(self, path: Path) -> bool:
        """True when ``path``'s content differs; the file is hashed again only when its size,
        modification time or inode moved, so polling a large unchanged file costs one ``stat``."""
        try:
            if _signature(path) == self.signature:
                return False
            return FileDigest.of(path).sha256 != self.sha256
        except OSError:
            return True


def _signature(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


def scan_model_directory(model_dir: Path) -> ModelEntry:
    """The versions and ``config.json`` of one repository model directory."""
    try:
        versions = sorted((p for p in model_dir.iterdir() if is_version_name(p.name) and p.is_dir()),
                          key=lambda p: int(p.name))
    except OSError:  # unreadable: version 1 is then not ready, with the error loading it gives
        versions = []
    files = {v.name: v / MODEL_FILENAME for v in versions}
    if not files:
        files = {"1": model_dir / "1" / MODEL_FILENAME}
    return ModelEntry(model_dir.name, files, config_path=model_dir / CONFIG_FILENAME)


def scan_repository(root: Path) -> dict[str, ModelEntry]:
    """Every model directory under a repository, by name (hidden directories are skipped).

    Raises:
        ModelLoadError: when ``root`` is not a directory.
    """
    if not root.is_dir():
        raise ModelLoadError(f"model repository {str(root)!r} is not a directory "
                             f"(expected {root}/<name>/<version>/{MODEL_FILENAME})")
    return {model_dir.name: scan_model_directory(model_dir)
            for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))}


def entries_from_files(paths: Sequence[Path]) -> dict[str, ModelEntry]:
    """One required model (version ``"1"``) per ``--model`` file, named after the file's stem.

    Raises:
        ModelLoadError: two files with the same stem.
    """
    names = [path.stem for path in paths]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelLoadError(f"expected --model files with distinct names, received several named "
                             f"{duplicates}")
    return {path.stem: ModelEntry(path.stem, {"1": path}, required=True) for path in paths}


@dataclass(frozen=True)
class ModelCatalog:
    """Where the server's models come from: ``--model`` files, then a repository directory.

    Attributes:
        files: the ``--model`` files.
        repository: the ``--model-repository`` directory, or None.
    """

    files: tuple[Path, ...] = ()
    repository: Path | None = None

    def scan(self) -> dict[str, ModelEntry]:
        """Every model now on disk, by name.

        Raises:
            ModelLoadError: duplicate ``--model`` names, or a repository that is not a directory.
        """
        found = scan_repository(self.repository) if self.repository is not None else {}
        files = entries_from_files(self.files)
        return {name: _combined(files.get(name), found.get(name)) for name in sorted({*found, *files})}

    def find(self, name: str) -> ModelEntry | None:
        """One model now on disk, or None."""
        file = entries_from_files(self.files).get(name)
        directory = None
        # a folder of the repository, never the repository itself ("") or anything outside it
        if self.repository is not None and name and not name.startswith(".") and "/" not in name:
            model_dir = self.repository / name
            try:  # a name the file system cannot hold (too long, NUL) names no model
                is_model_dir = model_dir.is_dir()
            except (OSError, ValueError):
                is_model_dir = False
            directory = scan_model_directory(model_dir) if is_model_dir else None
        return None if file is None and directory is None else _combined(file, directory)


def _combined(file: ModelEntry | None, directory: ModelEntry | None) -> ModelEntry:
    """A ``--model`` file and a repository directory of the same name serve as one model: the
    file is version 1 unless the directory has a version 1; the directory's config.json applies."""
    if file is None or directory is None:
        entry = file or directory
        assert entry is not None
        return entry
    return ModelEntry(file.name, {**file.versions, **directory.versions}, config_path=directory.config_path,
                      required=True)
