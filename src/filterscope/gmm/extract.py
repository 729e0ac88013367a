"""Activation capture: probe samples → per-filter feature maps → 2-D PCA coordinates.

For every hooked layer ``l`` with ``C`` filters the feature maps of ``N`` probe samples form a
tensor ``(C, N, H·W)``; each filter's ``(N, H·W)`` matrix is centred over the samples and reduced
to its top two principal components, all ``C`` filters at once, on the device that ran the
model. Only the ``(C, N, 2)`` coordinates leave the device (arXiv 2412.10457, D^l ∈ R^{N×C×2}).
The probe samples come from :mod:`filterscope.gmm.probe` and the batched PCA from
:mod:`filterscope.gmm.pca`; this module hooks the layers, plans the forward passes and fills
the ``(C, N, H·W)`` buffers.

Memory and passes
-----------------
A layer's activations ``(C, N, H·W)`` are needed all at once (PCA is over samples), and a deep
network's activations for all layers do not fit anywhere (ResNet-50: 42 MB per 224² image, so
21 GB for N = 512). :func:`extract` therefore plans *groups* of consecutive layers (in execution
order) whose buffers fit ``max_memory`` bytes, and runs one forward pass over the probe samples
per group, stopped right after the group's last layer. Within a group all layers are captured
in the same pass, straight into preallocated ``(C, N, H·W)`` buffers; after the pass each layer
is reduced and its buffer freed.

* Small networks (every layer fits the budget) take one pass: extraction costs a forward pass
  plus the PCA.
* ``max_memory=0`` holds exactly one layer's activations at a time, at the cost of one
  (truncated) pass per layer, about ``L/2`` full forward passes for ``L`` evenly spread layers.
* In between, the time is the sum of the groups' prefix passes and the peak memory is
  ``max(max_memory, largest layer) + the probe inputs + the model's own forward workspace``.

The default budget (2 GiB) keeps small networks at one pass, which matters more for time than
the strict one-layer rule does for memory. Measured on a 2-core CPU with ``resnet50_like`` at
224² (26,560 filters, batch 32): N = 128 took 3 passes and 2.80 GiB peak RSS, N = 384 10 passes
and 3.13 GiB: the peak follows the budget, not N (``benchmarks/bench_extract.py --rss``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from filterscope.errors import (
    InvalidDataError,
    InvalidModelError,
    InvalidParameterError,
    NonFiniteError,
)
from filterscope.gmm.pca import PCA_METHODS, PCAMethod, reduce_maps
from filterscope.gmm.probe import ProbeSet, select_samples
from filterscope.log.evaluation import image_thumbnails

__all__ = ["DEFAULT_MAX_MEMORY", "FEATURES", "WHERE", "Features", "Where", "extract"]

Where = Literal["output", "activation"]
#: The values of :func:`extract`'s ``where``.
WHERE: tuple[str, ...] = ("output", "activation")

Features = Literal["pca", "pca-residual"]
#: The values of :func:`extract`'s ``features``.
FEATURES: tuple[str, ...] = ("pca", "pca-residual")

#: Default byte budget for the activations held at once on the device (see the module docstring).
DEFAULT_MAX_MEMORY = 2 * 1024**3

_NORMALISATION = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)


# --- extraction ----------------------------------------------------------------------------


@dataclass
class _Capture:
    """Where to read one layer's feature maps during a forward pass."""

    layer: str
    module: str  # module whose forward hook provides the tensor
    call: int  # which call of that module within one forward pass
    relu: bool  # apply relu to the hooked tensor (post-activation without an activation module)
    order: int  # position in the forward pass's execution order
    channels: int = 0
    spatial: tuple[int, ...] = ()
    buffer: torch.Tensor | None = field(default=None, repr=False)

    @property
    def features(self) -> int:
        return math.prod(self.spatial)


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the last needed layer has run."""


def extract(
    model: nn.Module,
    data: Any,
    *,
    layers: Sequence[str] | None = None,
    n_samples: int | None = 512,
    device: str | torch.device | None = None,
    where: Where = "output",
    batch_size: int = 128,
    random_state: int | None = 0,
    pca: PCAMethod = "randomized",
    max_memory: int | None = DEFAULT_MAX_MEMORY,
    progress: bool | Callable[[str], None] = False,
    features: Features = "pca",
) -> xr.Dataset:
    """Extract every filter's feature maps for probe samples and reduce them to 2-D by PCA.

    Forward hooks on every ``Conv2d`` (or the named ``layers``) capture the feature maps of
    ``n_samples`` probe samples; each filter's maps are flattened, centred and reduced to their
    two leading principal components on ``device`` (see :func:`~filterscope.gmm.pca.pca_2d`).
    The model runs in eval mode under ``torch.no_grad()``; its training flags (and its device,
    when it had to move) are restored afterwards. How many forward passes are made depends on
    ``max_memory`` (see the module docstring). Every argument after ``data`` is keyword-only.

    Parameters
    ----------
    model : torch.nn.Module
        A CNN; hooked layers must output ``(batch, channels, *spatial)`` tensors.
    data : Dataset, DataLoader, Tensor, ndarray or tuple (x, y)
        Where probe samples come from; see :func:`~filterscope.gmm.probe.select_samples`.
    layers : sequence of str, optional
        Module names (as in ``model.named_modules()``) to analyse, in the order wanted; default
        every ``Conv2d`` in registration order.
    n_samples : int or None, default=512
        Number of probe samples, drawn deterministically with ``random_state``; None uses all.
    device : str or torch.device, optional
        Where the model runs and the PCA is computed. Default: the model's device when it is on
        a GPU, else CUDA when available, else the CPU.
    where : {"output", "activation"}, default="output"
        ``"output"``: the layer's own output. ``"activation"``: the output of the first
        activation module (ReLU, GELU, …) executed after the layer, skipping normalisation layers
        (batch norm, …) in between; when no activation module follows (e.g. ``F.relu`` inside
        ``forward``) ReLU is applied to the output of the layer, or of the normalisation layers
        that directly follow it.
    batch_size : int, default=128
        Probe samples per forward pass batch.
    random_state : int or None, default=0
        Seed of the sample selection and of the randomized PCA.
    pca : {"randomized", "full"}, default="randomized"
        PCA solver, see :func:`~filterscope.gmm.pca.pca_2d`.
    max_memory : int or None, default=2 GiB
        Bytes of activations held at once on ``device``; layers are grouped into forward passes
        under this budget. ``0`` holds one layer at a time; None means no limit (one pass).
    progress : bool or callable, default=False
        True shows a tqdm bar over layers; a callable is called with each finished layer's name.
    features : {"pca", "pca-residual"}, default="pca"
        The two coordinates of each sample's point. ``"pca"``: its first two principal
        components. ``"pca-residual"``: its first principal component and its *PCA residual*,
        the distance of its centred feature map from the plane of the two leading components.
        A sample whose map differs from the others only in directions that the two components
        do not span (a heavily noised image) lies inside the cloud of its first two
        components but far out on the residual axis (``docs/gmm.md``, "Atypical inputs").

    Returns
    -------
    xarray.Dataset
        ``points(filter, sample, pc)`` float32 and ``explained_variance(filter)`` float32 (the
        fraction of the filter's variance captured by the two components, NaN when it has none),
        with coords ``filter_layer`` (str), ``filter_channel`` (int) on ``filter``, ``sample_id``,
        ``label`` on ``sample`` and ``pc = [0, 1]``; attrs ``n_samples``, ``where``, ``device``,
        ``pca``, ``random_state``, ``n_passes``, ``features``. With
        ``features="pca-residual"`` ``pc = 1`` holds the residual.

    Raises
    ------
    InvalidParameterError
        When ``n_samples``, ``where``, ``batch_size``, ``pca`` or ``max_memory`` is outside its
        range above, or ``device`` is a CUDA device where torch sees none.
    InvalidModelError
        When the model has no ``Conv2d`` (and no ``layers`` are given), a name is unknown, or a
        layer does not output ``(batch, channels, ...)`` tensors.
    InvalidDataError
        When the data cannot be read or does not fit the model's input.
    NonFiniteError
        When an input or a feature map holds NaN or Inf (the message names the layer and filter).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.gmm import extract
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> ds = extract(net, torch.randn(64, 1, 10, 10), n_samples=32)
    >>> ds.points.shape, ds.filter_layer.values.tolist()
    ((6, 32, 2), ['0', '0', '0', '0', '2', '2'])
    """
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    _check_params(where, pca, batch_size, max_memory)
    if features not in FEATURES:
        raise InvalidParameterError(
            f"features must be one of {FEATURES} (two principal components, or the first and "
            f"the PCA residual), got {features!r}."
        )
    names = _layer_names(model, layers)
    probe = select_samples(data, n_samples, random_state)
    _check_finite_inputs(probe)
    run_device = _resolve_device(model, device)

    with _evaluating(model, run_device):
        x = _match_dtype(model, probe.x)
        captures = _trace(model, names, x[: min(2, len(x))].to(run_device), where)
        groups = _plan(captures, len(probe), max_memory)
        results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        report = _progress(progress, len(names))
        for group in groups:
            _run_group(model, group, x, run_device, batch_size)
            for cap in sorted(group, key=lambda c: c.order):
                assert cap.buffer is not None
                maps, cap.buffer = cap.buffer, None
                # Also checks the maps for NaN/Inf, naming the layer and filter.
                coords, captured = reduce_maps(maps, pca, random_state, cap.layer)
                if features == "pca-residual":
                    coords = _with_residual(maps, coords)
                del maps
                results[cap.layer] = (coords.cpu().numpy(), captured.cpu().numpy())
                report(cap.layer)
        report(None)

    points = np.concatenate([results[name][0] for name in names]).astype(np.float32)
    explained = np.concatenate([results[name][1] for name in names]).astype(np.float32)
    by_name = {cap.layer: cap for cap in captures}
    layer_of = np.concatenate([np.full(by_name[n].channels, n, dtype=object) for n in names])
    channel_of = np.concatenate([np.arange(by_name[n].channels) for n in names])
    data_vars: dict[str, Any] = {
        "points": (("filter", "sample", "pc"), points),
        "explained_variance": (("filter",), explained),
    }
    # Small uint8 images of the probe samples (as the log keeps of its evaluation samples), so a
    # result alone shows what its outlier samples look like; None when the inputs are not images.
    thumbs = image_thumbnails(probe.x)
    if thumbs is not None:
        data_vars["thumbnail"] = (THUMBNAIL_DIMS, thumbs)
    return xr.Dataset(
        data_vars,
        coords={
            "filter": np.arange(len(points), dtype=np.int64),
            "filter_layer": ("filter", layer_of.astype(str)),
            "filter_channel": ("filter", channel_of.astype(np.int64)),
            "sample": np.arange(len(probe), dtype=np.int64),
            "sample_id": ("sample", probe.sample_id),
            "label": ("sample", probe.label),
            "pc": np.array([0, 1], dtype=np.int64),
        },
        attrs={
            "n_samples": len(probe),
            "where": where,
            "device": str(run_device),
            "pca": pca,
            "random_state": -1 if random_state is None else int(random_state),
            "n_passes": len(groups),
            "features": features,
        },
    )


#: Dimensions of the probe thumbnails, named as the log names its evaluation thumbnails.
THUMBNAIL_DIMS = ("sample", "thumb_y", "thumb_x", "thumb_channel")


def _with_residual(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """``(C, N, 2)`` points (first component, distance from the two-component plane).

    ``reduce_maps`` centred float32 ``maps`` in place; the coordinates are orthogonal
    projections of the centred rows, so the residual is ``sqrt(|x|² − |coords|²)`` (in float64).
    """
    if maps.dtype != torch.float32:  # not centred in place
        maps = maps.float() - maps.float().mean(dim=1, keepdim=True)
    total = torch.linalg.vector_norm(maps, dim=2, dtype=torch.float64).square()
    kept = coords.double().square().sum(dim=2)
    residual = (total - kept).clamp(min=0).sqrt().to(coords.dtype)
    return torch.stack([coords[..., 0], residual], dim=-1)


def _check_params(where: Any, pca: Any, batch_size: Any, max_memory: Any) -> None:
    if where not in WHERE:
        raise InvalidParameterError(
            f"where must be one of {WHERE} (the layer's output, or its activation), got {where!r}."
        )
    if pca not in PCA_METHODS:
        raise InvalidParameterError(f"pca must be one of {PCA_METHODS}, got {pca!r}.")
    if not _is_int(batch_size) or batch_size < 1:
        raise InvalidParameterError(
            f"batch_size must be an integer ≥ 1 (probe samples per forward pass), got "
            f"{batch_size!r}."
        )
    if max_memory is not None and (not _is_int(max_memory) or max_memory < 0):
        raise InvalidParameterError(
            f"max_memory must be None (no limit) or an integer ≥ 0 of bytes, got {max_memory!r}."
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _layer_names(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    convs = [name for name, m in modules.items() if isinstance(m, nn.Conv2d)]
    if layers is None:
        if not convs:
            raise InvalidModelError(
                f"{type(model).__name__} has no Conv2d layer to analyse; pass layers=[...] with "
                "the names of modules that output (batch, channels, height, width) feature maps."
            )
        return convs
    if isinstance(layers, str):
        layers = [layers]
    names = list(layers)
    unknown = [name for name in names if name not in modules or name == ""]
    if unknown:
        raise InvalidModelError(
            f"unknown layer name(s) {unknown} in {type(model).__name__}; use names from "
            f"model.named_modules(), e.g. the Conv2d layers {convs[:8]}."
        )
    if len(set(names)) != len(names):
        raise InvalidModelError(f"layers lists a name more than once: {names}.")
    if not names:
        raise InvalidModelError("layers is empty; pass None to analyse every Conv2d layer.")
    return names


def _check_finite_inputs(probe: ProbeSet) -> None:
    x = probe.x
    if x.is_floating_point() or x.is_complex():
        finite = torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
        if not bool(finite.all()):
            bad = probe.sample_id[(~finite).numpy()]
            raise NonFiniteError(
                f"probe inputs hold NaN or Inf (sample_id {bad[:10].tolist()}); clean or drop "
                "these samples before extraction."
            )


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device={device!r} was requested but CUDA is not available; pass device='cpu' "
                "or device=None (picks CUDA when available)."
            )
        return resolved
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    if current.type != "cpu":
        return current
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def _evaluating(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no_grad and the model on ``device``; everything restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    home = tensor.device if tensor is not None else device
    model.eval()
    if home != device:
        model.to(device)
    try:
        with torch.no_grad():
            yield
    finally:
        if home != device:
            model.to(home)
        for module, training in flags:
            module.training = training


def _match_dtype(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # float64 arrays (numpy's default) would fail against float32 weights; integer inputs (e.g.
    # token ids) are left alone.
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and x.is_floating_point() and x.dtype != param.dtype:
        return x.to(param.dtype)
    return x


def _trace(model: nn.Module, names: list[str], x: torch.Tensor, where: Where) -> list[_Capture]:
    """Run one small batch, recording the execution order and shapes of the modules."""
    modules = dict(model.named_modules())
    wanted = set(names)
    events: list[tuple[str, int, Any]] = []  # (module name, call index, output)
    calls: dict[str, int] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            k = calls.get(name, 0)
            calls[name] = k + 1
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            events.append((name, k, shape))

        return hook

    traced = [n for n, m in modules.items() if n and (n in wanted or not any(m.children()))]
    handles = [modules[n].register_forward_hook(recorder(n)) for n in traced]
    try:
        model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise InvalidDataError(
            f"{type(model).__name__} cannot run on the probe inputs: each sample has shape "
            f"{tuple(x.shape[1:])} and dtype {x.dtype}, and the forward pass failed with: "
            f"{err}. Pass inputs shaped as the model was trained on, e.g. (channels, height, "
            "width) images for a Conv2d network."
        ) from err
    finally:
        for handle in handles:
            handle.remove()

    first: dict[str, tuple[int, tuple[int, ...] | None]] = {}
    for pos, (name, k, shape) in enumerate(events):
        if name in wanted and k == 0:
            first[name] = (pos, shape)
    captures = []
    for name in names:
        if name not in first:
            raise InvalidModelError(
                f"layer {name!r} did not run in {type(model).__name__}'s forward pass; pass "
                "layers that the forward pass uses."
            )
        pos, shape = first[name]
        if shape is None or len(shape) < 3:
            raise InvalidModelError(
                f"layer {name!r} outputs {'a non-tensor' if shape is None else shape}; feature "
                "maps must be (batch, channels, *spatial) tensors, as Conv2d layers produce."
            )
        cap = _Capture(layer=name, module=name, call=0, relu=False, order=pos)
        if where == "activation":
            cap = _activation_capture(cap, events, pos, modules)
        cap.channels = shape[1]
        cap.spatial = shape[2:]
        captures.append(cap)
    return captures


def _activation_capture(
    cap: _Capture, events: list[tuple[str, int, Any]], pos: int, modules: dict[str, nn.Module]
) -> _Capture:
    source = pos  # the last tensor of the layer → normalisation chain
    shape = events[pos][2]
    for later in range(pos + 1, len(events)):
        name, k, out_shape = events[later]
        module = modules[name]
        if out_shape != shape:
            break
        if isinstance(module, _NORMALISATION):
            source = later
            continue
        if isinstance(module, _ACTIVATIONS):
            return _Capture(cap.layer, name, k, relu=False, order=later)
        break
    name, k, _ = events[source]
    return _Capture(cap.layer, name, k, relu=True, order=source)


def _plan(captures: list[_Capture], n: int, max_memory: int | None) -> list[list[_Capture]]:
    """Group captures, in execution order, into forward passes under the memory budget."""
    groups: list[list[_Capture]] = []
    used = 0
    for cap in sorted(captures, key=lambda c: c.order):
        size = cap.channels * cap.features * n * 4
        if groups and (max_memory is None or used + size <= max_memory):
            groups[-1].append(cap)
            used += size
        else:
            groups.append([cap])
            used = size
    return groups


def _run_group(
    model: nn.Module, group: list[_Capture], x: torch.Tensor, device: torch.device, batch_size: int
) -> None:
    """One forward pass over the probe samples, filling the group's ``(C, N, H·W)`` buffers."""
    n = len(x)
    for cap in group:
        cap.buffer = torch.empty(cap.channels, n, cap.features, dtype=torch.float32, device=device)
    last = max(group, key=lambda c: c.order)
    by_module: dict[str, list[_Capture]] = {}
    for cap in group:
        by_module.setdefault(cap.module, []).append(cap)
    calls: dict[str, int] = {}
    start = 0

    def hook_for(module_name: str) -> Callable[..., None]:
        targets = by_module[module_name]

        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            k = calls.get(module_name, 0)
            calls[module_name] = k + 1
            hit = [cap for cap in targets if cap.call == k]
            for cap in hit:
                assert cap.buffer is not None
                b = output.shape[0]
                # Straight into the (C, N, H·W) layout: no batch-sized temporary.
                view = cap.buffer[:, start : start + b].view(cap.channels, b, *cap.spatial)
                if cap.relu and output.dtype == view.dtype:
                    torch.clamp_min(output.transpose(0, 1), 0, out=view)
                else:
                    view.copy_((torch.relu(output) if cap.relu else output).transpose(0, 1))
            if any(cap is last for cap in hit):
                raise _StopForward

        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook_for(name)) for name in by_module]
    try:
        for start in range(0, n, batch_size):
            calls.clear()
            batch = x[start : start + batch_size].to(device, non_blocking=True)
            try:
                model(batch)
            except _StopForward:
                pass
    finally:
        for handle in handles:
            handle.remove()


def _progress(progress: bool | Callable[[str], None], total: int) -> Callable[[str | None], None]:
    if callable(progress):
        callback = progress

        def report(name: str | None) -> None:
            if name is not None:
                callback(name)

        return report
    if not progress:
        return lambda name: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="extract", unit="layer")

    def report_bar(name: str | None) -> None:
        if name is None:
            bar.close()
        else:
            bar.set_postfix_str(name, refresh=False)
            bar.update()

    return report_bar
