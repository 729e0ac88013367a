"""The view framework: one ``ViewWidget`` base owning what every view shares.

A view is one small subclass: it declares its synced traits, names the :class:`Selection`
traits it links (``_selection_traits``), validates its traits with ``@traitlets.validate``
(raising :class:`traitlets.TraitError` subclasses such as
:class:`~filterscope.errors.InvalidSelectionError`) and registers the requests the page may
make with :func:`request`. The base owns the rest:

- **Guarded page updates**: the page may set only traits tagged ``page_writable=True``; any other
  trait, or a value a validator refuses, is not applied and the kernel's values are re-sent.
- **Selection linking**: the view's ``_selection_traits`` follow the shared :class:`Selection`
  both ways, and ``link_id`` (the selection's id) lets the browser link hover, brush, zoom and
  pan across the views of one selection without a kernel round trip.
- **Requests**: the page sends ``{"type": "request", "id": n, "method": m, "params": {...}}`` as a
  custom message; the view answers ``{"type": "response", "id": n, "result": ...}`` (arrays
  inside ``result`` travel as binary buffers, placed by ``buffer_paths``) or
  ``{"type": "response", "id": n, "error": "..."}``. A bad request is answered with an error,
  never raised into the kernel. The shapes are documented once, in ``docs/api.md`` ("Wire
  format"), and pinned by golden files in ``js/src/golden/``.
- **Live views**: :meth:`ViewWidget.follow` reloads the view (``_reload``, which each view
  implements by rebuilding its overview from a new log) whenever its log commits more, from a
  background thread (``views/_live.py``); ``stop()`` or ``close()`` ends it.
- ``close()`` stops following, unlinks the selection and closes the comm.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anywidget
import traitlets
import xarray as xr
from ipywidgets.widgets.widget import _remove_buffers

from filterscope.errors import (
    FilterscopeError,
    InvalidDataError,
    InvalidParameterError,
    LogFormatError,
)
from filterscope.log.schema import FORMAT_ATTR, FORMAT_VERSION
from filterscope.views._data import DATA_LOCK
from filterscope.views._live import Follower
from filterscope.views._serialization import to_json
from filterscope.views.selection import Selection, link_selection


def bundle_path() -> Path:
    """Path of the built browser bundle, ``filterscope/static/widget.js``.

    Raises
    ------
    FileNotFoundError
        When the bundle was not built (a source checkout before ``make js``).
    """
    path = Path(__file__).resolve().parent.parent / "static" / "widget.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"filterscope's browser bundle {path} is missing: the views need it. Build it with "
            "`make js` (or `cd js && npm ci && npm run build`), or install filterscope from a wheel"
        )
    return path


PAGE_WRITABLE = "page_writable"
"""Trait metadata naming the traits the page may set: ``.tag(sync=True, page_writable=True)``."""

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request (its JSON text) a view reads; bigger ones are answered with an error."""

# ipywidgets' own front end keeps this count of displayed views when it is not None.
_IPYWIDGETS_PAGE_TRAITS = frozenset({"_view_count"})
_REQUEST_ATTR = "_filterscope_request"

F = TypeVar("F", bound=Callable[..., Any])


def request(name: str) -> Callable[[F], F]:
    """Register a view method the page may call by ``name`` through a request message.

    The method receives the request's ``params`` as keyword arguments and returns the result
    (numpy arrays anywhere inside travel as binary). Parameters the method does not declare are
    refused before it runs; a :class:`~filterscope.errors.FilterscopeError` or
    :class:`traitlets.TraitError` it raises becomes the error of the response.

    Examples
    --------
    >>> class Echo(ViewWidget):
    ...     @request("echo")
    ...     def _echo(self, text: str) -> dict:
    ...         return {"text": text}
    >>> view = Echo()
    >>> view.handle_request({"type": "request", "id": 1, "method": "echo", "params": {"text": "hi"}})
    {'type': 'response', 'id': 1, 'result': {'text': 'hi'}}
    >>> view.handle_request({"type": "request", "id": 2, "method": "nope", "params": {}})["error"]
    "Echo has no request 'nope'; it answers ['echo']"
    >>> view.close()
    """

    def mark(method: F) -> F:
        setattr(method, _REQUEST_ATTR, name)
        return method

    return mark


class RequestError(InvalidParameterError):
    """A request from the page cannot be answered (malformed, unknown, too big, bad params)."""


