"""ValidationView built from a really recorded log: what it sends, what it answers, how it links."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import traitlets
import xarray as xr
from e2e.tiny_run import record_tiny_run

import filterscope as fs
from filterscope.dynamics import class_error, from_arrays, unstable_samples
from filterscope.dynamics.validation import class_marks, order_classes, order_rows
from filterscope.errors import InvalidDataError, InvalidParameterError, InvalidSelectionError
from filterscope.views import Selection, ValidationView
from filterscope.views.validation import (
    ACCURACY_NAN,
    ACCURACY_STEPS,
    png_bytes,
    quantise_accuracy,
)

pytestmark = pytest.mark.xdist_group("views_validation")

XSS = "<img src=x onerror=alert(1)>"
J, THRESHOLD = 2, 3


@pytest.fixture(scope="session")
def log(tmp_path_factory) -> xr.Dataset:
    return record_tiny_run(tmp_path_factory.mktemp("run") / "log.zarr")


@pytest.fixture
def view(log):
    widget = ValidationView(log, j=J, threshold=THRESHOLD)
    yield widget
    widget.close()


def ask(view, method, rid=1, **params):
    return view.handle_request({"type": "request", "id": rid, "method": method, "params": params})


def decode_png(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """Width, height, colour type and pixels of a PNG written by ``png_bytes``."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body)
        chunks[tag] = body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    channels = 1 if color == 0 else 3
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (raw[:, 0] == 0).all()  # filter type "none" on every line
    return width, height, color, raw[:, 1:].reshape(height, width, channels)


#: Half a step of the uint8 accuracy codes (the view rounds to the nearest).
HALF_STEP = 0.5 / ACCURACY_STEPS + 1e-12


def _accuracy(codes: np.ndarray) -> np.ndarray:
    """What the page decodes from the uint8 codes (``decodeAccuracy`` in validation.ts)."""
    return np.where(codes == ACCURACY_NAN, np.nan, codes / ACCURACY_STEPS)


def test_accuracy_codes_round_to_the_nearest_step_and_mark_missing_values():
    values = np.array([[0.0, 0.2, 0.5], [1.0, np.nan, 1.5]])
    codes = quantise_accuracy(values)
    assert codes.dtype == np.uint8
    assert codes.tolist() == [[0, 51, 127], [254, ACCURACY_NAN, 254]]
    decoded = _accuracy(codes)
    assert np.isnan(decoded[1, 1])
    np.testing.assert_allclose(decoded[0], values[0], atol=HALF_STEP)


# ------------------------------------------------------------------------------ the overview
def test_overview_comes_from_the_index_and_dynamics(view, log):
    data = view.data
    assert view._view == "validation"
    n_classes, n_snapshots = log.sizes["class"], log.sizes["snapshot"]
    assert data["level"] == 0 and data["accuracy"].shape == (n_classes, n_snapshots)
    expected = 1 - class_error(log).transpose("class", "snapshot").values
    assert data["accuracy"].dtype == np.uint8 and data["cluster_accuracy"].dtype == np.uint8
    np.testing.assert_allclose(_accuracy(data["accuracy"]), expected, atol=HALF_STEP)
    np.testing.assert_array_equal(data["x0"], log.snapshot_step.values)
    assert data["names"] == [str(n) for n in log.class_name.values]
    assert data["order_mds"].tolist() == order_classes(1 - expected.T).tolist()
    assert sorted(data["order_mds"].tolist()) == list(range(n_classes))
    idx = fs.index_of(log)
    assert data["cluster"].tolist() == idx.class_cluster.values.tolist()
    assert data["cluster_accuracy"].shape == (4, n_snapshots)
    assert data["thumbnails"] is True and data["n_samples"] == log.sizes["sample"]
    last = max(int(log.step[-1]), int(log.snapshot_step[-1]))
    assert data["step_range"] == [0, last]
    assert (
        data["shown"].tolist()
        == class_marks(log, j=J, threshold=THRESHOLD).class_shown.values.tolist()
    )


def test_triangles_are_the_unstable_counts_that_reach_the_threshold(view, log):
    counts = unstable_samples(log, j=J, threshold=THRESHOLD)
    left = counts.ab_left.isel(lag=J).values
    right = counts.ab_right.isel(lag=J).values
    up = view.data["up"]
    got = {
        (int(c), int(k)): int(n)
        for c, k, n in zip(up["class"], up["col"], up["count"], strict=True)
    }
    want = {(c, i): int(left[i, c]) for i, c in zip(*np.nonzero(left >= THRESHOLD), strict=True)}
    assert got == want and got, "the tiny run flags some classes at j=2, threshold=3"
    down = view.data["down"]
    got = {
        (int(c), int(k)): int(n)
        for c, k, n in zip(down["class"], down["col"], down["count"], strict=True)
    }
    # abRight sits at the snapshot before the change; the view draws it one column later.
    want = {
        (c, i + 1): int(right[i, c]) for i, c in zip(*np.nonzero(right >= THRESHOLD), strict=True)
    }
    assert got == want
    assert view.data["peak"].tolist() == counts.peak_count.values.tolist()


