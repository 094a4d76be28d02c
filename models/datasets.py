"""Training data: scikit-learn's bundled digits and user ``.npz`` files, split deterministically.

A :class:`Dataset` holds float32 images ``(N, rows, cols, channels)`` (channels last), integer
class indices ``0..K-1`` and the ``K`` class names. Every problem with a user file is collected
and raised as one :class:`DatasetError` that says what was expected and what was received.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The split never depends on the training seed, so test accuracy is comparable across seeds.
SPLIT_SEED = 20261125
VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15
MIN_EXAMPLES = 10
DIGITS_SCALE = 1.0 / 16.0  # scikit-learn's digits are integers 0..16


class DatasetError(ValueError):
    """A dataset that cannot be trained on; the message lists every problem found."""


@dataclass(frozen=True)
class Split:
    """Images ``x`` (float32, N×H×W×C) and class indices ``y`` (int64, N) of one split."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Dataset:
    """A train / validation / test split with its class names.

    Attributes:
        name: ``"digits"`` or the file's path.
        train, validation, test: the three disjoint splits.
        labels: class names; ``y == i`` means ``labels[i]``.
        input_scale: factor applied to the raw pixels (clients must scale inputs the same way).
    """

    name: str
    train: Split
    validation: Split
    test: Split
    labels: list[str]
    input_scale: float = 1.0

    @property
    def input_shape(self) -> tuple[int, int, int]:
        rows, cols, channels = self.train.x.shape[1:]
        return (int(rows), int(cols), int(channels))


def split_indices(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic train / validation / test indices of ``n`` examples (70 / 15 / 15)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * TEST_FRACTION))
    n_val = max(1, round(n * VALIDATION_FRACTION))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def make_dataset(name: str, x: np.ndarray, y: np.ndarray, labels: list[str],
                 input_scale: float = 1.0) -> Dataset:
    """Split validated arrays ``x`` (N×H×W×C float32) and ``y`` (N class indices)."""
    train, val, test = split_indices(len(y))
    return Dataset(name, Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test]),
                   labels, input_scale)


def load_digits() -> Dataset:
    """scikit-learn's 1,797 handwritten digits as 8×8×1 images scaled to [0, 1], labels "0".."9"."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images.astype("float32") * DIGITS_SCALE)[..., np.newaxis]
    y = bunch.target.astype("int64")
    return make_dataset("digits", x, y, [str(int(t)) for t in bunch.target_names], DIGITS_SCALE)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"Expected an existing .npz file with arrays 'x' and 'y'. "
                           f"Received: {str(path)!r}, which does not exist or is not a file.")
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile)
    try:
        loaded = np.load(path, allow_pickle=False)
    except unreadable as err:
        raise DatasetError(f"Expected a .npz archive (numpy.savez). Received: {str(path)!r}, "
                           f"which numpy cannot read ({err}).") from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DatasetError(f"Expected a .npz archive (numpy.savez). Received: {str(path)!r}, "
                           "a single .npy array.")
    with loaded as archive:
        try:
            return {key: archive[key] for key in archive.files}
        except unreadable as err:
            raise DatasetError(f"Expected a .npz archive of numeric arrays. Received: "
                               f"{str(path)!r}, with an array numpy cannot read ({err}).") from err


def _image_problems(x: np.ndarray) -> list[str]:
    if x.dtype.kind not in "biuf":
        return [f"x must hold numbers. Received dtype {x.dtype}"]
    problems = []
    if x.ndim not in (3, 4):
        problems.append(f"x must be images N×H×W or N×H×W×C (3-D or 4-D). Received shape {x.shape}")
    elif min(x.shape) == 0:
        problems.append(f"x must have no empty axis. Received shape {x.shape}")
    if x.dtype.kind == "f" and x.size and not np.isfinite(x).all():
        problems.append(f"x must be finite. Received {int((~np.isfinite(x)).sum())} NaN/inf values")
    return problems


def _label_problems(y: np.ndarray, n_images: int | None) -> list[str]:
    if y.ndim != 1:
        return [f"y must be 1-D class labels. Received shape {y.shape}"]
    if y.dtype.kind not in "biu":
        return [f"y must hold integer class labels. Received dtype {y.dtype}"]
    problems = []
    if n_images is not None and len(y) != n_images:
        problems.append(f"y must have one label per image ({n_images}). Received {len(y)} labels")
    if len(y) < MIN_EXAMPLES:
        problems.append(f"need at least {MIN_EXAMPLES} examples. Received {len(y)}")
    if len(np.unique(y)) < 2:
        problems.append(f"y must hold at least 2 classes. Received {np.unique(y).tolist()}")
    return problems


def _names_problems(names: np.ndarray | None, y: np.ndarray) -> list[str]:
    if names is None:
        return []
    names = np.asarray(names)
    if names.ndim != 1 or names.dtype.kind not in "UO":
        return [f"labels must be a 1-D array of strings. Received {names.dtype} shape {names.shape}"]
    if y.ndim == 1 and y.dtype.kind in "biu" and len(y) and (y.min() < 0 or y.max() >= len(names)):
        return [f"with 'labels', y must be class indices 0..{len(names) - 1}. "
                f"Received values {int(y.min())}..{int(y.max())}"]
    return []


def validate_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    """Every problem that prevents training on ``arrays`` (keys ``x``, ``y``, optional ``labels``)."""
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        return [f"missing array(s) {missing}; found {sorted(arrays)}"]
    x, y = arrays["x"], arrays["y"]
    problems = _image_problems(x)
    n_images = x.shape[0] if x.ndim >= 1 else None
    return problems + _label_problems(y, n_images) + _names_problems(arrays.get("labels"), y)


def dataset_from_arrays(name: str, arrays: dict[str, np.ndarray]) -> Dataset:
    """A :class:`Dataset` from validated-on-the-way arrays; raises :class:`DatasetError`.

    ``y`` holds class indices ``0..K-1`` when ``labels`` (K strings) is given; otherwise any
    integers, whose sorted distinct values become the classes (named by their decimal form).
    """
    problems = validate_arrays(arrays)
    if problems:
        raise DatasetError(f"{name}: expected x (N×H×W[×C] numbers, finite) and y (N integer "
                           f"labels, ≥ 2 classes). Received: " + "; ".join(problems) + ".")
    x = arrays["x"].astype("float32")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    y = arrays["y"].astype("int64")
    if "labels" in arrays:
        return make_dataset(name, x, y, [str(s) for s in arrays["labels"]])
    classes, indices = np.unique(y, return_inverse=True)
    return make_dataset(name, x, indices.astype("int64"), [str(int(c)) for c in classes])


def load_npz(path: str | Path) -> Dataset:
    """Load a user ``.npz`` with ``x`` (N×H×W or N×H×W×C) and ``y`` (N integer labels).

    Pixels are used as given (cast to float32). Raises :class:`DatasetError` listing every problem.
    """
    path = Path(path)
    return dataset_from_arrays(str(path), _read_npz(path))


def load_dataset(spec: str) -> Dataset:
    """``"digits"`` or a path to a ``.npz`` file."""
    return load_digits() if spec == "digits" else load_npz(spec)
