"""Joining request arrays into one batch and splitting the model's outputs back, exactly."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np


def merge_requests(batches: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Concatenates request batches along the batch axis.

    Args:
        batches: one array per request, each ``[n_i, *instance_shape]``.

    Returns:
        The merged array ``[sum(n_i), *instance_shape]`` and the sizes ``[n_i]`` needed to split.
    """
    sizes = [len(batch) for batch in batches]
    merged = batches[0] if len(batches) == 1 else np.concatenate(batches, axis=0)
    return merged, sizes


def split_outputs(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Splits every output of a merged run back into per-request pieces, in request order.

    Args:
        outputs: output name -> array whose first axis is the merged batch.
        sizes: instances per request, as returned by :func:`merge_requests`.

    Returns:
        One ``{name: array}`` per request; request ``i`` gets rows
        ``sum(sizes[:i]) .. sum(sizes[:i+1])`` of every output.

    Raises:
        ValueError: when an output's batch axis does not have ``sum(sizes)`` rows.
    """
    total = sum(sizes)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(f"output {name!r} has shape {list(value.shape)}, expected {total} rows "
                             "(one per merged instance)")
    if len(sizes) == 1:  # a batch of one request (every request when traffic is light)
        return [dict(outputs)]
    bounds = [0, *itertools.accumulate(sizes)]  # cheaper than np.cumsum for a short list
    return [{name: value[start:stop] for name, value in outputs.items()}
            for start, stop in itertools.pairwise(bounds)]
