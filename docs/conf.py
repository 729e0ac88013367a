"""Sphinx configuration of the filterscope documentation.

Built offline: no intersphinx, no remote assets, the notebooks rendered as committed (without
outputs, never executed). ``make docs`` runs ``sphinx-build -W --keep-going -n``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib  # noqa: E402
import re  # noqa: E402

from filterscope import __version__  # noqa: E402

# Subpackages load their names lazily (module ``__getattr__``); autodoc lists a module's
# members from its ``__dict__``, so load every name of each ``__all__`` first.
for _name in ("log", "models", "data", "gmm", "index", "dynamics", "views", "plots"):
    _module = importlib.import_module(f"filterscope.{_name}")
    for _member in _module.__all__:
        setattr(_module, _member, getattr(_module, _member))

project = "filterscope"
author = "the filterscope developers"
copyright = "the filterscope developers"
version = release = __version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "img/*.md"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# --- MyST and myst-nb: notebooks are shown as committed, never executed ----------------------
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
# Pages link to source files (``../src/...``), which are not documents of the site.
suppress_warnings = ["myst.xref_missing", "myst.header"]

# --- autodoc, autosummary and numpydoc --------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource", "undoc-members": True}
autodoc_typehints = "none"  # the numpydoc sections say the types
autodoc_mock_imports: list[str] = []
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Checked on every documented object, so a docstring that breaks the numpydoc format fails the
# build: no summary (SS01), an unknown section (GL06) or sections out of order (GL07), double
# blank lines or tabs (GL03, GL05), a deprecation note out of place (GL10), a parameter the
# signature lacks or in another order (PR02, PR03), a malformed parameter type (PR05, PR06,
# PR10), a generator without "Yields" (YD01). Left out, as the docstrings do not follow them:
# See Also / Examples / extended summary on every object (SA01, EX01, ES01), every parameter
# and return value described (PR01, RT01, RT03).
numpydoc_validation_checks = {
    "SS01",
    "GL03",
    "GL05",
    "GL06",
    "GL07",
    "GL10",
    "PR02",
    "PR03",
    "PR05",
    "PR06",
    "PR10",
    "YD01",
}
numpydoc_validation_exclude = {
    r"\.__\w+__$",
    # traitlets classes: their documented traits are keyword arguments taken through **kwargs
    r"^filterscope\.views\.(Selection|LayerView)$",
}

# Offline: nothing fetched from another site at build time, and nothing referenced that lives
# outside the site (no intersphinx inventories), so a reference to numpy, torch or xarray
# types stays plain text.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpick_ignore_regex = [
    (
        "py:.*",
        r"(np|npt|numpy|xr|xarray|pd|pandas|torch|nn|dask|da|zarr|bokeh|traitlets|"
        r"ipywidgets|anywidget|sklearn|scipy|argparse|collections|typing|pathlib|os|"
        r"concurrent|threading|datetime|enum|builtins)(\..*)?",
    ),
    (
        "py:.*",
        r"(optional|default|callable|path-like|array-like|sequence|mapping|iterable|"
        r"of|or|and|str|int|float|bool|dict|list|tuple|None|bytes|object|type|Any|Path|"
        r"Module|Tensor|Dataset|DataArray|DataFrame|Series|DataLoader|ndarray|Figure)",
    ),
]

# --- HTML ------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"filterscope {version}"
# docs/_static: files pages link to as they are (e.g. the anomaly study's figures)
html_static_path = ["_static"] if (ROOT / "docs" / "_static").is_dir() else []
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 4,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
    "icon_links": [],
}
html_show_sourcelink = False
html_copy_source = False


# --- references to a public name by another of its paths -------------------------------------
# Docstrings say ``filterscope.open_log`` or ``filterscope.gmm.probe.select_samples``; each object
# is documented once, where its subpackage's ``__all__`` exports it. A reference that Sphinx
# cannot find is resolved by importing its target and looking for the documented name of the
# same object (or, for a private module, the nearest documented package above it).


def _import_path(path: str) -> tuple[bool, object]:
    """The object at a dotted path, each step an attribute or a submodule (``gmm.analyze`` is
    both a function and a module: the attribute is tried first, the module if that fails)."""
    import importlib

    def walk(obj: object, done: list[str], rest: list[str]) -> tuple[bool, object]:
        if not rest:
            return True, obj
        head, tail = rest[0], rest[1:]
        if hasattr(obj, head):
            found, value = walk(getattr(obj, head), [*done, head], tail)
            if found:
                return found, value
        try:
            module = importlib.import_module(".".join([*done, head]))
        except ImportError:
            return False, None
        return walk(module, [*done, head], tail)

    parts = path.split(".")
    try:
        root = importlib.import_module(parts[0])
    except ImportError:
        return False, None
    return walk(root, parts[:1], parts[1:])


def _documented_objects(env) -> dict[int, str]:
    cache = getattr(env, "_filterscope_objects", None)
    if cache is None:
        cache = {}
        domain = env.get_domain("py")
        for fullname, entry in domain.objects.items():
            if entry.objtype == "module" or entry.aliased:
                continue
            found, obj = _import_path(fullname)
            if found and not isinstance(obj, (int, float, bool, type(None))):
                cache.setdefault(id(obj), fullname)
        env._filterscope_objects = cache
    return cache


def _candidates(node) -> list[str]:
    """Dotted paths the reference may mean, from the most to the least specific context."""
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    prefixes: list[str] = []
    # the object whose docstring holds the reference, e.g. filterscope.data.synthetic.ground_truth
    owner = re.search(r"docstring of ([\w.]+)", str(node.source or ""))
    if owner:
        parts = owner.group(1).split(".")
        prefixes += [".".join(parts[:cut]) for cut in range(len(parts), 0, -1)]
    if module:
        prefixes += [f"{module}.{cls}" if cls else "", module]
    return [target] + [f"{prefix}.{target}" for prefix in prefixes if prefix]


def _resolve_alias(app, env, node, contnode):
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    documented = _documented_objects(env)
    exists = False
    for candidate in _candidates(node):
        if not candidate.startswith("filterscope"):
            continue
        found, obj = _import_path(candidate)
        if not found:
            continue
        exists = True
        name = documented.get(id(obj))
        if name is not None:
            entry = domain.objects[name]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name
            )
        if isinstance(obj, type(sys)):
            parts = candidate.split(".")
            for cut in range(len(parts), 0, -1):
                entry = domain.modules.get(".".join(parts[:cut]))
                if entry is not None:
                    return make_refnode(
                        app.builder,
                        node["refdoc"],
                        entry.docname,
                        entry.node_id,
                        contnode,
                        ".".join(parts[:cut]),
                    )
    # ``Index.query``: the one documented object whose path ends with the target
    target = node["reftarget"].lstrip("~.")
    matches = [name for name in domain.objects if name.endswith(f".{target}")]
    if len(matches) == 1:
        entry = domain.objects[matches[0]]
        return make_refnode(
            app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, matches[0]
        )
    # A private name of the code (it imports): shown as code, without a link. A name that
    # does not exist (a typo, a renamed function) still fails the build.
    return contnode if exists else None


def _skip_member(app, what, name, obj, skip, options):
    # scikit-learn's generated metadata-routing setters (set_fit_request, ...) on FilterGMM
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _module_sections(app, what, name, obj, options, lines):
    # A module docstring's "Examples" heading is a section, and every module page would define
    # the same label "examples": show it as numpydoc shows a function's, a rubric.
    if what != "module":
        return
    for i in range(len(lines) - 1):
        title, rule = lines[i], lines[i + 1]
        if title.strip() and set(rule.strip()) == {"-"} and len(rule.strip()) >= len(title.strip()):
            lines[i], lines[i + 1] = f".. rubric:: {title.strip()}", ""


def setup(app):
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _module_sections, priority=400)
    return {"parallel_read_safe": True}
