"""The command line never writes inside a log or another zarr store, and fails in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import filterscope as fs
from filterscope.cli import check_output_path, main
from filterscope.errors import InvalidParameterError

SYNTH = ["--samples", "20", "--classes", "3", "--snapshots", "2", "--layers", "resnet18"]
SYNTH += ["--steps-per-snapshot", "1", "--no-plant"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two small synthetic logs, ``a`` and ``b``, and a plain zarr store, side by side."""
    root = tmp_path_factory.mktemp("safety")
    for name in ("a", "b"):
        assert main(["synth", str(root / name), *SYNTH]) == 0
    plain = root / "plain"
    plain.mkdir()
    (plain / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    return root


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` and its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"filterscope {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_report_refuses_to_overwrite_another_logs_metadata(logs, capsys):
    before = _snapshot(logs / "b")
    assert main(["report", str(logs / "a"), "--out", str(logs / "b" / "zarr.json")]) == 1
    err = _one_line_error(capsys, "report")
    assert f"inside the filterscope log {(logs / 'b').resolve()}" in err
    assert "Choose a path outside it" in err
    assert _snapshot(logs / "b") == before
    assert fs.open_log(logs / "b").sizes["snapshot"] == 2  # still a readable log


@pytest.mark.parametrize(
    ("out", "store"),
    [
        ("b/analysis/report.html", "b"),  # a folder that does not exist yet, inside a log
        ("b/loss/report.html", "b"),  # an array's own folder
        ("a", "a"),  # the log itself, as a directory: a/report.html
        ("a/", "a"),
        ("link-to-b/report.html", "b"),  # a symbolic link does not hide where it points
        ("plain/report.html", "plain"),  # any zarr store, not only filterscope's
    ],
)
def test_report_refuses_every_path_inside_a_store(logs, capsys, monkeypatch, out, store):
    monkeypatch.chdir(logs)
    link = logs / "link-to-b"
    if not link.exists():
        link.symlink_to(logs / "b", target_is_directory=True)
    before = {name: _snapshot(logs / name) for name in ("a", "b", "plain")}
    assert main(["report", "a", "--out", out]) == 1
    err = _one_line_error(capsys, "report")
    kind = "zarr store" if store == "plain" else "filterscope log"
    assert f"inside the {kind} {(logs / store).resolve()}" in err
    assert {name: _snapshot(logs / name) for name in ("a", "b", "plain")} == before


def test_report_into_a_directory_writes_report_html_there(logs, capsys, tmp_path):
    existing = tmp_path / "reports"
    existing.mkdir()
    assert main(["report", str(logs / "a"), "--out", str(existing)]) == 0
    assert (existing / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # a trailing separator names a directory that does not exist yet
    fresh = tmp_path / "new" / "folder"
    assert main(["report", str(logs / "a"), "--out", f"{fresh}/"]) == 0
    assert (fresh / "report.html").is_file()
    printed = capsys.readouterr().out
    assert str(existing / "report.html") in printed and str(fresh / "report.html") in printed
    # --help says so
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "report.html into" in " ".join(capsys.readouterr().out.split())


def test_report_of_the_current_directory_writes_beside_it(logs, capsys, monkeypatch, tmp_path):
    log = tmp_path / "run"
    shutil.copytree(logs / "a", log)
    monkeypatch.chdir(log)
    assert main(["report", "."]) == 0
    html = (tmp_path / "run.html").read_text(encoding="utf-8")
    assert "<title>filterscope report: run</title>" in html
    assert not (log / "report.html").exists() and not (log / ".html").exists()
    capsys.readouterr()


def test_unwritable_outputs_are_one_line_errors(logs, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["report", str(logs / "a"), "--out", str(afile / "report.html")]) == 1
    assert f"{afile} is a file" in _one_line_error(capsys, "report")
    # an OSError the checks cannot foresee: report.html inside the directory is a directory
    blocked = tmp_path / "blocked"
    (blocked / "report.html").mkdir(parents=True)
    assert main(["report", str(logs / "a"), "--out", str(blocked)]) == 1
    err = _one_line_error(capsys, "report")
    assert f"{blocked / 'report.html'}: Is a directory" in err


def test_synth_refuses_to_nest_a_log_in_another(logs, capsys):
    before = _snapshot(logs / "b")
    assert main(["synth", str(logs / "b" / "inner"), *SYNTH]) == 1
    assert "inside the filterscope log" in _one_line_error(capsys, "synth")
    assert _snapshot(logs / "b") == before and not (logs / "b" / "inner").exists()
    assert main(["synth", str(logs / "plain" / "inner"), *SYNTH]) == 1
    assert "inside the zarr store" in _one_line_error(capsys, "synth")
    # an existing log: the hint is the command line's flag, not the Python mode="w"
    assert main(["synth", str(logs / "b"), *SYNTH]) == 1
    assert "pass --overwrite to replace it" in _one_line_error(capsys, "synth")
    assert _snapshot(logs / "b") == before


def test_demo_refuses_a_run_folder_inside_a_log_before_training(logs, capsys, tmp_path):
    before = _snapshot(logs / "b")
    for out in (logs / "b", logs / "b" / "run"):
        assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 1
        assert "the demo's log" in _one_line_error(capsys, "demo")
    assert _snapshot(logs / "b") == before and not (logs / "b" / "run").exists()
    # a directory where the report goes is found before training, not after
    (tmp_path / "run" / "report.html").mkdir(parents=True)
    assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / "run")]) == 1
    assert "is a directory" in _one_line_error(capsys, "demo")
    assert not (tmp_path / "run" / "log").exists()


def test_check_output_path_allows_paths_beside_a_log(logs):
    assert check_output_path(logs / "a.html") == logs / "a.html"
    assert check_output_path(logs / "a") == logs / "a"  # the log itself: its writer decides
    with pytest.raises(InvalidParameterError, match="inside the filterscope log"):
        check_output_path(logs / "a" / "anything")
