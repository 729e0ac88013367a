"""The log's layout, declared once in ``filterscope.log.schema.LAYOUT``, is what every writer
writes: a recorded run, a synthetic log with the same layer tree, ``from_arrays``, and the
variable table of ``docs/log-format.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from log_helpers.tiny import TinyCNN, digits
from torch.utils.data import DataLoader, TensorDataset

import filterscope as fs
from filterscope.data.synthetic import LayerTable, synthetic_log
from filterscope.dynamics import from_arrays
from filterscope.log import schema
from filterscope.log.layers import discover_layers
from filterscope.log.schema import (
    EVAL_SET_GROUP,
    LAYOUT,
    ROOT,
    SET,
    STATE_GROUP,
    VARIABLES,
    Var,
    coordinates_attr,
    find,
    layout,
)

pytestmark = pytest.mark.filterwarnings("ignore:.*step\\(\\) must be called after loss.backward")

DOC = Path(__file__).resolve().parents[1] / "docs" / "log-format.md"
SETS = ("val", "test")
#: Groups a log may hold besides the declared ones: GMM analyses, the synthetic ground truth.
UNDECLARED_GROUPS = ("analysis", "ground_truth")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """A recorded run: TinyCNN on 120 digits, two evaluation sets, 8 steps, 3 snapshots."""
    path = tmp_path_factory.mktemp("layout") / "real"
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = digits(0, 120)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    eval_sets = {
        "val": DataLoader(TensorDataset(*digits(120, 160)), 32),
        "test": DataLoader(TensorDataset(*digits(160, 190)), 32),
    }
    with fs.Recorder(model, path, eval_sets, snapshot_every=4, optimizer=opt) as rec:
        for step in range(8):
            xb, yb = x[step * 15 : (step + 1) * 15], y[step * 15 : (step + 1) * 15]
            opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            rec.step(loss, out, yb)
            opt.step()
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """A synthetic log with TinyCNN's layer tree."""
    path = tmp_path_factory.mktemp("layout") / "synthetic"
    table = LayerTable.from_layers(discover_layers(TinyCNN()))
    synthetic_log(
        path, n_samples=30, n_classes=10, n_snapshots=3, layers=table, plant=False,
        steps_per_snapshot=2,
    )  # fmt: skip
    return path


