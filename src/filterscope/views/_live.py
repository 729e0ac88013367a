"""Live views: follow a log that is still being recorded, from a background thread.

A :class:`LivePoller` watches the log's root ``zarr.json`` (one ``stat`` every ``interval``
seconds; every commit replaces that file). When it changed and the commit record holds more
steps or snapshots, the poller reopens the log at its new commit (:func:`filterscope.open_log`),
extends the log's index once (:func:`filterscope.index_of`, incremental) and has each view
rebuild its overview for the new length (``ViewWidget._reload``) from that same index
(:func:`~filterscope.views._data.given_index`), which sends the new state to the page.

A log replaced by another run (``Recorder(..., mode="w")`` on the same path) carries another
``filterscope_generation``: the poller then stops, reloads nothing (the views keep the run they
showed, never a mix of two runs), and each view's ``notice`` says so on the page.

All of it runs in one daemon thread per dashboard (or per view followed alone), never on the
training thread, and reads only committed data: the recorder's writer lock is never taken. The
index extension and the reloads hold :data:`~filterscope.views._data.DATA_LOCK`, which the views'
request handlers hold too, so a request never reads the index while it is rewritten. Sending
from a thread is what lets the page update while a notebook cell trains (the cell blocks the
kernel's main thread): ipykernel sends iopub messages from any thread.

An error in the thread (the log removed or replaced, a damaged commit) is not raised into
whatever cell runs: it stops the poller, is logged with its traceback and warned about once
(:class:`LiveUpdateWarning`), and stays in :attr:`LivePoller.error`.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filterscope.errors import InvalidParameterError
from filterscope.index.build import committed_sizes
from filterscope.log.schema import GENERATION_ATTR

if TYPE_CHECKING:
    from filterscope.views._base import ViewWidget

_LOG = logging.getLogger("filterscope.views.live")

DEFAULT_INTERVAL = 1.0
"""Seconds between two looks at the log's commit record."""


class LiveUpdateWarning(UserWarning):
    """A live view stopped following its log (the error is in the message and the log)."""


def check_interval(interval: object) -> float:
    """``interval`` as a positive number of seconds, else :class:`InvalidParameterError`."""
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int | float)
        or not 0 < interval < float("inf")
    ):
        raise InvalidParameterError(
            f"interval must be a positive number of seconds, got {interval!r}"
        )
    return float(interval)