def test_class_marks_match_a_longer_window(log):
    short = class_marks(log, j=J, threshold=THRESHOLD)
    long = unstable_samples(log, window=10, j=J, threshold=THRESHOLD)
    left = long.ab_left.isel(lag=J).values
    np.testing.assert_array_equal(short.up.values, np.where(left >= THRESHOLD, left, 0))
    with pytest.raises(InvalidDataError):
        class_marks(log, j=-1)


def test_many_rows_are_ordered_by_mean_correctness():
    values = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    assert order_rows(values, max_mds=3).tolist() == [3, 1, 2, 0]
    assert sorted(order_rows(values).tolist()) == [0, 1, 2, 3]


def test_peak_order_sorts_by_peak_count(log):
    widget = ValidationView(log, j=J, threshold=THRESHOLD, order="peak")
    peak = widget.data["peak"]
    assert widget.order == "peak"
    assert np.all(np.diff(peak[widget.data["order_peak"]]) <= 0)
    widget.order = "mds"
    with pytest.raises(traitlets.TraitError):
        widget.order = "alphabetical"
    widget.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"j": -1}, {"threshold": 0}, {"order": "name"}, {"max_points": 1}, {"j": True}],
)
def test_bad_parameters(log, kwargs):
    with pytest.raises(InvalidParameterError):
        ValidationView(log, **kwargs)


def test_a_log_without_classes_or_correct_is_refused(log):
    with pytest.raises(fs.LogFormatError):
        ValidationView(log.drop_vars("correct"))
    with pytest.raises(InvalidDataError):
        ValidationView("runs/x")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ requests
def test_rows_answer_one_class_in_mds_order(view, log):
    answer = ask(view, "rows", class_=3)
    assert answer["id"] == 1 and "error" not in answer
    result = answer["result"]
    members = np.flatnonzero(log.label.values == 3)
    assert result["class_"] == 3 and result["total"] == len(members)
    assert sorted(result["samples"].tolist()) == members.tolist()
    correct = log.correct.values[:, result["samples"]].T.astype(np.float32)
    np.testing.assert_array_equal(result["values"], correct)
    by_index = log.correct.values[:, members]
    assert result["samples"].tolist() == members[order_rows(by_index)].tolist()
    limited = ask(view, "rows", class_=3, limit=5)["result"]
    assert limited["samples"].tolist() == result["samples"][:5].tolist()


def test_a_long_run_arrives_in_buckets_and_a_window_at_the_finer_level(log):
    widget = ValidationView(log, j=J, threshold=THRESHOLD, max_points=8)
    data, steps = widget.data, log.snapshot_step.values
    assert data["level"] == 2 and data["accuracy"].shape == (10, 5)  # 17 snapshots, buckets of 4
    error = fs.index_of(log).query("class_error", level=2).sel(agg="mean").values
    np.testing.assert_allclose(_accuracy(data["accuracy"]), 1 - error.T, atol=HALF_STEP)
    assert data["x0"].tolist() == steps[[0, 4, 8, 12, 16]].tolist()
    assert data["x1"].tolist() == steps[[3, 7, 11, 15, 16]].tolist()
    # A window of a few snapshots comes back raw: from the snapshot at or before its start to
    # the one after its stop.
    answer = ask(widget, "window", start=int(steps[3]) + 1, stop=int(steps[6]))["result"]
    assert answer["level"] == 0 and answer["x0"].tolist() == steps[3:8].tolist()
    expected = 1 - class_error(log).transpose("class", "snapshot").values[:, 3:8]
    np.testing.assert_allclose(_accuracy(answer["accuracy"]), expected, atol=HALF_STEP)
    left = unstable_samples(log, j=J, threshold=THRESHOLD).ab_left.isel(lag=J).values[3:8]
    up = answer["up"]
    got = {(int(c), int(k)) for c, k in zip(up["class"], up["col"], strict=True)}
    assert got == {(c, i) for i, c in zip(*np.nonzero(left >= THRESHOLD), strict=True)}
    rows = ask(widget, "rows", class_=2, start=int(steps[3]) + 1, stop=int(steps[6]))["result"]
    members = np.flatnonzero(log.label.values == 2)
    assert rows["values"].shape == (len(members), 5)
    whole = ask(widget, "rows", class_=2)["result"]
    assert whole["values"].shape == (len(members), 5) and whole["values"].max() <= 1
    for bad in (
        {"start": 5, "stop": 5},
        {"start": 10**8, "stop": 10**9},
        {"start": "a", "stop": 3},
    ):
        assert "error" in ask(widget, "window", rid=3, **bad)
    assert "error" in ask(widget, "rows", rid=4, class_=2, start=9, stop=2)
    widget.close()


