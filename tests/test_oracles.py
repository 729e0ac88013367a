"""The shared test oracles themselves: a comparison helper that can fail must be shown to."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import assert_close_in_stored_units


def test_one_float16_step_passes_two_fail() -> None:
    x = np.array([0.1, 0.5, 0.99, 3.0, -7.5], dtype=np.float16)
    up = np.nextafter(x, np.float16(np.inf))
    assert_close_in_stored_units(up, x, "float16")
    twice = np.nextafter(up, np.float16(np.inf))
    with pytest.raises(AssertionError, match="differ by more than 1 float16 step"):
        assert_close_in_stored_units(twice, x, "float16")


def test_the_step_is_taken_at_the_values_magnitude() -> None:
    # 1e-3 apart is within one float16 step at 8 (0.0078) but far beyond it at 0.01 (7.6e-6).
    assert_close_in_stored_units(np.array([8.001]), np.array([8.0]), "float16")
    with pytest.raises(AssertionError):
        assert_close_in_stored_units(np.array([0.011]), np.array([0.01]), "float16")


def test_nan_must_match_nan() -> None:
    assert_close_in_stored_units(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), "float16")
    with pytest.raises(AssertionError, match="NaN"):
        assert_close_in_stored_units(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), "float16")
