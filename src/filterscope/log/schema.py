"""Names, dimensions, dtypes and chunking of the filterscope log (format version 1).

Everything a reader relies on is named here once: the recorder writes with these names and
:func:`filterscope.open_log` checks the version against :data:`FORMAT_VERSION`.
``docs/log-format.md`` is the prose version of this module.
"""

from __future__ import annotations

from typing import Final

import numpy as np

#: Version of the on-disk layout; bumped on any change a version-1 reader would misread.
FORMAT_VERSION: Final = 1

#: Root attribute holding :data:`FORMAT_VERSION`; its presence marks a store as a filterscope log.
FORMAT_ATTR: Final = "filterscope_format"
#: Root attribute holding the commit record: committed length of every appendable dimension.
COMMIT_ATTR: Final = "filterscope_commit"
#: Root attribute listing the groups made by :meth:`~filterscope.log.store.LogStore.append_group`.
GROUPS_ATTR: Final = "filterscope_groups"
#: Root attribute holding a random token drawn when a log is created and kept by appends: a
#: reader holding a Dataset tells a replaced log (``mode="w"``) from a grown one by it. Logs
#: written before it existed have none, which counts as a generation of its own ("").
GENERATION_ATTR: Final = "filterscope_generation"

#: Per-layer statistics of weights and gradients (DeepTracker, ACM TIST 2018).
STATS: Final[tuple[str, ...]] = (
    "max",
    "min",
    "mean",
    "sum",
    "var",
    "std",
    "l0",
    "l1",
    "l2",
    "median",
    "q1",
    "q3",
)


def _thresholds() -> np.ndarray:
    # "all" (inf), 1, then nine values per decade from 0.9 down to 0.000001: 2 + 6 * 9 = 56.
    values = [np.inf, 1.0]
    for decade in range(1, 7):
        values.extend(float(f"{k}e-{decade}") for k in range(9, 0, -1))
    return np.array(values, dtype=np.float64)


#: The 56 change-ratio thresholds, descending: inf ("all"), 1, 0.9, ..., 0.1, 0.09, ..., 1e-6.
THRESHOLDS: Final[np.ndarray] = _thresholds()
THRESHOLDS.setflags(write=False)

# Scalars recorded at every step(): name -> dtype.
STEP_VARS: Final[dict[str, str]] = {
    "loss": "float32",
    "lr": "float64",
    "train_error": "float32",
    "step_time": "float64",
}

# Per-sample variables of every evaluation set on (snapshot, sample): name -> (dtype, fill).
SAMPLE_VARS: Final[dict[str, tuple[str, object]]] = {
    "correct": ("bool", False),
    "pred": ("int32", -1),
    "p_true": ("float16", np.nan),
    "margin": ("float16", np.nan),
    "sample_loss": ("float32", np.nan),
}

# Per-filter variables on (snapshot, filter), all float32.
FILTER_CHANGE_VARS: Final[tuple[str, ...]] = (
    "filter_cosine",
    "filter_l2",
    "filter_l1",
    "filter_rel_l1",
    "filter_rel_l2",
)
FILTER_GRAD_VARS: Final[tuple[str, ...]] = (
    "filter_grad_ratio_l1",
    "filter_grad_ratio_l2",
    "filter_grad_l1",
    "filter_grad_l2",
    "filter_std",
)
FILTER_VARS: Final[tuple[str, ...]] = FILTER_CHANGE_VARS + FILTER_GRAD_VARS

# Chunk length along each appendable dimension. Every array of one dimension shares it, so
# their on-disk capacities grow together (plain xarray then sees equal sizes).
TIME_CHUNKS: Final[dict[str, int]] = {"step": 4096, "snapshot": 64, "analysis_snapshot": 16}
#: Chunk length along the sample and filter axes.
WIDE_CHUNK: Final = 8192
#: Chunk length of the flat weight state kept for resuming (elements).
STATE_CHUNK: Final = 1 << 22

# Group names inside the store.
EVAL_GROUP: Final = "eval"
STATE_GROUP: Final = "state"
ANALYSIS_GROUP: Final = "analysis"

# Names that an evaluation set may not take (its scalars are named "<set>_loss", "<set>_error").
RESERVED_SET_NAMES: Final = frozenset({"train", "filter", "step", "snapshot", "sample"})
