"""Weight and gradient statistics computed on the model's device in a few kernels per layer.

The weights and gradients of every layer with statistics are flattened once into one
``(2, P)`` tensor (row 0 weights, row 1 gradients), filter by filter. Each layer is then a
``(2, filters, fan_in)`` view, reduced along its last axis by a handful of fused kernels
(``var_mean``, ``aminmax``, ``vector_norm``, ``count_nonzero``) that need no temporaries. Only
per-filter results cross to the host, in one transfer; per-layer statistics are combined from
them on the host in float64. Medians and quartiles are selected with numpy on a CPU model
(where sorting is slow) and by one sort of all layers on an accelerator; neither has
``torch.quantile``'s 16M-element input limit.

Conventions (documented in ``docs/log-format.md``):

* ``var`` and ``std`` are population statistics (``ddof=0``); ``median``, ``q1`` and ``q3`` use
  linear interpolation (numpy's default); ``l0`` counts non-zero entries.
* change ratio: ``r = |g| / |w|``, with ``r = 0`` where ``w = 0`` and ``g = 0`` (nothing moves) and
  ``r = inf`` where ``w = 0`` and ``g != 0`` (counted only under the "all" threshold); compared
  with the thresholds in float32. A layer with a NaN gradient has NaN change ratios.
* per-filter ratios and relative changes follow IEEE division (``x / 0`` is inf, ``0 / 0`` NaN);
  the cosine is clamped to [-1, 1] and NaN when either filter is all zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from filterscope.log.layers import Layer
from filterscope.log.schema import FILTER_CHANGE_VARS, FILTER_GRAD_VARS, STATS, THRESHOLDS

_QUANTILES = (0.5, 0.25, 0.75)  # order of "median", "q1", "q3" in STATS
_N_BINS = len(THRESHOLDS) + 1  # one more for NaN ratios, counted nowhere


@dataclass
class Reference:
    """A snapshot's weights, kept to measure the next snapshot's filter changes.

    Attributes
    ----------
    weights : torch.Tensor
        Flat float32 weights (row 0 of :meth:`StatsEngine.flatten`), on the model's device.
    l1, l2 : numpy.ndarray
        float64 L1 and L2 norm of every filter of ``weights``.
    """

    weights: torch.Tensor
    l1: np.ndarray
    l2: np.ndarray


@dataclass
class SnapshotStats:
    """Host-side results of one snapshot, for the layers with statistics only.

    Attributes
    ----------
    weight_stat, grad_stat : numpy.ndarray
        float32 ``(layers, 12)`` in :data:`~filterscope.log.schema.STATS` order.
    change_ratio : numpy.ndarray
        float32 ``(layers, 56)`` in :data:`~filterscope.log.schema.THRESHOLDS` order.
    filters : dict of str to numpy.ndarray
        float32 ``(filters,)`` per variable of :data:`~filterscope.log.schema.FILTER_VARS`.
    reference : Reference
        This snapshot's weights and filter norms, for the next snapshot's change metrics.
    """

    weight_stat: np.ndarray
    grad_stat: np.ndarray
    change_ratio: np.ndarray
    filters: dict[str, np.ndarray]
    reference: Reference


class StatsEngine:
    """Computes every per-layer and per-filter statistic of a snapshot.

    Parameters
    ----------
    layers : sequence of Layer
        The layers with statistics, in log order.
    device : torch.device
        Where the model lives; every reduction over weights runs there.
    quantile_method : {"auto", "partition", "sort"}, default="auto"
        How medians and quartiles are found: ``"partition"`` selects them with numpy on the host
        (fastest on a CPU), ``"sort"`` sorts all layers at once on the device (fastest on
        accelerators); ``"auto"`` picks by device type.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from filterscope.log.layers import discover_layers
    >>> net = nn.Linear(3, 2)
    >>> net.weight.grad = torch.ones_like(net.weight)
    >>> engine = StatsEngine(discover_layers(net), torch.device("cpu"))
    >>> stats = engine.compute(engine.flatten(), previous=None)
    >>> float(stats.grad_stat[0, 3])  # sum of the gradient
    6.0
    """

    def __init__(
        self, layers: Sequence[Layer], device: torch.device, quantile_method: str = "auto"
    ) -> None:
        self.layers = list(layers)
        self.device = device
        if quantile_method == "auto":
            quantile_method = "partition" if device.type == "cpu" else "sort"
        self.quantile_method = quantile_method
        self.filters = np.array([layer.filters for layer in self.layers], dtype=np.int64)
        self.fan_in = np.array([layer.fan_in for layer in self.layers], dtype=np.int64)
        self.layer_sizes = self.filters * self.fan_in
        self.layer_offsets = np.concatenate([[0], np.cumsum(self.layer_sizes)])
        self.filter_offsets = np.concatenate([[0], np.cumsum(self.filters)])
        self.n_params = int(self.layer_offsets[-1])
        self.n_filters = int(self.filter_offsets[-1])
        self._filter_fan_in = np.repeat(self.fan_in, self.filters).astype(np.float64)
        # Ascending thresholds; the last one, inf, is the "all" bin.
        self._edges = torch.as_tensor(THRESHOLDS[::-1].copy(), dtype=torch.float32, device=device)
        self._quantile_index = _quantile_positions(self.layer_sizes)

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Each layer's part of a (..., P) tensor as (..., filters, fan_in), without copying.
        lead = x.shape[:-1]
        return [
            x[..., start:stop].view(*lead, f, k)
            for start, stop, f, k in zip(
                self.layer_offsets[:-1].tolist(),
                self.layer_offsets[1:].tolist(),
                self.filters.tolist(),
                self.fan_in.tolist(),
                strict=True,
            )
        ]

    def flatten(self) -> tuple[torch.Tensor, np.ndarray]:
        """Weights and gradients of every layer as one float32 ``(2, P)`` tensor.

        Returns
        -------
        values : torch.Tensor
            Row 0 holds the weights, row 1 the gradients, filter by filter, layer by layer.
        grad_missing : numpy.ndarray
            bool per layer: True where the gradient is ``None`` (its part of row 1 is zeros).
        """
        values = torch.empty((2, self.n_params), dtype=torch.float32, device=self.device)
        missing = np.zeros(len(self.layers), dtype=bool)
        weights, grads = [], []
        for i, layer in enumerate(self.layers):
            w = layer.weight.detach()
            weights.append(layer.filter_rows(w).reshape(-1))
            g = layer.weight.grad
            if g is None:
                missing[i] = True
                g = torch.zeros_like(w)
            grads.append(layer.filter_rows(g.detach()).reshape(-1))
        torch.cat(weights, out=values[0])
        torch.cat(grads, out=values[1])
        return values, missing

    def reference(self, weights: torch.Tensor) -> Reference:
        """A :class:`Reference` for flat weights (e.g. the last snapshot's, when resuming)."""
        weights = weights.to(self.device, torch.float32)
        parts = [
            torch.stack([torch.linalg.vector_norm(v, o, dim=-1) for o in (1, 2)])
            for v in self._views(weights)
        ]
        l1, l2 = torch.cat(parts, dim=1).double().cpu().numpy()
        return Reference(weights, l1, l2)

    def compute(
        self, flat: tuple[torch.Tensor, np.ndarray], previous: Reference | None
    ) -> SnapshotStats:
        """All statistics of one snapshot.

        Parameters
        ----------
        flat : (torch.Tensor, numpy.ndarray)
            The output of :meth:`flatten`.
        previous : Reference or None
            The previous snapshot's reference, or None (the change metrics are then NaN).

        Returns
        -------
        SnapshotStats
        """
        x, grad_missing = flat
        w, g = x[0], x[1]
        per_filter = []  # rows: mean, var, l1, l0, min, max, each (2, filters)
        for v in self._views(x):
            v_var, v_mean = torch.var_mean(v, dim=-1, correction=0)
            v_min, v_max = torch.aminmax(v, dim=-1)
            v_l1 = torch.linalg.vector_norm(v, 1, dim=-1)
            v_l0 = torch.count_nonzero(v, dim=-1).to(v.dtype)
            per_filter.append(torch.stack([v_mean, v_var, v_l1, v_l0, v_min, v_max]))
        pieces = [torch.cat(per_filter, dim=-1).double().flatten(), self._ratio_counts(w, g)]
        if previous is not None:
            d = w - previous.weights
            both = torch.stack([d.abs(), d * d, w * previous.weights])
            change = [v.sum(dim=-1) for v in self._views(both)]
            pieces.append(torch.cat(change, dim=-1).double().flatten())
        host = torch.cat(pieces).cpu().numpy()  # the one device-to-host transfer

        n_layers, n_filters = len(self.layers), self.n_filters
        cut = np.cumsum([6 * 2 * n_filters, n_layers * _N_BINS])
        filt, counts, change_h = np.split(host, cut)
        mean, var, l1, l0, low, high = filt.reshape(6, 2, n_filters)
        n = self._filter_fan_in
        sq = (var + mean * mean) * n  # sum of squares of each filter
        layer = self._combine(mean, var, l1, l0, low, high)
        layer = np.concatenate([layer, self._quantiles(x, layer)], axis=-1).astype(np.float32)
        layer[1, grad_missing] = np.nan

        counts = counts.reshape(n_layers, _N_BINS)[:, :-1].cumsum(axis=1)
        ratio = (counts / self.layer_sizes[:, None])[:, ::-1].astype(np.float32)
        ratio[grad_missing | np.isnan(layer[1, :, 7])] = np.nan

        w_l2, g_l2 = np.sqrt(sq)
        with np.errstate(divide="ignore", invalid="ignore"):
            grad_rows = [l1[1] / l1[0], g_l2 / w_l2, l1[1], g_l2, np.sqrt(var[0])]
            if previous is None:
                change_rows = [np.full(n_filters, np.nan)] * len(FILTER_CHANGE_VARS)
            else:
                d_l1, d_sq, dot = change_h.reshape(3, n_filters)
                d_l2 = np.sqrt(d_sq)
                cosine = np.clip(dot / (w_l2 * previous.l2), -1.0, 1.0)
                change_rows = [cosine, d_l2, d_l1, d_l1 / previous.l1, d_l2 / previous.l2]
        filter_missing = np.repeat(grad_missing, self.filters)
        for row in grad_rows[:4]:  # filter_std (the last row) needs the weights only
            row[filter_missing] = np.nan
        filters = {
            name: np.asarray(row, dtype=np.float32)
            for name, row in zip(
                FILTER_GRAD_VARS + FILTER_CHANGE_VARS, grad_rows + change_rows, strict=True
            )
        }
        return SnapshotStats(
            weight_stat=layer[0],
            grad_stat=layer[1],
            change_ratio=ratio,
            filters=filters,
            reference=Reference(w.clone(), l1[0], w_l2),
        )

    # ---------------------------------------------------------------- helpers

    def _combine(
        self,
        mean: np.ndarray,
        var: np.ndarray,
        l1: np.ndarray,
        l0: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> np.ndarray:
        # Per-layer statistics from per-filter ones, in float64. Variance by the parallel
        # formula: M2 = sum M2_f + sum n_f (mean_f - mean)^2, which stays accurate.
        starts = self.filter_offsets[:-1]
        n_f = self._filter_fan_in
        n = self.layer_sizes.astype(np.float64)
        total = np.add.reduceat(mean * n_f, starts, axis=1)
        layer_mean = total / n
        spread = mean - np.repeat(layer_mean, self.filters, axis=1)
        m2 = np.add.reduceat(var * n_f + n_f * spread * spread, starts, axis=1)
        layer_var = m2 / n
        sq = np.add.reduceat((var + mean * mean) * n_f, starts, axis=1)
        return np.stack(
            [
                np.maximum.reduceat(high, starts, axis=1),
                np.minimum.reduceat(low, starts, axis=1),
                layer_mean,
                total,
                layer_var,
                np.sqrt(layer_var),
                np.add.reduceat(l0, starts, axis=1),
                np.add.reduceat(l1, starts, axis=1),
                np.sqrt(sq),
            ],
            axis=-1,
        )  # (2, layers, 9)

    def _ratio_counts(self, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # r = |g| / |w|: 0 / 0 is NaN, made 0 (nothing moves); x / 0 is inf ("all" only).
        # bucketize gives the number of edges strictly below r, so r <= edges[j] exactly when its
        # bin is <= j: a per-layer histogram and a cumulative sum give every threshold at once.
        r = torch.nan_to_num(g.abs() / w.abs(), nan=0.0, posinf=torch.inf)
        bins = torch.bucketize(r, self._edges)
        counts = [torch.bincount(b.flatten(), minlength=_N_BINS) for b in self._views(bins)]
        return torch.cat(counts).double()

    def _quantiles(self, x: torch.Tensor, layer: np.ndarray) -> np.ndarray:
        lo, hi, frac = self._quantile_index
        if self.quantile_method == "partition":
            lo_v, hi_v = self._partition(x.cpu().numpy(), lo, hi)
        else:
            lo_v, hi_v = self._sorted(x, lo, hi)
        out = lo_v + (hi_v - lo_v) * frac  # (2, layers, 3)
        # Any NaN makes a layer's quantiles undefined; its l1 (index 7) is NaN then.
        out[np.isnan(layer[..., 7])] = np.nan
        return out

    def _partition(
        self, a: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lo_v = np.empty((2, len(self.layers), 3))
        hi_v = np.empty_like(lo_v)
        for i in range(len(self.layers)):
            start, stop = self.layer_offsets[i], self.layer_offsets[i + 1]
            kth = np.unique(np.concatenate([lo[i], hi[i]]))
            part = np.partition(a[:, start:stop], kth, axis=1)
            lo_v[:, i] = part[:, lo[i]]
            hi_v[:, i] = part[:, hi[i]]
        return lo_v, hi_v

    def _sorted(
        self, x: torch.Tensor, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # One sort for all layers: the key puts the layer index in the high 32 bits and an
        # order-preserving integer image of the float32 value in the low 32 bits.
        bits = x.view(torch.int32).to(torch.int64)
        ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + (1 << 31)
        layer_of = torch.repeat_interleave(
            torch.arange(len(self.layers), device=self.device),
            torch.as_tensor(self.layer_sizes, device=self.device),
        )
        order = torch.sort((layer_of << 32) | ordered, dim=1).indices
        starts = self.layer_offsets[:-1, None]
        pos = np.concatenate([(starts + lo).ravel(), (starts + hi).ravel()])
        index = torch.as_tensor(pos, device=self.device)
        picked = torch.gather(x, 1, order[:, index]).double().cpu().numpy()
        n = lo.size
        return picked[:, :n].reshape(2, -1, 3), picked[:, n:].reshape(2, -1, 3)


def _quantile_positions(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # numpy's "linear" method: position q * (n - 1) between its floor and ceiling elements.
    pos = np.array(_QUANTILES)[None, :] * (sizes[:, None] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, sizes[:, None] - 1)
    return lo, hi, pos - lo


# Keep the stat order in sync with STATS: 9 direct reductions, then the three quantiles.
assert STATS[:9] == ("max", "min", "mean", "sum", "var", "std", "l0", "l1", "l2")
assert STATS[9:] == ("median", "q1", "q3")
