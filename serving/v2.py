"""Open Inference Protocol V2 (the KServe V2 REST API) for one Predictor, beside ``/predict``.

Routes (the ``/versions/{version}`` forms accept only the served model's version)::

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     200 while the replica lives / has its model loaded
    GET  /v2/models/{name}[/versions/{v}]          model metadata: inputs, outputs, datatypes
    GET  /v2/models/{name}[/versions/{v}]/ready    200 when the model can predict
    POST /v2/models/{name}[/versions/{v}]/infer    predict

Inputs are named after the Predictor's columns: ``BYTES`` for categories, text and dates, ``FP64``
(or ``INT64``/``BOOL`` from the column's training dtype) for numbers, shape ``[-1]``. ``infer``
takes either one tensor per column (shape ``[n]`` or ``[n, 1]``; any numeric datatype or ``BYTES``
holding numbers for a numeric column), or a single row-major tensor of shape ``[n, n_columns]``
(``BYTES`` or ``FP64``) whose columns are in the metadata's input order, or in the order its
``parameters.columns`` string gives (comma-separated). Tensor data may be JSON (flat or nested
lists) or Triton's binary tensor extension (``Inference-Header-Content-Length``), which
``tritonclient`` uses by default. The rows are then checked by the same generated row models as
``/predict`` (missing-value policy included).

Outputs: ``label`` (shape ``[n]``: the class for classification, ``BYTES`` unless the classes are
numbers or booleans; the predicted value, ``FP64``, for regression), and for classification
``probabilities`` (``FP64``, shape ``[n, k]``, columns in class order) and ``classes`` (``BYTES``,
shape ``[k]``, the class of each probability column). Errors are ``{"error": "..."}`` with 400 (a
bad request), 404 (unknown model or version) or 413 (body too large).
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import numpy as np
from pydantic import ValidationError

from serving.rows import RequestError
from serving.v2_models import DATATYPES, InferenceRequest, RequestInput, RequestOutput

PLATFORM = "automl-on-ray"
NUMPY_OF = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


class V2Error(Exception):
    """A V2 request that cannot be served: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)

    def body(self) -> dict[str, str]:
        return {"error": self.message}


# --- metadata ------------------------------------------------------------------------------------
def input_datatype(kind: str, dtype: str) -> str:
    if kind == "numeric":
        if dtype.startswith(("int", "uint", "Int", "UInt")):
            return "INT64"
        return "FP64"
    if kind == "boolean" and dtype == "bool":
        return "BOOL"
    return "BYTES"


def label_datatype(classes: list[Any] | None) -> str:
    if classes is None:
        return "FP64"
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


def model_name_for(model_dir: str) -> str:
    """A default V2 model name: the model directory's name, reduced to letters, digits, ``_.-``."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_dir.rstrip("/\\").replace("\\", "/").split("/")[-1])
    return base.strip("-.") or "model"


def model_metadata(predictor: Any, name: str) -> dict[str, Any]:
    inputs = [
        {"name": c.name, "datatype": input_datatype(c.kind, c.dtype), "shape": [-1]}
        for c in predictor.schema.columns
    ]
    outputs = [{"name": "label", "datatype": label_datatype(predictor.classes), "shape": [-1]}]
    if predictor.classes is not None:
        k = len(predictor.classes)
        outputs += [
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, k]},
            {"name": "classes", "datatype": "BYTES", "shape": [k]},
        ]
    return {
        "name": name,
        "versions": [predictor.model_version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": outputs,
    }


# --- requests ------------------------------------------------------------------------------------
def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """The request of a JSON body, or of a binary-extension body (JSON header, then tensors)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Error(400, f"Inference-Header-Content-Length {header_length[:20]!r} is not a length ")
        n = int(header_length)
        body, binary = body[:n], body[n:]
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise V2Error(400, f"malformed JSON inference request: {exc}") from None
    try:
        req = InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        raise V2Error(400, "invalid inference request: " + _pydantic_errors(exc)) from None
    _attach_binary(req, binary)
    return req


def _pydantic_errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors(include_url=False)[:10]:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]).lstrip(".")
        parts.append(f"{loc or 'body'}: {e['msg']}")
    return "; ".join(parts)


