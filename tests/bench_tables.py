"""Reading the `measure | value | target | verdict` tables the browser benchmarks print."""

from __future__ import annotations

import re

#: A printed value: an optional ">" (a lower bound), a number and its unit.
NUMBER = r"(>?)([\d.]+) ?(s|ms|MB|x)"


def table_rows(lines: list[str]) -> dict[str, tuple[float, str, str, str]]:
    """Table rows by name: (value, unit, target, verdict). Every row's value must parse."""
    rows = {}
    for line in lines:
        parts = [p.strip() for p in line.split(" | ")]
        if len(parts) != 4 or parts[0] == "measure":
            continue
        name, value, target, verdict = parts
        found = re.fullmatch(NUMBER, value)
        assert found is not None, line
        rows[name] = (float(found[2]), found[3], target, verdict)
    return rows


def table_row(rows: dict, prefix: str) -> tuple[float, str, str, str]:
    """The one row whose name starts with ``prefix``."""
    matches = [v for k, v in rows.items() if k.startswith(prefix)]
    assert len(matches) == 1, (prefix, list(rows))
    return matches[0]
