"""numpy arrays to and from widget messages: the one place where arrays become bytes.

An array travels as ``{"dtype": str, "shape": [int, ...], "buffer": memoryview}``; ipywidgets
lifts every memoryview out of the JSON state into a binary frame of the websocket message and
the browser receives it as a ``DataView`` (decoded by ``js/src/transport.ts``). Arrays larger than
:data:`CHUNK_BYTES` go as ``"chunks"``, a list of memoryviews, so no single frame gets huge and
the same format stays under the server's 10 MiB limit if a browser ever sends one back.

Before sending, dtypes are narrowed to what JavaScript's typed arrays hold: float64 and float16
become float32, bool becomes uint8, and int64/uint64 become int32 when every value fits (float64
otherwise, which is exact up to 2**53). Floats beyond float32's range become ±inf. Bytes are
little-endian, as on every browser platform.

Use :data:`ARRAY_SERIALIZATION` on a trait: ``Dict().tag(sync=True, **ARRAY_SERIALIZATION)``;
every ndarray anywhere inside the trait's value (nested dicts, lists) is encoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from filterscope.errors import InvalidDataError

CHUNK_BYTES = 8 * 2**20
"""Largest buffer sent as one frame; bigger arrays are split into chunks of this many bytes."""

_WIRE_DTYPES = frozenset(
    ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64"]
)
_INT32 = np.iinfo(np.int32)
_EXACT_FLOAT64 = 2**53


def to_wire_dtype(array: np.ndarray) -> np.ndarray:
    """Return ``array`` narrowed to a dtype the browser reads, C-ordered and little-endian.

    Parameters
    ----------
    array : numpy.ndarray
        Numeric or boolean array.

    Returns
    -------
    numpy.ndarray
        ``array`` itself when it already fits, else a converted copy.

    Raises
    ------
    InvalidDataError
        For dtypes without a browser equivalent (object, strings, complex, datetimes) and for
        64-bit integers beyond ±2**53, which no JavaScript number holds exactly.

    Examples
    --------
    >>> import numpy as np
    >>> to_wire_dtype(np.arange(3)).dtype
    dtype('int32')
    >>> to_wire_dtype(np.array([0.5, 1.5])).dtype
    dtype('float32')
    """
    kind = array.dtype.kind
    if kind == "b":
        out = array.astype(np.uint8)
    elif kind == "f" and array.dtype.itemsize == 4:
        out = array
    elif kind == "f":
        # Beyond float32's ±3.4e38 a value becomes ±inf, which a chart shows as off-scale.
        with np.errstate(over="ignore"):
            out = array.astype(np.float32)
    elif kind in "iu" and array.dtype.itemsize == 8:
        out = _narrow_int64(array)
    elif kind in "iu":
        out = array
    else:
        raise InvalidDataError(
            f"cannot send an array of dtype {array.dtype} to the browser: expected booleans, "
            "integers or floats; convert it first (e.g. codes for categories, seconds for times)"
        )
    out = out.astype(out.dtype.newbyteorder("<"), copy=False)
    # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
    return out if out.flags.c_contiguous else out.copy(order="C")


def _narrow_int64(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        return array.astype(np.int32)
    lo, hi = int(array.min()), int(array.max())
    if _INT32.min <= lo and hi <= _INT32.max:
        return array.astype(np.int32)
    if -_EXACT_FLOAT64 <= lo and hi <= _EXACT_FLOAT64:
        return array.astype(np.float64)
    raise InvalidDataError(
        f"integers from {lo} to {hi} do not fit a JavaScript number exactly (limit ±2**53); "
        "send offsets from the first value instead"
    )


def encode_array(array: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """Encode one array as ``{"dtype", "shape", "buffer"}`` or, if large, ``{..., "chunks"}``.

    Parameters
    ----------
    array : numpy.ndarray
        Array to send; see :func:`to_wire_dtype` for the dtype conversions.
    chunk_bytes : int, default CHUNK_BYTES
        Largest single buffer, in bytes; a multiple of 8 keeps every element in one chunk.

    Returns
    -------
    dict
        JSON-ready apart from the memoryviews, which ipywidgets sends as binary frames.

    Examples
    --------
    >>> import numpy as np
    >>> enc = encode_array(np.eye(2))
    >>> enc["dtype"], enc["shape"], enc["buffer"].nbytes
    ('float32', [2, 2], 16)
    """
    wire = to_wire_dtype(np.asarray(array))
    raw = wire.reshape(-1).view(np.uint8).data
    header: dict[str, Any] = {"dtype": str(wire.dtype), "shape": list(wire.shape)}
    if raw.nbytes <= chunk_bytes:
        return {**header, "buffer": raw}
    return {
        **header,
        "chunks": [raw[i : i + chunk_bytes] for i in range(0, raw.nbytes, chunk_bytes)],
    }


def decode_array(value: Mapping[str, Any]) -> np.ndarray:
    """Rebuild an array from :func:`encode_array`'s form (buffers as bytes or memoryviews).

    Raises
    ------
    InvalidDataError
        If the dtype is not one the browser sends or the bytes do not match dtype and shape.

    Examples
    --------
    >>> import numpy as np
    >>> decode_array(encode_array(np.arange(6).reshape(2, 3))).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    dtype = value.get("dtype")
    if dtype not in _WIRE_DTYPES:
        raise InvalidDataError(
            f"encoded array has dtype {dtype!r}; expected one of {sorted(_WIRE_DTYPES)}"
        )
    parts = value["chunks"] if "chunks" in value else [value["buffer"]]
    raw = b"".join(bytes(part) for part in parts)
    shape = tuple(int(d) for d in value["shape"])
    wire = np.dtype(dtype).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * wire.itemsize
    if len(raw) != expected:
        raise InvalidDataError(
            f"encoded array of dtype {dtype} and shape {list(shape)} needs {expected} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=wire).reshape(shape)


def _is_encoded(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and "dtype" in value
        and "shape" in value
        and ("buffer" in value or "chunks" in value)
    )


def to_json(value: Any, widget: Any = None) -> Any:
    """Trait serializer: encode every ndarray inside ``value`` (dicts, lists, tuples, scalars).

    numpy scalars become Python numbers; everything else must already be JSON-ready.

    Examples
    --------
    >>> import numpy as np
    >>> to_json({"x": np.arange(2), "n": np.int64(3)})["n"]
    3
    """
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_json(v, widget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v, widget) for v in value]
    return value


def from_json(value: Any, widget: Any = None) -> Any:
    """Trait deserializer, the inverse of :func:`to_json` (arrays come back in wire dtypes)."""
    if _is_encoded(value):
        return decode_array(value)
    if isinstance(value, Mapping):
        return {k: from_json(v, widget) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v, widget) for v in value]
    return value


ARRAY_SERIALIZATION: dict[str, Any] = {"to_json": to_json, "from_json": from_json}
"""Pass to a trait's ``tag`` so its arrays travel as binary: ``.tag(sync=True, **...)``."""
