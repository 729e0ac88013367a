"""Fresh virtual environments filled offline, for the packaging and Binder tests.

The network belongs to set-up only: ``make venv`` fills ``.cache/wheelhouse`` with every wheel
these environments need (torch excepted, which pip finds in ``/opt/wheels``), and here pip runs
with ``--no-index`` against those two folders. npm, when a build bundles ``js/``, reads only its
own cache (``npm ci`` at set-up filled it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / ".cache" / "wheelhouse"
WHEELHOUSE_STAMP = WHEELHOUSE / ".filled"
TORCH_WHEELS = Path("/opt/wheels")


def require_wheelhouse() -> None:
    """Fail (never skip) when set-up has not filled the wheelhouse."""
    if not WHEELHOUSE_STAMP.exists():
        pytest.fail(
            f"no offline wheelhouse at {WHEELHOUSE}: run `make venv` (it downloads, once, the "
            "wheels the packaging and Binder tests install offline)"
        )


def offline_env(venv: Path | None = None) -> dict[str, str]:
    """The environment of a command run offline, with ``venv``'s ``bin`` first on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env.update(
        {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": f"{WHEELHOUSE} {TORCH_WHEELS}",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_COMPILE": "1",
            "npm_config_offline": "true",
            "npm_config_audit": "false",
            "npm_config_fund": "false",
            "OMP_NUM_THREADS": "1",
        }
    )
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def run(
    args: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float = 600
) -> tuple[str, float]:
    """Run a command; fail the test with its output if it fails. Returns (stdout, seconds)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        pytest.fail(f"{' '.join(map(str, args))} exited with {proc.returncode}:\n{output[-6000:]}")
    return proc.stdout, seconds


def create_venv(path: Path) -> Path:
    """A new venv at ``path`` from the base interpreter, with pip; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", path], cwd=path.parent, env=offline_env())
    return path / "bin" / "python"


def pip_install(venv: Path, *requirements: str | Path, cwd: Path) -> float:
    """``pip install --no-index`` from the wheelhouse and /opt/wheels; returns seconds taken."""
    python = venv / "bin" / "python"
    _, seconds = run(
        [python, "-m", "pip", "install", "--no-compile", "--no-index", *requirements],
        cwd=cwd,
        env=offline_env(venv),
    )
    return seconds


def load_e2e_conftest() -> ModuleType:
    """``tests/e2e/conftest.py`` under a name of its own: its JupyterLab server and driver."""
    name = "filterscope_e2e_jupyter"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "e2e" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
