"""Training-dynamics patterns computed from a log.

Owns the per-sample and per-filter patterns derived from a filterscope log Dataset: unstable
samples (DeepTracker's abLeft/abRight counts and class flags), correctness transitions and
per-class error, forgetting events, dataset cartography, the area under the margin, the
top-changed filters at picked snapshots and their layer-class correlation, and the MDS
orderings and k-means clusters the views display. Every function takes the Dataset that
:func:`filterscope.open_log` returns (or :func:`from_arrays` builds) and returns labelled
xarray objects or pandas DataFrames.

Must not touch stores (it never writes a log) or widgets (views read its results, never the
other way round).

Examples
--------
>>> import numpy as np
>>> from filterscope.dynamics import from_arrays, forgetting, transitions
>>> log = from_arrays(np.array([[1, 0], [0, 0], [1, 1]], bool), labels=[0, 1])
>>> forgetting(log).forgetting_events.values.tolist()
[1, 0]
>>> int(transitions(log).wrong_to_right.sum())
2
"""

from __future__ import annotations

from filterscope.dynamics.arrays import from_arrays
from filterscope.dynamics.cube import cube_faces, flags_in_buckets
from filterscope.dynamics.filters import (
    CHANGE_METRICS,
    anomaly_counts,
    layer_class_correlation,
    top_changed_filters,
)
from filterscope.dynamics.ordering import class_clusters, class_order, mds_order, sample_order
from filterscope.dynamics.samples import (
    REGIONS,
    aum,
    cartography,
    class_error,
    class_error_values,
    forgetting,
    transitions,
)
from filterscope.dynamics.unstable import PRESETS, unstable_samples

__all__ = [
    "CHANGE_METRICS",
    "PRESETS",
    "REGIONS",
    "anomaly_counts",
    "aum",
    "cartography",
    "class_clusters",
    "class_error",
    "class_error_values",
    "class_order",
    "cube_faces",
    "flags_in_buckets",
    "forgetting",
    "from_arrays",
    "layer_class_correlation",
    "mds_order",
    "sample_order",
    "top_changed_filters",
    "transitions",
    "unstable_samples",
]
