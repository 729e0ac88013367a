"""FilterGMM vs a scikit-learn loop: every filter, K = 1..8, the same selection rule.

The reference is what one would write by hand: for every filter and every K, a
``sklearn.mixture.GaussianMixture(K, covariance_type="full")`` (k-means initialisation, one
thread via threadpoolctl), then the same Calinski–Harabasz / BIC selection and anomaly rule
(``filterscope.gmm.select``) applied to scikit-learn's labels and log-likelihoods. The data are
synthetic 2-D filter clouds with planted outlier groups (``filterscope.gmm.synthetic``).

The scikit-learn loop takes minutes for 1,024 filters, so by default it runs on a random subset
of filters and its time is extrapolated linearly to all of them (the output says so); K and flag
agreement are measured on that subset. FilterGMM runs on every filter in float32 and float64,
with ``torch.set_num_threads(--threads)``. The machine's speed drifts on shared cores, so the
contenders take turns: ``--repeats`` rounds, each timing one slice of the scikit-learn subset
and then every FilterGMM configuration once; FilterGMM's best and median are printed. Peak
memory is the largest resident-set growth during a run, read from the kernel's high-water mark
(nothing samples beside the timed code).

``--rates`` instead prints the anomaly rule's error rates on synthetic filters with known ground
truth (the table in ``docs/gmm.md``): false-positive rate per clean kind, true-positive rate and
recall / precision of the planted outlier samples, for both selection rules.

Usage::

    python benchmarks/bench_gmm.py                    # 1024 filters x 2000 samples
    python benchmarks/bench_gmm.py --quick            # 256 x 1000, subset of 32
    python benchmarks/bench_gmm.py --filters 4096 --sklearn-filters 256 --threads 2
    python benchmarks/bench_gmm.py --rates            # error rates of the anomaly rule
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any


def _omp_wait_policy() -> str:
    # OpenMP reads OMP_WAIT_POLICY once, when torch loads it, so this runs before the imports.
    # "passive": idle OpenMP threads sleep instead of spinning. With two threads on two cores
    # shared with other jobs, spinning threads wait a whole time slice at every parallel region
    # and two threads run many times slower than one; on a quiet machine "active" is a little
    # faster.
    policy = "passive"
    for i, arg in enumerate(sys.argv):
        if arg == "--omp-wait" and i + 1 < len(sys.argv):
            policy = sys.argv[i + 1]
        elif arg.startswith("--omp-wait="):
            policy = arg.split("=", 1)[1]
    if policy != "default":
        os.environ["OMP_WAIT_POLICY"] = policy.upper()
    return policy


OMP_WAIT = _omp_wait_policy()

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from filterscope.gmm import FilterGMM  # noqa: E402
from filterscope.gmm.select import label_stats, select  # noqa: E402
from filterscope.gmm.synthetic import CLEAN_KINDS, make_filter_points  # noqa: E402

KS = np.arange(1, 9)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Largest growth of this process's resident set while the block runs.

    On Linux the kernel's own high-water mark is reset before the block (``/proc/self/
    clear_refs``) and read after it (``VmHWM``): exact, and nothing runs beside the timed code.
    Elsewhere a thread samples the RSS every 5 ms; that thread takes the GIL and a share of the
    CPU, so timings taken under it are pessimistic.
    """

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self.base = self._proc.memory_info().rss
        self.peak = self.base
        self._thread: threading.Thread | None = None
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._kernel = True
        except OSError:
            self._kernel = False
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self._kernel:
            self.peak = max(self.peak, _status_kib("VmHWM") * 1024)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """Result, wall seconds, process CPU seconds and peak RSS growth (MiB) of ``fn()``."""
    with PeakRSS() as mem:
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return out, elapsed, cpu, mem.mib


