"""Every ``filterscope`` subcommand explains every option, and ``filterscope lab`` starts a lab.

The lab test starts the real command (``filterscope lab``) on a free port, with the demo log
made first (``--quick``), polls JupyterLab's ``/api/status`` until it answers, and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from filterscope.cli import build_parser, lab_command, main

EXPECTED = {"demo", "analyze", "report", "synth", "lab"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def test_every_subcommand_is_there() -> None:
    assert set(_subparsers(build_parser())) >= EXPECTED


def test_every_subcommand_and_option_has_help() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in actions[0]._choices_actions}
    missing = []
    for name, sub in _subparsers(parser).items():
        if not helps.get(name) or not sub.description:
            missing.append(f"{name}: no help line or description")
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            label = "/".join(action.option_strings) or action.dest
            if text == argparse.SUPPRESS or len(text.split()) < 2:
                missing.append(f"{name} {label}: {text!r}")
    assert missing == [], "options without a help text:\n" + "\n".join(missing)


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_help_prints_every_option(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    sub = _subparsers(build_parser())[command]
    for action in sub._actions:
        for option in action.option_strings:
            assert option in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lab", "--port", "abc"], "filterscope lab: error: argument --port: expected a port"),
        (["demo", "--epochs", "0"], "filterscope demo: error: argument --epochs: expected a"),
        (["nope"], "filterscope: error: argument COMMAND: invalid choice: 'nope'"),
        ([], "filterscope: error: the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(expected) and lines[0].endswith("--help")


def test_lab_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["lab", str(tmp_path / "nowhere"), "--no-demo", "--no-browser"])
    err = capsys.readouterr().err
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("filterscope lab: error:") and "nowhere is not a folder" in err


def test_lab_command_line(tmp_path: Path) -> None:
    command = lab_command(tmp_path, demo=None, port=8999, ip="127.0.0.1", open_browser=False)
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in command
    assert "--ServerApp.port=8999" in command and "--no-browser" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lab_starts_jupyterlab_with_the_demo_log(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "hello.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    demo = tmp_path / "runs" / "demo"
    port, token = _free_port(), "filterscope-test-token"
    env = dict(
        os.environ,
        JUPYTER_TOKEN=token,
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
    )
    # the console script of this environment, as a user types it
    script = Path(sys.executable).with_name("filterscope")
    command = [str(script), "lab", str(notebooks), "--demo", str(demo), "--quick"]
    command += ["--port", str(port), "--ip", "127.0.0.1", "--no-browser"]
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        status = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/status",
                headers={"Authorization": f"token {token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    status = json.loads(response.read())
                    break
            except OSError:
                time.sleep(0.5)
        output = (tmp_path / "lab.log").read_text()
        assert status is not None, f"JupyterLab did not answer on port {port}:\n{output}"
        assert "started" in status
        # the demo log was made first, before JupyterLab started
        assert (demo / "log" / "zarr.json").is_file(), output
        assert "making the demo log" in output
        # the lab serves the folder it was given
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/contents",
            headers={"Authorization": f"token {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {item["name"] for item in json.loads(response.read())["content"]}
        assert names == {"hello.ipynb"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
    assert proc.returncode is not None
