"""Reading request bodies within limits, content negotiation, JSON and ``.npy`` codecs."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import functools
import io
import json
import math
import re
import struct
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import Request, Response
from starlette.requests import ClientDisconnect

from service.connections import TIMED_OUT
from service.errors import (
    ClientDisconnectedError,
    DtypeError,
    MalformedRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceError,
    UnsupportedMediaTypeError,
)
from service.settings import ServeSettings

JSON = "application/json"
NPY = "application/x-npy"
OCTET = "application/octet-stream"
FORM = "application/x-www-form-urlencoded"
LARGE_BODY_BYTES = 1 << 20
"""Bodies from this size on are decoded in a worker thread, off the event loop."""
MAX_JSON_DEPTH = 1024  # orjson's own limit, and below Python's recursion limit for the fallback
MAX_ARRAY_RANK = 32  # NumPy's limit is 64; no model input has more than a handful of axes
_ASCII_DIGITS = re.compile(r"[0-9]+")
T = TypeVar("T")
Body = bytes | bytearray  # read_body grows a bytearray; tests and clients pass bytes


def media_type(header: str | None, default: str = JSON) -> str:
    """The bare media type of a ``Content-Type`` header, lower case, without parameters."""
    if not header:
        return default
    return header.split(";", 1)[0].strip().lower() or default


def body_limit(settings: ServeSettings, kind: str) -> int:
    """The largest body accepted for media type ``kind``: JSON has its own, smaller limit.

    A JSON number takes 10-20 bytes of text for 4 bytes of float32, and decoding costs CPU per
    byte, so JSON is bounded by ``max_json_bytes`` as well as by ``max_body_bytes``.
    """
    if kind == JSON:
        return min(settings.max_json_bytes, settings.max_body_bytes)
    return settings.max_body_bytes


def declared_length(value: str | None, header: str = "Content-Length") -> int | None:
    """The integer value of a length header, None when absent, 400 when not ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    if not _ASCII_DIGITS.fullmatch(value) or len(value) > 18:
        raise MalformedRequestError(f"{header} must be a non-negative integer in ASCII digits, received "
                                    f"{value[:40]!r}", expected="ASCII digits", received=value[:40])
    return int(value)


async def read_body(request: Request, limit: int) -> Body:
    """Reads the body, refusing (413) as soon as it is known to exceed ``limit`` bytes.

    The body grows in one ``bytearray`` (no list of chunks joined at the end), so a body costs
    about its own size in memory while it is read. A ``Content-Encoding: gzip`` or ``deflate``
    body is decompressed, and ``limit`` applies to the decompressed size too (a zip bomb stops
    at ``limit`` bytes with 413).
    """
    encoding = content_encoding(request.headers.get("content-encoding"))
    body = await _read_raw(request, limit)
    if encoding == "identity":
        return body
    return await off_loop(len(body), decompress, body, encoding, limit)  # large: not on the event loop


CONTENT_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Request body encodings read, with their zlib window bits (``deflate``: zlib-wrapped, RFC 9110)."""


def content_encoding(header: str | None) -> str:
    """The body's encoding: ``identity``, or one of :data:`CONTENT_ENCODINGS`; 415 otherwise."""
    value = (header or "identity").strip().lower() or "identity"
    if value != "identity" and value not in CONTENT_ENCODINGS:
        raise UnsupportedMediaTypeError(f"Content-Encoding {value!r} is not supported, expected one of "
                                        f"['gzip', 'deflate', 'identity']",
                                        expected=["gzip", "deflate", "identity"], received=value)
    return value


