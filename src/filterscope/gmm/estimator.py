"""FilterGMM: one Gaussian mixture per filter, every filter and every K at once.

The scikit-learn-style front end of the GMM engine. :meth:`FilterGMM.fit` validates the input,
splits the filters into chunks (optionally over a ``dask.distributed`` client), runs the batched
EM of :mod:`filterscope.gmm.em` for every K of ``k_range``, and applies the selection and
anomaly rule of :mod:`filterscope.gmm.select`.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils import check_random_state

from filterscope.errors import (
    FilterscopeError,
    InvalidDataError,
    InvalidParameterError,
    NonFiniteError,
)
from filterscope.gmm import em
from filterscope.gmm._parallel import map_chunks
from filterscope.gmm.select import SELECTIONS, select

#: Host memory one chunk of filters may use, in bytes, when ``chunk_size`` is None.
CHUNK_MEMORY = 1 << 30

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Point dtypes kept as they are; other floats (float16, bfloat16, float8) are converted to
#: float32, exactly: numpy has no bfloat16 or float8, and a float16 tensor, a float16 array and
#: their float32 copy then fit alike (the dead-filter test reads the input dtype's rounding).
_FULL_PRECISION = (torch.float32, torch.float64)
#: Device types the batched EM runs on.
_DEVICE_TYPES = ("cpu", "cuda")


__all__ = ["CHUNK_MEMORY", "FITTED_ATTRIBUTES", "FilterGMM", "NotFittedError"]

#: Attributes that :meth:`FilterGMM.fit` learns; reading one before ``fit`` raises
#: :class:`NotFittedError`.
FITTED_ATTRIBUTES = (
    "ks_",
    "k_",
    "labels_",
    "loglik_",
    "lower_bound_",
    "ch_",
    "converged_",
    "n_iter_",
    "cluster_sizes_",
    "weights_",
    "means_",
    "covariances_",
    "outlier_clusters_",
    "anomaly_",
    "anomaly_score_",
    "dead_",
    "outliers_",
    "centre_",
    "scale_",
)


class NotFittedError(FilterscopeError, _SklearnNotFittedError):
    """A :class:`FilterGMM` result was asked for before :meth:`FilterGMM.fit` ran.

    Also scikit-learn's :class:`sklearn.exceptions.NotFittedError` (so a ``ValueError`` and an
    ``AttributeError``: ``hasattr(gmm, "labels_")`` is False before ``fit``). Defined here rather
    than in :mod:`filterscope.errors` because importing scikit-learn takes about a second, which
    ``import filterscope`` avoids; it is importable as ``filterscope.NotFittedError`` and
    ``filterscope.gmm.NotFittedError``.

    Examples
    --------
    >>> from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    >>> issubclass(NotFittedError, SklearnNotFittedError)
    True
    """


class FilterGMM(BaseEstimator):
    """Fit a 2-D Gaussian mixture to every filter's points, choose K, flag anomaly filters.

    For each filter (a cloud of N points in the plane, e.g. the 2-D PCA coordinates of its
    feature maps over N samples) and each K of ``k_range``, a full-covariance mixture is fitted
    by EM from a k-means initialisation, exactly as
    ``sklearn.mixture.GaussianMixture(covariance_type="full", init_params="kmeans")`` would, but
    for all filters and all K together in batched torch code (CPU or CUDA). K is chosen by the
    Calinski–Harabasz index of the hard labels (K ≥ 2), capped by the BIC-best K, which also
    serves as the one-cluster test. A filter is an *anomaly filter* when its chosen clustering isolates a
    small (at most ``outlier_fraction · N`` samples) and well-separated (at least
    ``min_separation``) cluster; those samples are its *outliers*. See ``docs/gmm.md``.

    A parameter out of its range raises :class:`~filterscope.errors.InvalidParameterError` at
    :meth:`fit`, naming the range. The attributes below are learned by :meth:`fit`; reading one
    before ``fit`` raises :class:`NotFittedError` (also scikit-learn's, so
    ``sklearn.utils.validation.check_is_fitted`` works as usual).

    Parameters
    ----------
    k_range : (int, int), default=(1, 8)
        Smallest and largest K, inclusive. K = 1 must be included for the one-cluster test.
    n_init : int, default=1
        Initialisations per filter and K; the fit with the largest lower bound is kept.
    tol : float, default=1e-3
        EM stops when the mean log-likelihood changes by less than ``tol`` (scikit-learn's rule).
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance of the *standardised* points (each filter's
        points centred and divided by their RMS spread ``s``), i.e. ``reg_covar · s²`` in the
        points' units, so that the fit, the chosen K and the flags do not depend on the units
        of the points (scikit-learn's ``GaussianMixture`` adds it in the data's own units; on
        points with ``s`` near 1 the two agree). Raised to at least 1e-4 in float32 (1e-12 in
        float64) for accuracy. A dead filter's single component gets ``reg_covar · I`` in the
        points' units (it has no scale).
    max_iter : int, default=100
        EM iterations at most.
    outlier_fraction : float, default=0.05
        Clusters holding at most this fraction of the samples (and at least one) are small.
    min_separation : float, default=3.5
        A small cluster holds outliers only if its Mahalanobis separation from every non-small
        cluster (summed covariances) is at least this.
    selection : {"ch-bic", "ch"}, default="ch-bic"
        How K is chosen. ``"ch-bic"``: K = 1 when one Gaussian has the lowest BIC, else the
        Calinski–Harabasz-best K up to the BIC-best K, or the BIC-best K when only it isolates
        a small, well-separated cluster. ``"ch"``: the CH-best K ≥ 2, or 1 when the K = 2 split
        fails the Duda–Hart test. See ``docs/gmm.md`` for both rules' measured error rates.
    random_state : int, RandomState or None, default=0
        Seeds the k-means++ initialisations; the same seed gives the same result on any device,
        chunking or client.
    device : str, torch.device or None, default=None
        Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:0"`` (a GPU index) or a
        :class:`torch.device` of those types; None picks CUDA when available, else the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Compute precision. Points are standardised per filter in float64 first (centred and
        divided by their RMS spread), so float32 is accurate and points of any finite scale,
        1e-200 or 1e200 alike, give the same fit.
    chunk_size : int or None, default=None
        Filters per chunk; None sizes chunks to about 1 GiB of host memory (shared by the
        chunks that run at once), and into at least ``n_jobs`` chunks.
    n_jobs : int or None, default=None
        On the CPU, fit this many chunks side by side in threads, each running torch on one
        thread (torch's own thread count is set to 1 during the fit and restored after).
        Independent chunks use two cores better than torch's threads inside every small
        operation. None: ``torch.get_num_threads()``; -1: every core. Ignored on CUDA and with
        a ``client``. Results do not depend on it.
    client : dask.distributed.Client or None, default=None
        Spread the chunks over this client's workers.

    Attributes
    ----------
    ks_ : ndarray (nK,)
        The K values fitted.
    k_ : ndarray (F,)
        Chosen K per filter.
    labels_ : ndarray (F, N) int8
        Hard labels of the chosen fit.
    loglik_ : ndarray (F, nK)
        Mean per-sample log-likelihood of each K's final fit (``GaussianMixture.score``), a
        density in the points' units: multiplying a filter's points by ``c`` shifts it by
        ``-2 log c``. Finite at any scale.
    lower_bound_ : ndarray (F, nK)
        scikit-learn's ``lower_bound_`` of each fit, in the same units.
    ch_ : ndarray (F, nK)
        Calinski–Harabasz index of each K's hard labels; NaN for K = 1.
    converged_, n_iter_ : ndarray (F, nK)
        EM convergence flag and iterations per fit.
    cluster_sizes_ : ndarray (F, Kmax)
        Samples per component of the chosen fit (hard labels), 0-padded.
    weights_, means_, covariances_ : ndarray (F, Kmax), (F, Kmax, 2), (F, Kmax, 2, 2)
        Parameters of the chosen mixture in the points' units, zero-padded beyond K. For
        points spread beyond about 1e154 (or under 1e-154) a covariance is outside float64's
        range and is reported as inf (or 0), with a ``RuntimeWarning``; the fit itself is
        computed on standardised points and is unaffected.
    centre_, scale_ : ndarray (F, 2), (F,)
        Each filter's standardisation: the points' mean and RMS spread
        ``s = sqrt((var_x + var_y) / 2)`` (0 for dead filters). ``(means_ - centre_) / s`` and
        ``covariances_ / s²`` are the mixture of the standardised points.
    outlier_clusters_ : ndarray (F, Kmax) bool
        Components of the chosen fit that hold outlier samples.
    anomaly_ : ndarray (F,) bool
        Anomaly filters.
    anomaly_score_ : ndarray (F,)
        Separation of the filter's most separated small cluster (0 without one); rank by it.
    outliers_ : list of F int arrays
        Sample indices of each filter's outliers (empty unless ``anomaly_``).
    dead_ : ndarray (F,) bool
        Filters whose points are all equal (K = 1, never anomalous).

    Examples
    --------
    >>> from filterscope.gmm.synthetic import make_filter_points
    >>> points, truth = make_filter_points(12, 400, kinds=("gaussian", "planted"), random_state=0)
    >>> gmm = FilterGMM(device="cpu").fit(points)
    >>> gmm.k_.shape, gmm.labels_.shape, gmm.loglik_.shape
    ((12,), (12, 400), (12, 8))
    >>> bool(gmm.anomaly_[~truth.has_outliers].any())  # no clean filter flagged
    False
    >>> float(gmm.anomaly_[truth.has_outliers].mean()) >= 0.8  # planted groups found
    True
    >>> ds = gmm.to_dataset()
    >>> sorted(ds.sizes.items())[:3]
    [('component', 8), ('filter', 12), ('k', 8)]
    """

    def __init__(
        self,
        k_range: tuple[int, int] = (1, 8),
        n_init: int = 1,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        outlier_fraction: float = 0.05,
        min_separation: float = 3.5,
        selection: str = "ch-bic",
        random_state: int | np.random.RandomState | None = 0,
        device: str | torch.device | None = None,
        dtype: str = "float32",
        chunk_size: int | None = None,
        n_jobs: int | None = None,
        client: Any = None,
    ) -> None:
        self.k_range = k_range
        self.n_init = n_init
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.outlier_fraction = outlier_fraction
        self.min_separation = min_separation
        self.selection = selection
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.client = client

    # -- validation ----------------------------------------------------------------------------

    def _check_params(self) -> tuple[tuple[int, ...], torch.dtype, torch.device]:
        kr = self.k_range
        if (
            not isinstance(kr, tuple | list)
            or len(kr) != 2
            or not all(_is_int(k) for k in kr)
            or not 1 <= kr[0] <= kr[1] <= 127
        ):
            raise InvalidParameterError(
                f"k_range must be a pair (k_min, k_max) of integers with 1 <= k_min <= k_max "
                f"<= 127, got {kr!r}; e.g. k_range=(1, 8)."
            )
        # name -> (valid?, the valid range)
        checks = {
            "n_init": (_is_int(self.n_init) and self.n_init >= 1, "an integer ≥ 1"),
            "tol": (_is_real(self.tol) and self.tol >= 0, "a finite number ≥ 0"),
            "reg_covar": (_is_real(self.reg_covar) and self.reg_covar > 0, "a finite number > 0"),
            "max_iter": (_is_int(self.max_iter) and self.max_iter >= 0, "an integer ≥ 0"),
            "outlier_fraction": (
                _is_real(self.outlier_fraction) and 0 < self.outlier_fraction < 0.5,
                "a number with 0 < outlier_fraction < 0.5",
            ),
            "min_separation": (
                _is_real(self.min_separation) and self.min_separation >= 0,
                "a finite number ≥ 0",
            ),
            "chunk_size": (
                self.chunk_size is None or (_is_int(self.chunk_size) and self.chunk_size >= 1),
                "None (sized to memory) or an integer ≥ 1",
            ),
            "n_jobs": (
                self.n_jobs is None
                or (_is_int(self.n_jobs) and (self.n_jobs >= 1 or self.n_jobs == -1)),
                "None, -1 (every core) or an integer ≥ 1",
            ),
        }
        for name, (ok, valid) in checks.items():
            if not ok:
                default = self._get_default(name)
                raise InvalidParameterError(
                    f"{name} must be {valid}, got {getattr(self, name)!r} (default: {default!r})."
                )
        if self.selection not in SELECTIONS:
            raise InvalidParameterError(
                f"selection must be one of {SELECTIONS}, got {self.selection!r}."
            )
        dtype = _DTYPES.get(_dtype_name(self.dtype))
        if dtype is None:
            raise InvalidParameterError(
                f"dtype (the compute precision) must be 'float32' or 'float64', got "
                f"{self.dtype!r}; points of any float dtype are accepted whatever it is."
            )
        return tuple(range(int(kr[0]), int(kr[1]) + 1)), dtype, _check_device(self.device)

    @classmethod
    def _get_default(cls, name: str) -> Any:
        return inspect.signature(cls.__init__).parameters[name].default

    def _random_state(self) -> np.random.RandomState:
        try:
            return check_random_state(self.random_state)
        except ValueError:
            raise InvalidParameterError(
                f"random_state must be None, an integer in [0, 2**32 - 1] or a "
                f"numpy.random.RandomState, got {self.random_state!r}."
            ) from None

    # -- fitted state --------------------------------------------------------------------------

    if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any attribute

        def __getattr__(self, name: str) -> Any:
            # Only called when normal lookup fails: a fitted attribute read before fit().
            if name in FITTED_ATTRIBUTES:
                raise NotFittedError(
                    f"FilterGMM.{name} is learned by fit(), and this FilterGMM is not fitted "
                    "yet; call fit(points) first."
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __sklearn_is_fitted__(self) -> bool:
        return "k_" in vars(self)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, points: Any, y: None = None) -> FilterGMM:
        """Fit every filter's mixtures for every K and apply the selection and anomaly rule.

        Parameters
        ----------
        points : ndarray, torch.Tensor or xarray.Dataset
            Shape (F, N, 2): F filters, N samples, 2 coordinates. A Dataset must hold
            ``points(filter, sample, pc)`` (as returned by :func:`filterscope.gmm.extract`);
            its coordinates on ``filter`` and ``sample`` are carried into :meth:`to_dataset`.
            Real numbers of any float or integer dtype; float16 and bfloat16 (numpy or torch)
            are converted to float32 first (exactly), so the fit equals that of the float32
            copy.
        y : None
            Ignored.

        Returns
        -------
        self : FilterGMM

        Raises
        ------
        InvalidParameterError
            A parameter out of its range (e.g. ``n_init=0``, ``device="bogus"``, or a CUDA
            device where torch sees none); the message names the valid range.
        InvalidDataError
            Wrong shape or dtype, or no more samples than the largest K.
        NonFiniteError
            NaN or Inf among the points (the message names the filters).

        Warns
        -----
        RuntimeWarning
            When a covariance of the chosen mixtures is outside float64's range in the points'
            units (points spread beyond about 1e154 or under 1e-154).
        """
        ks, dtype, device = self._check_params()
        pts, self._filter_coords, self._sample_coords = _as_points(points)
        f, n, _ = pts.shape
        if n <= ks[-1]:
            raise InvalidDataError(
                f"FilterGMM needs more samples than the largest K: got N={n} samples per filter "
                f"and k_range={tuple(self.k_range)!r}; pass more samples or lower k_range's "
                "upper end."
            )
        _check_finite(pts, self._filter_coords)
        rng = self._random_state()
        # drawn initialisation-major so that n_init=1 is the first of any n_init's draws
        uniforms = rng.random_sample((self.n_init, f, em.n_uniforms(ks[-1]))).transpose(1, 0, 2)
        jobs = 1 if self.client is not None or device.type == "cuda" else self._jobs(f)
        chunk = self.chunk_size or min(
            max(1, CHUNK_MEMORY // (jobs * n * (80 + 2 * len(ks)))), -(-f // jobs)
        )
        budget = em.CUDA_BUDGET if device.type == "cuda" else em.CPU_BUDGET
        kwargs = {
            "ks": ks,
            "tol": float(self.tol),
            "reg_covar": float(self.reg_covar),
            "max_iter": int(self.max_iter),
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(device),
            "budget": budget,
        }
        bounds = [(i, min(i + chunk, f)) for i in range(0, f, chunk)]
        if self.client is not None:
            futures = self.client.map(
                _fit_chunk,
                [pts[a:b] for a, b in bounds],
                [uniforms[a:b] for a, b in bounds],
                **kwargs,
                pure=False,
            )
            parts = self.client.gather(futures)
        else:

            def run(ab: tuple[int, int]) -> dict[str, np.ndarray]:
                return _fit_chunk(pts[ab[0] : ab[1]], uniforms[ab[0] : ab[1]], **kwargs)

            parts = map_chunks(run, bounds, jobs)
        res = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        self._set_results(res, np.asarray(ks), n)
        return self

    def _jobs(self, n_filters: int) -> int:
        """Chunks fitted side by side on the CPU (at most one per filter)."""
        if self.n_jobs is None:
            jobs = torch.get_num_threads()
        elif self.n_jobs == -1:
            jobs = os.cpu_count() or 1
        else:
            jobs = int(self.n_jobs)
        return max(1, min(jobs, n_filters))

    def _set_results(self, res: dict[str, np.ndarray], ks: np.ndarray, n: int) -> None:
        sel = select(
            res["label_stats"],
            res["loglik"],
            ks,
            n,
            outlier_fraction=float(self.outlier_fraction),
            min_separation=float(self.min_separation),
            selection=self.selection,
            dead=res["dead"],
        )
        rows = np.arange(res["dead"].shape[0])
        j = sel.k_index
        self.ks_ = ks
        self.k_ = sel.k
        self.labels_ = res["labels"][rows, j]
        self.loglik_ = res["loglik"]
        self.lower_bound_ = res["lower_bound"]
        self.ch_ = sel.ch
        self.converged_ = res["converged"]
        self.n_iter_ = res["n_iter"]
        self.cluster_sizes_ = sel.cluster_sizes
        self.weights_ = res["weights"][rows, j]
        self.means_ = res["means"][rows, j]
        self.covariances_ = res["covariances"][rows, j]
        self.outlier_clusters_ = sel.outlier_clusters
        self.anomaly_ = sel.anomaly
        self.anomaly_score_ = sel.anomaly_score
        self.dead_ = res["dead"]
        member = np.take_along_axis(sel.outlier_clusters, self.labels_.astype(np.intp), axis=1)
        self.outliers_ = [np.flatnonzero(m) for m in member]
        self.centre_ = res["centre"]
        self.scale_ = res["scale"]
        _warn_unrepresentable_covariances(self)

    # -- output --------------------------------------------------------------------------------

    def to_dataset(self) -> xr.Dataset:
        """The fit as a labelled :class:`xarray.Dataset`.

        Dims ``filter``, ``k`` (the fitted K values), ``sample``, ``component`` (0..Kmax-1),
        ``pc`` and ``pc_col`` (0, 1). Variables: ``n_clusters`` (chosen K), ``labels``,
        ``outlier`` (bool, filter × sample), ``loglik``, ``lower_bound``, ``ch``, ``converged``,
        ``n_iter`` (filter × k), ``cluster_size``, ``weight``, ``outlier_cluster``
        (filter × component), ``mean`` (+ pc), ``covariance`` (+ pc, pc_col), ``anomaly``,
        ``anomaly_score``, ``dead`` (filter). Coordinates on ``filter`` and ``sample`` of a
        Dataset passed to :meth:`fit` are copied; the parameters are in ``attrs``.

        Raises
        ------
        NotFittedError
            Before :meth:`fit` (also scikit-learn's ``NotFittedError``).

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> ds = FilterGMM(k_range=(1, 3), device="cpu").fit(rng.normal(size=(2, 50, 2)))
        >>> ds = ds.to_dataset()
        >>> ds.ch.dims, ds.k.values.tolist()
        (('filter', 'k'), [1, 2, 3])
        """
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                "this FilterGMM is not fitted yet; call fit(points) before to_dataset()."
            )
        f, n = self.labels_.shape
        k_max = self.weights_.shape[1]
        outlier = np.zeros((f, n), dtype=bool)
        for i, idx in enumerate(self.outliers_):
            outlier[i, idx] = True
        fk, fc = ("filter", "k"), ("filter", "component")
        ds = xr.Dataset(
            {
                "n_clusters": ("filter", self.k_),
                "labels": (("filter", "sample"), self.labels_),
                "outlier": (("filter", "sample"), outlier),
                "loglik": (fk, self.loglik_),
                "lower_bound": (fk, self.lower_bound_),
                "ch": (fk, self.ch_),
                "converged": (fk, self.converged_),
                "n_iter": (fk, self.n_iter_),
                "cluster_size": (fc, self.cluster_sizes_),
                "weight": (fc, self.weights_),
                "outlier_cluster": (fc, self.outlier_clusters_),
                "mean": ((*fc, "pc"), self.means_),
                "covariance": ((*fc, "pc", "pc_col"), self.covariances_),
                "anomaly": ("filter", self.anomaly_),
                "anomaly_score": ("filter", self.anomaly_score_),
                "dead": ("filter", self.dead_),
            },
            coords={
                "filter": np.arange(f, dtype=np.int64),
                "sample": np.arange(n, dtype=np.int64),
                "k": self.ks_.astype(np.int64),
                "component": np.arange(k_max, dtype=np.int64),
                "pc": np.array([0, 1], dtype=np.int64),
                "pc_col": np.array([0, 1], dtype=np.int64),
            },
            attrs={
                "k_range": list(self.k_range),
                "n_init": int(self.n_init),
                "tol": float(self.tol),
                "reg_covar": float(self.reg_covar),
                "max_iter": int(self.max_iter),
                "outlier_fraction": float(self.outlier_fraction),
                "min_separation": float(self.min_separation),
                "selection": str(self.selection),
                "dtype": str(self.dtype),
            },
        )
        return ds.assign_coords({**self._filter_coords, **self._sample_coords})


def _check_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device` FilterGMM can compute on, or an
    InvalidParameterError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = "'cpu', 'cuda', 'cuda:0' (a GPU index), a torch.device of those, or None"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidParameterError(
            f"device={device!r} is not a device FilterGMM can use; use {valid} (None picks CUDA "
            "when available)."
        ) from None
    if dev.type not in _DEVICE_TYPES:
        raise InvalidParameterError(
            f"device={device!r} is a {dev.type!r} device; FilterGMM computes on the CPU or a "
            f"CUDA GPU: use {valid}."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidParameterError(
                f"device={device!r} but torch sees no CUDA device; use device='cpu' "
                "or device=None (picks CUDA when available)."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InvalidParameterError(
                f"device={device!r} but torch sees {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}; pick one of those or device='cuda'."
            )
    return dev


def _warn_unrepresentable_covariances(gmm: FilterGMM) -> None:
    """Warn when a live filter's chosen covariances over- or underflowed float64 on the way
    back to the points' units (the fit, in standardised units, is unaffected)."""
    cov = gmm.covariances_
    diag = np.stack([cov[..., 0, 0], cov[..., 1, 1]], axis=-1)  # (F, Kmax, 2)
    active = (gmm.weights_ > 0)[..., None]
    bad = ~np.isfinite(cov).all(axis=(-2, -1)) | (
        active & (np.abs(diag) < np.finfo(np.float64).tiny)
    ).any(axis=-1)
    filters = np.flatnonzero(bad.any(axis=1) & ~gmm.dead_)
    if filters.size:
        i = int(filters[0])
        warnings.warn(
            f"covariances_ of {filters.size} filter(s) (e.g. filter {i}, whose points spread "
            f"s = {gmm.scale_[i]:.3g}) lie outside float64's range in the points' units and are "
            "reported as inf or 0; labels, log-likelihoods and flags are unaffected (they are "
            "computed on standardised points). To read these covariances, divide the points "
            "by a constant near their spread before fitting.",
            RuntimeWarning,
            stacklevel=4,  # the caller of fit()
        )


def _dtype_name(dtype: Any) -> str:
    """'float32' for "float32", np.float32 or torch.float32 alike."""
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _fit_chunk(points: np.ndarray, uniforms: np.ndarray, **kwargs: Any) -> dict[str, np.ndarray]:
    """Top-level (so dask can ship it) wrapper of :func:`filterscope.gmm.em.fit_chunk`."""
    kwargs["dtype"] = _DTYPES[kwargs["dtype"]]
    return em.fit_chunk(points, uniforms, **kwargs)


def _as_points(points: Any) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Points (F, N, 2) as a numpy array, plus coordinates on ``filter`` and ``sample``."""
    filter_coords: dict[str, Any] = {}
    sample_coords: dict[str, Any] = {}
    if isinstance(points, xr.Dataset):
        if "points" not in points:
            raise InvalidDataError(
                "a Dataset passed to FilterGMM.fit must hold a 'points' variable with dims "
                f"(filter, sample, pc); it has {sorted(map(str, points.data_vars))}."
            )
        points = points["points"]
    if isinstance(points, xr.DataArray):
        if set(points.dims) != {"filter", "sample", "pc"}:
            raise InvalidDataError(
                f"points must have dims (filter, sample, pc); got {points.dims}. Rename or "
                "transpose them, e.g. da.rename({'unit': 'filter'})."
            )
        da = points.transpose("filter", "sample", "pc")
        for name, coord in da.coords.items():
            if coord.dims == ("filter",):
                filter_coords[str(name)] = ("filter", coord.values)
            elif coord.dims == ("sample",):
                sample_coords[str(name)] = ("sample", coord.values)
        arr = np.asarray(da.values)
    elif isinstance(points, torch.Tensor):
        tensor = points.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in _FULL_PRECISION:
            tensor = tensor.float()
        try:
            arr = tensor.numpy()
        except TypeError:  # a dtype numpy lacks, e.g. a quantised one
            raise InvalidDataError(
                _dtype_message(str(tensor.dtype).removeprefix("torch."))
            ) from None
    else:
        arr = np.asarray(points)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] < 1:
        raise InvalidDataError(
            f"points must have shape (filters, samples, 2) with at least one filter; got shape "
            f"{arr.shape}. Reduce each filter's feature maps to 2-D first "
            "(filterscope.gmm.extract does)."
        )
    if arr.dtype.kind not in "fiu":
        raise InvalidDataError(_dtype_message(str(arr.dtype)))
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    elif arr.dtype.itemsize < 4:
        arr = arr.astype(np.float32)  # float16, exactly: as a torch float16 tensor is
    return arr, filter_coords, sample_coords


def _dtype_message(dtype: str) -> str:
    return (
        f"points must be real numbers, got dtype {dtype}; FilterGMM takes float64, float32, "
        "float16 and bfloat16 (lower-precision floats are converted to float32) and integers "
        "(converted to float64): convert the points to one of these first, e.g. float32."
    )


def _check_finite(pts: np.ndarray, filter_coords: dict[str, Any]) -> None:
    bad = np.flatnonzero(~np.isfinite(pts).all(axis=(1, 2)))
    if bad.size == 0:
        return
    names = []
    for i in bad[:5]:
        desc = [f"{key}={v[1][i].item()!r}" for key, v in filter_coords.items() if key != "filter"]
        names.append(f"filter {i}" + (f" ({', '.join(desc)})" if desc else ""))
    more = f" and {bad.size - 5} more" if bad.size > 5 else ""
    raise NonFiniteError(
        f"points hold NaN or Inf in {', '.join(names)}{more}; every point must be finite. "
        "Check the feature maps of these filters (e.g. a diverged model) or drop them."
    )
