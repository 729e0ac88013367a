"""Binder's build, replayed offline: ``binder/`` pip requirements, ``postBuild``, the quickstart.

mybinder.org cannot be reached from here, so this test does what its build does, in order: a
fresh venv gets ``binder/requirements.txt`` (offline, from the wheelhouse ``make venv`` fills,
torch from ``/opt/wheels``), ``binder/postBuild`` runs in a copy of the repository as Binder
clones it (its ``pip install .`` bundles ``js/`` with npm from its offline cache and installs
filterscope for good, then the demo log is warmed), and the notebook the Binder badge opens,
``notebooks/quickstart.ipynb``, runs in that venv's kernel on the notebooks' small settings.
The conda half of ``binder/environment.yml`` (Python, Node.js) is the one step not replayed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from fresh_venv import REPO, create_venv, offline_env, pip_install, require_wheelhouse, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("binder")]

BINDER = REPO / "binder"
QUICKSTART = "notebooks/quickstart.ipynb"
# The notebooks' one switch to their small settings (every notebook reads it).
SMALL_SETTINGS = {"FILTERSCOPE_SMALL": "1"}

EXECUTE = """
import json, sys
import nbclient, nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}
)
client.execute()
errors = [
    o.get("ename", "") + ": " + o.get("evalue", "")
    for c in nb.cells if c.cell_type == "code"
    for o in c.get("outputs", []) if o.get("output_type") == "error"
]
counts = [c.get("execution_count") for c in nb.cells if c.cell_type == "code"]
print(json.dumps({"errors": errors, "counts": counts}))
"""


def test_binder_files_describe_a_cpu_only_build_of_this_repository() -> None:
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert pip_section == ["-r requirements.txt"]
    assert any(str(d).startswith("nodejs") for d in env["dependencies"] if isinstance(d, str))
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    assert "torch==2.13.0" in requirements
    post_build = (BINDER / "postBuild").read_text()
    assert "pip install --no-cache-dir .\n" in post_build, "a regular install, not editable"
    # The README's badge opens the quickstart, on the repository pyproject's URLs name.
    source = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Source"]
    owner_repo = source.removeprefix("https://github.com/")
    badge = f"https://mybinder.org/v2/gh/{owner_repo}/HEAD?urlpath=lab/tree/{QUICKSTART}"
    assert badge in (REPO / "README.md").read_text()


def _clone_of_the_working_tree(dest: Path) -> None:
    """Copy what a clone holds: tracked and untracked-but-not-ignored files (no build output)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_binder_build_then_the_quickstart_runs(tmp_path: Path) -> None:
    require_wheelhouse()
    repo = tmp_path / "filterscope"
    _clone_of_the_working_tree(repo)
    assert not (repo / "src" / "filterscope" / "static" / "widget.js").exists()
    venv = tmp_path / "venv"
    create_venv(venv)
    seconds = {"pip install -r binder/requirements.txt": 0.0}
    seconds["pip install -r binder/requirements.txt"] = pip_install(
        venv, "-r", BINDER / "requirements.txt", cwd=tmp_path
    )

    env = offline_env(venv)
    _, seconds["binder/postBuild"] = run(["bash", "binder/postBuild"], cwd=repo, env=env)

    # filterscope is installed, with the bundle its build made, and needs no source tree.
    shutil.rmtree(repo / "src")
    out, _ = run(
        [venv / "bin" / "python", "-c", "import filterscope as fs; print(fs.__file__)"],
        cwd=repo / "notebooks",
        env=env,
    )
    package = Path(out.strip().splitlines()[-1]).parent
    assert package.is_relative_to(venv) and "site-packages" in package.parts, package
    assert (package / "static" / "widget.js").stat().st_size > 50_000
    assert (repo / "runs" / "demo" / "log" / "zarr.json").exists(), "postBuild warms the demo log"

    out, seconds["quickstart"] = run(
        [venv / "bin" / "python", "-c", EXECUTE, repo / QUICKSTART, repo / "notebooks"],
        cwd=repo / "notebooks",
        env={**env, **SMALL_SETTINGS},
    )
    print(f"binder timings (s): {seconds}")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["counts"] and all(isinstance(n, int) for n in result["counts"]), result