def decompress(body: Body, encoding: str, limit: int) -> Body:
    """Decompresses ``body``, never holding more than ``limit`` + 1 decompressed bytes.

    Raises:
        PayloadTooLargeError: the decompressed body exceeds ``limit`` (413).
        MalformedRequestError: the body is not valid ``encoding`` data (400).
    """
    wbits = CONTENT_ENCODINGS[encoding]
    try:
        return _inflate(body, wbits, limit)
    except zlib.error as err:
        if encoding == "deflate":  # some clients send raw deflate without the zlib wrapper
            try:
                return _inflate(body, -zlib.MAX_WBITS, limit)
            except zlib.error:
                pass
        raise MalformedRequestError(f"the body is not valid {encoding} data: {err}",
                                    expected=encoding) from err


def _inflate(body: Body, wbits: int, limit: int) -> Body:
    inflater = zlib.decompressobj(wbits)
    out = bytearray(inflater.decompress(body, limit + 1))
    while inflater.unconsumed_tail and len(out) <= limit:
        out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
    if len(out) > limit:
        raise PayloadTooLargeError(f"the body decompresses to more than {limit} bytes, expected at most "
                                   f"{limit}", expected=limit)
    if not inflater.eof:
        raise zlib.error("the compressed data ends early")
    return out


async def _read_raw(request: Request, limit: int) -> Body:
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"the body has {declared} bytes, expected at most {limit}",
                                   expected=limit, received=declared)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise PayloadTooLargeError(f"the body has more than {limit} bytes, expected at most {limit}",
                                           expected=limit)
            body += chunk
    except ClientDisconnect as err:
        if request.scope.get(TIMED_OUT):  # the connection layer closed a body that came too slowly
            raise RequestTimeoutError("the request body did not arrive in time", received=len(body)) from err
        raise ClientDisconnectedError(f"the client closed the connection after {len(body)} bytes of its body",
                                      received=len(body)) from err
    return body


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Awaits ``work`` (an inference), cancelled as soon as the client disconnects.

    A request whose client has gone is thereby taken off the batching queue before it runs
    (counted in ``lc2d_dropped_requests_total{reason="client_gone"}``), instead of costing a model
    run nobody reads. Call it once the body has been read: it listens on the request's channel.

    Raises:
        ClientDisconnectedError: the client disconnected first (499, logged, never sent).
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        raise ClientDisconnectedError("the client closed the connection before its answer") from None
    finally:
        watcher.cancel()


# The rule for a POST without Content-Type, per kind of route. A script on any web page can
# make a visitor's browser send such a body cross-origin without a CORS preflight, so reading
# it as JSON lets that page run inferences on a server the browser reaches. Weighed: the page
# cannot read the answer (no CORS headers) and an inference changes nothing on the server, so
# the page gains CPU time, as from any public endpoint; refusing would break the official
# clients, which send no Content-Type (tritonclient and the KServe v2 clients on the Open
# Inference Protocol routes, where the body may also be binary tensors with
# Inference-Header-Content-Length) and TensorFlow Serving, which reads such bodies as JSON.
# Form and text/plain bodies stay refused (415): a plain HTML form posts those from any page,
# no script needed; `curl -d` sends a form type, and the 415 says to add the JSON type. A
# deployment that browsers must not drive puts the server behind authentication, which this
# rule cannot replace.
WHEN_CONTENT_TYPE_MISSING: dict[str, str | None] = {"tfserving": JSON, "v2": JSON}
"""Route kind -> the media type assumed when a POST has no Content-Type (None: 415)."""


def require_media_type(request: Request, accepted: tuple[str, ...], route_kind: str) -> str:
    """The request's media type if the route accepts it, else 415.

    Args:
        request: the request.
        accepted: the media types the route reads.
        route_kind: a key of :data:`WHEN_CONTENT_TYPE_MISSING` (``"tfserving"``, ``"v2"``).
    """
    header = request.headers.get("content-type")
    kind = media_type(header) if header and header.strip() else WHEN_CONTENT_TYPE_MISSING[route_kind]
    if kind is None:
        raise UnsupportedMediaTypeError(f"the request has no Content-Type, expected one of {list(accepted)}",
                                        expected=list(accepted), received=None)
    if kind not in accepted:
        hint = (" (curl -d sends it by default: add -H 'Content-Type: application/json'; form bodies are "
                "refused because any web page's form can post them here)") if kind == FORM else ""
        raise UnsupportedMediaTypeError(f"Content-Type {kind!r} is not supported here, expected one of "
                                        f"{list(accepted)}{hint}", expected=list(accepted), received=kind)
    return kind


