"""The documentation site builds offline with warnings as errors, and covers the public API.

One Sphinx build (``sphinx-build -E -W --keep-going -n``, the same as ``make docs``) into a
temporary folder; the checks below read what it wrote.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import filterscope as fs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# one build, shared by the tests below: on one xdist worker (`make test` runs --dist loadgroup)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docs")]

# The build `make docs` runs, from scratch (-E): warnings are errors (-W), every reference
# must resolve (-n), and every warning is reported before failing (--keep-going).
SPHINX = [sys.executable, "-m", "sphinx", "-E", "-b", "html", "-W", "--keep-going", "-n", "-q"]

# An element that makes a browser fetch: a script, stylesheet, image, frame or media source.
REMOTE_ASSET = re.compile(
    r"<(script|img|iframe|source|audio|video|embed)\b[^>]*\bsrc\s*=\s*[\"']?(https?:)?//"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?(https?:)?//"
    r"|url\(\s*[\"']?(https?:)?//",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    started = time.perf_counter()
    proc = subprocess.run(
        [*SPHINX, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    print(f"sphinx-build took {time.perf_counter() - started:.1f} s")
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def test_pages_and_notebooks_are_built(site: Path) -> None:
    pages = [
        "index",
        "getting-started",
        "log-format",
        "api",
        "gmm",
        "anomaly-study",
        "performance",
        "troubleshooting",
        "reference/index",
    ]
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert {"quickstart", "anomaly_filters", "training_dynamics", "large_log"} <= set(notebooks)
    for page in pages + [f"notebooks/{name}" for name in notebooks]:
        assert (site / f"{page}.html").is_file(), f"{page}.html was not built"
    # rendered as committed, without outputs: the code of the first cell is on the page
    quickstart = (site / "notebooks" / "quickstart.html").read_text(encoding="utf-8")
    assert "fs.Recorder" in quickstart
    assert 'class="cell_output' not in quickstart


def test_no_remote_assets(site: Path) -> None:
    offenders = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in (".html", ".css", ".js") or "_sources" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [
            f"{path.relative_to(site)}: {m.group(0)}" for m in REMOTE_ASSET.finditer(text)
        ]
    assert offenders == [], "pages load assets from another site:\n" + "\n".join(offenders)


def _documented(site: Path) -> set[str]:
    """Every Python object name in the site's ``objects.inv``."""
    raw = (site / "objects.inv").read_bytes()
    body = zlib.decompress(raw.split(b"\n", 4)[4]).decode("utf-8")
    return {line.split(" ", 1)[0] for line in body.splitlines() if " py:" in line}


def test_every_public_name_is_documented(site: Path) -> None:
    documented = _documented(site)
    names = [n for n in fs.__all__ if not n.startswith("_")]
    assert len(names) > 20
    missing = []
    for name in names:
        obj = getattr(fs, name)
        if isinstance(obj, type(sys)):
            found = obj.__name__ in documented
        else:
            found = any(d.startswith("filterscope.") and d.endswith(f".{name}") for d in documented)
        if not found:
            missing.append(name)
    assert missing == [], f"filterscope.__all__ names without a reference entry: {missing}"
