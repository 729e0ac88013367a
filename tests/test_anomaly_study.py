"""The anomaly-filter study (``studies/anomaly_study.py --quick``): structure and consistency.

Runs the real study (real training, real analyses) in its quick mode once, then checks that every
number it reports agrees with the per-checkpoint and per-sample tables it stored.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
READINGS = ("sample_default", "sample_relaxed", "filter_level")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "studies" / "anomaly_study.py"),
            "--quick",
            "--quiet",
            "--out",
            str(out),
            "--figures",
            str(out / "fig"),
        ],
        check=True,
        cwd=ROOT,
        timeout=540,
    )
    return out


@pytest.fixture(scope="module")
def results(study) -> dict:
    return json.loads((study / "results.json").read_text())


@pytest.fixture(scope="module")
def checkpoints(study) -> pd.DataFrame:
    return pd.read_csv(study / "checkpoints.csv")


@pytest.fixture(scope="module")
def samples(study) -> pd.DataFrame:
    return pd.read_csv(study / "samples.csv")


@pytest.fixture(scope="module")
def tests(results) -> pd.DataFrame:
    return pd.DataFrame(results["tests"]).astype({"p": float, "p_holm": float, "statistic": float})


def test_every_run_has_every_checkpoint_and_reading(results, checkpoints):
    cfg = results["config"]
    kinds = [f"flip{round(r * 100)}" for r in cfg["flip_rates"]] + ["shuffled"]
    runs = {f"{s['name']}/{k}" for s in cfg["settings"] for k in kinds}
    assert set(checkpoints["run"]) == runs
    for (_run, reading), g in checkpoints.groupby(["run", "reading"]):
        assert reading in READINGS
        assert g["epoch"].tolist() == cfg["checkpoints"]
    np.testing.assert_allclose(
        checkpoints["gap"], checkpoints["train_acc"] - checkpoints["val_acc"], atol=1e-12
    )
    for col in ("train_acc", "val_acc", "clean_train_acc"):
        assert checkpoints[col].between(0, 1).all()
    assert (checkpoints["n_memorised"] <= checkpoints["n_flipped"]).all()


def test_json_counts_match_the_per_checkpoint_table(results, checkpoints):
    counts = pd.DataFrame(results["counts"])
    merged = counts.merge(checkpoints, on=["run", "epoch", "reading"], suffixes=("_json", ""))
    assert len(merged) == len(checkpoints) == len(counts)
    assert (merged["n_filters_json"] == merged["n_filters"]).all()
    assert (merged["n_outlier_samples_json"] == merged["n_outlier_samples"]).all()


def test_final_checkpoint_outliers_match_the_sample_table(checkpoints, samples):
    final = checkpoints.sort_values("epoch").groupby(["run", "reading"]).tail(1)
    for row in final.itertuples():
        sub = samples[samples["run"] == row.run]
        assert len(sub) > 0
        assert int(sub[f"outlier_{row.reading}"].sum()) == row.n_outlier_samples
        assert int(sub["flipped"].sum()) == row.n_flipped
        assert int(sub["memorised"].sum()) == row.n_memorised
        assert int((sub["flipped"] & sub[f"outlier_{row.reading}"]).sum()) == (
            row.n_flipped_outliers
        )
    flip0 = samples[samples["run"].str.endswith("/flip0")]
    assert not flip0["flipped"].any()
    assert (samples["flipped"] == (samples["label"] != samples["true_label"])).all()


def test_p_values_are_probabilities_and_holm_is_right(results, tests):
    p, adj = tests["p"].to_numpy(), tests["p_holm"].to_numpy()
    ok = np.isfinite(p)
    assert ok.sum() == results["n_tests"] > 0
    assert np.isnan(adj[~ok]).all()
    assert ((p[ok] >= 0) & (p[ok] <= 1)).all()
    assert ((adj[ok] >= p[ok] - 1e-15) & (adj[ok] <= 1)).all()
    # Holm from its definition: max over the smaller-or-equal p-values of min(1, (m - rank) p).
    raw = p[ok]
    m = len(raw)
    order = np.argsort(raw, kind="stable")
    expected = np.empty(m)
    expected[order] = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * raw[order]))
    np.testing.assert_allclose(adj[ok], expected, rtol=1e-12)


def test_h1_tests_cover_every_run_and_reading(checkpoints, tests):
    h1 = tests[tests["hypothesis"] == "H1"]
    assert set(h1["test"]) == {
        "spearman_count_gap",
        "spearman_count_epoch",
        "spearman_count_gap_given_epoch",
    }
    assert len(h1) == 3 * checkpoints.groupby(["run", "reading"]).ngroups
    stat = h1["statistic"].astype(float)
    assert stat.dropna().between(-1 - 1e-9, 1 + 1e-9).all()
    # A Spearman r is NaN exactly when the count (or the other variable) is constant.
    for row in h1[h1["test"] == "spearman_count_gap"].itertuples():
        g = checkpoints[(checkpoints["run"] == row.run) & (checkpoints["reading"] == row.reading)]
        constant = g["n_filters"].nunique() == 1 or g["gap"].nunique() == 1
        assert math.isnan(row.statistic) == constant
        if not constant:
            r = stats.spearmanr(g["n_filters"], g["gap"]).statistic
            assert row.statistic == pytest.approx(r, abs=1e-9)


def test_h2_effect_sizes_agree_with_the_stored_norms(samples, tests):
    h2 = tests[(tests["hypothesis"] == "H2") & ~tests["run"].str.contains("untrained")]
    assert len(h2) == samples["run"].nunique() * len(READINGS)
    assert (samples["grad_norm"] >= 0).all()
    for row in h2.itertuples():
        sub = samples[samples["run"] == row.run]
        is_out = sub[f"outlier_{row.reading}"].to_numpy()
        norms = sub["grad_norm"].to_numpy()
        assert row.n_outliers == is_out.sum()
        if row.n_outliers == 0:
            assert math.isnan(row.statistic) and math.isnan(row.p)
            continue
        out, rest = norms[is_out], norms[~is_out]
        assert row.median_outlier == pytest.approx(np.median(out), rel=1e-9)
        assert row.median_other == pytest.approx(np.median(rest), rel=1e-9)
        u = stats.mannwhitneyu(out, rest, alternative="two-sided")
        assert row.u == pytest.approx(u.statistic)
        assert row.statistic == pytest.approx(2 * u.statistic / (out.size * rest.size) - 1)
        assert -1 <= row.statistic <= 1
    untrained = tests[(tests["hypothesis"] == "H2") & tests["run"].str.contains("untrained")]
    assert len(untrained) > 0


def test_enrichment_is_the_flipped_share_among_outliers_over_the_probe(samples, tests):
    en = tests[tests["hypothesis"] == "enrichment"]
    assert len(en) > 0
    for row in en.itertuples():
        sub = samples[samples["run"] == row.run]
        mark = sub[row.test.removeprefix("fisher_")].to_numpy()
        is_out = sub[f"outlier_{row.reading}"].to_numpy()
        assert row.n_outliers == is_out.sum()
        assert row.n_marked_outliers == (is_out & mark).sum()
        if is_out.sum() == 0 or mark.sum() == 0:
            assert math.isnan(row.statistic)
        else:
            share = (is_out & mark).sum() / is_out.sum()
            assert row.statistic == pytest.approx(share / mark.mean())


def test_h3_pruning_rows_are_consistent(results, tests):
    pruning = results["pruning"]
    runs = {row["run"] for row in pruning}
    assert len(pruning) == len(runs) * len(READINGS)
    h3 = tests[tests["hypothesis"] == "H3"]
    assert len(h3) == sum(1 for row in pruning if row["n_pruned"])
    for row in pruning:
        if not row["n_pruned"]:
            assert row["random"] == []
            continue
        assert len(row["random"]) == results["config"]["pruning_seeds"]
        assert np.mean(row["random"]) == pytest.approx(row["random_mean"])
        assert np.std(row["random"], ddof=1) == pytest.approx(row["random_std"])
        for acc in (row["baseline"], row["pruned"], *row["random"]):
            assert 0 <= acc <= 1
        # McNemar counts: the accuracy change is (better - worse) / test-set size.
        change = row["pruned"] - row["baseline"]
        assert (change > 0) == (row["n_better"] > row["n_worse"])
        match = h3[(h3["run"] == row["run"]) & (h3["reading"] == row["reading"])]
        assert match["statistic"].iloc[0] == pytest.approx(change)


def test_verdicts_follow_from_the_tests(results):
    verdicts = pd.DataFrame(results["verdicts"])
    assert set(verdicts["reading"]) == set(READINGS)
    assert set(verdicts["verdict"]) <= {"supported", "not supported", "descriptive"}
    assert (verdicts["n_significant"] <= verdicts["n_runs"]).all()
    decided = verdicts[verdicts["verdict"] != "descriptive"]
    assert set(decided["hypothesis"]) == {"H1", "enrichment", "H2", "H3"}
    supported = decided[decided["verdict"] == "supported"]
    assert (supported["n_significant"] > supported["n_runs"] / 2).all()


def test_figures_are_a_standalone_offline_page(study):
    page = (study / "fig" / "anomaly_study.html").read_text()
    assert "<script src=" not in page.replace(" ", "")
    assert "Bokeh" in page and "H1" in page and "H2" in page
