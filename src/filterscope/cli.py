"""The ``filterscope`` command line: ``demo``, ``report``, ``analyze``, ``synth`` and ``lab``.

Each subcommand is declared by one function ``add(subparsers)`` that adds its parser and sets
``func`` (the function run with the parsed arguments, returning an exit status or None) as a
parser default; adding a subcommand means writing that function and listing it in
:data:`SUBCOMMANDS`. Heavy imports happen inside the ``func``, so ``--help`` stays fast.

No subcommand writes inside a log or any other zarr store (:func:`check_output_path`): a store
directory holds only the store's own files, and a stray file there, or one written over its
``zarr.json``, damages it. Errors are one line on stderr, ``filterscope COMMAND: error: ...``,
with exit status 1 (:func:`main`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from filterscope._version import __version__
from filterscope.errors import (
    FilterscopeError,
    InvalidParameterError,
    LogExistsError,
    LogFormatError,
)

__all__ = ["check_output_path", "lab_command", "main", "run_demo"]

# argparse's subparsers action has no public type; the callables below only call add_parser.
Subparsers = Any


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``filterscope`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a command fails with a filterscope error or an
        operating-system error (a file that cannot be read or written): one line
        ``filterscope COMMAND: error: ...`` on stderr, no traceback. Bad arguments exit with
        status 2 through argparse.

    Examples
    --------
    >>> from filterscope.cli import main
    >>> main(["demo", "--quick", "--out", "runs/quick"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except FilterscopeError as err:
        return _fail(args.command, str(err))
    except OSError as err:
        return _fail(args.command, _os_error_message(err))
    return int(status or 0)


def _fail(command: str, message: str) -> int:
    # one line, whatever the message's own line breaks: scripts grep stderr line by line
    print(f"filterscope {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _os_error_message(err: OSError) -> str:
    """``PATH: reason`` for an OSError with a path, e.g. a directory where a file was to go."""
    if err.filename is None or not err.strerror:
        return f"{err}; check the path and its permissions."
    paths = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
    return f"{paths}: {err.strerror}; check the path and its permissions."


def check_output_path(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Refuse to write ``path`` inside a filterscope log or any other zarr store.

    A store is a directory holding ``zarr.json``: every directory above ``path`` (after
    resolving symbolic links) is checked, so ``OTHERLOG/zarr.json`` and ``OTHERLOG/sub/file``
    are refused alike, and so is a new log nested in another. ``path`` itself may be a log:
    whether one may be replaced is for the writer to decide (a Recorder's ``mode``).

    Parameters
    ----------
    path : path-like
        File or directory about to be written.
    what : str, default="output"
        What is written there, for the message.

    Returns
    -------
    pathlib.Path
        ``path`` as given.

    Raises
    ------
    InvalidParameterError
        When a directory above ``path`` is a zarr store (the message names it and says where
        to write instead), or a path above it is a file.

    Examples
    --------
    >>> import tempfile
    >>> store = Path(tempfile.mkdtemp()) / "store"
    >>> store.mkdir()
    >>> _ = (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    >>> check_output_path(store.with_name("report.html")).name
    'report.html'
    >>> check_output_path(store / "report.html")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    filterscope.errors.InvalidParameterError: output .../store/report.html would be written ...
    """
    from filterscope.log.reader import _is_filterscope_log

    target = Path(path)
    resolved = target.resolve()
    # outermost first: inside OTHERLOG/analysis, name OTHERLOG, the log the user knows
    for parent in reversed(resolved.parents):
        if os.path.exists(parent) and not os.path.isdir(parent):
            raise InvalidParameterError(
                f"{parent} is a file, so {what} {resolved} cannot be written below it; choose "
                "another path."
            )
        if os.path.exists(parent / "zarr.json"):
            kind = "filterscope log" if _is_filterscope_log(parent) else "zarr store"
            raise InvalidParameterError(
                f"{what} {resolved} would be written inside the {kind} {parent}; a store "
                "directory holds only the store's own files and writing there can damage it. "
                f"Choose a path outside it, e.g. in {parent.parent}."
            )
    return target


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with its usage errors on one line that points to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = _Parser(
        prog="filterscope",
        description="See inside CNN training: record a run, find anomaly filters, report.",
    )
    parser.add_argument("--version", action="version", version=f"filterscope {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# ---------------------------------------------------------------------------------- demo


def _add_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train LeNet-5 on digits until it overfits, record it, find anomaly filters, report",
        description=(
            "Train LeNet-5 on a 500-image split of scikit-learn's digits (upsampled to 32×32), "
            "3 % of whose images are planted inverted digits, with Adam until it overfits, "
            "record every epoch with filterscope.Recorder, run the anomaly-filter analysis "
            "(which finds the planted images without labels) and write an offline HTML report "
            "next to the log."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="run folder: the log goes to OUT/log (replaced if it is a log), the report to "
        "OUT/report.html; never inside another log or zarr store",
    )
    p.add_argument("--epochs", type=_positive_int, default=None, help="default 30 (--quick: 4)")
    p.add_argument(
        "--quick", action="store_true", help="a few epochs and a smaller analysis, for smoke tests"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and shuffling")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch CPU threads (default 1: LeNet-5 gains little from more, and on a busy "
        "machine extra threads slow it down)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    run_demo(
        args.out,
        epochs=args.epochs,
        quick=args.quick,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
    )


def run_demo(
    out: str | Path = "runs/demo",
    *,
    epochs: int | None = None,
    quick: bool = False,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train LeNet-5 on digits until it overfits, record it, analyse it and write a report.

    The train split is 500 images with no augmentation, so Adam reaches 100 % train accuracy
    within about 15 epochs while the validation loss turns upward: the log shows overfitting.
    3 % of the training images (15, drawn with ``seed``) are replaced by their inverted copies
    (:func:`filterscope.data.corrupt.plant`), atypical inputs of the kind a broken scan adds
    to a data set. The anomaly filters isolate them without labels; the demo prints how many
    of the isolated samples are the planted ones and says so in the report. They are atypical
    inputs, not evidence of overfitting.
    Snapshots are taken every epoch (plus one before the first update); the anomaly-filter
    analysis runs every 5th snapshot during training (the H1 curve) and once more on the final
    model for the report's table.

    Parameters
    ----------
    out : path, default="runs/demo"
        Run folder: the log is written to ``out/log`` (replaced if it is a log; anything else
        there is refused) and the report to ``out/report.html`` (beside the log, not inside
        it: the store holds only its own files). ``out`` must not lie inside a log or any other
        zarr store (:func:`check_output_path`); both paths are checked before training.
    epochs : int, optional
        Training epochs; default 30, or 4 with ``quick``.
    quick : bool, default=False
        Fewer epochs and fewer probe samples, for smoke tests.
    seed : int, default=0
        Seed of the data split, the initialisation and the shuffling.
    threads : int, default=1
        ``torch.set_num_threads`` for the run.
    progress : bool, default=True
        Show a progress bar.
    print_fn : callable, default=print
        Where the summary lines go.

    Returns
    -------
    dict
        The summary numbers that were printed, plus ``"log"`` and ``"report"`` paths.

    Raises
    ------
    InvalidParameterError
        ``out`` lies inside a log or zarr store, or ``out/report.html`` is a directory.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    import filterscope as fs
    from filterscope.data import digits, plant
    from filterscope.models import LeNet5, count_conv_filters
    from filterscope.plots.report import store_size

    started = time.perf_counter()
    log_path = check_output_path(Path(out) / "log", "the demo's log")
    report_file = check_output_path(Path(out) / "report.html", "the demo's report")
    if report_file.is_dir():  # found now, not after minutes of training
        raise InvalidParameterError(
            f"{report_file} is a directory, where the demo writes its report; remove it or "
            "pass another --out."
        )
    n_epochs = epochs if epochs is not None else (4 if quick else 30)
    n_probe = 200 if quick else 500
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        planted = plant(digits("train", size=32, seed=seed), "inverted", 0.03, seed=seed)
        train = planted.data
        val = digits("val", size=32, seed=seed)  # same classes as train
        loader = DataLoader(
            train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        model = LeNet5(in_channels=1, num_classes=val.num_classes, input_size=32)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        analysis_kwargs: dict[str, Any] = {
            "n_samples": n_probe,
            "random_state": seed,
            "progress": False,
        }
        recorder = fs.Recorder(
            model,
            log_path,
            # The training set evaluated in order, beside the validation set, shows the gap.
            eval_sets={"val": val, "train_eval": train},
            snapshot_every=len(loader),
            class_names=val.class_names,
            optimizer=optimizer,
            mode="w",
            steps_per_epoch=len(loader),
            eval_batch_size=500,
            analyze_every=5,
            analyze_data=train,
            analyze_kwargs=analysis_kwargs,
        )
        bar = tqdm(range(n_epochs), desc="training LeNet-5", unit="epoch", disable=not progress)
        with recorder:
            for _ in bar:
                total, wrong, seen = 0.0, 0, 0
                for x, y in loader:
                    optimizer.zero_grad()
                    output = model(x)
                    loss = F.cross_entropy(output, y)
                    loss.backward()
                    recorder.step(loss, output, y)
                    optimizer.step()
                    total += loss.item() * len(y)
                    wrong += int((output.argmax(1) != y).sum())
                    seen += len(y)
                bar.set_postfix(loss=f"{total / seen:.4f}", train_acc=f"{1 - wrong / seen:.3f}")
        train_seconds = time.perf_counter() - started

        result = fs.analyze(model, train, **analysis_kwargs)
        found = planted_found(result.outlier_ids(), planted.sample_ids, result.dataset)
        report = fs.write_report(
            log_path,
            report_file,
            anomalies=result,
            title="filterscope demo: LeNet-5 on digits",
            note=(
                f"The demo planted {len(planted.sample_ids)} inverted digits (3 % of the "
                f"training images, {found['planted in probe']} of them among the "
                f"{result.dataset.sizes['sample']} probe samples). The anomaly filters below "
                f"isolate {found['isolated']} samples, {found['hits']} of them planted: "
                f"recall {found['recall']:.2f}, precision {_share(found['precision'])}. These "
                "are atypical inputs planted by the demo, found without labels; this is not "
                "evidence of overfitting."
            ),
        )
    finally:
        torch.set_num_threads(previous_threads)

    log = fs.open_log(log_path)
    table = result.table
    n_anomalies = int(table["anomaly"].sum()) if "anomaly" in table else len(table)
    summary = {
        "final train accuracy": 1.0 - float(log["train_eval_error"][-1]),
        "final val accuracy": 1.0 - float(log["val_error"][-1]),
        "best val accuracy": 1.0 - float(log["val_error"].min()),
        "steps": int(log.sizes["step"]),
        "snapshots": int(log.sizes["snapshot"]),
        "store size (MB)": store_size(log_path) / 1e6,
        "conv filters analysed": count_conv_filters(model),
        "anomaly filters": n_anomalies,
        "planted inverted images": len(planted.sample_ids),
        "planted in probe": found["planted in probe"],
        "isolated samples": found["isolated"],
        "planted among isolated": found["hits"],
        "planted recall": found["recall"],
        "planted precision": found["precision"],
        "training + recording (s)": train_seconds,
        "total (s)": time.perf_counter() - started,
        "log": str(log_path),
        "report": str(report),
    }
    print_fn("")
    print_fn("filterscope demo: LeNet-5 on scikit-learn digits (500 train / 500 val images)")
    for key, value in summary.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print_fn(f"  {key:<26} {shown}")
    print_fn(
        "The isolated samples are atypical inputs planted by the demo (inverted digits), found "
        "without labels; this is not evidence of overfitting."
    )
    print_fn(f"Open {report} in a browser, or fs.open_log({str(log_path)!r}) in Python.")
    return summary


def planted_found(isolated: Any, planted: Any, analysis: Any) -> dict[str, Any]:
    """How many of the samples that anomaly filters isolate are planted ones.

    Parameters
    ----------
    isolated : array-like of int
        Sample ids isolated by some anomaly filter (``AnalysisResult.outlier_ids()``).
    planted : array-like of int
        Sample ids of the planted images.
    analysis : xarray.Dataset
        The analysis dataset (its ``sample_id`` coordinate is the probe set): recall counts
        only the planted images that were probed.

    Returns
    -------
    dict
        ``"planted in probe"``, ``"isolated"``, ``"hits"`` (ints), ``"recall"`` and
        ``"precision"`` (floats, NaN when undefined).

    Examples
    --------
    >>> import xarray as xr
    >>> probe = xr.Dataset(coords={"sample_id": ("sample", [1, 2, 3, 4])})
    >>> r = planted_found([2, 3], [3, 4, 9], probe)
    >>> r["hits"], r["planted in probe"], r["recall"], r["precision"]
    (1, 2, 0.5, 0.5)
    """
    import numpy as np

    probed = np.intersect1d(np.asarray(planted, dtype=np.int64), analysis["sample_id"].values)
    isolated = np.unique(np.asarray(isolated, dtype=np.int64))
    hits = len(np.intersect1d(isolated, probed))
    return {
        "planted in probe": len(probed),
        "isolated": len(isolated),
        "hits": hits,
        "recall": hits / len(probed) if len(probed) else float("nan"),
        "precision": hits / len(isolated) if len(isolated) else float("nan"),
    }


def _share(value: float) -> str:
    return "undefined (nothing isolated)" if value != value else f"{value:.2f}"


# -------------------------------------------------------------------------------- report


def _add_report(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an offline HTML report of an existing log",
        description=(
            "Write one self-contained HTML report of a log: its summary numbers, the training "
            "figures, the layer, validation and cube views, the anomaly filters of its last "
            "analysis (ranked by score, also when none is flagged) and the samples they "
            "isolate, with thumbnails. BokehJS and the images are inlined: the file opens "
            "offline and fetches nothing."
        ),
    )
    p.add_argument("log", type=Path, help="log directory written by filterscope.Recorder")
    p.add_argument(
        "--out",
        default=None,
        help="HTML file to write, or a directory (existing, or given with a trailing /) to "
        "write report.html into; default: beside the log, LOG.html. Never inside a log or "
        "any other zarr store",
    )
    p.add_argument("--title", default=None, help="page title (default: the log's name)")
    p.add_argument(
        "--note",
        default=None,
        help="a paragraph shown above the anomaly section, as plain text (e.g. what the "
        "isolated samples are)",
    )
    p.add_argument(
        "--no-views",
        dest="views",
        action="store_false",
        help="leave out the layer, validation and cube view figures (a smaller file)",
    )
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from filterscope.plots.report import write_report

    _require_log(args.log)
    # resolved, so that "." or "runs/demo/.." still has a name to put beside it
    out = _report_path(args.log, args.out)
    title = args.title or f"filterscope report: {_name(args.log)}"
    written = write_report(args.log, out, title=title, note=args.note, views=args.views)
    print(f"wrote {written}")


def _name(path: Path) -> str:
    """The directory's own name, also for ".", ".." or "runs/demo/.." (resolved then)."""
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


def _report_path(log: Path, out: str | None) -> Path:
    """Where ``filterscope report LOG --out OUT`` writes, checked by :func:`check_output_path`.

    No ``out``: beside the log, ``LOG.html`` (not inside it: the store directory holds only
    the store's files). ``out`` an existing directory, or ending in a path separator:
    ``out/report.html``. Otherwise ``out`` itself.

    Examples
    --------
    >>> _report_path(Path("/runs/demo/log"), None).as_posix()
    '/runs/demo/log.html'
    >>> _report_path(Path("/runs/demo/log"), "/runs/reports/").as_posix()
    '/runs/reports/report.html'
    >>> _report_path(Path("/runs/demo/log"), "/runs/demo/log.html").as_posix()
    '/runs/demo/log.html'
    """
    if out is None:
        base = log if log.name not in ("", ".", "..") else log.resolve()
        path = base.with_name(f"{_name(log)}.html")
    elif out.endswith(("/", os.sep)) or Path(out).is_dir():
        path = Path(out) / "report.html"
    else:
        path = Path(out)
    return check_output_path(path, "the report")


# ------------------------------------------------------------------------------- analyze


def _add_analyze(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="list the anomaly filters recorded in a log's analysis group",
        description=(
            "Print the number of anomaly filters at every analysed snapshot of a log (recorded "
            "with Recorder(analyze_every=...)) and the top filters of the last analysis."
        ),
    )
    p.add_argument("log", type=Path, help="log directory written by filterscope.Recorder")
    p.add_argument("--top", type=_positive_int, default=10, help="filters to list (default 10)")
    p.set_defaults(func=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> None:
    import filterscope as fs
    from filterscope.dynamics import anomaly_counts

    _require_log(args.log)
    log = fs.open_log(args.log)
    if "analysis" not in log.attrs.get("filterscope_groups", []):
        raise LogFormatError(
            f"the log at {args.log} has no analysis group; record with "
            "Recorder(..., analyze_every=k, analyze_data=...) or run filterscope.analyze."
        )
    analysis = fs.open_log(args.log, group="analysis")
    counts = anomaly_counts(analysis).values
    steps = analysis["analysis_step"].values
    print(f"{'step':>8}  anomaly filters")
    for step, count in zip(steps, counts, strict=True):
        print(f"{int(step):>8}  {int(count)}")
    last = analysis.isel(analysis_snapshot=-1).compute()
    if "anomaly_score" in last:
        order = last["anomaly_score"].fillna(-1.0).argsort().values[::-1][: args.top]
        print(f"\ntop {len(order)} filters by anomaly score at step {int(steps[-1])}:")
        for i in order:
            flt = last.isel(filter=int(i))
            name = str(flt["filter_layer"].values) if "filter_layer" in flt.coords else "?"
            channel = int(flt["filter_channel"]) if "filter_channel" in flt.coords else int(i)
            flag = " anomaly" if bool(flt["anomaly"]) else ""
            print(f"  {name}[{channel}]  score {float(flt['anomaly_score']):.3f}{flag}")


def _require_log(path: Path) -> None:
    if not path.exists():
        raise LogFormatError(f"no log at {path}: expected a directory written by a Recorder.")


# -------------------------------------------------------------------------------- synth


def _add_synth(subparsers: Subparsers) -> None:
    from filterscope.data.synthetic import add_synth_parser

    parser = add_synth_parser(subparsers)
    parser.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from filterscope.data.synthetic import synth_command
    from filterscope.log.reader import _is_filterscope_log

    check_output_path(args.path, "the synthetic log")
    try:
        return synth_command(args)
    except LogExistsError:
        if args.overwrite:  # a lock: the log's own message says so
            raise
        # the store's message names its Python mode="w"; say what to type instead
        hint = (
            "pass --overwrite to replace it"
            if _is_filterscope_log(Path(args.path))
            else "it is not a filterscope log, so choose another path"
        )
        raise LogExistsError(f"{args.path} already exists; {hint}.") from None


# ----------------------------------------------------------------------------------- lab


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, got {value}")
    return value


def _add_lab(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "lab",
        help="start JupyterLab on the notebooks, with the demo log made first if missing",
        description=(
            "Start JupyterLab on DIRECTORY (default notebooks/). When the demo log DEMO/log "
            "does not exist yet it is made first, as `filterscope demo --out DEMO` would, so "
            "the notebooks find it. JupyterLab runs in this process until stopped (Ctrl+C)."
        ),
    )
    p.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("notebooks"),
        help="folder JupyterLab opens and serves (default: notebooks)",
    )
    p.add_argument(
        "--demo",
        type=Path,
        default=Path("runs/demo"),
        help="run folder of the demo log (default runs/demo): DEMO/log is made first with "
        "`filterscope demo --out DEMO` when missing",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="when the demo log has to be made, make it with `filterscope demo --quick` "
        "(a few seconds instead of about a minute)",
    )
    p.add_argument(
        "--no-demo", action="store_true", help="start JupyterLab without making the demo log"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=None,
        help="port to listen on (default: JupyterLab's, 8888 or the next free one)",
    )
    p.add_argument(
        "--ip",
        default=None,
        help="address to listen on (default: JupyterLab's, localhost); 0.0.0.0 listens on "
        "every interface, for a browser on another machine",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser; open the printed URL (with its token) yourself",
    )
    p.set_defaults(func=_run_lab)


def lab_command(
    directory: str | Path = "notebooks",
    *,
    demo: str | Path | None = "runs/demo",
    quick: bool = False,
    port: int | None = None,
    ip: str | None = None,
    open_browser: bool = True,
) -> list[str]:
    """Make the demo log if it is missing and return the command that starts JupyterLab.

    Parameters
    ----------
    directory : path, default="notebooks"
        Folder JupyterLab serves and opens.
    demo : path or None, default="runs/demo"
        Run folder of the demo log; ``demo/log`` is made with :func:`run_demo` when it holds no
        log yet. ``None``: never make it.
    quick : bool, default=False
        Make the demo log with :func:`run_demo`'s ``quick`` settings.
    port : int, optional
        Port to listen on; default JupyterLab's.
    ip : str, optional
        Address to listen on; default JupyterLab's (localhost).
    open_browser : bool, default=True
        Let JupyterLab open a browser.

    Returns
    -------
    list of str
        The JupyterLab command line (``python -m jupyterlab ...``), with ``--allow-root`` when
        this process runs as root.

    Raises
    ------
    InvalidParameterError
        ``directory`` is not a folder.
    FilterscopeError
        JupyterLab is not installed in this Python environment.
    """
    import importlib.util

    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidParameterError(
            f"{folder} is not a folder; pass the folder JupyterLab should open, e.g. "
            "`filterscope lab notebooks`."
        )
    if importlib.util.find_spec("jupyterlab") is None:
        raise FilterscopeError(
            f"JupyterLab is not installed for {sys.executable}; install it with "
            "`pip install jupyterlab` (before starting it) and run `filterscope lab` again."
        )
    if demo is not None:
        log = Path(demo) / "log"
        if not (log / "zarr.json").exists():
            print(f"making the demo log {log} first (filterscope demo --out {demo})")
            run_demo(demo, quick=quick)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={folder.resolve()}",
    ]
    if port is not None:
        command += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if ip is not None:
        command.append(f"--ServerApp.ip={ip}")
    if not open_browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to start as root without it
    return command


def _run_lab(args: argparse.Namespace) -> int:
    command = lab_command(
        args.directory,
        demo=None if args.no_demo else args.demo,
        quick=args.quick,
        port=args.port,
        ip=args.ip,
        open_browser=not args.no_browser,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(command[0], command)  # JupyterLab takes over this process: Ctrl+C stops it
    import subprocess

    return subprocess.call(command)


SUBCOMMANDS: list[Callable[[Subparsers], object]] = [
    _add_demo,
    _add_report,
    _add_analyze,
    _add_synth,
    _add_lab,
]


if __name__ == "__main__":
    sys.exit(main())
