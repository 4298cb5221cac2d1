"""scikit-learn estimators over the package's pure-function core.

They validate, seed, call the core and store fitted attributes, as ``sklearn.cluster.KMeans`` does
around its private Lloyd loop. Fitted arrays are NumPy arrays; the computation is torch on the CPU, in
the input's precision (float32 or float64).

Every method that takes rows (``fit``, ``predict``, ``predict_proba``, ``transform``, ``score``,
``score_samples``) goes through the data model first: :func:`~kmeans_limit.inference.data.prepare_data`
decides once whether to centre the rows given, and the fitted centroids are moved into the same frame
(:meth:`~kmeans_limit.inference.data.Data.to_rows`) before any kernel sees them. Distances, densities
and responsibilities do not change under the shift, but their rounding does: on data far from the
origin compared with their spread (float32 Old Faithful plus 1e4, say) the uncentred expansion
``‖x‖² − 2x·μ + ‖μ‖²`` keeps no correct digit. Fitted centroids are stored in the data's units.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._sklearn_glue import array_like, seed_from, to_numpy, to_torch
from .inference import anneal, em, kmeans_plusplus
from .inference.data import Data, prepare_data
from .inference.kernels import chunk_rows, log_responsibilities, nearest_centroid, squared_distances
from .inference.sampling import sample_from
from .inference.validation import check_sigma

__all__ = ["AnnealedKMeans", "SphericalGMM"]


class _SphericalMixtureBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """What both estimators share: input validation, centroid distances, responsibilities, sampling."""

    def _validate(self, X, *, reset: bool) -> torch.Tensor:
        return to_torch(
            validate_data(self, array_like(X), dtype=[np.float64, np.float32], reset=reset, copy=False)
        )

    def _sample_weight(self, sample_weight, X: torch.Tensor) -> torch.Tensor | None:
        if sample_weight is None:
            return None
        weight = _check_sample_weight(
            array_like(sample_weight), X.numpy(), dtype=X.numpy().dtype, ensure_non_negative=True
        )
        return to_torch(weight)

    def _prepare(self, X, sample_weight=None, *, reset: bool) -> Data:
        """``X`` (and its weights) validated and put in the kernels' frame by ``prepare_data``."""
        X = self._validate(X, reset=reset)
        return prepare_data(X, self._sample_weight(sample_weight, X))

    def _fitted(self, X, sample_weight=None) -> tuple[Data, torch.Tensor]:
        """The rows of ``X`` as the kernels see them, and the fitted centroids moved to their frame.

        Returns
        -------
        data : Data
        means : tensor of shape (n_clusters, n_features)
            ``cluster_centers_ − data.offset``, in the rows' dtype.
        """
        check_is_fitted(self)
        data = self._prepare(X, sample_weight, reset=False)
        return data, data.to_rows(torch.from_numpy(self.cluster_centers_))

    def _log_weights(self, data: Data) -> torch.Tensor:
        return torch.from_numpy(self.weights_).to(data.dtype).log()

    def transform(self, X) -> np.ndarray:
        """Euclidean distances to the centroids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
        """
        data, means = self._fitted(X)
        out = torch.empty(data.n_samples, means.shape[0], dtype=data.dtype)
        for rows in chunk_rows(data.n_samples, means.shape[0]):
            out[rows] = squared_distances(data.rows[rows], means).sqrt()
        return to_numpy(out)

    def _soft_assign(
        self, data: Data, means: torch.Tensor, sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Responsibilities (n_samples, n_clusters) and log-densities (n_samples,) at σ, chunked.

        ``means`` are in the frame of ``data.rows``.
        """
        log_weights = self._log_weights(data)
        gamma = torch.empty(data.n_samples, means.shape[0], dtype=data.dtype)
        log_density = torch.empty(data.n_samples, dtype=data.dtype)
        for rows in chunk_rows(data.n_samples, means.shape[0]):
            log_gamma, log_density[rows] = log_responsibilities(data.rows[rows], means, log_weights, sigma)
            gamma[rows] = log_gamma.exp()
        return gamma, log_density

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Generate data from the fitted model by ancestral sampling through the Pyro program.

        Parameters
        ----------
        n_samples : int, default 1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            The component each row was drawn from.
        """
        check_is_fitted(self)
        means = torch.from_numpy(self.cluster_centers_)
        weights = torch.from_numpy(self.weights_).to(means.dtype)
        weights = weights / weights.sum()
        draws = sample_from(
            means, n_samples, weights=weights, sigma=self.sigma_, seed=seed_from(self.random_state)
        )
        return to_numpy(draws.x), to_numpy(draws.z)

    @property
    def _n_features_out(self) -> int:
        return self.cluster_centers_.shape[0]


class AnnealedKMeans(_SphericalMixtureBase):
    """Hard k-means found by deterministic annealing of the shared σ of a spherical Gaussian mixture.

    σ is walked down from just above the first phase transition to 0, with EM at each σ, and the fit
    ends with Lloyd's algorithm at σ = 0: the result is a Lloyd fixed point.

    Parameters
    ----------
    n_clusters : int, default 8
    sigma_start, sigma_end : float, optional
        The schedule's ends (defaults: just above σ_c = sqrt(λ_max(Cov X)), and the routine's own end).
    cooling : float in (0, 1), optional
        ``path="levels"`` (default 0.9): each split is made at σ = ``cooling`` × √λmax of the split
        cluster's (Voronoi cell's) covariance, or at the current σ if that is lower; after the last
        split σ falls by ``cooling**4`` a level (the number of levels follows the splits, not
        ``cooling``). ``path="dense"`` (default 0.97): the ratio of consecutive σ levels (closer to
        1 gives more levels, never fewer). See ``anneal``.
    weights : {"learn", "equal"}, default "learn"
        Whether EM learns the mixing weights during annealing.
    path : {"levels", "dense"}, default "levels"
        What ``path_`` records: the fast schedule's few levels, or the dense equilibrium path on a
        fine σ grid (slower; for pictures). With ``"dense"``, ``path_``, ``split_sigmas_`` and
        ``critical_sigmas_`` are the dense path's, and the centroids are still the fast
        schedule's split-merge-polished Lloyd fixed point (see ``anneal``).
    random_state : int, RandomState or None, default 0
        Seeds the perturbations that let centroids split.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
    inertia_ : float
    weights_ : ndarray of shape (n_clusters,)
        Fraction of the (weighted) data assigned to each centroid.
    sigma_ : float
        σ̂ = sqrt(inertia / (N·D)): the maximum-likelihood σ given the hard fit (k-means itself does
        not identify σ).
    path_ : record
        The annealing path (σ, means, weights, log-likelihood, entropy, number of distinct centroids).
    split_sigmas_ : ndarray of shape (n_clusters - 1,)
        The σ at which each split was made, in order (non-increasing; 0 for splits made in the
        k-means limit itself; with ``path="dense"`` the grid level at which each child was born).
        The bifurcation and entropy plots mark these.
    critical_sigmas_ : ndarray of shape (n_clusters - 1,)
        The critical σ of each split: ``sqrt(λ_max)`` of the split cluster's responsibility-weighted
        covariance at the level it was split from (the cluster is unstable below it). Not the σ of
        the split: annealing makes one split at a time, so it may split a cluster well below its
        critical σ.
    n_iter_ : int
    n_features_in_ : int

    Notes
    -----
    Rose, Gurewitz & Fox (1990); Rose (1998). The temperature is T = 2σ²; the first split happens at
    σ_c² = λ_max(Cov X).
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        sigma_start=None,
        sigma_end=None,
        cooling=None,
        weights="learn",
        random_state=0,
        path="levels",
    ):
        self.n_clusters = n_clusters
        self.sigma_start = sigma_start
        self.sigma_end = sigma_end
        self.cooling = cooling
        self.weights = weights
        self.random_state = random_state
        self.path = path

    def fit(self, X, y=None, sample_weight=None) -> AnnealedKMeans:
        """Anneal σ down to 0 on ``X`` of shape (n_samples, n_features)."""
        data = self._prepare(X, sample_weight, reset=True)
        result = anneal(
            data.rows,
            self.n_clusters,
            sigma_start=self.sigma_start,
            sigma_end=self.sigma_end,
            cooling=self.cooling,
            weights=self.weights,
            seed=seed_from(self.random_state),
            sample_weight=data.weight,
            path=self.path,
        )
        self.cluster_centers_ = to_numpy(data.to_data(result.means))
        self.labels_ = to_numpy(result.labels)
        self.inertia_ = float(result.inertia)
        self.weights_ = to_numpy(result.weights)
        self.sigma_ = float(result.sigma_star)
        self.path_ = result.path._replace(means=data.to_data(result.path.means))
        self.split_sigmas_ = to_numpy(result.split_sigmas)
        self.critical_sigmas_ = to_numpy(result.critical_sigmas)
        self.n_iter_ = int(result.n_iter)
        return self

    def predict(self, X) -> np.ndarray:
        """The nearest centroid of each row (the σ = 0 responsibilities), of shape (n_samples,)."""
        data, means = self._fitted(X)
        return to_numpy(nearest_centroid(data.rows, means)[0])

    def predict_proba(self, X, sigma: float | None = None) -> np.ndarray:
        """Responsibilities at σ (default ``sigma_``), with the fitted weights.

        Returns
        -------
        ndarray of shape (n_samples, n_clusters)
            One-hot at σ = 0.
        """
        data, means = self._fitted(X)
        sigma = self.sigma_ if sigma is None else check_sigma(sigma)
        return to_numpy(self._soft_assign(data, means, sigma)[0])

    def score(self, X, y=None, sample_weight=None) -> float:
        """Minus the inertia ``Σ_n w_n min_k ‖x_n − μ_k‖²`` of ``X`` at the fitted centroids.

        Higher is better, as for ``sklearn.cluster.KMeans``; the sum is taken in float64.
        """
        data, means = self._fitted(X, sample_weight)
        sq_dist = nearest_centroid(data.rows, means)[1]
        if data.weight is not None:
            sq_dist = sq_dist * data.weight
        return -sq_dist.sum(dtype=torch.float64).item()


class SphericalGMM(_SphericalMixtureBase):
    """Spherical Gaussian mixture with one shared σ, fitted by EM (soft k-means when σ is fixed).

    Parameters
    ----------
    n_clusters : int, default 8
    sigma : float > 0, optional
        Fixes σ; learned by EM when ``None``.
    weights : {"learn", "equal"}, default "learn"
    init : {"k-means++", "anneal"} or array-like of shape (n_clusters, n_features), default "k-means++"
        Initial means: greedy k-means++ (seeded, one per ``n_init``), the annealed hard k-means
        solution, or given centroids.
    n_init : int, default 1
        Restarts; the one with the highest log-likelihood is kept.
    max_iter : int, default 100
    tol : float, default 1e-6
        EM stops when the log-likelihood per sample improves by less than this.
    random_state : int, RandomState or None, default 0

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    means_ : ndarray of shape (n_clusters, n_features)
        The same array as ``cluster_centers_`` (scikit-learn's GaussianMixture name).
    weights_ : ndarray of shape (n_clusters,)
    sigma_ : float
    labels_ : ndarray of shape (n_samples,)
        Most responsible component of each training row.
    lower_bound_ : float
        Log-likelihood per sample of the training data at the fit (EM's objective).
    converged_ : bool
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        sigma=None,
        weights="learn",
        init="k-means++",
        n_init=1,
        max_iter=100,
        tol=1e-6,
        random_state=0,
    ):
        self.n_clusters = n_clusters
        self.sigma = sigma
        self.weights = weights
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _initial_means(self, data: Data, seed) -> list[torch.Tensor]:
        """The initial means, of shape (n_clusters, n_features), in the frame of ``data.rows``."""
        if isinstance(self.init, str) and self.init == "k-means++":
            rng = np.random.default_rng(seed)
            seeds = rng.integers(np.iinfo(np.int32).max, size=self.n_init)
            return [
                kmeans_plusplus(data.rows, self.n_clusters, seed=int(s), sample_weight=data.weight)
                for s in seeds
            ]
        if isinstance(self.init, str) and self.init == "anneal":
            return [anneal(data.rows, self.n_clusters, seed=seed, sample_weight=data.weight).means]
        if isinstance(self.init, str):
            raise ValueError(f"init={self.init!r} should be 'k-means++', 'anneal' or an array of centroids")
        init = torch.as_tensor(np.asarray(self.init, dtype=np.float64))
        if init.shape != (self.n_clusters, data.n_features):
            raise ValueError(
                f"init of shape {tuple(init.shape)} should have shape ({self.n_clusters}, {data.n_features})"
            )
        return [data.to_rows(init)]

    def fit(self, X, y=None, sample_weight=None) -> SphericalGMM:
        """EM from each initialisation on ``X`` of shape (n_samples, n_features); keep the best."""
        data = self._prepare(X, sample_weight, reset=True)
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, numbers.Integral) or self.n_init < 1:
            raise ValueError(f"n_init={self.n_init!r} should be an integer >= 1")
        best = None
        for init in self._initial_means(data, seed_from(self.random_state)):
            result = em(
                data.rows,
                init,
                sigma=self.sigma,
                weights=self.weights,
                max_iter=self.max_iter,
                tol=self.tol,
                sample_weight=data.weight,
            )
            if best is None or result.log_likelihood > best.log_likelihood:
                best = result
        total_weight = data.n_samples if data.weight is None else data.weight.sum().item()
        self.cluster_centers_ = to_numpy(data.to_data(best.means))
        self.means_ = self.cluster_centers_
        self.weights_ = to_numpy(best.weights)
        self.sigma_ = float(best.sigma)
        self.lower_bound_ = float(best.log_likelihood) / total_weight
        self.converged_ = bool(best.converged)
        self.n_iter_ = int(best.n_iter)
        self.labels_ = self._soft_assign(data, best.means, self.sigma_)[0].argmax(1).numpy()
        return self

    def predict(self, X) -> np.ndarray:
        """The most responsible component of each row, of shape (n_samples,)."""
        return self.predict_proba(X).argmax(1)

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities at the fitted σ, of shape (n_samples, n_clusters)."""
        return to_numpy(self._soft_assign(*self._fitted(X), self.sigma_)[0])

    def score_samples(self, X) -> np.ndarray:
        """log p(x_n) under the fitted mixture, of shape (n_samples,)."""
        return to_numpy(self._soft_assign(*self._fitted(X), self.sigma_)[1])

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample (summed in float64)."""
        return float(self.score_samples(X).mean(dtype=np.float64))

    def _n_parameters(self) -> int:
        n_clusters, n_features = self.cluster_centers_.shape
        learned_weights = n_clusters - 1 if self.weights == "learn" else 0
        return n_clusters * n_features + learned_weights + (1 if self.sigma is None else 0)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = len(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2 * self.score(X) * len(X) + 2 * self._n_parameters()
