"""Live views: a dashboard follows a run that a real Recorder is still writing.

The recorder trains a tiny CNN in a background thread (as a notebook cell runs a loop while the
page updates); the live dashboard's daemon thread reopens the log at each commit, extends the
index and reloads every view. Nothing is mocked.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable

import pytest
import torch
import xarray as xr
from log_helpers.tiny import TinyCNN, digits
from torch import nn

import filterscope as fs
from filterscope.errors import InvalidParameterError, LogFormatError
from filterscope.index import Index
from filterscope.index.build import committed_sizes
from filterscope.views import ModelInfo, ValidationView
from filterscope.views._data import given_index
from filterscope.views._data import index_of as views_index_of
from filterscope.views._live import LivePoller, LiveUpdateWarning

pytestmark = pytest.mark.xdist_group("views_live")

DEADLINE = 60.0


def _train(
    path, steps: Callable[[int], bool] | int, done: list, step_seconds: list, pause: float = 0.0
) -> None:
    """Train and record into ``path`` while ``steps(i)`` is true (or for ``steps`` steps)."""
    more = steps if callable(steps) else (lambda i, n=steps: i < n)
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = digits(0, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with fs.Recorder(
        model, path, eval_sets={"val": digits(64, 128)}, snapshot_every=2, optimizer=optimizer
    ) as recorder:
        i = 0
        while more(i):
            i += 1
            start = time.perf_counter()
            optimizer.zero_grad()
            output = model(x)
            loss = nn.functional.cross_entropy(output, y)
            loss.backward()
            recorder.step(loss, output, y)
            optimizer.step()
            step_seconds.append(time.perf_counter() - start)
            time.sleep(pause)
    done.append(True)


def _wait(condition, what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _first_commit(path, snapshots: int = 2) -> xr.Dataset:
    found: list = []

    def committed() -> bool:
        try:
            log = fs.open_log(path)
        except (LogFormatError, FileNotFoundError, OSError):
            return False
        if log.sizes.get("snapshot", 0) >= snapshots:
            found.append(log)
            return True
        return False

    _wait(committed, "the recorder's first commits")
    return found[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished recorded run (for the tests that need no training)."""
    path = tmp_path_factory.mktemp("live") / "log"
    _train(path, 12, [], [])
    return path


def test_live_dashboard_follows_a_training_run(tmp_path) -> None:
    path = tmp_path / "log"
    done: list = []
    step_seconds: list = []
    lengths: list[int] = []  # the snapshot counts ModelInfo was sent, update by update

    give_up = threading.Event()

    def more(i: int) -> bool:
        # Train until the dashboard showed the run grow three times, however slow the machine.
        return not give_up.is_set() and (i < 40 or (len(set(lengths)) < 3 and i < 5000))

    trainer = threading.Thread(
        target=_train, args=(path, more, done, step_seconds, 0.02), daemon=True
    )
    trainer.start()
    log = _first_commit(path)
    board = fs.dashboard(log, live=True, interval=0.05)
    try:
        info, layer = board.views["model_info"], board.views["layer"]
        first = int(log.snapshot_step.values[0])
        board.selection.picked_steps = [first]
        window = (0, int(log.step.values[-1]))
        board.selection.time_window = window
        info.observe(lambda change: lengths.append(len(change.new["snapshot_step"])), "series")
        # Requests from the main thread while the live thread extends the index.
        answers = []
        while trainer.is_alive():
            answers.append(
                info.handle_request(
                    {
                        "type": "request",
                        "id": 1,
                        "method": "window",
                        "params": {"start": 0, "stop": 4},
                    }
                )
            )
            time.sleep(0.02)
        trainer.join()
        assert done == [True] and len(step_seconds) >= 40  # the training loop ran through
        assert all("error" not in a for a in answers), [a for a in answers if "error" in a][:1]

        final = fs.open_log(path)
        n = int(final.sizes["snapshot"])
        last_step = int(max(final.step.values[-1], final.snapshot_step.values[-1]))
        _wait(lambda: len(info.series["snapshot_step"]) == n, "ModelInfo's last snapshot")
        _wait(
            lambda: (
                all(
                    len(v["snapshot_step"]) == n
                    for v in (layer.tree, board.views["validation"].data)
                )
                and board.views["cube"].meta["step_range"][1] >= int(final.snapshot_step.values[-1])
            ),
            "every view's last snapshot",
        )
        assert board.live and board._poller is not None and board._poller.error is None
        assert len(set(lengths)) >= 3, lengths  # it grew while training, commit by commit
        assert info.series["step_range"][1] == last_step
        # The user's picks and zoom stay; steps beyond the old end are reachable.
        assert board.selection.picked_steps == [first] == info.picked_steps
        assert info.time_window == window == layer.time_window
        info.picked_steps = [first, last_step]
        assert board.selection.picked_steps == [first, last_step]
        answer = info.handle_request(
            {
                "type": "request",
                "id": 2,
                "method": "window",
                "params": {"start": last_step - 4, "stop": last_step},
            }
        )
        assert "error" not in answer
        assert answer["result"]["charts"][0]["lines"][0]["x"][-1] == int(final.step.values[-1])
        # The index was extended in the log's store.
        assert fs.index_of(final, build=False).committed["snapshot"] == n
    finally:
        give_up.set()
        board.close()
        trainer.join(DEADLINE)
    assert not board.live


