"""The docstring examples of filterscope.dynamics run and print what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "filterscope.dynamics",
    "filterscope.dynamics.arrays",
    "filterscope.dynamics.filters",
    "filterscope.dynamics.ordering",
    "filterscope.dynamics.samples",
    "filterscope.dynamics.unstable",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