def sklearn_fits(points: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every filter, every K: GaussianMixture fit, labels, score (seeded by the filter's id).

    Returns the label statistics and log-likelihoods our selection rule takes.
    """
    f = points.shape[0]
    stats = np.zeros((f, len(KS), KS.max(), 6))
    loglik = np.zeros((f, len(KS)))
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, p in enumerate(points):
            for j, k in enumerate(KS):
                gm = GaussianMixture(int(k), covariance_type="full", random_state=int(ids[i]))
                labels = gm.fit_predict(p)
                loglik[i, j] = gm.score(p)
                stats[i, j, :k] = label_stats(p, labels, int(k))
    return stats, loglik


def rates(threads: int) -> None:
    """Error rates of the anomaly rule against planted ground truth."""
    torch.set_num_threads(threads)
    settings = [
        ("N=2000, group at 6-12 sd", 2000, (6.0, 12.0), 11),
        ("N=512, group at 6-12 sd", 512, (6.0, 12.0), 12),
        ("N=2000, group at 3-6 sd", 2000, (3.0, 6.0), 13),
    ]
    print(
        "| setting | selection | FPR | " + " | ".join(CLEAN_KINDS) + " | TPR | recall | precision |"
    )
    print("|---" * (6 + len(CLEAN_KINDS)) + "|")
    for name, n, separation, seed in settings:
        points, truth = make_filter_points(600, n, separation=separation, random_state=seed)
        dirty = truth.has_outliers
        for selection in ("ch-bic", "ch"):
            gmm = FilterGMM(device="cpu", selection=selection).fit(points.astype(np.float32))
            found = np.zeros_like(truth.outliers)
            for f, idx in enumerate(gmm.outliers_):
                found[f, idx] = True
            hit = (found & truth.outliers).sum()
            per_kind = [f"{gmm.anomaly_[truth.kind == k].mean():.3f}" for k in CLEAN_KINDS]
            print(
                f"| {name} | {selection} | {gmm.anomaly_[~dirty].mean():.3f} | "
                + " | ".join(per_kind)
                + f" | {gmm.anomaly_[dirty].mean():.3f} | {hit / truth.outliers.sum():.3f} | "
                f"{hit / max(found.sum(), 1):.3f} |"
            )
    print("600 filters per setting: 100 of each clean kind and 100 with a planted group of 1-5 %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument(
        "--sklearn-filters",
        type=int,
        default=128,
        help="filters the scikit-learn loop runs on (extrapolated to all)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=4, help="rounds (scikit-learn slices, FilterGMM runs)"
    )
    parser.add_argument("--quick", action="store_true", help="256 x 1000, subset of 32")
    parser.add_argument("--rates", action="store_true", help="error rates of the anomaly rule")
    parser.add_argument(
        "--omp-wait",
        choices=["passive", "active", "default"],
        default="passive",
        help="OMP_WAIT_POLICY for torch's threads (default passive: see the source)",
    )
    args = parser.parse_args()
    if args.rates:
        rates(args.threads)
        return
    if args.quick:
        args.filters, args.samples, args.sklearn_filters, args.repeats = 256, 1000, 32, 1
    torch.set_num_threads(args.threads)
    f, n = args.filters, args.samples
    points, truth = make_filter_points(f, n, random_state=0)
    subset = np.sort(
        np.random.default_rng(0).choice(f, min(args.sklearn_filters, f), replace=False)
    )
    print(
        f"filters={f} samples={n} K=1..8, torch threads={args.threads} "
        f"(OMP_WAIT_POLICY {OMP_WAIT}), scikit-learn on {subset.size} random filters "
        f"(1 thread), {int(truth.has_outliers.sum())} filters with a planted group"
    )

    FilterGMM(device="cpu").fit(points[:4])  # warm-up: first-call costs are not the engine's
    # n_jobs=None fits as many chunks side by side as torch has threads, each on one thread;
    # n_jobs=1 is one chunk at a time with torch's threads inside every operation
    configs = [("float32", None), ("float32", 1), ("float64", None)]
    if args.threads == 1:
        configs = [("float32", None), ("float64", None)]
    data = {dtype: points.astype(dtype) for dtype in ("float32", "float64")}
    # The machine's speed drifts (shared cores), so the contenders take turns: each round
    # times one slice of the scikit-learn subset, then every FilterGMM configuration once.
    slices = np.array_split(subset, args.repeats)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    t_ref = c_ref = mem_ref = 0.0
    runs: dict[tuple[str, int | None], list[tuple[Any, float, float, float]]] = {
        c: [] for c in configs
    }
    for ids in slices:
        part, t, c, mib = timed(lambda ids=ids: sklearn_fits(points[ids], ids))
        parts.append(part)
        t_ref, c_ref, mem_ref = t_ref + t, c_ref + c, max(mem_ref, mib)
        for dtype, jobs in configs:
            runs[dtype, jobs].append(
                timed(
                    lambda d=dtype, j=jobs: FilterGMM(device="cpu", dtype=d, n_jobs=j).fit(data[d])
                )
            )
    sel = select(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), KS, n
    )
    ref = {"k": sel.k, "anomaly": sel.anomaly}
    t_ref_all, c_ref_all = t_ref * f / subset.size, c_ref * f / subset.size
    print(
        f"scikit-learn loop: {t_ref:.1f} s wall ({c_ref:.1f} s CPU) for {subset.size} filters "
        f"in {len(slices)} slices -> {t_ref_all:.1f} s wall extrapolated linearly to {f} "
        f"filters ({t_ref / subset.size * 1e3:.1f} ms/filter), peak RSS +{mem_ref:.0f} MiB"
    )
    print(
        f"  scikit-learn flags: FPR {ref['anomaly'][~truth.has_outliers[subset]].mean():.3f}, "
        f"TPR {ref['anomaly'][truth.has_outliers[subset]].mean():.3f} (on the subset)"
    )
    for (dtype, jobs), timings in runs.items():
        gmm = timings[0][0]
        walls = np.array([t[1] for t in timings])
        best, best_cpu = walls.min(), min(t[2] for t in timings)
        mem = max(t[3] for t in timings)
        k_agree = (gmm.k_[subset] == ref["k"]).mean()
        flag_agree = (gmm.anomaly_[subset] == ref["anomaly"]).mean()
        fpr = gmm.anomaly_[~truth.has_outliers].mean()
        tpr = gmm.anomaly_[truth.has_outliers].mean()
        side = gmm._jobs(f) if jobs is None else 1
        how = (
            f"{side} chunks side by side, one torch thread each"
            if side > 1
            else f"one chunk at a time, {args.threads} torch thread(s)"
        )
        print(
            f"FilterGMM {dtype} ({how}): {best:.2f} s wall best of {walls.size} (median "
            f"{np.median(walls):.2f} s; {best / f * 1e3:.2f} ms/filter; {best_cpu:.2f} s CPU), "
            f"peak RSS +{mem:.0f} MiB -> speedup {t_ref_all / best:.1f}x over scikit-learn "
            f"(wall; {t_ref_all / np.median(walls):.1f}x at the median), "
            f"{c_ref_all / best_cpu:.1f}x in CPU time"
        )
        print(
            f"  agreement with scikit-learn on the subset: chosen K {k_agree:.3f}, "
            f"anomaly flag {flag_agree:.3f}; flags on all filters: FPR {fpr:.3f}, TPR {tpr:.3f}"
        )


if __name__ == "__main__":
    main()
