"""A real JupyterLab server for the browser tests, and the way to drive it.

``jupyter_lab`` starts ``jupyter lab`` once per test worker, on 127.0.0.1 and a free port, and
hands it over while it boots (tests record their runs meanwhile; ``Lab.drive`` waits), with
JupyterLab's own test configuration (``jupyterlab.galata.configure_jupyter_server``: no token,
no xsrf, the app exposed as ``window.jupyterapp``). Every Jupyter directory it would read or
write in the home folder (config, data, runtime, settings, workspaces) points into a temporary
folder, whose user settings switch off the news and update checks that would cover the page.
The widget bundle is served from the installed package by anywidget, and the widget manager
comes from ``jupyterlab_widgets`` in the environment, so nothing is built or installed here.
``jupyter_notebook7`` starts Notebook 7 the same way (``Lab.ui == "notebook"``: the driver opens
``/notebooks/<name>``), and ``start_jupyter`` does it for another environment's interpreter
(the packaging test's fresh venv).

``Lab.drive`` runs ``tests/e2e/driver.mjs`` (playwright-core + Debian's chromium) on a notebook
and returns the JSON it prints. Every e2e test is in the one xdist group ``jupyterlab`` so a
worker starts only one server, and tests must not assume they are alone on it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "driver.mjs"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

SERVER_CONFIG = """\
from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.root_dir = {root!r}
c.ServerApp.allow_root = True
c.ServerApp.open_browser = False
c.LabApp.user_settings_dir = {settings!r}
c.LabApp.workspaces_dir = {workspaces!r}
# The same for Notebook 7 (`python -m notebook`), whose app is a LabServerApp of its own.
c.JupyterNotebookApp.expose_app_in_browser = True
c.JupyterNotebookApp.user_settings_dir = {settings!r}
c.JupyterNotebookApp.workspaces_dir = {workspaces!r}
"""

# The "get notified about official Jupyter news?" toast covers the page; a user setting stops it.
NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


@dataclass
class Lab:
    """A JupyterLab server: ``url``, the folder it serves (``root``) and its log file.

    The fixture hands it over while the server is still starting, so a test can prepare its
    notebook and data meanwhile; :meth:`drive` waits until the server answers.
    """

    url: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    ready: bool = False
    # "lab": JupyterLab's /lab UI; "notebook": Notebook 7's /notebooks/ UI (same server API).
    ui: str = "lab"

    def wait_until_ready(self, timeout: float = 90) -> None:
        """Poll ``/lab`` until it answers; fail the test if the server exits or stays silent."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            if self.process.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited with {self.process.returncode} while starting\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}{self.ui_path}", timeout=5) as response:
                    self.ready = response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if not self.ready and time.monotonic() > deadline:
                pytest.fail(
                    f"jupyter did not answer on {self.url}{self.ui_path} within {timeout} s\n{self.log_tail()}"
                )
            if not self.ready:
                time.sleep(0.5)

    @property
    def ui_path(self) -> str:
        """The page that answers once the server is up: ``lab`` or Notebook 7's ``tree``."""
        return "tree" if self.ui == "notebook" else "lab"

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """Write a notebook of code cells into the served folder."""
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def drive(
        self, scenario: str, notebook: str, timeout: float = 120, **params: Any
    ) -> dict[str, Any]:
        """Run the browser driver's ``scenario`` on ``notebook``; fail the test if it fails."""
        node = _require_tools()
        self.wait_until_ready()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        config = {
            "url": self.url,
            "notebook": notebook,
            "scenario": scenario,
            "artifacts": str(ARTIFACTS),
            "ui": self.ui,
            **params,
        }
        try:
            proc = subprocess.run(
                [node, str(DRIVER), json.dumps(config)],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=REPO,
                env={**os.environ, "CHROMIUM": CHROMIUM},
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"the browser driver ran over {timeout} s\n{self.log_tail()}")
        lines = proc.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            pytest.fail(
                f"the driver printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        if proc.returncode != 0 or not result.get("ok"):
            pytest.fail(
                f"browser scenario {scenario!r} failed: {result.get('error')}\n"
                f"problems: {result.get('problems')}\nscreenshots in {ARTIFACTS}\n{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "JupyterLab log (tail):\n" + "\n".join(text[-lines:])


def _require_tools() -> str:
    """Fail (never skip) when the browser or Node.js is missing; return the path of node."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: install Debian's chromium "
            "(`make chromium`, or apt-get install chromium) or set CHROMIUM"
        )
    node = shutil.which("node")
    if node is None:
        pytest.fail("the browser tests need Node.js (node) on PATH")
    return node


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and the kernels it started, by their process ids."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        child.kill()


@pytest.fixture(scope="session")
def jupyter_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = start_jupyter(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield lab
    finally:
        _stop(lab.process)


@pytest.fixture(scope="session")
def jupyter_notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Notebook 7 (``python -m notebook``) on the same terms; ``drive`` opens ``/notebooks/``."""
    lab = start_jupyter(tmp_path_factory.mktemp("notebook7"), app="notebook")
    try:
        yield lab
    finally:
        _stop(lab.process)


def start_jupyter(
    base: Path,
    python: str = sys.executable,
    app: str = "jupyterlab",
    env_overrides: dict[str, str] | None = None,
) -> Lab:
    """Start ``python -m app`` (``jupyterlab`` or ``notebook``) configured as described above.

    ``base`` is an empty folder for its directories and log; ``python`` may be another
    environment's interpreter (its own Jupyter, kernel and installed filterscope are then
    used). The caller stops it with ``stop_jupyter(lab.process)``.
    """
    _require_tools()
    dirs = {
        name: base / name
        for name in (
            "root",
            "config",
            "data",
            "runtime",
            "settings",
            "workspaces",
            "ipython",
            "tmp",
        )
    }
    for path in dirs.values():
        path.mkdir()
    notification = (
        dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps(NOTIFICATION_SETTINGS))
    port = _free_port()
    (dirs["config"] / "jupyter_server_config.py").write_text(
        SERVER_CONFIG.format(
            port=port,
            root=str(dirs["root"]),
            settings=str(dirs["settings"]),
            workspaces=str(dirs["workspaces"]),
        )
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        # galata's helper makes temporary folders of its own; keep them inside ours.
        "TMPDIR": str(dirs["tmp"]),
        "OMP_NUM_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    env.update(env_overrides or {})
    log = base / f"{app}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, "-m", app, "--no-browser"],
            cwd=dirs["root"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    ui = "notebook" if app == "notebook" else "lab"
    return Lab(url=f"http://127.0.0.1:{port}/", root=dirs["root"], log=log, process=proc, ui=ui)


stop_jupyter = _stop
