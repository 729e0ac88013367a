"""The release artefacts as a user gets them: the sdist, the wheel, and a clean install of it.

``python -m build`` makes the sdist from this tree and the wheel from that sdist, so the wheel's
``static/widget.js`` is bundled from the sdist's ``js/`` (npm, offline from its cache). The wheel
is then installed, with only its declared dependencies, into a fresh venv that never sees the
source tree; from there ``filterscope demo --quick`` records a run and JupyterLab, also from
that venv, renders a view of it in headless Chromium. Everything installs offline from the
wheelhouse that ``make venv`` fills (see ``tests/fresh_venv.py``). One build and one venv serve
every test here.
"""

from __future__ import annotations

import json
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path

import pytest
from fresh_venv import (
    REPO,
    create_venv,
    load_e2e_conftest,
    offline_env,
    pip_install,
    require_wheelhouse,
    run,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]

VERSION_FILE = REPO / "src" / "filterscope" / "_version.py"
SHOTS = REPO / "test-artifacts" / "e2e" / "wheel"


@dataclass
class Dists:
    sdist: Path
    wheel: Path
    seconds: float


@dataclass
class Install:
    venv: Path
    python: Path
    work: Path
    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist of this tree and the wheel built from that sdist, in a build venv of its own."""
    require_wheelhouse()
    base = tmp_path_factory.mktemp("build")
    builder = base / "venv"
    create_venv(builder)
    pip_install(builder, "build", cwd=base)
    out = base / "dist"
    # Without --sdist/--wheel, build makes the sdist and then the wheel *from the sdist*.
    _, seconds = run(
        [builder / "bin" / "python", "-m", "build", "--outdir", out, REPO],
        cwd=base,
        env=offline_env(builder),
    )
    (sdist,) = out.glob("filterscope-*.tar.gz")
    (wheel,) = out.glob("filterscope-*.whl")
    return Dists(sdist=sdist, wheel=wheel, seconds=seconds)


@pytest.fixture(scope="session")
def installed(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Install:
    """A fresh venv holding the wheel and its declared dependencies, nothing else."""
    base = tmp_path_factory.mktemp("wheel-install")
    venv = base / "venv"
    start = time.perf_counter()
    python = create_venv(venv)
    install = Install(venv=venv, python=python, work=base / "work")
    install.work.mkdir()
    install.seconds["venv"] = time.perf_counter() - start
    install.seconds["pip install wheel"] = pip_install(venv, dists.wheel, cwd=install.work)
    return install


def test_sdist_carries_the_js_sources_and_no_build_output(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in [
        "LICENSE",
        "CITATION.cff",
        "CHANGELOG.md",
        "pyproject.toml",
        "js/package.json",
        "js/package-lock.json",
        "js/build.mjs",
        "js/src/widget.ts",
        "src/filterscope/__init__.py",
    ]:
        assert needed in names, f"{needed} missing from the sdist"
    unwanted = [
        n
        for n in names
        if n.startswith(("js/node_modules/", "src/filterscope/static/", "docs/_build/", ".venv/"))
        or n.endswith(".test.ts")
        or n.startswith((".cache/", "runs/", "test-artifacts/"))
    ]
    assert unwanted == []


def test_wheel_holds_the_bundle_built_from_the_sdist_and_the_licence(dists: Dists) -> None:
    version = VERSION_FILE.read_text().split('"')[1]
    assert dists.wheel.name == f"filterscope-{version}-py3-none-any.whl"
    with zipfile.ZipFile(dists.wheel) as whl:
        names = whl.namelist()
        bundle = whl.read("filterscope/static/widget.js")
        metadata = Parser().parsestr(whl.read(f"filterscope-{version}.dist-info/METADATA").decode())
        licence = whl.read(f"filterscope-{version}.dist-info/licenses/LICENSE").decode()
    # The sdist has no static/ (test above), so this bundle was made from the sdist's js/.
    assert len(bundle) > 50_000
    assert b"filterscope-modelinfo" in bundle
    assert "BSD 3-Clause License" in licence
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"filterscope", f"filterscope-{version}.dist-info"}, tops
    assert not [n for n in names if "/tests/" in n or n.endswith((".ts", ".mjs"))]
    assert metadata["License-Expression"] == "BSD-3-Clause"
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: Jupyter :: JupyterLab :: Extensions" in classifiers
    assert "Framework :: Jupyter :: JupyterLab :: 4" in classifiers
    assert any(
        url.startswith("Source, https://github.com/") for url in metadata.get_all("Project-URL")
    )


def test_wheel_installs_alone_and_imports_outside_the_source_tree(installed: Install) -> None:
    out, _ = run(
        [
            installed.python,
            "-c",
            "import json, sys, filterscope as fs; "
            "print(json.dumps({'file': fs.__file__, 'version': fs.__version__, "
            "'path': sys.path}))",
        ],
        cwd=installed.work,
        env=offline_env(installed.venv),
    )
    info = json.loads(out.strip().splitlines()[-1])
    package = Path(info["file"]).resolve()
    assert package.is_relative_to(installed.venv.resolve()), package
    assert "site-packages" in package.parts
    assert not any(str(REPO) in p for p in info["path"]), info["path"]
    assert (package.parent / "static" / "widget.js").stat().st_size > 50_000
    # Only what the wheel declares (and pip's own) was installed, and it is consistent.
    run([installed.python, "-m", "pip", "check"], cwd=installed.work, env=offline_env())
    listed, _ = run(
        [installed.python, "-m", "pip", "list", "--format", "json"],
        cwd=installed.work,
        env=offline_env(),
    )
    names = {d["name"].lower() for d in json.loads(listed)}
    assert "filterscope" in names and "torch" in names
    assert not names & {"jupyterlab", "notebook", "pytest", "ruff"}, names


@pytest.fixture(scope="session")
def demo_log(installed: Install) -> Path:
    out = installed.work / "demo"
    _, seconds = run(
        [installed.venv / "bin" / "filterscope", "demo", "--quick", "--out", out],
        cwd=installed.work,
        env=offline_env(installed.venv),
    )
    installed.seconds["filterscope demo --quick"] = seconds
    return out


def test_demo_runs_from_the_installed_wheel(demo_log: Path) -> None:
    assert (demo_log / "log" / "zarr.json").exists()
    report = demo_log / "report.html"
    assert report.stat().st_size > 10_000
    assert "<script" in report.read_text()


def test_a_view_renders_in_jupyterlab_from_the_installed_wheel(
    installed: Install, demo_log: Path, tmp_path: Path
) -> None:
    e2e = load_e2e_conftest()
    # JupyterLab joins the venv here, as a user adds the front end they use.
    installed.seconds["pip install jupyterlab"] = pip_install(
        installed.venv, "jupyterlab>=4.2", "ipykernel>=6.29", cwd=installed.work
    )
    lab = e2e.start_jupyter(tmp_path, python=str(installed.python), env_overrides={})
    try:
        lab.write_notebook(
            "wheel.ipynb",
            [
                "import json\nimport filterscope as fs\n\n"
                f"assert fs.__file__.startswith({str(installed.venv)!r}), fs.__file__\n"
                f"log = fs.open_log({str(demo_log / 'log')!r})",
                "w = fs.ModelInfo(log)\nw",
                'print("PICKED=" + json.dumps(w.picked_steps, separators=(",", ":")))',
            ],
        )
        result = lab.drive("model_info", "wheel.ipynb", timeout=180, artifacts=str(SHOTS))
    finally:
        e2e.stop_jupyter(lab.process)
    assert result["charts"] == ["loss", "error", "lr"]
    assert result["hover_lines"] == 3
    assert len(result["picked_dom"]) == 1
    assert result["picked_kernel"] == result["picked_dom"]
    for shot in result["screenshots"]:
        assert Path(shot).parent == SHOTS and Path(shot).stat().st_size > 10_000
    print(f"packaging timings (s): {installed.seconds}")