@pytest.mark.parametrize(
    "params",
    [
        {"class_": 99},
        {"class_": "nope"},
        {"class_": None},
        {"class_": [1]},
        {"class_": 1, "limit": 0},
        {"class_": 1, "extra": 1},
        {},
    ],
)
def test_bad_rows_requests_are_answered_with_errors(view, params):
    answer = ask(view, "rows", rid=7, **params)
    assert answer["id"] == 7 and "result" not in answer
    assert isinstance(answer["error"], str) and answer["error"]


def test_thumbnail_request_sends_png_bytes_of_the_stored_thumbnail(view, log):
    answer = ask(view, "thumbnail", sample=5)["result"]
    width, height, color, pixels = decode_png(answer["png"].tobytes())
    assert (width, height, color) == (8, 8, 0)
    assert answer["png"].dtype == np.uint8
    np.testing.assert_array_equal(pixels, log.thumbnail.values[5])
    for bad in (-1, log.sizes["sample"], "3", True, 1.5):
        reply = ask(view, "thumbnail", rid=2, sample=bad)
        assert "error" in reply and reply["id"] == 2


def test_png_encoder_writes_rgb():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    width, height, color, pixels = decode_png(png_bytes(image))
    assert (width, height, color) == (3, 2, 2)
    np.testing.assert_array_equal(pixels, image)


def test_malformed_and_unknown_requests(view):
    assert "error" in view.handle_request({"type": "request", "id": 1, "method": "nope"})
    assert "error" in view.handle_request({"type": "request", "method": "rows"})
    assert "error" in view.handle_request("rows")


def test_a_log_without_thumbnails_answers_with_a_placeholder_error():
    rng = np.random.default_rng(0)
    log = from_arrays(rng.random((12, 40)) < 0.7, np.arange(40) % 5)
    widget = ValidationView(log, j=1, threshold=2)
    assert widget.data["thumbnails"] is False
    reply = ask(widget, "thumbnail", sample=0)
    assert "no thumbnails" in reply["error"]
    assert "result" in ask(widget, "rows", class_=2)
    widget.close()


# ------------------------------------------------------------------------------ selection
def test_selection_round_trips_class_sample_and_picks(log):
    selection = Selection()
    widget = ValidationView(log, selection=selection, j=J, threshold=THRESHOLD)
    selection.class_ = 4
    assert widget.class_ == 4
    widget.sample_index = 12
    assert selection.sample_index == 12
    step = int(log.snapshot_step[3])
    widget.picked_steps = [step]
    assert selection.picked_steps == [step]
    selection.time_window = (10, 60)
    assert widget.time_window == (10, 60)
    with pytest.raises(InvalidSelectionError):
        selection.class_ = 42
    assert selection.class_ == 4 and widget.class_ == 4
    with pytest.raises(InvalidSelectionError):
        widget.sample_index = log.sizes["sample"]
    with pytest.raises(InvalidSelectionError):
        widget.picked_steps = [10**9]
    widget.class_ = "5"  # a label given as text is the label
    assert widget.class_ == 5 and selection.class_ == 5
    widget.close()
    selection.class_ = 1
    assert widget.class_ == 5  # unlinked


def test_the_page_may_set_only_its_traits(view):
    view.set_state({"class_": 2, "sample_index": 3, "order": "peak"})
    assert (view.class_, view.sample_index, view.order) == (2, 3, "peak")
    view.set_state({"class_": 77})  # refused, rolled back
    assert view.class_ == 2
    before = view.data
    view.set_state({"data": {}})
    assert view.data is before


def test_class_names_travel_as_given(tmp_path):
    rng = np.random.default_rng(1)
    log = from_arrays(
        rng.random((10, 30)) < 0.6,
        np.arange(30) % 5,
        class_names=[XSS, "b", "c", "d", "e"],
    )
    widget = ValidationView(log, j=1, threshold=2)
    assert widget.data["names"][0] == XSS
    widget.close()


def test_accessor_and_lazy_export(log):
    assert fs.ValidationView is ValidationView
    widget = log.filterscope.validation_view(j=J, threshold=THRESHOLD)
    assert isinstance(widget, ValidationView)
    widget.close()


def test_synthetic_logs_carry_generated_thumbnails(tmp_path):
    path = tmp_path / "synthetic"
    fs.data.synthetic_log(path, n_samples=60, n_classes=6, n_snapshots=12, plant=False)
    log = fs.open_log(path)
    assert log.thumbnail.shape == (60, 8, 8, 1) and log.thumbnail.dtype == np.uint8
    widget = ValidationView(log, j=1, threshold=2)
    assert widget.data["thumbnails"] is True
    assert ask(widget, "thumbnail", sample=0)["result"]["width"] == 8
    widget.close()