def _arrays(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every array of the zarr hierarchy at ``path``: (group, name) -> its ``zarr.json``."""
    found = {}
    for meta_path in sorted(path.rglob("zarr.json")):
        rel = meta_path.parent.relative_to(path)
        if any(part.startswith(".") for part in rel.parts):
            continue
        meta = json.loads(meta_path.read_text())
        if meta["node_type"] == "array":
            group = "/".join(rel.parts[:-1]) or ROOT
            found[group, rel.parts[-1]] = meta
    return found


def _zarr_dtype(var: Var) -> str:
    return "string" if var.dtype == "str" else var.dtype


def _same_fill(stored: Any, declared: Any) -> bool:
    if isinstance(declared, float) and np.isnan(declared):
        return stored == "NaN"
    return bool(stored == declared)


def _layout_problems(path: Path, eval_sets: tuple[str, ...]) -> list[str]:
    """How the arrays at ``path`` differ from LAYOUT: undeclared, missing, wrong dims/dtype/fill."""
    problems = []
    arrays = _arrays(path)
    for (group, name), meta in arrays.items():
        if group.split("/")[0] in UNDECLARED_GROUPS:
            continue
        var = find(name, group)
        where = f"{group}/{name}"
        if var is None:
            problems.append(f"{where}: not declared in LAYOUT")
            continue
        if group.startswith("eval/") and group.split("/")[1] not in eval_sets:
            problems.append(f"{where}: group of an unknown evaluation set")
        if tuple(meta["dimension_names"]) != var.dims:
            problems.append(f"{where}: dims {meta['dimension_names']}, declared {var.dims}")
        if meta["data_type"] != _zarr_dtype(var):
            problems.append(f"{where}: dtype {meta['data_type']}, declared {var.dtype}")
        if not _same_fill(meta["fill_value"], var.fill_value):
            problems.append(f"{where}: fill {meta['fill_value']!r}, declared {var.fill_value!r}")
    for var in LAYOUT:
        if var.when:
            continue  # conditional: checked by the callers
        for name in eval_sets if var.per == "set" else (None,):
            key = var.key(name)
            group, _, leaf = key.rpartition("/")
            if (group or ROOT, leaf) not in arrays:
                problems.append(f"{key}: declared in LAYOUT, missing from the log")
    return problems


# ------------------------------------------------------------------------------ the table
def test_table_is_consistent():
    names = [(v.group, v.name) for v in LAYOUT]
    assert len(set(names)) == len(names)
    assert {v.group for v in LAYOUT} == {ROOT, EVAL_SET_GROUP, STATE_GROUP}
    for v in LAYOUT:
        if v.index:
            assert v.dims == (v.name,)
        if v.appendable:
            assert v.dtype != "str"  # appendable arrays hold numbers or booleans
        assert v.description and "\n" not in v.description
        v.array([])  # the dtype is one numpy knows
    dims = {d for v in LAYOUT for d in v.dims} - {"state_slot", "state_param"}
    indexes = {v.name for v in LAYOUT if v.index}
    assert dims == indexes  # every dimension has its index coordinate
    # The historic names are derived from the table.
    assert dict(schema.STEP_VARS) == {
        "loss": "float32",
        "lr": "float64",
        "train_error": "float32",
        "step_time": "float64",
    }
    assert schema.SAMPLE_VARS["pred"] == ("int32", -1)
    assert schema.SAMPLE_VARS["correct"] == ("bool", False)
    assert len(schema.FILTER_VARS) == 10
    assert VARIABLES[ROOT, "layer_params"].dims == ("layer",)
    assert VARIABLES[ROOT, "layer_params"].dtype == "int64"


def test_find_resolves_set_patterns():
    assert find("val_loss") is VARIABLES[ROOT, f"{SET}_loss"]
    assert find("my_set_error") is VARIABLES[ROOT, f"{SET}_error"]
    assert find("sample_loss", "eval/val") is VARIABLES[EVAL_SET_GROUP, "sample_loss"]
    assert find("sample_loss") is None  # per-sample variables live in eval/<set>
    assert find("_loss") is None
    assert find("weights", STATE_GROUP) is VARIABLES[STATE_GROUP, "weights"]
    assert VARIABLES[ROOT, f"{SET}_loss"].key("val") == "val_loss"
    assert VARIABLES[EVAL_SET_GROUP, "pred"].key("test") == "eval/test/pred"
    with pytest.raises(ValueError, match="evaluation set"):
        VARIABLES[EVAL_SET_GROUP, "pred"].key()


def test_doc_variable_table_is_generated_from_the_layout():
    text = DOC.read_text(encoding="utf-8")
    assert text.count(schema.DOC_BEGIN) == 1 and text.count(schema.DOC_END) == 1
    section = text[
        text.index(schema.DOC_BEGIN) + len(schema.DOC_BEGIN) : text.index(schema.DOC_END)
    ]
    assert section == "\n" + schema.markdown_table(), (
        "docs/log-format.md's variable table differs from filterscope.log.schema.LAYOUT; "
        "regenerate it with filterscope.log.schema.write_doc_table('docs/log-format.md')"
    )
    assert schema.replace_doc_table(text) == text


def test_markdown_table_lists_every_variable_once():
    rows = schema.markdown_table().splitlines()[2:]
    assert len(rows) == len(LAYOUT)
    for row, var in zip(rows, LAYOUT, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[:4] == [f"`{var.name}`", f"`{var.group}`", ", ".join(var.dims), var.dtype]
    assert "\\|g/w\\|" in schema.markdown_table()  # pipes in descriptions are escaped


# ------------------------------------------------------------------------------ writers
def test_recorded_log_follows_the_layout(real):
    assert _layout_problems(real, SETS) == []
    arrays = _arrays(real)
    # Conditional arrays: the digits give classes; keep_weights is the default.
    assert (ROOT, "class_name") in arrays and (STATE_GROUP, "weights") in arrays
    meta = json.loads((real / "zarr.json").read_text())
    attrs = meta["attributes"]
    names = [name for group, name in arrays if group == ROOT]
    assert attrs["coordinates"] == coordinates_attr(ROOT, names)
    assert "layer_params" in attrs["coordinates"].split()
    for name in SETS:
        group = json.loads((real / "eval" / name / "zarr.json").read_text())
        assert group["attributes"]["coordinates"] == "sample_id label"


def test_synthetic_log_follows_the_layout(synthetic):
    assert _layout_problems(synthetic, ("val",)) == []
    attrs = json.loads((synthetic / "zarr.json").read_text())["attributes"]
    assert attrs["coordinates"] == coordinates_attr(ROOT, [v.name for v in layout(ROOT)])


@pytest.mark.parametrize("which", ["real", "synthetic"])
def test_opened_logs_have_the_declared_dims_and_dtypes(which, request):
    path = request.getfixturevalue(which)
    for eval_set in SETS if which == "real" else ("val",):
        log = fs.open_log(path, eval_set=eval_set)
        for name, array in log.variables.items():
            var = find(str(name)) or find(str(name), f"eval/{eval_set}")
            assert var is not None, name
            assert array.dims == var.dims, name
            assert var.dtype_matches(array.dtype), (name, array.dtype, var.dtype)
            assert (name in log.coords) == var.coord, name


def test_real_and_synthetic_logs_share_the_layer_tree(real, synthetic):
    a, b = fs.open_log(real), fs.open_log(synthetic)
    model = TinyCNN()
    weights = [
        module.weight.numel() for module in model.modules() if "weight" in module._parameters
    ]
    for log in (a, b):
        assert "layer_params" in log.coords
        assert log.layer_params.dtype == np.int64 and log.layer_params.dims == ("layer",)
        assert log.layer_params.values.tolist() == weights  # batch norm too: 4 weights
    for name in [v.name for v in layout(ROOT, coord=True) if v.dims in (("layer",), ("filter",))]:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_from_arrays_follows_the_layout():
    rng = np.random.default_rng(0)
    log = from_arrays(
        rng.random((4, 6)) > 0.5,
        [0, 1, 2, 0, 1, 2],
        p_true=rng.random((4, 6)),
        margin=rng.normal(size=(4, 6)),
        layers={"conv": 2, "fc": 3},
        filter_metrics={"filter_cosine": rng.random((4, 5)), "filter_l2": rng.random((4, 5))},
    )
    assert log.attrs[schema.FORMAT_ATTR] == schema.FORMAT_VERSION
    for name, array in log.variables.items():
        var = find(str(name)) or find(str(name), "eval/val")
        assert var is not None, name
        assert array.dims == var.dims, name
        assert var.dtype_matches(array.dtype), (name, array.dtype, var.dtype)
        assert (name in log.coords) == var.coord, name
    # Every index coordinate and the layer / filter coordinates it can know are there.
    expected = {
        v.name
        for v in layout(ROOT, coord=True)
        if v.dims[0] in ("snapshot", "class", "layer", "filter") and v.name != "layer_params"
    }
    assert expected <= set(log.variables)


# ------------------------------------------------------------------------------ old logs
def _strip_layer_params(path: Path) -> None:
    """Make ``path`` look like a real log written before real logs carried layer_params."""
    import shutil

    shutil.rmtree(path / "layer_params")
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    coords = meta["attributes"]["coordinates"].split()
    meta["attributes"]["coordinates"] = " ".join(c for c in coords if c != "layer_params")
    meta_path.write_text(json.dumps(meta))


def test_old_log_without_layer_params_reads_and_gains_it_on_resume(real, tmp_path):
    import shutil

    path = tmp_path / "old"
    shutil.copytree(real, path)
    _strip_layer_params(path)
    log = fs.open_log(path)
    assert "layer_params" not in log.variables and log.sizes["snapshot"] == 3
    model = TinyCNN()
    eval_sets = {
        "val": DataLoader(TensorDataset(*digits(120, 160)), 32),
        "test": DataLoader(TensorDataset(*digits(160, 190)), 32),
    }
    with fs.Recorder(model, path, eval_sets, snapshot_every=4, mode="a"):
        pass
    log = fs.open_log(path)
    assert log.layer_params.values.tolist() == fs.open_log(real).layer_params.values.tolist()
    assert _layout_problems(path, SETS) == []
