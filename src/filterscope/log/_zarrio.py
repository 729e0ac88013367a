"""Low-level zarr v3 writing: metadata documents, chunk encoding, atomic file replacement.

The log writes zarr's on-disk format itself instead of going through ``zarr.Array``: it must
control exactly which files change and in which order (for the commit protocol), keep each
array's last chunk in memory (appending never reads the disk) and stay cheap enough to run at
every snapshot. Every array uses the codecs ``bytes`` (or ``vlen-utf8`` for strings), ``zstd``
(level 1; omitted for the raw weight state) and ``crc32c``, so every chunk file ends in a checksum
of its content; ``tests/test_log_store.py`` checks the output against zarr's own.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np

PARTIAL_SUFFIX = ".partial"
ZSTD_LEVEL = 1
_ZSTD = numcodecs.Zstd(level=ZSTD_LEVEL)
_VLEN = numcodecs.VLenUTF8()


def atomic_write(path: Path, data: bytes, durable: bool) -> None:
    """Replace ``path`` with ``data`` atomically: temporary file beside it, then ``os.replace``.

    Missing parent directories are created.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    try:
        try:
            f = open(tmp, "xb")
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "xb")
        with f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_path(path: Path) -> None:
    """``fsync`` a file or directory."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checksum_ok(data: bytes | memoryview) -> bool:
    """Whether ``data`` ends in the little-endian CRC32C of the bytes before it."""
    if len(data) < 4:
        return False
    return struct.pack("<I", google_crc32c.value(bytes(data[:-4]))) == bytes(data[-4:])


def is_string(dtype: np.dtype) -> bool:
    return dtype.kind in "OUT"


def _json_fill(fill: Any, dtype: np.dtype) -> Any:
    if is_string(dtype):
        return str(fill)
    value = np.array(fill).astype(dtype)[()]
    if dtype.kind == "f":
        if np.isnan(value):
            return "NaN"
        if np.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    if dtype.kind == "b":
        return bool(value)
    return int(value)


def parse_fill(value: Any, dtype: np.dtype) -> Any:
    """The fill value of a metadata document as a numpy scalar."""
    if is_string(dtype):
        return str(value)
    if isinstance(value, str):
        value = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[value]
    return np.array(value).astype(dtype)[()]


def array_meta(
    shape: Sequence[int],
    chunks: Sequence[int],
    dtype: np.dtype,
    fill: Any,
    dims: Sequence[str],
    *,
    compress: bool = True,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``zarr.json`` document of an array, as zarr 3 writes it."""
    if is_string(dtype):
        data_type = "string"
        serializer: dict[str, Any] = {"name": "vlen-utf8", "configuration": {}}
    else:
        data_type = dtype.name
        serializer = {"name": "bytes"}
        if dtype.itemsize > 1:
            serializer["configuration"] = {"endian": "little"}
    codecs = [serializer]
    if compress:
        codecs.append({"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}})
    codecs.append({"name": "crc32c"})
    return {
        "shape": [int(s) for s in shape],
        "data_type": data_type,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": _json_fill(fill, dtype),
        "codecs": codecs,
        "attributes": json_attrs(attrs or {}),
        "dimension_names": list(dims),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def group_meta(attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``zarr.json`` document of a group."""
    return {"attributes": json_attrs(attrs or {}), "zarr_format": 3, "node_type": "group"}


def json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as JSON values: numpy scalars and arrays converted, anything else as text."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray | tuple):
            value = np.asarray(value).tolist()
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            value = str(value)
        out[str(key)] = value
    return out


def meta_dtype(meta: Mapping[str, Any]) -> np.dtype:
    """numpy dtype of an array metadata document."""
    return np.dtype(object) if meta["data_type"] == "string" else np.dtype(meta["data_type"])


def encode_chunk(block: np.ndarray, compress: bool) -> bytes:
    """A chunk file: serialised block, zstd-compressed unless ``compress`` is False, then CRC32C."""
    if is_string(block.dtype):
        raw = bytes(_VLEN.encode(np.asarray(block, dtype=object).ravel()))
    else:
        raw = np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).tobytes()
    body = bytes(_ZSTD.encode(raw)) if compress else raw
    return body + struct.pack("<I", google_crc32c.value(body))


def chunk_keys(
    block: np.ndarray, chunks: Sequence[int], origin: Sequence[int]
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Split ``block`` into whole chunks: (chunk key components, padded-later part) pairs.

    ``origin`` is the chunk-grid position of the block's first chunk.
    """
    grids = [range(math.ceil(s / c)) for s, c in zip(block.shape, chunks, strict=True)]
    parts = []
    for idx in itertools.product(*grids):
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks, strict=True))
        key = tuple(str(o + i) for o, i in zip(origin, idx, strict=True))
        parts.append((key, block[sl]))
    return parts


def pad(part: np.ndarray, chunks: Sequence[int], fill: Any) -> np.ndarray:
    """``part`` extended to the full chunk shape with ``fill`` (zarr stores edge chunks whole)."""
    if tuple(part.shape) == tuple(chunks):
        return part
    full = np.full(tuple(chunks), fill, dtype=part.dtype)
    full[tuple(slice(0, s) for s in part.shape)] = part
    return full


def dumps(meta: Mapping[str, Any]) -> bytes:
    """JSON bytes of a metadata document (compact: array metadata is rewritten as arrays grow)."""
    return json.dumps(meta, separators=(",", ":")).encode()
