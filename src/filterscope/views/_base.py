"""What every view shares: the browser bundle and the check that a dataset is a filterscope log."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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


class ViewWidget(anywidget.AnyWidget):
    """Base class of the views: all load one ES module and name their view in ``_view``."""

    _esm = bundle_path()
    _view = traitlets.Unicode(read_only=True).tag(sync=True)


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
