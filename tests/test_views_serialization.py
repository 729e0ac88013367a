"""numpy arrays to widget messages and back (filterscope.views._serialization)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers

from filterscope.errors import InvalidDataError
from filterscope.views._serialization import (
    CHUNK_BYTES,
    decode_array,
    encode_array,
    from_json,
    to_json,
    to_wire_dtype,
)

KEPT = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32"]


def over_the_wire(state: dict) -> dict:
    """What the kernel does to a state before sending, and the receiver after: split the
    memoryviews out into separate frames (copied to bytes, as a socket would), then put them back."""
    state_copy, paths, buffers = _remove_buffers(state)
    assert all(isinstance(b, memoryview) for b in buffers), "arrays must leave as binary frames"
    _put_buffers(state_copy, paths, [bytes(b) for b in buffers])
    return state_copy


@pytest.mark.parametrize("dtype", KEPT)
def test_dtypes_the_browser_reads_are_sent_unchanged(dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    values = np.array([info.min, 0, 1, info.max], dtype=dtype)
    enc = encode_array(values)
    assert enc["dtype"] == dtype
    assert enc["shape"] == [4]
    assert enc["buffer"].nbytes == values.nbytes
    np.testing.assert_array_equal(decode_array(enc), values)


@pytest.mark.parametrize(
    ("values", "wire"),
    [
        (np.array([0.1, -2.5e30, np.nan, np.inf]), "float32"),
        (np.array([0.5, 65504.0], dtype=np.float16), "float32"),
        (np.array([True, False, True]), "uint8"),
        (np.array([-(2**31), 0, 2**31 - 1], dtype=np.int64), "int32"),
        (np.array([0, 2**32 - 1], dtype=np.uint64), "float64"),
        (np.array([-(2**53), 2**53], dtype=np.int64), "float64"),
        (np.array([2**31], dtype=np.int64), "float64"),
    ],
)
def test_wide_dtypes_are_narrowed_to_what_javascript_holds(values, wire):
    decoded = decode_array(encode_array(values))
    assert decoded.dtype == np.dtype(wire)
    # Integers must survive exactly; floats as their float32 rounding.
    expected = values.astype(wire)
    np.testing.assert_array_equal(decoded, expected)
    if values.dtype.kind in "iub":
        assert decoded.astype(np.int64).tolist() == values.astype(np.int64).tolist()


def test_empty_int64_goes_as_int32():
    assert encode_array(np.zeros(0, dtype=np.int64))["dtype"] == "int32"


@pytest.mark.parametrize(
    "values", [np.array([2**53 + 2], dtype=np.int64), np.array([2**63], dtype=np.uint64)]
)
def test_integers_beyond_two_to_the_53_are_refused(values):
    with pytest.raises(InvalidDataError, match=r"2\*\*53"):
        encode_array(values)


@pytest.mark.parametrize(
    "values",
    [
        np.array(["a", "b"]),
        np.array([1 + 2j]),
        np.array([None, 1], dtype=object),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
    ],
    ids=["str", "complex", "object", "datetime"],
)
def test_dtypes_without_a_browser_equivalent_are_refused(values):
    with pytest.raises(InvalidDataError, match=re.escape(str(values.dtype))):
        to_wire_dtype(values)


@pytest.mark.parametrize(
    "values",
    [
        np.array(3.5, dtype=np.float32),
        np.zeros((0,), np.float32),
        np.zeros((0, 3), np.int16),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        np.arange(20, dtype=np.uint16)[::3],
        np.arange(6, dtype=">f4"),
    ],
    ids=["0-d", "empty", "empty-2d", "3-d", "fortran", "strided", "big-endian"],
)
def test_shapes_orders_and_byte_orders_round_trip(values):
    enc = encode_array(values)
    assert enc["shape"] == list(values.shape)
    decoded = decode_array(over_the_wire({"a": enc})["a"])
    assert decoded.shape == values.shape
    assert decoded.dtype.byteorder in "<|="
    np.testing.assert_array_equal(decoded, values)


def test_big_arrays_travel_in_chunks_of_at_most_chunk_bytes():
    values = np.arange(1000, dtype=np.float32)
    enc = encode_array(values, chunk_bytes=64)
    assert "buffer" not in enc
    assert len(enc["chunks"]) == math.ceil(values.nbytes / 64)
    assert all(chunk.nbytes <= 64 for chunk in enc["chunks"])
    np.testing.assert_array_equal(decode_array(over_the_wire(enc)), values)


def test_default_chunk_size_applies_through_to_json():
    values = np.zeros(CHUNK_BYTES // 4 + 1, dtype=np.float32)
    enc = to_json({"big": values})["big"]
    assert [c.nbytes for c in enc["chunks"]] == [CHUNK_BYTES, 4]


def test_decode_refuses_bytes_that_do_not_match_dtype_and_shape():
    enc = encode_array(np.arange(4, dtype=np.int32))
    with pytest.raises(InvalidDataError, match="needs 20 bytes, got 16"):
        decode_array({**enc, "shape": [5]})
    with pytest.raises(InvalidDataError, match="'int64'"):
        decode_array({**enc, "dtype": "int64"})


def test_nested_values_encode_every_array_and_keep_the_rest():
    state = {
        "title": "Loss",
        "n": np.int64(7),
        "range": (0, 9),
        "lines": [{"x": np.arange(3), "y": np.array([0.5, 0.25, 0.125])}],
    }
    sent = to_json(state)
    assert sent["n"] == 7 and type(sent["n"]) is int
    assert sent["range"] == [0, 9]
    received = from_json(over_the_wire(sent))
    assert received["title"] == "Loss"
    np.testing.assert_array_equal(received["lines"][0]["x"], np.arange(3, dtype=np.int32))
    np.testing.assert_array_equal(
        received["lines"][0]["y"], np.array([0.5, 0.25, 0.125], np.float32)
    )


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        hnp.arrays(
            dtype=st.sampled_from([np.int8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
            shape=SHAPES,
        ),
        # int64 beyond ±2**53 is refused (tested above); inside it every value must survive.
        hnp.arrays(dtype=np.int64, shape=SHAPES, elements=st.integers(-(2**53), 2**53)),
    )
)
def test_any_numeric_array_round_trips_as_its_wire_dtype(values):
    decoded = decode_array(over_the_wire({"a": encode_array(values)})["a"])
    expected = to_wire_dtype(values)
    assert decoded.shape == values.shape
    assert decoded.dtype == expected.dtype
    np.testing.assert_array_equal(decoded, expected)
