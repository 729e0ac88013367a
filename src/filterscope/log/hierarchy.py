"""Stage → block → layer hierarchy from module names.

The default reads the tree from dotted module names, which fits torchvision-style networks:
``layer2.1.conv1`` is in stage ``layer2`` and block ``layer2.1``; a name with one component is
its own stage and block. A user mapping or callable overrides it for any other naming.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from filterscope.errors import InvalidParameterError

Hierarchy = Mapping[str, tuple[str, str]] | Callable[[str], tuple[str, str]]


def default_hierarchy(name: str) -> tuple[str, str]:
    """Stage and block of a layer from its dotted module name.

    Parameters
    ----------
    name : str
        Module name as given by ``model.named_modules()``.

    Returns
    -------
    stage, block : str
        The first component, and the first two components joined by a dot (the name itself
        when it has at most two components).

    Examples
    --------
    >>> default_hierarchy("layer2.1.conv1")
    ('layer2', 'layer2.1')
    >>> default_hierarchy("fc")
    ('fc', 'fc')
    """
    parts = name.split(".")
    return parts[0], ".".join(parts[:2])


def resolve_hierarchy(
    names: Sequence[str], hierarchy: Hierarchy | None = None
) -> list[tuple[str, str]]:
    """Stage and block of every layer, with optional user overrides.

    Parameters
    ----------
    names : sequence of str
        Layer names.
    hierarchy : mapping or callable, optional
        ``{name: (stage, block)}`` for the layers to override (the others keep the default), or a
        callable ``name -> (stage, block)`` applied to every layer.

    Returns
    -------
    list of (stage, block)

    Raises
    ------
    filterscope.InvalidParameterError
        If ``hierarchy`` is neither None, a mapping nor a callable, or if it gives anything
        other than a ``(stage, block)`` pair of strings for a layer.

    Examples
    --------
    >>> resolve_hierarchy(["conv1", "head.fc"], {"head.fc": ("classifier", "classifier")})
    [('conv1', 'conv1'), ('classifier', 'classifier')]
    """
    if hierarchy is None:
        lookup: Callable[[str], tuple[str, str]] = default_hierarchy
    elif isinstance(hierarchy, Mapping):
        table = hierarchy

        def lookup(name: str) -> tuple[str, str]:
            return table[name] if name in table else default_hierarchy(name)

    elif callable(hierarchy):
        lookup = hierarchy
    else:
        raise InvalidParameterError(
            "hierarchy must be None (stages and blocks from the module names), a mapping "
            "{layer_name: (stage, block)} or a callable layer_name -> (stage, block), got "
            f"{type(hierarchy).__name__} {hierarchy!r:.60}."
        )
    result = []
    for name in names:
        value = lookup(name)
        if (
            not isinstance(value, tuple | list)
            or len(value) != 2
            or not all(isinstance(v, str) for v in value)
        ):
            raise InvalidParameterError(
                f"hierarchy gave {value!r} for layer {name!r}; expected a (stage, block) pair "
                f"of strings, e.g. {default_hierarchy(name)!r}."
            )
        result.append((value[0], value[1]))
    return result
