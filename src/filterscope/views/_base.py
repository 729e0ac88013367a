"""What every view shares: the browser bundle, guarded page updates, and the log check."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anywidget
import traitlets
import xarray as xr

from filterscope.errors import InvalidDataError, LogFormatError

FORMAT_VERSION = 1
"""Newest ``attrs["filterscope_format"]`` the views understand."""


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

# ipywidgets' own front end keeps this count of displayed views when it is not None.
_IPYWIDGETS_PAGE_TRAITS = frozenset({"_view_count"})


class ViewWidget(anywidget.AnyWidget):
    """Base class of the views: one ES module, a view name in ``_view``, guarded page updates.

    Everything a view sends is the kernel's: the page may set only the traits tagged
    ``page_writable=True`` (the user's picks and zoom, say). An update from the page that sets any
    other trait, or a value the trait's validators refuse, is not applied; the kernel re-sends
    the values it kept, so the page shows them again, and logs a warning instead of raising into
    the user's session. Validators must raise :class:`traitlets.TraitError` (such as
    :class:`~filterscope.errors.InvalidSelectionError`): only then does traitlets put back every
    trait the update touched.

    Declare the data a view computes ``read_only`` as well, so user code cannot replace it
    either; the view sets it with ``set_trait``, which still sends it to the page.
    """

    _esm = bundle_path()
    _view = traitlets.Unicode(read_only=True).tag(sync=True)

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
    version = log.attrs.get("filterscope_format")
    if version is None:
        raise LogFormatError(
            "this Dataset has no attrs['filterscope_format']: it is not a filterscope log; "
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