def _attach_binary(req: InferenceRequest, binary: bytes) -> None:
    offset = 0
    for t in req.inputs:
        size = (t.parameters or {}).get("binary_data_size")
        if size is None:
            if t.data is None:
                raise V2Error(400, f"input {t.name!r} has no data (and no binary_data_size)")
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise V2Error(400, f"input {t.name!r}: binary_data_size {size!r} does not fit the body")
        t.data = _decode_binary(t, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise V2Error(400, f"{len(binary) - offset} bytes after the last binary input")


def _decode_binary(t: RequestInput, raw: bytes) -> list[Any]:
    if t.datatype == "BYTES":
        out, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise V2Error(400, f"input {t.name!r}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, i)
            if i + 4 + n > len(raw):
                raise V2Error(400, f"input {t.name!r}: truncated BYTES element")
            out.append(raw[i + 4 : i + 4 + n])
            i += 4 + n
        return out
    dtype = NUMPY_OF.get(t.datatype)
    if dtype is None:
        raise V2Error(400, f"input {t.name!r}: unknown datatype {t.datatype!r}; use one of {list(DATATYPES)}")
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise V2Error(400, f"input {t.name!r}: {len(raw)} bytes is not a whole number of {t.datatype}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).tolist()


def _flat(t: RequestInput) -> list[Any]:
    if t.datatype not in DATATYPES:
        raise V2Error(400, f"input {t.name!r}: unknown datatype {t.datatype!r}; use one of {list(DATATYPES)}")
    if any(not isinstance(d, int) or d < 0 for d in t.shape):
        raise V2Error(400, f"input {t.name!r}: shape {t.shape} must hold non-negative sizes")
    data: list[Any] = []
    stack = [iter(t.data or [])]
    while stack:  # row-major flattening of nested lists, without recursion
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            data.append(item)
    if len(data) != math.prod(t.shape):
        raise V2Error(
            400, f"input {t.name!r}: shape {t.shape} needs {math.prod(t.shape)} values, got {len(data)}"
        )
    return [_value(t, v) for v in data]


_END = object()


def _value(t: RequestInput, v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise V2Error(400, f"input {t.name!r}: a BYTES element is not UTF-8 text") from None
    if isinstance(v, dict):
        raise V2Error(
            400, f"input {t.name!r}: tensor data must be numbers, strings or booleans, got an object"
        )
    if t.datatype == "BYTES" and not isinstance(v, str) and v is not None:
        raise V2Error(400, f"input {t.name!r}: BYTES data must be strings, got {v!r}"[:200])
    if t.datatype == "BOOL" and not isinstance(v, bool):
        raise V2Error(400, f"input {t.name!r}: BOOL data must be true or false, got {v!r}"[:200])
    if t.datatype in NUMPY_OF and t.datatype != "BOOL" and (isinstance(v, (bool, str))):
        raise V2Error(400, f"input {t.name!r}: {t.datatype} data must be numbers, got {v!r}"[:200])
    return v


def request_rows(req: InferenceRequest, names: list[str]) -> list[dict[str, Any]]:
    """The rows of ``req``'s tensors: one tensor per column, or one row-major ``[n, n_columns]``."""
    first = req.inputs[0]
    if len(req.inputs) == 1 and len(first.shape) == 2 and first.shape[1] != 1:
        cols = names
        given = (first.parameters or {}).get("columns")
        if given is not None:
            cols = [c.strip() for c in str(given).split(",")]
            unknown = [c for c in cols if c not in names]
            if unknown:
                raise V2Error(
                    400, f"parameters.columns names unknown columns {unknown}; the inputs are {names}"
                )
        if first.shape[1] != len(cols):
            raise V2Error(
                400,
                f"input {first.name!r}: a row-major tensor needs shape [n, {len(cols)}] "
                f"(columns {cols}); got {first.shape}",
            )
        data = _flat(first)
        width = len(cols)
        return [dict(zip(cols, data[i : i + width])) for i in range(0, len(data), width)]
    columns: dict[str, list[Any]] = {}
    for t in req.inputs:
        if t.name not in names:
            raise V2Error(400, f"unknown input {t.name!r}; the model's inputs are {names}")
        if t.name in columns:
            raise V2Error(400, f"input {t.name!r} is given twice")
        if len(t.shape) == 2 and t.shape[1] != 1:
            raise V2Error(400, f"input {t.name!r}: a column tensor has shape [n] or [n, 1]; got {t.shape}")
        columns[t.name] = _flat(t)
    sizes = {n: len(v) for n, v in columns.items()}
    if len(set(sizes.values())) > 1:
        raise V2Error(400, f"the inputs must all have the same number of rows; got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise V2Error(400, "no rows: the inputs are empty")
    return [{c: v[i] for c, v in columns.items()} for i in range(n)]


def rows_error(exc: RequestError) -> V2Error:
    """A row check's RequestError, in the V2 error shape (400, one line naming row and column)."""
    return V2Error(400 if exc.status == 422 else exc.status, exc.detail)


# --- responses -----------------------------------------------------------------------------------
def response_outputs(predictor: Any, raw: np.ndarray, requested: list[RequestOutput] | None) -> list[dict]:
    n = len(raw)
    classes = predictor.classes
    labels = predictor.decode(raw).tolist()
    if classes is None:
        labels = [v if math.isfinite(v) else None for v in labels]
    outs = {"label": {"name": "label", "datatype": label_datatype(classes), "shape": [n], "data": labels}}
    if label_datatype(classes) == "BYTES":
        outs["label"]["data"] = [str(v) for v in labels]
    if classes is not None:
        proba = np.asarray(raw, dtype=float)
        outs["probabilities"] = {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [n, len(classes)],
            "data": proba.ravel().tolist(),
        }
        outs["classes"] = {
            "name": "classes",
            "datatype": "BYTES",
            "shape": [len(classes)],
            "data": [str(c) for c in classes],
        }
    if not requested:
        return list(outs.values())
    unknown = [o.name for o in requested if o.name not in outs]
    if unknown:
        raise V2Error(400, f"unknown output(s) {unknown}; this model's outputs are {list(outs)}")
    return [outs[o.name] for o in requested]
