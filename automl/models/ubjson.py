"""Universal Binary JSON as XGBoost reads and writes it (its ``.ubj`` model format): enough of the
format to read a model XGBoost saved and to write one, with NumPy arrays as typed arrays.

Why: :mod:`automl.models.lightgbm_xgb` hands XGBoost a model of up to millions of tree nodes.
Through JSON text, XGBoost's parser builds a node per number: for covertype's 4,900-tree LightGBM
model the build's peak memory grew by 420 MB and the parse took 0.5 s of 1.7 s. A typed array is
read as one block. Big-endian throughout, as UBJSON specifies; lengths and integers are int64.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

#: typed-array markers by NumPy dtype, and back
_MARKERS = {np.dtype(np.float32): b"d", np.dtype(np.float64): b"D", np.dtype(np.int8): b"i"}
_MARKERS |= {np.dtype(np.uint8): b"U", np.dtype(np.int16): b"I", np.dtype(np.int32): b"l"}
_MARKERS |= {np.dtype(np.int64): b"L"}
_DTYPES = {marker: dtype.newbyteorder(">") for dtype, marker in _MARKERS.items()}
_SCALARS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q", b"d": ">f", b"D": ">d"}


def dumps(obj: Any) -> bytes:
    out: list[bytes] = []
    _write(obj, out)
    return b"".join(out)


def _length(n: int) -> bytes:
    return b"L" + struct.pack(">q", n)


def _write(obj: Any, out: list[bytes]) -> None:
    if isinstance(obj, dict):
        out.append(b"{")
        for key, value in obj.items():
            raw = key.encode()
            out += [_length(len(raw)), raw]
            _write(value, out)
        out.append(b"}")
    elif isinstance(obj, np.ndarray):
        marker = _MARKERS[obj.dtype]
        out += [b"[$", marker, b"#", _length(obj.size), np.ascontiguousarray(obj, _DTYPES[marker]).tobytes()]
    elif isinstance(obj, (list, tuple)):
        out += [b"[#", _length(len(obj))]
        for value in obj:
            _write(value, out)
    elif isinstance(obj, str):
        raw = obj.encode()
        out += [b"S", _length(len(raw)), raw]
    elif isinstance(obj, bool):
        out.append(b"T" if obj else b"F")
    elif isinstance(obj, (int, np.integer)):
        out.append(b"L" + struct.pack(">q", int(obj)))
    elif isinstance(obj, (float, np.floating)):
        out.append(b"D" + struct.pack(">d", float(obj)))
    else:
        raise TypeError(f"no UBJSON form for {type(obj).__name__}")


def loads(raw: bytes | bytearray) -> Any:
    """The value ``raw`` holds (a bytearray as XGBoost's ``save_raw`` gives is read in place)."""
    value, end = _read(memoryview(raw), 0)
    if end != len(raw):
        raise ValueError(f"UBJSON: {len(raw) - end} bytes after the value")
    return value


def _int(raw: memoryview, pos: int) -> tuple[int, int]:
    fmt = _SCALARS[bytes(raw[pos : pos + 1])]
    return struct.unpack_from(fmt, raw, pos + 1)[0], pos + 1 + struct.calcsize(fmt)


def _read(raw: memoryview, pos: int) -> tuple[Any, int]:
    kind = bytes(raw[pos : pos + 1])
    pos += 1
    if kind == b"{":
        obj = {}
        while bytes(raw[pos : pos + 1]) != b"}":
            n, pos = _int(raw, pos)
            key = bytes(raw[pos : pos + n]).decode()
            obj[key], pos = _read(raw, pos + n)
        return obj, pos + 1
    if kind == b"[":
        if bytes(raw[pos : pos + 1]) == b"$":  # typed: [$<marker>#<count><data>
            dtype = _DTYPES[bytes(raw[pos + 1 : pos + 2])]
            n, pos = _int(raw, pos + 3)
            end = pos + n * dtype.itemsize
            return np.frombuffer(raw[pos:end], dtype).astype(dtype.newbyteorder("=")), end
        if bytes(raw[pos : pos + 1]) == b"#":  # counted: [#<count><values>
            n, pos = _int(raw, pos + 1)
            items = []
            for _ in range(n):
                item, pos = _read(raw, pos)
                items.append(item)
            return items, pos
        items = []
        while bytes(raw[pos : pos + 1]) != b"]":
            item, pos = _read(raw, pos)
            items.append(item)
        return items, pos + 1
    if kind == b"S":
        n, pos = _int(raw, pos)
        return bytes(raw[pos : pos + n]).decode(), pos + n
    if kind in (b"T", b"F"):
        return kind == b"T", pos
    if kind == b"Z":
        return None, pos
    if kind in _SCALARS:
        return _int(raw, pos - 1)
    raise ValueError(f"UBJSON: unknown marker {kind!r} at byte {pos - 1}")