def test_close_stops_the_thread(finished) -> None:
    log = fs.open_log(finished)
    board = fs.dashboard(log, views=["model_info", "layer"], live=True, interval=0.02)
    poller = board._poller
    assert poller is not None and board.live
    thread = poller._thread
    assert thread.is_alive() and thread.daemon
    board.close()
    assert not thread.is_alive() and not board.live and board._poller is None

    view = ModelInfo(log).follow(interval=0.02)
    assert view.live
    thread = view._poller._thread
    view.stop()
    assert not thread.is_alive() and not view.live
    view.follow(interval=0.02)
    thread = view._poller._thread
    view.close()
    assert not thread.is_alive() and not view.live


def test_an_error_stops_the_poller_with_a_warning(finished, tmp_path, caplog) -> None:
    path = tmp_path / "log"
    shutil.copytree(finished, path)
    log = fs.open_log(path)
    board = fs.dashboard(log, views=["model_info"], live=True, interval=0.02)
    try:
        poller = board._poller
        assert poller is not None
        before = board.views["model_info"].series
        with pytest.warns(LiveUpdateWarning, match="stopped following"):
            # The log replaced by something that is not a filterscope log.
            (path / "zarr.json").write_text(
                '{"zarr_format": 3, "node_type": "group", "attributes": {}}'
            )
            _wait(lambda: not poller._thread.is_alive(), "the poller to stop")
        assert isinstance(poller.error, LogFormatError)
        assert not board.live
        assert any("stopped following" in r.getMessage() for r in caplog.records)
        assert board.views["model_info"].series is before  # the views keep what they showed
    finally:
        board.close()


def test_bad_interval_is_refused(finished) -> None:
    with pytest.raises(InvalidParameterError, match="interval"):
        fs.dashboard(fs.open_log(finished), views=["model_info"], live=True, interval=0)
    view = ModelInfo(fs.open_log(finished))
    try:
        with pytest.raises(InvalidParameterError, match="interval"):
            view.follow(interval=-1)
        assert not view.live
    finally:
        view.close()


KERNEL_SETUP = """\
import sys
sys.path.insert(0, {tests!r})
import filterscope as fs
from log_helpers.tiny import record_resumable_run

record_resumable_run({path!r}, 4, {weights!r})
view = fs.ModelInfo(fs.open_log({path!r})).follow(interval=0.05)
"""