class ViewWidget(Follower, anywidget.AnyWidget):
    """Base class of the views; see the module docstring for what it owns.

    Everything a view sends is the kernel's: the page may set only the traits tagged
    ``page_writable=True`` (the user's picks and zoom, say). An update from the page that sets any
    other trait, or a value the trait's validators refuse, is not applied; the kernel re-sends
    the values it kept, so the page shows them again, and logs a warning instead of raising into
    the user's session. Declare the data a view computes ``read_only`` as well, so user code
    cannot replace it either; the view sets it with ``set_trait``, which still sends it to the
    page.

    Parameters
    ----------
    selection : Selection, optional
        Shared selection; a new one if omitted.
    **kwargs
        Initial trait values, passed on to :class:`anywidget.AnyWidget`.

    Raises
    ------
    InvalidParameterError
        If ``selection`` is not a :class:`Selection`.
    """

    # The bundle's text, not its Path: anywidget connects every instance of a Path-backed
    # widget to the file's change signal (for hot reload), which keeps closed views, and the
    # data they hold, alive for the rest of the session.
    _esm = bundle_path().read_text(encoding="utf-8")
    _view = traitlets.Unicode(read_only=True).tag(sync=True)
    link_id = traitlets.Unicode(read_only=True).tag(sync=True)
    """Id of the shared selection: views with the same id link hover, brush and zoom in the page."""
    notice = traitlets.Unicode("", read_only=True).tag(sync=True)
    """A line the page shows above the view (empty: none), e.g. that a followed log was replaced
    by another run."""

    #: Names of the :class:`Selection` traits this view links (it must have traits of these names).
    _selection_traits: ClassVar[tuple[str, ...]] = ()
    #: Request name → method name, collected from ``@request`` by ``__init_subclass__``.
    _requests: ClassVar[dict[str, str]] = {}

    # Set once linked; ipywidgets calls close() from __del__ even when __init__ raised.
    _unlink: Callable[[], None] | None = None
    # Following the log (each view keeps the log it draws in ``_log``).

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found = dict(cls._requests)
        for attr, value in vars(cls).items():
            name = getattr(value, _REQUEST_ATTR, None)
            if name is not None:
                found[name] = attr
        cls._requests = found

    def __init__(self, *, selection: Selection | None = None, **kwargs: Any) -> None:
        if selection is not None and not isinstance(selection, Selection):
            raise InvalidParameterError(
                f"selection must be a filterscope.views.Selection, got {type(selection).__name__}"
            )
        selection = selection if selection is not None else Selection()
        self.set_trait("link_id", selection.link_id)
        super().__init__(**kwargs)
        self.selection = selection
        self._unlink = link_selection(selection, self, self._selection_traits)
        self.on_msg(self._on_custom_msg)

    # ------------------------------------------------------------------ page updates
    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply a state update from the page, refusing what the page may not set.

        ipywidgets calls this for every ``update`` message from the page. Traits not tagged
        ``page_writable`` are left alone, and when a value fails validation the whole update is
        rolled back; in both cases the kernel's values are sent back to the page.
        """
        allowed = {name: value for name, value in sync_data.items() if self._page_writable(name)}
        refused = [name for name in sync_data if name in self.keys and name not in allowed]
        resend = list(refused)
        if refused:
            self.log.warning(
                "%s: the page tried to set %s, which only the kernel sets; kept the kernel's "
                "value. The page's bundle may be out of step with filterscope: rebuild it with "
                "`make js` and reload the page",
                type(self).__name__,
                refused,
            )
        try:
            super().set_state(allowed)
        except traitlets.TraitError as error:
            resend += [name for name in allowed if name in self.keys]
            self.log.warning(
                "%s: refused the page's update of %s (%s); re-sent the kernel's values",
                type(self).__name__,
                sorted(allowed),
                error,
            )
        if resend:
            # The page already shows its own value: tell it what the kernel kept.
            self.send_state(resend)

    def _page_writable(self, name: str) -> bool:
        if name in _IPYWIDGETS_PAGE_TRAITS:
            return True
        return name in self.keys and bool(self.trait_metadata(name, PAGE_WRITABLE, False))

    # ------------------------------------------------------------------ requests
    def handle_request(self, content: Any, buffers: list[Any] | None = None) -> dict[str, Any]:
        """Answer one request message; never raises (errors become the response's ``error``).

        Returns the response content *before* its arrays are lifted into buffers (what
        :meth:`_on_custom_msg` sends through :func:`encode_response`).
        """
        rid = content.get("id") if isinstance(content, dict) else None
        if isinstance(rid, bool) or not isinstance(rid, int):
            rid = None
        try:
            method, params = self._parse_request(content, buffers)
            with DATA_LOCK:  # a live update does not swap the data under the request
                result = method(**params)
            return {"type": "response", "id": rid, "result": result}
        except (FilterscopeError, traitlets.TraitError) as error:
            return {"type": "response", "id": rid, "error": str(error)}
        except Exception as error:  # a bug in a view must not surface as a kernel traceback
            self.log.warning("%s: request %r failed", type(self).__name__, content, exc_info=True)
            return {
                "type": "response",
                "id": rid,
                "error": f"internal error in {type(self).__name__}: {type(error).__name__}: "
                f"{error}",
            }

    def _parse_request(
        self, content: Any, buffers: list[Any] | None
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        if not isinstance(content, dict) or content.get("type") != "request":
            raise RequestError(
                "expected a request {'type': 'request', 'id': int, 'method': str, 'params': {}}"
            )
        size = len(json.dumps(content, default=str)) + sum(
            memoryview(b).nbytes for b in buffers or []
        )
        if size > MAX_REQUEST_BYTES:
            raise RequestError(
                f"the request is {size} bytes; requests are limited to {MAX_REQUEST_BYTES} bytes"
            )
        rid, name, params = content.get("id"), content.get("method"), content.get("params", {})
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise RequestError(f"a request needs an integer 'id', got {rid!r}")
        if not isinstance(name, str) or not isinstance(params, dict):
            raise RequestError(
                "a request needs a string 'method' and an object 'params', got "
                f"{type(name).__name__} and {type(params).__name__}"
            )
        if name not in self._requests:
            raise RequestError(
                f"{type(self).__name__} has no request {name!r}; it answers "
                f"{sorted(self._requests)}"
            )
        method = getattr(self, self._requests[name])
        try:
            inspect.signature(method).bind(**params)
        except TypeError as error:
            raise RequestError(f"bad params for {name!r}: {error}") from None
        return method, params

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not (isinstance(content, dict) and content.get("type") == "request"):
            return  # anywidget's own messages and other custom messages are not ours
        response = self.handle_request(content, buffers)
        try:
            message, out = encode_response(response)
        except Exception as error:  # e.g. an array of a dtype the browser cannot read
            message, out = encode_response(
                {"type": "response", "id": response["id"], "error": f"cannot send result: {error}"}
            )
        self.send(message, out)

    # ------------------------------------------------------------------ live
    def _reload(self, log: xr.Dataset) -> None:
        """Rebuild the overview from ``log``, the same run at a later commit, and send it.

        Each view implements it with the code its ``__init__`` builds the overview with; the
        user's picks, zoom window and other choices stay. Called with
        :data:`~filterscope.views._data.DATA_LOCK` held, from the live thread.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot reload its log")

    def _followed_views(self) -> list[Any]:
        return [self]

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop following the log, unlink from the selection and close the widget."""
        self.stop()
        if self._unlink is not None:
            self._unlink()
            self._unlink = None
        super().close()


def encode_response(response: dict[str, Any]) -> tuple[dict[str, Any], list[memoryview]]:
    """Lift the arrays of a response into binary buffers: ``(content, buffers)`` to send.

    ``content["buffer_paths"]`` lists where each buffer goes inside ``content["result"]``, as
    ipywidgets does for state updates; ``js/src/transport.ts`` (``putBuffers``) puts them back.
    """
    if "result" not in response:
        return response, []
    result, paths, buffers = _remove_buffers({"result": to_json(response["result"])})
    return {**response, "result": result["result"], "buffer_paths": [p[1:] for p in paths]}, [
        memoryview(b) for b in buffers
    ]


def require_log(log: object, variables: Iterable[str] = ()) -> xr.Dataset:
    """Check that ``log`` is a filterscope log holding ``variables``; return it.

    Raises
    ------
    InvalidDataError
        If ``log`` is not an :class:`xarray.Dataset`.
    LogFormatError
        If it has no ``filterscope_format`` attribute, a newer format, or lacks a variable.
    """
    if not isinstance(log, xr.Dataset):
        raise InvalidDataError(
            f"expected the xarray.Dataset of a filterscope log, got {type(log).__name__}; "
            "open one with filterscope.open_log(path)"
        )
    version = log.attrs.get(FORMAT_ATTR)
    if version is None:
        raise LogFormatError(
            f"this Dataset has no attrs[{FORMAT_ATTR!r}]: it is not a filterscope log; "
            "open one with filterscope.open_log(path)"
        )
    if int(version) > FORMAT_VERSION:
        raise LogFormatError(
            f"the log has format {version} but this filterscope reads up to {FORMAT_VERSION}; "
            "upgrade filterscope"
        )
    missing = [name for name in variables if name not in log.variables]
    if missing:
        raise LogFormatError(
            f"the log lacks {missing}, which this view draws; "
            f"it has {sorted(map(str, log.data_vars))}"
        )
    return log
