"""An independent NumPy reference for LocallyConnected2D: the sum written from its definition.

It shares no code with models/: windows, connectivity and tf_keras's weight orders are
re-derived here with plain loops, then the layer is evaluated as ``y = x_flat @ W + b``.
"""

from __future__ import annotations

import itertools

import numpy as np


def out_len(size: int, k: int, s: int, padding: str) -> int:
    n = size if padding == "same" else size - k + 1
    return -(-n // s)


def taps(out_pos: int, size: int, k: int, s: int, padding: str) -> list[int | None]:
    """Input index of each of the k taps of one output position, None where off the input."""
    start = out_pos * s - (k // 2 if padding == "same" else 0)
    return [i if 0 <= i < size else None for i in range(start, start + k)]


def dense_weights(kernel: np.ndarray, impl: int, H: int, W: int, C: int, F: int,
                  ks: tuple[int, int], st: tuple[int, int], padding: str, fmt: str) -> np.ndarray:
    """The layer's (H·W·C) × (OR·OC·F) matrix in native flat layouts, built by loops."""
    OR, OC = out_len(H, ks[0], st[0], padding), out_len(W, ks[1], st[1], padding)
    cf = fmt == "channels_first"

    def in_index(r: int, c: int, ch: int) -> int:
        return (ch * H + r) * W + c if cf else (r * W + c) * C + ch

    def out_index(orow: int, ocol: int, f: int) -> int:
        return (f * OR + orow) * OC + ocol if cf else (orow * OC + ocol) * F + f

    dense = np.zeros((H * W * C, OR * OC * F), np.float64)
    pairs = []  # (out_idx, in_idx, loc, patch, f) for connected weights
    for orow, ocol in itertools.product(range(OR), range(OC)):
        rows, cols = taps(orow, H, ks[0], st[0], padding), taps(ocol, W, ks[1], st[1], padding)
        order = (itertools.product(range(C), range(ks[0]), range(ks[1])) if cf
                 else ((i, j, ch) for i, j, ch in itertools.product(range(ks[0]), range(ks[1]), range(C))))
        for p, t in enumerate(order):
            ch, i, j = t if cf else (t[2], t[0], t[1])
            if rows[i] is None or cols[j] is None:
                continue
            for f in range(F):
                pairs.append((out_index(orow, ocol, f), in_index(rows[i], cols[j], ch),
                              orow * OC + ocol, p, f, rows[i], cols[j], ch))
    if impl == 3:
        for value, pair in zip(kernel, sorted(pairs), strict=True):
            dense[pair[1], pair[0]] = value
        return dense
    for out_i, in_i, loc, p, f, r, c, ch in pairs:
        if impl == 1:
            dense[in_i, out_i] = kernel[loc, p, f]
        elif cf:
            dense[in_i, out_i] = kernel[ch, r, c, f, loc // OC, loc % OC]
        else:
            dense[in_i, out_i] = kernel[r, c, ch, loc // OC, loc % OC, f]
    return dense


def locally_connected(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, impl: int,
                      filters: int, ks: tuple[int, int], st: tuple[int, int], padding: str,
                      fmt: str) -> np.ndarray:
    """Forward pass of the layer (no activation), in float64."""
    N = x.shape[0]
    H, W, C = (x.shape[2], x.shape[3], x.shape[1]) if fmt == "channels_first" else x.shape[1:]
    OR, OC = out_len(H, ks[0], st[0], padding), out_len(W, ks[1], st[1], padding)
    dense = dense_weights(kernel, impl, H, W, C, filters, ks, st, padding, fmt)
    y = x.reshape(N, -1).astype(np.float64) @ dense
    shape = (filters, OR, OC) if fmt == "channels_first" else (OR, OC, filters)
    y = y.reshape(N, *shape)
    if bias is not None:
        y = y + bias.reshape(shape)  # tf_keras reshapes (OR, OC, F) into the output layout
    return y