KERNEL_TRAIN = """\
import torch
from torch import nn

# The run goes on in this cell, which blocks the kernel's main thread, until the view was sent
# three different lengths (however slow the machine), as a notebook's training loop would.
seen = set()
view.observe(lambda change: seen.add(len(change.new["snapshot_step"])), "series")
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
model.load_state_dict(torch.load({weights!r}, weights_only=True))
x, y = torch.randn(48, 1, 8, 8), torch.arange(48) % 3
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with fs.Recorder(
    model, {path!r}, eval_sets={{"val": (x, y)}}, snapshot_every=2, optimizer=opt, mode="a"
) as rec:
    step = 0
    while step < 40 or (len(seen) < 3 and step < 5000):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        rec.step(loss)
        opt.step()
        step += 1
print("SEEN", len(seen), "STEPS", step)
"""


def test_a_kernel_sends_updates_while_a_cell_trains(tmp_path) -> None:
    """In a real ipykernel, the live thread's updates reach iopub while a cell blocks the kernel."""
    from pathlib import Path

    from jupyter_client.manager import start_new_kernel

    tests = str(Path(__file__).parent)
    fill = {"tests": tests, "path": str(tmp_path / "log"), "weights": str(tmp_path / "w.pt")}
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        reply = client.execute_interactive(KERNEL_SETUP.format(**fill), timeout=DEADLINE)
        assert reply["content"]["status"] == "ok", reply["content"]
        msg_id = client.execute(KERNEL_TRAIN.format(**fill))
        # Every iopub message until the cell is done: the live thread's have no parent header
        # (it is not the cell's), so collect them all, in the order the kernel sent them.
        updates, texts = [], []
        while True:
            message = client.get_iopub_msg(timeout=DEADLINE)
            kind, content = message["msg_type"], message["content"]
            if kind == "comm_msg" and "series" in content.get("data", {}).get("state", {}):
                updates.append(message["header"]["date"])
            elif kind in ("stream", "error"):
                texts.append(content)
            elif (
                kind == "status"
                and content["execution_state"] == "idle"
                and message["parent_header"].get("msg_id") == msg_id
            ):
                break
        reply = client.get_shell_msg(timeout=DEADLINE)
        assert reply["content"]["status"] == "ok", (reply["content"], texts)
        # Updates came before the cell was done: sent by the live thread while the cell blocked.
        assert len(updates) >= 3, (updates, texts)
        reply = client.execute_interactive("view.close()", timeout=DEADLINE)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_log_replaced_by_another_run_is_not_mixed_in(finished, tmp_path) -> None:
    path = tmp_path / "log"
    shutil.copytree(finished, path)
    log = fs.open_log(path)
    generation = log.attrs["filterscope_generation"]
    info = ModelInfo(log)
    board = fs.dashboard(log, views=["model_info"])
    try:
        # follow() hands the poller the run the views show.
        board.follow(interval=60.0)
        assert board._poller is not None and board._poller._generation == generation
        board.stop()
        poller = LivePoller(path, [info], committed=committed_sizes(log), generation=generation)
        before = info.series
        shutil.rmtree(path)
        _train(path, 6, [], [])  # another run (another generation) at the same path
        assert fs.open_log(path).attrs["filterscope_generation"] != generation
        with pytest.warns(LiveUpdateWarning, match="replaced by another run"):
            assert poller.poll() is False
        assert poller.replaced and not poller.running and poller.updates == 0
        assert info.series is before  # the earlier run, not a mix of two
        assert "replaced by another run" in info.notice
        assert info.get_state("notice")["notice"] == info.notice  # synced to the page
    finally:
        board.close()
        info.close()


def test_a_reload_uses_the_index_the_poller_extended(finished, tmp_path) -> None:
    path = tmp_path / "log"
    shutil.copytree(finished, path)
    log = fs.open_log(path)
    info = ModelInfo(log)
    validation = ValidationView(log)
    try:
        poller = LivePoller(path, [info, validation], committed={"step": 0, "snapshot": 0})
        assert poller.poll() is True and poller.updates == 1
        assert validation._index is info._charts.index
        # Inside given_index the views get that index, not one they open themselves.
        other = Index(fs.open_log(path), path)
        with given_index(other):
            assert views_index_of(log) is other
        assert views_index_of(log) is not other
    finally:
        info.close()
        validation.close()
