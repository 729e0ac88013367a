"""The view framework's request handler, without a browser: what the page asks, what it gets."""

from __future__ import annotations

import json
import logging

import comm
import numpy as np
import pytest
import xarray as xr
from comm.base_comm import BaseComm
from ipywidgets.widgets.widget import _put_buffers
from traitlets import Int, List, Unicode

from filterscope.errors import InvalidDataError, InvalidParameterError, InvalidSelectionError
from filterscope.views import ModelInfo, Selection
from filterscope.views._base import MAX_REQUEST_BYTES, ViewWidget, encode_response, request
from filterscope.views._serialization import from_json


class Page(BaseComm):
    """The page end of a widget's comm: keeps every custom message the kernel sends."""

    def __init__(self, **kwargs):
        self.custom: list[tuple[dict, list[bytes]]] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        data = json.loads(json.dumps(data))
        if data and data.get("method") == "custom":
            self.custom.append((data["content"], [bytes(b) for b in buffers or []]))

    def send_custom(self, content, buffers=()):
        """The page calls ``model.send(content)``: one comm "custom" message."""
        data = {"method": "custom", "content": content}
        self.handle_msg(
            {"content": {"comm_id": self.comm_id, "data": data}, "buffers": list(buffers)}
        )


@pytest.fixture(autouse=True)
def page(monkeypatch) -> None:
    monkeypatch.setattr(comm, "create_comm", lambda **kwargs: Page(**kwargs))


class Echo(ViewWidget):
    """A small view: echoes text, sends arrays, fails on purpose."""

    _view = Unicode("echo", read_only=True).tag(sync=True)
    _selection_traits = ("picked_steps",)
    picked_steps = List(Int()).tag(sync=True)

    @request("echo")
    def _echo(self, text: str, times: int = 1) -> dict:
        return {"text": text * times}

    @request("arrays")
    def _arrays(self, n: int) -> dict:
        if n < 0:
            raise InvalidDataError(f"n must be >= 0, got {n}")
        return {"values": np.arange(n, dtype=np.float64) / 2, "nested": [{"i": np.arange(n)}]}

    @request("boom")
    def _boom(self) -> None:
        raise RuntimeError("a bug")

    @request("strings")
    def _strings(self) -> dict:
        return {"bad": np.array(["a", "b"])}


class EchoTwice(Echo):
    @request("twice")
    def _twice(self, text: str) -> str:
        return text * 2


def ask(view, content, buffers=()):
    """Send ``content`` from the page; return the one reply, arrays put back and decoded."""
    before = len(view.comm.custom)
    view.comm.send_custom(content, buffers)
    replies = view.comm.custom[before:]
    assert len(replies) == 1, replies
    reply, data = replies[0]
    assert reply["type"] == "response"
    if "result" in reply:
        paths = reply.pop("buffer_paths")
        holder = {"result": reply["result"]}
        _put_buffers(holder, [["result", *p] for p in paths], data)
        reply["result"] = from_json(holder["result"])
    return reply


def req(method, params=None, rid=1):
    return {"type": "request", "id": rid, "method": method, "params": params or {}}


def test_a_request_is_answered_with_its_id_and_arrays_as_binary_buffers():
    view = Echo()
    assert ask(view, req("echo", {"text": "ab", "times": 2}, rid=41)) == {
        "type": "response",
        "id": 41,
        "result": {"text": "abab"},
    }
    before = len(view.comm.custom)
    view.comm.send_custom(req("arrays", {"n": 5}, rid=3))
    (content, buffers) = view.comm.custom[before]
    assert content["buffer_paths"] == [["values", "buffer"], ["nested", 0, "i", "buffer"]]
    assert [len(b) for b in buffers] == [20, 20]  # float32 and int32 on the wire
    reply = ask(view, req("arrays", {"n": 5}, rid=4))
    np.testing.assert_array_equal(reply["result"]["values"], np.arange(5) / 2)
    np.testing.assert_array_equal(reply["result"]["nested"][0]["i"], np.arange(5))


@pytest.mark.parametrize(
    ("content", "rid", "match"),
    [
        ({"type": "request", "method": "echo"}, None, "integer 'id'"),
        ({"type": "request", "id": "7", "method": "echo"}, None, "integer 'id'"),
        ({"type": "request", "id": True, "method": "echo"}, None, "integer 'id'"),
        ({"type": "request", "id": 2, "method": 5}, 2, "string 'method'"),
        ({"type": "request", "id": 2, "method": "echo", "params": [1]}, 2, "object 'params'"),
        ({"type": "request", "id": 2, "method": "nope"}, 2, "has no request 'nope'"),
        (req("echo", {"txt": "a"}, rid=5), 5, "bad params for 'echo'"),
        (req("echo", {}, rid=5), 5, "missing a required argument: 'text'"),
        (req("arrays", {"n": -1}, rid=6), 6, "n must be >= 0"),
        (req("twice", {"text": "a"}, rid=8), 8, "has no request 'twice'"),
    ],
    ids=repr,
)
def test_bad_requests_get_an_error_reply_never_an_exception(caplog, content, rid, match):
    view = Echo()
    with caplog.at_level(logging.WARNING):
        reply = ask(view, content)
    assert reply["id"] == rid
    assert match in reply["error"]
    assert "result" not in reply
    assert "Exception in widget method" not in caplog.text


