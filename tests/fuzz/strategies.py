"""Hypothesis strategies shared by the HTTP and gRPC fuzz tests: JSON values, mutated JSON, odd names."""

from __future__ import annotations

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
