"""Typed errors raised at filterscope's boundaries.

Every error says what was expected, what was received and how to fix it. Each class also
derives from the closest built-in exception so callers can catch either.
"""

from __future__ import annotations

from traitlets import TraitError


class FilterscopeError(Exception):
    """Base class of every error filterscope raises on purpose."""


class InvalidParameterError(FilterscopeError, ValueError):
    """A parameter has a value outside its documented range (e.g. ``snapshot_every=0``)."""


class InvalidSelectionError(InvalidParameterError, TraitError):
    """A view or :class:`~filterscope.views.Selection` trait got a value outside its range.

    For example a picked step the run does not have, or a time window whose start is not below
    its stop. Being a :class:`traitlets.TraitError` too makes traitlets put the trait back to its
    previous value, so a view refuses such a value from the page and re-sends the one it kept.
    """


class InvalidModelError(FilterscopeError, ValueError):
    """The model cannot be recorded or analysed (e.g. it has no layers with weights)."""


class InvalidDataError(FilterscopeError, ValueError):
    """Input data has the wrong shape, dtype, labels or values."""


class NonFiniteError(InvalidDataError):
    """Input holds NaN or Inf where finite numbers are required."""


class LogExistsError(FilterscopeError, FileExistsError):
    """A log already exists at the path and no ``mode`` says what to do with it."""


class LogFormatError(FilterscopeError, ValueError):
    """The path is not a filterscope log, or the log is corrupt or from a newer version."""


class LogAccessError(FilterscopeError, PermissionError):
    """The log's directory (or the one that would hold a new log) cannot be written."""