async def off_loop(size: int, function: Callable[..., T], *args: Any) -> T:
    """Runs ``function(*args)`` for a body of ``size`` bytes: inline when small, else in the decoder.

    Small bodies decode in microseconds, less than a thread hand-off costs. Large ones (from
    :data:`LARGE_BODY_BYTES`) would hold the event loop for tens to hundreds of milliseconds,
    stalling health checks and every other client, so they decode in the one decoder thread.
    One, not one per body: decoding holds the interpreter lock, so parallel decoders add no
    throughput, and with several of them the event loop had to win the lock against each in
    turn (liveness p99 65-320 ms with four 32 MiB JSON bodies in flight; 19-26 ms with one).
    """
    if size < LARGE_BODY_BYTES:
        return function(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_decoder(), functools.partial(function, *args))


_DECODER: concurrent.futures.ThreadPoolExecutor | None = None

# How long a thread may hold the interpreter lock while another waits for it (Python's default is
# 5 ms), while the server runs. Every turn of the event loop gives the lock up in its poll and
# must win it back; with the decoder busy on a large body that cost up to 5 ms per turn, and a
# health check needs several turns: on the quiet 2-core machine liveness p99 was 285-339 ms with
# four 32 MiB JSON bodies in flight. At 1 ms: 13.6 ms (0.5 ms: 17-21 ms, 2 ms: 33 ms), for
# about 10 % more time per large request. Set by the app's lifespan, restored after it.
SWITCH_INTERVAL_S = 0.001


@contextlib.contextmanager
def responsive_interpreter_lock() -> Iterator[None]:
    """Python's thread switch interval at :data:`SWITCH_INTERVAL_S` inside the block."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _decoder() -> concurrent.futures.ThreadPoolExecutor:
    """The process's one thread for large bodies, started on first use."""
    global _DECODER
    if _DECODER is None:
        _DECODER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lc2d-decode")
    return _DECODER


