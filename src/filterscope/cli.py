"""The ``filterscope`` command line: ``demo``, ``report``, ``analyze`` and ``synth``.

Each subcommand is declared by one function ``add(subparsers)`` that adds its parser and sets
``func`` (the function run with the parsed arguments, returning an exit status or None) as a
parser default; adding a subcommand means writing that function and listing it in
:data:`SUBCOMMANDS`. Heavy imports happen inside the ``func``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from filterscope._version import __version__
from filterscope.errors import FilterscopeError, LogFormatError

__all__ = ["main", "run_demo"]

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
        Exit status: 0 on success, 1 when a command fails with a filterscope error (its message
        is printed). Bad arguments exit with status 2 through argparse.

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
        print(f"filterscope {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(status or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
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
            "Train LeNet-5 on a 500-image split of scikit-learn's digits (upsampled to 32×32) "
            "with Adam until it overfits, record every epoch with filterscope.Recorder, run the "
            "anomaly-filter analysis and write an offline HTML report next to the log."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="run folder: the log goes to OUT/log, the report to OUT/report.html",
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
    Snapshots are taken every epoch (plus one before the first update); the anomaly-filter
    analysis runs every 5th snapshot during training (the H1 curve) and once more on the final
    model for the report's table.

    Parameters
    ----------
    out : path, default="runs/demo"
        Run folder: the log is written to ``out/log`` (replaced if it exists) and the report to
        ``out/report.html`` (beside the log, not inside it: the store holds only its own files).
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
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    import filterscope as fs
    from filterscope.data import digits
    from filterscope.models import LeNet5, count_conv_filters
    from filterscope.plots.report import store_size

    started = time.perf_counter()
    log_path = Path(out) / "log"
    n_epochs = epochs if epochs is not None else (4 if quick else 30)
    n_probe = 200 if quick else 500
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        train = digits("train", size=32, seed=seed)
        val = digits("val", size=32, seed=seed)
        loader = DataLoader(
            train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        model = LeNet5(in_channels=1, num_classes=train.num_classes, input_size=32)
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
            class_names=train.class_names,
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
        report = fs.write_report(
            log_path,
            Path(out) / "report.html",
            anomalies=result,
            title="filterscope demo: LeNet-5 on digits",
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
    print_fn(f"Open {report} in a browser, or fs.open_log({str(log_path)!r}) in Python.")
    return summary


# -------------------------------------------------------------------------------- report


def _add_report(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an offline HTML report of an existing log",
        description="Write a self-contained HTML report (figures and summary) of a log.",
    )
    p.add_argument("log", type=Path, help="log directory written by filterscope.Recorder")
    p.add_argument(
        "--out", type=Path, default=None, help="HTML file (default: beside the log, LOG.html)"
    )
    p.add_argument("--title", default=None, help="page title (default: the log's name)")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from filterscope.plots.report import write_report

    _require_log(args.log)
    # Beside the log rather than inside it: the store directory holds only the store's files.
    out = args.out if args.out is not None else args.log.with_name(f"{args.log.name}.html")
    title = args.title or f"filterscope report: {args.log.name}"
    print(f"wrote {write_report(args.log, out, title=title)}")


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
    from filterscope.plots.aggregates import anomaly_counts

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

    add_synth_parser(subparsers)


SUBCOMMANDS: list[Callable[[Subparsers], object]] = [
    _add_demo,
    _add_report,
    _add_analyze,
    _add_synth,
]


if __name__ == "__main__":
    sys.exit(main())
