"""Finding model files: a repository ``DIR/<name>/<version>/model.onnx`` or single ``--model`` files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.errors import ModelLoadError

MODEL_FILENAME = "model.onnx"


@dataclass(frozen=True)
class ModelSource:
    """Where one served model version comes from.

    Attributes:
        name: the served name.
        version: a version string (digits in a repository).
        path: the ``.onnx`` file, which may be missing (the model is then not ready).
        required: a failure to load it stops start-up (``--model``) instead of marking it not
            ready (repository).
    """

    name: str
    version: str
    path: Path
    required: bool = False


def discover_repository(root: Path) -> list[ModelSource]:
    """Lists every ``<name>/<version>/model.onnx`` under a repository directory.

    A model directory without any numeric version directory yields one source for version
    ``"1"`` whose file is missing, so that the model shows up as not ready instead of vanishing.

    Args:
        root: the repository directory.

    Returns:
        Sources sorted by name, then by numeric version.

    Raises:
        ModelLoadError: when ``root`` is not a directory.
    """
    if not root.is_dir():
        raise ModelLoadError(f"model repository {str(root)!r} is not a directory "
                             f"(expected {root}/<name>/<version>/{MODEL_FILENAME})")
    sources = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name))
        if not versions:
            sources.append(ModelSource(model_dir.name, "1", model_dir / "1" / MODEL_FILENAME))
        sources.extend(ModelSource(model_dir.name, str(int(v.name)), v / MODEL_FILENAME) for v in versions)
    return sources


def sources_from_files(paths: list[Path]) -> list[ModelSource]:
    """One required source per ``--model`` file, named after the file's stem.

    Raises:
        ModelLoadError: two files with the same stem.
    """
    sources = [ModelSource(path.stem, "1", path, required=True) for path in paths]
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelLoadError(f"expected --model files with distinct names, received several named "
                             f"{duplicates}")
    return sources
