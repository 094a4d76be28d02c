"""Hypothesis strategies shared by the fuzz tests (HTTP, gRPC, Ray Serve): JSON values and bodies,
mutated JSON, ``.npy`` bodies, odd names."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from hypothesis import strategies as st

scalars = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
                    st.integers(), st.integers(min_value=2**63, max_value=2**200), st.text(max_size=4))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=24)

odd_names = st.one_of(
    st.sampled_from(["", ".", "..", "../tiny", "tiny/1", "/etc/passwd", "tiny\x00", "a\x00b", "TINY", " tiny",
                     "x" * 5000, "é" * 300, "tiny\n", "%2e%2e", "\\..\\tiny"]),
    st.text(max_size=12))
"""Model names and versions a client should never send: empty, huge, with NUL, paths, lookalikes."""
odd_versions = st.one_of(st.sampled_from(["", "1", "01", "-1", "0", "2", "²", "١", "1.0", " 1", "9" * 40,
                                          "1\x00", "..", "latest"]), st.text(max_size=6))


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """``body`` truncated, with bytes inserted, or wrapped in deep nesting."""
    kind = draw(st.sampled_from(["as-is", "truncate", "insert", "nest", "bigint", "constant"]))
    at = draw(st.integers(0, len(body)))
    if kind == "truncate":
        return body[:at]
    if kind == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    if kind == "nest":
        depth = draw(st.integers(500, 3000))
        return b'{"instances": ' + b"[" * depth + body + b"]" * depth + b"}"
    if kind == "bigint":
        return body.replace(b"0.", b"1" + b"0" * draw(st.integers(20, 6000)) + b"0.", 1)
    if kind == "constant":
        constant = draw(st.sampled_from([b"NaN, 0.", b"Infinity, 0.", b"true, 0.", b"null, 0."]))
        return body.replace(b"0.", constant, 1)
    return body


def encode(value: object) -> bytes:
    return json.dumps(value).encode()


@st.composite
def nearly_valid_instances(draw: st.DrawFn, shape: tuple[int, ...]) -> list:
    """Instances of ``shape`` (rank 3), one leaf (maybe) replaced by any JSON value."""
    count = draw(st.integers(0, 10))
    size = count * math.prod(shape)
    values = np.asarray(draw(st.lists(st.floats(-1e3, 1e3), min_size=size, max_size=size)))
    instances = values.reshape(count, *shape).tolist()
    if instances and draw(st.booleans()):
        instances[draw(st.integers(0, count - 1))][0][0][0] = draw(json_values)
    return instances


def predict_payloads(shape: tuple[int, ...]) -> st.SearchStrategy:
    """``/predict`` payloads: nearly valid instances of ``shape``, mixed lists, any JSON value."""
    instances = nearly_valid_instances(shape)
    return st.one_of(
        st.fixed_dictionaries({"instances": instances}),
        st.fixed_dictionaries({"instances": st.lists(st.one_of(instances, st.fixed_dictionaries(
            {"input": json_values}), json_values), max_size=4)}),
        st.fixed_dictionaries({"inputs": st.one_of(json_values, instances,
                                                   st.fixed_dictionaries({"input": instances}))}),
        json_values,
    )


@st.composite
def npy_bodies(draw: st.DrawFn) -> bytes:
    """``.npy`` bodies with any version, header dict, claimed shape and data length."""
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (4, 1), (1, 1)]))
    descr = draw(st.one_of(st.sampled_from(["<f4", "<f8", ">f4", "|u1", "<i8", "|b1", "|O", "<U3", "xx",
                                            "<c8", "[('a', '<f4')]", "<V4", "<f2"]), st.text(max_size=5)))
    fortran = draw(st.sampled_from(["True", "False", "1", "'x'", "None"]))
    dims = st.one_of(st.integers(0, 10), st.integers(0, 2**70), st.integers(-3, -1))
    shape = draw(st.lists(dims, max_size=5))
    shape_text = "(" + "".join(f"{d}, " for d in shape) + ")"
    keys = {"descr": repr(descr) if not descr.startswith("[") else descr, "fortran_order": fortran,
            "shape": shape_text}
    if draw(st.booleans()):
        keys.pop(draw(st.sampled_from(sorted(keys))))
    header = ("{" + ", ".join(f"'{k}': {v}" for k, v in keys.items()) + ", }").encode("utf8")
    header = mutated_header = draw(st.sampled_from([header, header[: len(header) // 2], b"__import__('os')"]))
    length = struct.pack("<H" if version[0] == 1 else "<I", len(mutated_header) + 1)
    claimed = min(math.prod(shape) * 4, 600) if all(d >= 0 for d in shape) else 0  # as if <f4
    size = draw(st.one_of(st.integers(0, 600), st.just(claimed)))
    data = draw(st.binary(min_size=size, max_size=size))
    preamble = draw(st.sampled_from([b"\x93NUMPY", b"\x93NUMPX", b"PK\x03\x04", b""]))
    return preamble + bytes(version) + length + header + b"\n" + data