def parse_json(body: Body) -> Any:
    """Decodes a JSON body, or 400 saying where it is broken.

    Large bodies whose bulk is one array of numbers (``{"instances": [[...]]}``, a v2 tensor
    whose ``data`` comes last) are read without building Python lists: the array is decoded
    slice by slice into float32 (see :func:`_numeric_tail`), which keeps memory near the body's
    size and lets other threads (the event loop) run between slices. Anything else is read by
    orjson, or by the standard library for the NaN/Infinity tokens strict JSON lacks. Nesting
    deeper than :data:`MAX_JSON_DEPTH` is refused (400), and an array holding a boolean is
    refused (422): ``true`` is not the number 1.
    """
    if len(body) >= LARGE_BODY_BYTES:
        fast = _numeric_tail(body)
        if fast is not None:
            return fast
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        if "depth" in str(err):
            raise MalformedRequestError(f"the body is JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                        expected=f"at most {MAX_JSON_DEPTH} levels") from err
        payload = _parse_json_leniently(body)  # strict JSON has no NaN/Infinity tokens
    if b"true" in body or b"false" in body:
        refuse_booleans_in_arrays(payload)
    return payload


def _parse_json_leniently(body: Body) -> Any:
    try:
        return json.loads(body, parse_int=_json_int)
    except RecursionError as err:
        raise MalformedRequestError(f"the body is JSON nested deeper than {MAX_JSON_DEPTH} levels",
                                    expected=f"at most {MAX_JSON_DEPTH} levels") from err
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedRequestError(f"the body is not valid JSON: {err}", expected="JSON") from err


def _json_int(text: str) -> int | float:
    # An integer too long for int64 can only be a value, never a shape or a size: as a float it
    # becomes a (possibly infinite) number the contract judges, not a huge int Python refuses
    # to build (more than 4,300 digits) or NumPy cannot hold.
    return int(text) if len(text) <= 18 else float(text)


def refuse_booleans_in_arrays(payload: Any) -> None:
    """Raises DtypeError (422) when any JSON array holds ``true`` or ``false``.

    NumPy would silently read ``[0.5, true]`` as ``[0.5, 1.0]``; no field of either protocol is
    an array of booleans (flags such as ``binary_data`` are object members).
    """
    stack = [payload]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            kinds = set(map(type, item))
            if bool in kinds:
                raise DtypeError("the body holds a boolean (true/false) in an array, expected numbers "
                                 "(tensor values and shapes are numbers)", expected="numbers",
                                 received="boolean")
            if list in kinds or dict in kinds:
                stack.extend(value for value in item if isinstance(value, list | dict))


# --- large numeric arrays ------------------------------------------------------------------------

_NUMBER_CHARS = b"0123456789.eE+-"
_SPACE_CHARS = b" \t\r\n"
_ARRAY_CHARS = _NUMBER_CHARS + _SPACE_CHARS + b",[]"
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_PLACEHOLDER = "\x00lc2d-numeric-array\x00"
_SLICE_BYTES = 1 << 18  # a quarter MiB: each slice holds the interpreter for about a millisecond


def _numeric_tail(body: Body) -> Any | None:
    """The JSON value of ``body`` when its last value is a large rectangular array of numbers.

    The array's text is checked (only numbers, commas, brackets; rectangular; one number per
    slot) and decoded 1 MiB at a time into a float32 NumPy array; the rest of the body is
    parsed by orjson with a placeholder where the array was, then the array put in its place.

    Returns:
        The decoded value, or None when the body does not have that form or the array is not
        valid: the general parser then reads it and reports what is wrong.
    """
    span = _tail_array_span(body)
    if span is None:
        return None
    start, stop, rank = span
    array = _decode_numeric_array(body, start, stop, rank)
    if array is None:
        return None
    envelope_text = bytes(body[:start]) + orjson.dumps(_PLACEHOLDER) + bytes(body[stop:])
    if orjson.dumps(_PLACEHOLDER)[1:-1] in body[:start]:
        return None
    try:
        envelope = orjson.loads(envelope_text)
    except orjson.JSONDecodeError:
        return None
    return _put_in_place(envelope, array)


def _tail_array_span(body: Body) -> tuple[int, int, int] | None:
    """``(start, stop, rank)`` of the array of numbers that ends the body's last value, or None."""
    tail = bytes(body[-4096:])
    closers = len(tail) - len(tail.rstrip(_SPACE_CHARS + b"]}"))
    last_number = len(body) - closers  # one past the last character of the last number
    if last_number <= 0 or closers == len(tail):
        return None
    other = _last_other_character(body, last_number)
    if other is None:
        return None
    start = body.find(b"[", other, last_number)
    if start < 0 or bytes(body[other + 1:start]).strip(_SPACE_CHARS):
        return None
    rank = 0
    position = start
    while position < last_number and body[position] in b"[ \t\r\n" and rank <= MAX_ARRAY_RANK:
        rank += body[position] == ord("[")
        position += 1
    stop = last_number
    closed = 0
    while closed < rank and stop < len(body):
        if body[stop] == ord("]"):
            closed += 1
        elif body[stop] not in _SPACE_CHARS:
            return None
        stop += 1
    return (start, stop, rank) if closed == rank and 0 < rank <= MAX_ARRAY_RANK else None


def _last_other_character(body: Body, end: int) -> int | None:
    """The position of the last character before ``end`` that cannot be in an array of numbers."""
    while end > 0:
        begin = max(0, end - _SLICE_BYTES)
        piece = bytes(body[begin:end])
        others = piece.translate(None, _ARRAY_CHARS)
        if others:
            return begin + piece.rfind(others[-1:])
        end = begin
    return None


def _decode_numeric_array(body: Body, start: int, stop: int, rank: int) -> np.ndarray | None:
    """Decodes ``body[start:stop]``, an array of numbers, into float32; None if it is not one.

    Each slice (cut after a comma) loses its brackets and is read by orjson as one flat list,
    which checks that every slot holds exactly one valid JSON number; its brackets and commas,
    kept aside, give the shape and prove the array rectangular.
    """
    skeleton = []  # the array's text without its numbers and spaces: brackets and commas
    values = []
    position = start
    while position < stop:
        end = body.find(b",", position + _SLICE_BYTES, stop)
        end = stop if end < 0 else end + 1
        piece = bytes(body[position:end])
        skeleton.append(piece.translate(None, _NUMBER_CHARS + _SPACE_CHARS))
        numbers = piece.translate(_BRACKETS_TO_SPACES).strip(_SPACE_CHARS).removesuffix(b",")
        try:  # float64 first, as NumPy reads orjson's Python numbers, then one rounding to float32
            values.append(np.array(orjson.loads(b"[" + numbers + b"]"), np.float64).astype(np.float32))
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None
        position = end
    shape = _skeleton_shape(b"".join(skeleton), rank)
    flat = np.concatenate(values)
    if shape is None or math.prod(shape) != flat.size:
        return None
    return flat.reshape(shape)


def _skeleton_shape(skeleton: bytes, rank: int) -> tuple[int, ...] | None:
    """The shape of a rectangular array from its brackets and commas, or None when ragged."""
    if skeleton[:rank] != b"[" * rank:
        return None
    commas = 0
    while skeleton[rank + commas:rank + commas + 1] == b",":
        commas += 1
    if skeleton[rank + commas:rank + commas + 1] != b"]":
        return None
    shape = [commas + 1]
    inner = b"[" + b"," * commas + b"]"
    for level in range(rank - 2, -1, -1):
        position = level + 1 + len(inner)
        count = 1
        sibling = b"," + inner
        while skeleton.startswith(sibling, position):
            position += len(sibling)
            count += 1
        if skeleton[position:position + 1] != b"]":
            return None
        shape.insert(0, count)
        inner = b"[" + sibling[1:] + sibling * (count - 1) + b"]"
    return tuple(shape) if inner == skeleton else None


def _put_in_place(envelope: Any, array: np.ndarray) -> Any | None:
    """``envelope`` with its one placeholder string replaced by ``array`` (None if not found once)."""
    if envelope == _PLACEHOLDER:
        return array
    found = 0
    stack = [envelope]
    while stack:
        item = stack.pop()
        entries = item.items() if isinstance(item, dict) else enumerate(item)
        for key, value in list(entries):
            if value == _PLACEHOLDER if isinstance(value, str) else False:
                item[key] = array
                found += 1
            elif isinstance(value, dict | list):
                stack.append(value)
    return envelope if found == 1 else None


_NPY_MAGIC = b"\x93NUMPY"
_NPZ_MAGIC = b"PK\x03\x04"
_NPY_V1_HEADER = re.compile(  # what np.save writes for a C-ordered array in format 1.0
    rb"\{'descr': '([<>|=]?[a-zA-Z]\d{0,2})', 'fortran_order': False, 'shape': \(((?:\d+, ?)*\d*)\), \} *\n")
_NPY_LENGTH_FIELDS = {1: "<H", 2: "<I", 3: "<I"}  # format major version -> header length field
_NPY_MAX_HEADER = 65536


def parse_npy(body: Body) -> np.ndarray:
    """Decodes an ``.npy`` body (formats 1.0, 2.0, 3.0; no pickles), or 400.

    The header is read and checked against the body's length before anything is allocated:
    the data is then viewed in place (no copy), in C or Fortran order as the header says. The
    header ``np.save`` writes for a C-ordered array (format 1.0) is read with a regular
    expression; any other goes through :func:`_npy_header`.
    """
    if not body.startswith(_NPY_MAGIC):
        raise MalformedRequestError(_not_npy_message(body), expected=".npy")
    fast = _npy_v1_header(body)
    dtype, shape, fortran, offset = fast if fast is not None else _npy_header(body)
    needed = math.prod(shape) * dtype.itemsize
    if len(body) - offset != needed:
        raise MalformedRequestError(
            f"the body is not a valid .npy array: its header declares {dtype.str} values of shape "
            f"{list(shape)} ({needed} bytes), but {'only ' if len(body) - offset < needed else ''}"
            f"{len(body) - offset} data bytes follow",
            expected=needed, received=len(body) - offset)
    try:
        flat = np.frombuffer(body, dtype, math.prod(shape), offset)
        return flat.reshape(shape, order="F" if fortran else "C")
    except ValueError as err:  # e.g. a zero-sized shape with a dimension NumPy cannot index
        raise MalformedRequestError(f"the body is not a valid .npy array: shape {list(shape)} "
                                    f"cannot be built ({err})", expected=".npy") from err


def _not_npy_message(body: Body) -> str:
    if body.startswith(_NPZ_MAGIC):
        return ("the body is a .npz archive (zip), not a .npy file: send one array saved with np.save, "
                "or one array of the archive")
    return f"the body is not a .npy file: it does not start with the .npy magic {_NPY_MAGIC!r}"


def _npy_v1_header(body: Body) -> tuple[np.dtype[Any], tuple[int, ...], bool, int] | None:
    """The header of a plain format-1.0 ``.npy`` body, or None when :func:`_npy_header` must read it."""
    if len(body) < 10 or body[6:8] != b"\x01\x00":
        return None
    (header_length,) = struct.unpack_from("<H", body, 8)
    found = _NPY_V1_HEADER.fullmatch(body, 10, 10 + header_length)
    if found is None:
        return None
    try:
        dtype = np.dtype(found.group(1).decode("ascii"))
    except TypeError:
        return None
    if dtype.hasobject or dtype.itemsize == 0:
        return None
    shape = tuple(int(d) for d in found.group(2).split(b",") if d.strip())
    return dtype, shape, False, 10 + header_length


def _npy_header(body: Body) -> tuple[np.dtype[Any], tuple[int, ...], bool, int]:
    """Reads and checks any ``.npy`` header: version, length, dict keys, dtype and shape.

    Returns:
        dtype, shape, Fortran order and the offset of the data.
    """
    major = body[6] if len(body) > 7 else None
    if major not in _NPY_LENGTH_FIELDS or body[7] != 0:
        raise MalformedRequestError(f"the body is not a valid .npy array: format version "
                                    f"{tuple(body[6:8])} is not 1.0, 2.0 or 3.0", expected=".npy")
    field = _NPY_LENGTH_FIELDS[major]
    start = 8 + struct.calcsize(field)
    if len(body) < start:
        raise MalformedRequestError("the body is not a valid .npy array: it ends inside its header",
                                    expected=".npy")
    (length,) = struct.unpack_from(field, body, 8)
    if length > _NPY_MAX_HEADER or start + length > len(body):
        raise MalformedRequestError(f"the body is not a valid .npy array: its header claims {length} bytes, "
                                    f"expected at most {min(_NPY_MAX_HEADER, len(body) - start)}",
                                    expected=".npy")
    try:
        text = bytes(body[start:start + length]).decode("utf8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as err:
        raise MalformedRequestError("the body is not a valid .npy array: its header is not a Python "
                                    "dict literal", expected=".npy") from err
    return (*_npy_header_fields(header), start + length)


def _npy_header_fields(header: Any) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise MalformedRequestError("the body is not a valid .npy array: its header must have exactly the "
                                    "keys descr, fortran_order and shape", expected=".npy")
    shape, fortran = header["shape"], header["fortran_order"]
    if (not isinstance(shape, tuple) or len(shape) > MAX_ARRAY_RANK
            or not all(type(d) is int and 0 <= d < 2**63 for d in shape)):
        raise MalformedRequestError(f"the body is not a valid .npy array: shape {str(shape)[:80]} is not a "
                                    f"tuple of at most {MAX_ARRAY_RANK} non-negative integers",
                                    expected=".npy")
    if type(fortran) is not bool:
        raise MalformedRequestError("the body is not a valid .npy array: fortran_order must be True or False",
                                    expected=".npy")
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError) as err:
        raise MalformedRequestError(f"the body is not a valid .npy array: descr {str(header['descr'])[:80]} "
                                    "is not a NumPy dtype", expected=".npy") from err
    if dtype.hasobject:
        raise DtypeError("the .npy body holds Python objects (pickled data), expected numbers",
                         expected="float32", received=str(dtype))
    return dtype, shape, fortran


def preferred_response(request: Request, offered: tuple[str, ...] = (JSON, NPY)) -> str:
    """The first media type of the ``Accept`` header that the route offers (JSON by default)."""
    accept = request.headers.get("accept")
    if not accept:
        return offered[0]
    for part in accept.split(","):
        kind = media_type(part, default="*/*")
        if kind in ("*/*", "application/*"):
            return offered[0]
        if kind in offered:
            return kind
    raise NotAcceptableError(f"Accept {accept!r} names no format this route produces, expected one of "
                             f"{list(offered)}", expected=list(offered), received=accept)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised once with orjson (no FastAPI re-encoding).

    orjson writes NumPy arrays directly (float32 values in their shortest exact form), which is
    5-10x faster than ``json.dumps`` of ``tolist()`` for outputs of tens of thousands of floats.
    """
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status_code, media_type=JSON, headers=headers)


def error_response(err: ServiceError, headers: dict[str, str] | None = None) -> Response:
    """The JSON answer for a service error: what was expected and what was received.

    File paths in the message and details (a model file, ONNX Runtime's sources) are cut to
    their last component: clients learn what went wrong, not how the server is laid out.
    """
    content = {key: without_paths(value) if isinstance(value, str) else value
               for key, value in err.to_dict().items()}
    headers = {**err.headers, **(headers or {})}
    try:
        return json_response(content, status_code=err.status_code, headers=headers)
    except TypeError:  # details orjson cannot write (an integer beyond 64 bits a client sent)
        body = json.dumps(content, default=str).encode()
        return Response(body, status_code=err.status_code, media_type=JSON, headers=headers)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"(),:;\[\]]+)+/?")


def without_paths(text: str) -> str:
    """``text`` with every absolute file path replaced by its last component."""
    return _ABSOLUTE_PATH.sub(lambda found: found.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def npy_response(array: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    """An ``application/x-npy`` response holding one array."""
    return Response(npy_bytes(array), media_type=NPY, headers=headers)


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` in the ``.npy`` format 1.0, as ``np.save`` writes it, with one copy of the data.

    Arrays ``np.save`` would write differently (object dtypes, headers over 64 KiB) go through it.
    """
    array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d, unlike np.ascontiguousarray
    descr = np.lib.format.dtype_to_descr(array.dtype)
    header = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {array.shape!r}, }}"
    if array.dtype.hasobject or not isinstance(descr, str) or len(header) > 65000:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    padding = -(10 + len(header) + 1) % 64  # the data starts on a 64-byte boundary
    encoded = (header + " " * padding + "\n").encode("latin1")
    return b"".join((_NPY_MAGIC, b"\x01\x00", struct.pack("<H", len(encoded)), encoded,
                     array.data if array.size else b""))
