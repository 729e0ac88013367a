"""Names, dimensions, dtypes and chunking of the filterscope log (format version 1).

Everything a reader relies on is named here once: the recorder writes with these names and
:func:`filterscope.open_log` checks the version against :data:`FORMAT_VERSION`.
``docs/log-format.md`` is the prose version of this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

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


# ------------------------------------------------------------------------------ the layout
#: Group of the variables at the log's root.
ROOT: Final = "root"
#: Stands for an evaluation set's name in :attr:`Var.name` and :attr:`Var.group`.
SET: Final = "<set>"
#: Group of an evaluation set's per-sample variables (``eval/<set>``).
EVAL_SET_GROUP: Final = f"{EVAL_GROUP}/{SET}"


@dataclass(frozen=True)
class Var:
    """One array of the log: where it lives, its dimensions, dtype and fill value.

    Attributes
    ----------
    name : str
        Array name inside its group; ``"<set>_loss"`` stands for one array per evaluation set.
    dims : tuple of str
        Dimension names. Arrays whose first dimension is ``step`` or ``snapshot`` grow along it;
        the others are written once.
    dtype : str
        numpy dtype name, or ``"str"`` for UTF-8 strings (zarr's ``vlen-utf8``).
    description : str
        What the values mean (markdown, one line).
    group : str
        ``"root"``, ``"eval/<set>"`` (one group per evaluation set) or ``"state"``.
    coord : bool
        A coordinate (an index coordinate when it is 1-D and named after its dimension) rather
        than a data variable.
    fill : object
        Zarr fill value; None means the dtype's default (NaN, 0, False or "").
    when : str
        Empty when every log has the array; otherwise when it is present, in words.
    legacy : bool
        Version-1 logs written before the array existed lack it: readers must not require it.
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    description: str
    group: str = ROOT
    coord: bool = False
    fill: object = None
    when: str = ""
    legacy: bool = False

    @property
    def per(self) -> str:
        """``"set"`` for arrays that exist once per evaluation set, else ``"log"``."""
        return "set" if SET in self.name or SET in self.group else "log"

    @property
    def appendable(self) -> bool:
        """True for arrays that grow along their first dimension (``step``, ``snapshot``)."""
        return bool(self.dims) and self.dims[0] in TIME_CHUNKS

    @property
    def index(self) -> bool:
        """True for an index coordinate (1-D, named after its dimension)."""
        return self.coord and self.dims == (self.name,)

    @property
    def fill_value(self) -> Any:
        """The fill value zarr stores for the array."""
        if self.fill is not None:
            return self.fill
        if self.dtype == "str":
            return ""
        kind = np.dtype(self.dtype).kind
        return np.nan if kind == "f" else (False if kind == "b" else 0)

    def key(self, eval_set: str | None = None) -> str:
        """Path of the array in the store, e.g. ``"eval/val/correct"`` or ``"val_loss"``."""
        if self.per == "set" and eval_set is None:
            raise ValueError(f"{self.name!r} in {self.group!r} needs an evaluation set name.")
        name = self.name.replace(SET, eval_set or "")
        group = self.group.replace(SET, eval_set or "")
        return name if group == ROOT else f"{group}/{name}"

    def array(self, values: Any) -> np.ndarray:
        """``values`` as a new numpy array of the declared dtype (``str`` for strings)."""
        return np.array(values, dtype=str if self.dtype == "str" else self.dtype)

    def dtype_matches(self, dtype: Any) -> bool:
        """Whether an array's ``dtype`` is the declared one (strings: str, bytes or object)."""
        dtype = np.dtype(dtype)
        if self.dtype == "str":
            return dtype.kind in "OUST"
        return dtype == np.dtype(self.dtype)


_F32 = "float32"
_I64 = "int64"
_CLASSES = "only when the log has classes (evaluation sets or `class_names`)"
_STATE = "only with `Recorder(keep_weights=True)` (the default)"
_THUMBS = "only with `Recorder(thumbnails=True)` (the default) and image inputs"
_FILTER_CHANGE = {
    "filter_cosine": "cosine similarity of the filter with itself at the previous snapshot",
    "filter_l2": "Euclidean distance to the previous snapshot's filter",
    "filter_l1": "Manhattan distance to the previous snapshot's filter",
    "filter_rel_l1": "‖Δw‖₁/‖w_prev‖₁",
    "filter_rel_l2": "‖Δw‖₂/‖w_prev‖₂",
}
_FILTER_GRAD = {
    "filter_grad_ratio_l1": "‖g‖₁/‖w‖₁",
    "filter_grad_ratio_l2": "‖g‖₂/‖w‖₂",
    "filter_grad_l1": "‖g‖₁ of the filter's gradient",
    "filter_grad_l2": "‖g‖₂ of the filter's gradient",
    "filter_std": "standard deviation of the filter's weights",
}

#: Every array the recorder writes, once: the single declaration of the log's layout. The
#: recorder, :func:`filterscope.data.synthetic_log` and :func:`filterscope.dynamics.from_arrays`
#: create their arrays from it, and ``docs/log-format.md``'s variable table is generated from it
#: (:func:`markdown_table`). Groups made by ``append_group`` (``analysis``) hold whatever the
#: appended Dataset holds and are not listed.
LAYOUT: Final[tuple[Var, ...]] = (
    # ---- coordinates of the root group
    Var(
        "step",
        ("step",),
        _I64,
        "global optimizer step, from 0: one entry per `Recorder.step()`",
        coord=True,
    ),
    Var(
        "step_epoch",
        ("step",),
        _I64,
        "epoch of the step: `step // steps_per_epoch`, else the last `Recorder.set_epoch()` value",
        coord=True,
    ),
    Var("snapshot", ("snapshot",), _I64, "snapshot number, 0..S-1", coord=True),
    Var(
        "snapshot_step",
        ("snapshot",),
        _I64,
        "optimizer updates contained in the snapshot's weights",
        coord=True,
    ),
    Var("snapshot_epoch", ("snapshot",), _I64, "epoch at the snapshot", coord=True),
    Var("class", ("class",), _I64, "class number", coord=True, when=_CLASSES),
    Var("class_name", ("class",), "str", "class name", coord=True, when=_CLASSES),
    Var(
        "layer",
        ("layer",),
        _I64,
        "layer number: modules with a `weight`, in module order",
        coord=True,
    ),
    Var("layer_name", ("layer",), "str", "module name, e.g. `layer2.1.conv1`", coord=True),
    Var("layer_stage", ("layer",), "str", "stage of the layer, e.g. `layer2`", coord=True),
    Var("layer_block", ("layer",), "str", "block of the layer, e.g. `layer2.1`", coord=True),
    Var("layer_kind", ("layer",), "str", "module class, e.g. `Conv2d`", coord=True),
    Var("layer_filters", ("layer",), _I64, "output filters (channels or units)", coord=True),
    Var(
        "layer_params",
        ("layer",),
        _I64,
        "weights in the layer's `weight` (`weight.numel()`, biases excluded; also for layers "
        "without statistics)",
        coord=True,
        legacy=True,
    ),
    Var(
        "layer_has_stats",
        ("layer",),
        "bool",
        "False for normalisation layers: no statistics (NaN rows), no filters",
        coord=True,
    ),
    Var(
        "filter",
        ("filter",),
        _I64,
        "filter number: output filters of the layers with statistics, flat, in layer order",
        coord=True,
    ),
    Var("filter_layer", ("filter",), "str", "`layer_name` of the filter's layer", coord=True),
    Var("filter_layer_index", ("filter",), _I64, "`layer` of the filter's layer", coord=True),
    Var(
        "filter_channel", ("filter",), _I64, "output channel of the filter in its layer", coord=True
    ),
    Var("stat", ("stat",), "str", "statistic: " + " ".join(STATS), coord=True),
    Var(
        "threshold",
        ("threshold",),
        "float64",
        "change-ratio threshold, descending: inf (all), 1, 0.9 … 0.1, 0.09 … 0.000001",
        coord=True,
    ),
    # ---- data variables of the root group
    Var("loss", ("step",), _F32, "the loss passed to `step()` (NaN if none)"),
    Var("lr", ("step",), "float64", '`optimizer.param_groups[0]["lr"]` at the step'),
    Var(
        "train_error",
        ("step",),
        _F32,
        "misclassified fraction of the batch, when `step(loss, output, target)`",
    ),
    Var(
        "step_time",
        ("step",),
        "float64",
        "seconds from the end of the previous `step()` call to this one (NaN first)",
    ),
    Var(
        f"{SET}_loss",
        ("snapshot",),
        _F32,
        "mean `sample_loss` over evaluation set `<set>` (NaN if any sample's output is not finite)",
    ),
    Var(
        f"{SET}_error",
        ("snapshot",),
        _F32,
        "`1 - mean(correct)` over `<set>` (samples without a prediction count as wrong)",
    ),
    Var(
        "weight_stat",
        ("snapshot", "layer", "stat"),
        _F32,
        "the 12 statistics of the layer's weights",
    ),
    Var(
        "grad_stat",
        ("snapshot", "layer", "stat"),
        _F32,
        "the 12 statistics of the layer's gradients",
    ),
    Var(
        "change_ratio",
        ("snapshot", "layer", "threshold"),
        _F32,
        "fraction of the layer's weights with |g/w| ≤ threshold",
    ),
    *(Var(name, ("snapshot", "filter"), _F32, text) for name, text in _FILTER_CHANGE.items()),
    *(Var(name, ("snapshot", "filter"), _F32, text) for name, text in _FILTER_GRAD.items()),
    # ---- one group per evaluation set
    Var(
        "sample",
        ("sample",),
        _I64,
        "sample number: item `i` of the evaluation dataset",
        group=EVAL_SET_GROUP,
        coord=True,
    ),
    Var(
        "sample_id",
        ("sample",),
        _I64,
        "`dataset.sample_ids` if the dataset has it, else `i`",
        group=EVAL_SET_GROUP,
        coord=True,
    ),
    Var("label", ("sample",), _I64, "true class of the sample", group=EVAL_SET_GROUP, coord=True),
    Var(
        "correct",
        ("snapshot", "sample"),
        "bool",
        "`pred == label` (False without a prediction)",
        group=EVAL_SET_GROUP,
        fill=False,
    ),
    Var(
        "pred",
        ("snapshot", "sample"),
        "int32",
        "arg-max of the model output; -1 (no prediction) where the output is not finite",
        group=EVAL_SET_GROUP,
        fill=-1,
    ),
    Var(
        "p_true",
        ("snapshot", "sample"),
        "float16",
        "softmax probability of the true class",
        group=EVAL_SET_GROUP,
    ),
    Var(
        "margin",
        ("snapshot", "sample"),
        "float16",
        "true-class output minus the largest other output (the AUM margin)",
        group=EVAL_SET_GROUP,
    ),
    Var(
        "sample_loss",
        ("snapshot", "sample"),
        _F32,
        "cross-entropy of the sample",
        group=EVAL_SET_GROUP,
    ),
    Var(
        "thumb_y",
        ("thumb_y",),
        _I64,
        "thumbnail pixel row, 0..rows-1",
        group=EVAL_SET_GROUP,
        coord=True,
        when=_THUMBS,
    ),
    Var(
        "thumb_x",
        ("thumb_x",),
        _I64,
        "thumbnail pixel column, 0..columns-1",
        group=EVAL_SET_GROUP,
        coord=True,
        when=_THUMBS,
    ),
    Var(
        "thumb_channel",
        ("thumb_channel",),
        _I64,
        "thumbnail channel: one (grayscale) or three (red, green, blue)",
        group=EVAL_SET_GROUP,
        coord=True,
        when=_THUMBS,
    ),
    Var(
        "thumbnail",
        ("sample", "thumb_y", "thumb_x", "thumb_channel"),
        "uint8",
        "the sample's input image, longer side at most 64 px (area-averaged), min-max scaled "
        "to 0..255 per image; written once, when the log is created",
        group=EVAL_SET_GROUP,
        when=_THUMBS,
    ),
    # ---- weights for resuming (not part of the Dataset)
    Var(
        "weights",
        ("state_slot", "state_param"),
        _F32,
        "the weights of the last snapshots, flat, for resuming (not part of the Dataset): "
        "snapshot `s` writes slot `s % 2`",
        group=STATE_GROUP,
        when=_STATE,
    ),
)

#: :data:`LAYOUT` by ``(group, name)``.
VARIABLES: Final[Mapping[tuple[str, str], Var]] = MappingProxyType(
    {(v.group, v.name): v for v in LAYOUT}
)
assert len(VARIABLES) == len(LAYOUT), "duplicate names in LAYOUT"


def layout(
    group: str | None = None,
    *,
    dims: tuple[str, ...] | None = None,
    coord: bool | None = None,
) -> tuple[Var, ...]:
    """The rows of :data:`LAYOUT` in ``group``, on ``dims``, coordinates or data variables.

    Examples
    --------
    >>> [v.name for v in layout(ROOT, dims=("step",), coord=False)]
    ['loss', 'lr', 'train_error', 'step_time']
    """
    return tuple(
        v
        for v in LAYOUT
        if (group is None or v.group == group)
        and (dims is None or v.dims == dims)
        and (coord is None or v.coord == coord)
    )


def find(name: str, group: str = ROOT) -> Var | None:
    """The row of an actual array name (``"val_loss"``; ``group="eval/val"``), or None.

    Examples
    --------
    >>> find("val_loss").name, find("correct", "eval/test").group
    ('<set>_loss', 'eval/<set>')
    >>> find("ground_truth") is None
    True
    """
    pattern_group = group
    if group.startswith(f"{EVAL_GROUP}/") and group.count("/") == 1:
        pattern_group = EVAL_SET_GROUP
    exact = VARIABLES.get((pattern_group, name))
    if exact is not None:
        return exact
    for v in layout(pattern_group):
        if SET in v.name:
            prefix, suffix = v.name.split(SET)
            middle = name[len(prefix) : len(name) - len(suffix)]
            if (
                name.startswith(prefix)
                and name.endswith(suffix)
                and middle
                and "/" not in middle
                and middle not in RESERVED_SET_NAMES
            ):
                return v
    return None


def coordinates_attr(group: str, names: Iterable[str]) -> str:
    """The ``coordinates`` attribute of a group holding ``names``: its non-index coordinates.

    Examples
    --------
    >>> coordinates_attr(EVAL_SET_GROUP, ["sample", "sample_id", "label", "correct"])
    'sample_id label'
    """
    present = set(names)
    return " ".join(v.name for v in layout(group, coord=True) if not v.index and v.name in present)


def _format_fill(v: Var) -> str:
    if not v.appendable and v.group != STATE_GROUP:
        return ""
    fill = v.fill_value
    if isinstance(fill, float) and np.isnan(fill):
        return "NaN"
    return str(fill)


def markdown_table() -> str:
    """The variable table of ``docs/log-format.md``, generated from :data:`LAYOUT`.

    :func:`write_doc_table` writes it into the page, between the markers :data:`DOC_BEGIN` and
    :data:`DOC_END`.
    """
    lines = [
        "| variable | group | dims | dtype | fill | kind | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in LAYOUT:
        kind = "index" if v.index else ("coordinate" if v.coord else "data")
        meaning = v.description
        if v.when:
            meaning += f"; {v.when}"
        if v.legacy:
            meaning += "; absent from logs written before it existed"
        fill = _format_fill(v)
        cells = [
            f"`{v.name}`",
            f"`{v.group}`",
            ", ".join(v.dims),
            v.dtype,
            f"`{fill}`" if fill else "",
            kind,
            meaning.replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: Markers around the generated table in ``docs/log-format.md``.
DOC_BEGIN: Final = (
    "<!-- BEGIN variable table: generated by filterscope.log.schema.markdown_table() -->"
)
DOC_END: Final = "<!-- END variable table -->"


def replace_doc_table(text: str) -> str:
    """``text`` (the markdown page) with the part between the markers regenerated."""
    start, end = text.index(DOC_BEGIN) + len(DOC_BEGIN), text.index(DOC_END)
    return text[:start] + "\n" + markdown_table() + text[end:]


def write_doc_table(page: str | os.PathLike[str]) -> None:
    """Regenerate the variable table of the markdown ``page`` (``docs/log-format.md``) in place."""
    path = Path(page)
    path.write_text(replace_doc_table(path.read_text(encoding="utf-8")), encoding="utf-8")


# ------------------------------------------------------------------------------ derived names
#: Scalars recorded at every ``step()``: name -> dtype.
STEP_VARS: Final[Mapping[str, str]] = MappingProxyType(
    {v.name: v.dtype for v in layout(ROOT, dims=("step",), coord=False)}
)
#: Per-sample variables of every evaluation set on (snapshot, sample): name -> (dtype, fill).
SAMPLE_VARS: Final[Mapping[str, tuple[str, object]]] = MappingProxyType(
    {
        v.name: (v.dtype, v.fill_value)
        for v in layout(EVAL_SET_GROUP, dims=("snapshot", "sample"), coord=False)
    }
)
#: Per-filter change metrics on (snapshot, filter), float32, NaN at snapshot 0.
FILTER_CHANGE_VARS: Final[tuple[str, ...]] = tuple(_FILTER_CHANGE)
#: Per-filter gradient and spread metrics on (snapshot, filter), float32.
FILTER_GRAD_VARS: Final[tuple[str, ...]] = tuple(_FILTER_GRAD)
#: Every per-filter variable, in the order the statistics engine computes them.
FILTER_VARS: Final[tuple[str, ...]] = tuple(
    v.name for v in layout(ROOT, dims=("snapshot", "filter"))
)
assert FILTER_VARS == FILTER_CHANGE_VARS + FILTER_GRAD_VARS