def test_an_oversized_request_is_refused_unread():
    view = Echo()
    text = "x" * MAX_REQUEST_BYTES
    reply = ask(view, req("echo", {"text": text}, rid=9))
    assert reply["id"] == 9 and "limited to 65536 bytes" in reply["error"]
    reply = ask(view, req("echo", {"text": "a"}, rid=10), [b"\0" * (MAX_REQUEST_BYTES + 1)])
    assert "limited to" in reply["error"]


def test_a_bug_in_a_view_is_answered_and_logged_not_raised(caplog):
    view = Echo()
    with caplog.at_level(logging.WARNING):
        reply = ask(view, req("boom", rid=11))
    assert reply == {
        "type": "response",
        "id": 11,
        "error": "internal error in Echo: RuntimeError: a bug",
    }
    assert "request" in caplog.text and "a bug" in caplog.text


def test_a_result_the_browser_cannot_read_becomes_an_error():
    reply = ask(Echo(), req("strings", rid=12))
    assert reply["id"] == 12 and "cannot send result" in reply["error"]


def test_other_custom_messages_are_not_answered():
    view = Echo()
    view.comm.send_custom({"type": "hello"})
    view.comm.send_custom("text")
    assert view.comm.custom == []


def test_subclasses_inherit_requests_and_add_their_own():
    assert Echo._requests == {
        "echo": "_echo",
        "arrays": "_arrays",
        "boom": "_boom",
        "strings": "_strings",
    }
    assert EchoTwice._requests["twice"] == "_twice"
    assert ask(EchoTwice(), req("twice", {"text": "ab"}))["result"] == "abab"


def test_encode_response_leaves_errors_alone():
    error = {"type": "response", "id": 1, "error": "no"}
    assert encode_response(error) == (error, [])


def test_the_view_links_its_selection_traits_and_sends_the_link_id():
    sel = Selection(picked_steps=[3])
    a, b = Echo(selection=sel), Echo(selection=sel)
    assert a.link_id == b.link_id == sel.link_id
    assert a.get_state("link_id") == {"link_id": sel.link_id}
    assert Echo().link_id != sel.link_id
    assert a.picked_steps == [3]
    a.picked_steps = [4]
    assert b.picked_steps == [4]
    a.close()
    b.picked_steps = [5]
    assert a.picked_steps == [4]
    with pytest.raises(InvalidParameterError, match="Selection"):
        Echo(selection="nope")


def synthetic_log(n_steps: int, snapshot_every: int) -> xr.Dataset:
    """An in-memory log with a loss over ``n_steps`` steps: deterministic, no training."""
    steps = np.arange(n_steps)
    snaps = np.arange(0, n_steps, snapshot_every)
    return xr.Dataset(
        {
            "loss": ("step", (2 + np.sin(steps / 50)).astype(np.float32)),
            "val_loss": ("snapshot", (1 + np.cos(snaps / 500)).astype(np.float32)),
        },
        coords={
            "step": steps,
            "snapshot": np.arange(len(snaps)),
            "snapshot_step": ("snapshot", snaps),
        },
        attrs={"filterscope_format": 1, "eval_sets": ["val"]},
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"start": 50, "stop": 10}, "0 <= start < stop"),
        ({"start": -5, "stop": 10}, "0 <= start < stop"),
        ({"start": 30_000, "stop": 40_000}, "outside this run's steps 0 to 19999"),
        ({"start": 1.5, "stop": 10}, "two whole steps"),
        ({"start": True, "stop": 10}, "two whole steps"),
        ({"start": 1}, "missing a required argument"),
        ({"start": 1, "stop": 2, "columns": 9}, "unexpected keyword"),
    ],
    ids=repr,
)
def test_model_info_refuses_bad_windows(params, match):
    view = ModelInfo(synthetic_log(20_000, 1000))
    reply = ask(view, req("window", params, rid=21))
    assert reply["id"] == 21 and match in reply["error"]


def test_model_info_answers_a_zoom_into_a_long_run_with_raw_values():
    log = synthetic_log(20_000, 1000)
    view = ModelInfo(log)
    (loss,) = [c for c in view.series["charts"] if c["key"] == "loss"]
    train = loss["lines"][0]
    assert train["level"] > 0 and len(train["x"]) <= 2000  # the overview: buckets
    reply = ask(view, req("window", {"start": 5000, "stop": 6500}, rid=22))
    (chart,) = [c for c in reply["result"]["charts"] if c["key"] == "loss"]
    train, val = chart["lines"]
    assert train["level"] == 0
    np.testing.assert_array_equal(train["x"], np.arange(5000, 6502))
    np.testing.assert_array_equal(train["y"], log.loss.values[5000:6502])
    np.testing.assert_array_equal(val["x"], [5000, 6000, 7000])
    # A window wider than the columns comes at the finest level that fits.
    reply = ask(view, req("window", {"start": 0, "stop": 10_000}, rid=23))
    (chart,) = [c for c in reply["result"]["charts"] if c["key"] == "loss"]
    assert chart["lines"][0]["level"] == 3 and len(chart["lines"][0]["x"]) <= 2000
    with pytest.raises(InvalidSelectionError):
        view.time_window = (10, 5)


def test_a_private_index_lives_as_long_as_a_view_uses_it():
    import gc
    from pathlib import Path

    view = ModelInfo(synthetic_log(500, 100))
    store = Path(view._charts.index.store)
    assert store.is_dir()
    other = ModelInfo(view._charts.index.log)
    assert other._charts.index is view._charts.index  # one index per in-memory log
    # ipywidgets keeps every widget until it is closed.
    view.close()
    other.close()
    del view, other
    gc.collect()
    assert not store.exists()