class LivePoller:
    """One daemon thread that reloads ``views`` whenever the log at ``path`` commits more.

    Parameters
    ----------
    path : path
        The log's directory.
    views : sequence of ViewWidget
        The views to reload, in order (a dashboard's views share one poller).
    interval : float, default 1.0
        Seconds between two ``stat`` calls of the root ``zarr.json``.
    committed : dict of str to int, optional
        The lengths the views show now (``{"step": n, "snapshot": m}``); the first commit with
        other lengths reloads them. Default: reload at the first look.
    generation : str, optional
        The ``filterscope_generation`` of the run the views show; a log at ``path`` with
        another one is a different run (see the module docstring). Default: the first one seen.

    Attributes
    ----------
    error : BaseException or None
        What stopped the thread, if an error did.
    updates : int
        How many times the views were reloaded.
    replaced : bool
        True once the log at ``path`` was found replaced by another run (the poller stopped).
    """

    def __init__(
        self,
        path: str | Path,
        views: Sequence[ViewWidget],
        *,
        interval: float = DEFAULT_INTERVAL,
        committed: dict[str, int] | None = None,
        generation: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.views = list(views)
        self.interval = check_interval(interval)
        self.error: BaseException | None = None
        self.updates = 0
        self.replaced = False
        self._generation = generation
        self._committed = committed
        self._seen: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"filterscope-live-{self.path.name}", daemon=True
        )

    @property
    def running(self) -> bool:
        """True while the thread follows the log."""
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> LivePoller:
        """Start following (once)."""
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop following; waits up to ``timeout`` seconds for an update under way to finish."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as error:
                self._fail(error)
                return
            self._stop.wait(self.interval)

    def poll(self) -> bool:
        """Look at the log once; reload the views if it committed more. True when it did."""
        from filterscope.log.reader import open_log
        from filterscope.views._data import DATA_LOCK, given_index, index_of

        stat = os.stat(self.path / "zarr.json")
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return False
        log = open_log(self.path)
        generation = str(log.attrs.get(GENERATION_ATTR, ""))
        if self._generation is None:
            self._generation = generation
        elif generation != self._generation:
            self._replaced()
            return False
        sizes = committed_sizes(log)
        if sizes == self._committed:
            self._seen = seen
            return False
        with DATA_LOCK:
            index = index_of(log)  # extend the shared index once, for every view
            # The commit the index covers (a later one when training committed meanwhile):
            # views and index then agree on every snapshot.
            log = index.log
            if str(log.attrs.get(GENERATION_ATTR, "")) != self._generation:
                self._replaced()
                return False
            sizes = committed_sizes(log)
            with given_index(index):
                for view in self.views:
                    if self._stop.is_set():
                        return False
                    view._reload(log)
        self._seen, self._committed = seen, sizes
        self.updates += 1
        return True

    def _replaced(self) -> None:
        """The log at the path is another run now: stop, keep what is shown, say so."""
        self.replaced = True
        self._stop.set()
        message = (
            f"The log at {self.path} was replaced by another run; these views still show the "
            "earlier run and stopped following. Open the log again (filterscope.open_log) to "
            "see the new run."
        )
        for view in self.views:
            view.set_trait("notice", message)
        _LOG.warning(message)
        warnings.warn(message, LiveUpdateWarning, stacklevel=1)

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self._stop.set()
        message = (
            f"filterscope stopped following {self.path}: {type(error).__name__}: {error}. "
            "The views keep what they showed; call follow() again (or open the log anew) "
            "to go on"
        )
        _LOG.warning(message, exc_info=error)
        warnings.warn(message, LiveUpdateWarning, stacklevel=1)


def followed_path(owner: object, log: object) -> Path:
    """The directory a live view of ``log`` follows, else :class:`InvalidParameterError`."""
    from filterscope.log.reader import log_path

    path = log_path(log) if log is not None else None  # type: ignore[arg-type]
    if path is None:
        raise InvalidParameterError(
            f"{type(owner).__name__} can follow only a log opened from its path "
            "(filterscope.open_log); this Dataset was not"
        )
    return Path(path)


class Follower:
    """``follow``/``stop``/``live`` for a view or a dashboard: one poller reloads its views.

    The owner keeps its log in ``_log`` and names the views one poller reloads in
    :meth:`_followed_views` (a view itself; a dashboard all of its views, which share one
    thread and one index extension).
    """

    _poller: LivePoller | None = None

    def _followed_views(self) -> list[Any]:
        raise NotImplementedError

    def follow(self, interval: float = DEFAULT_INTERVAL) -> Any:
        """Show the run as it trains: reload whenever the log commits a new snapshot.

        A daemon thread looks at the log's commit record every ``interval`` seconds and, when
        it grew, reopens the log (the whole run at its path, also for a view of ``sel``/``isel``
        of it), extends its index once and has each view rebuild its overview (picks, zoom
        window, layer and class stay), sending it to the page from the thread, so the page
        updates while a notebook cell trains. The training loop is not slowed (the recorder's
        lock is never taken). An error in the thread stops it with a
        :class:`LiveUpdateWarning`. Returns ``self``.

        Raises
        ------
        InvalidParameterError
            If the log was not opened from a path, or ``interval`` is not a positive number.
        """
        log: Any = getattr(self, "_log", None)
        path = followed_path(self, log)
        interval = check_interval(interval)
        self.stop()
        self._poller = LivePoller(
            path,
            self._followed_views(),
            interval=interval,
            committed=committed_sizes(log),
            generation=str(log.attrs.get(GENERATION_ATTR, "")),
        ).start()
        return self

    def stop(self) -> None:
        """Stop following the log (see :meth:`follow`); nothing when not following."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None

    @property
    def live(self) -> bool:
        """True while following the log (:meth:`follow`)."""
        return self._poller is not None and self._poller.running
