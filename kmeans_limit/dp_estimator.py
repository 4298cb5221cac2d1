"""A scikit-learn estimator for DP-means: hard clustering with K chosen by the price λ of a cluster.

It validates, calls the core (:func:`~kmeans_limit.inference.anneal_penalty.anneal_penalized` or
:func:`~kmeans_limit.inference.dp_means.dp_means`) and stores fitted attributes, as the estimators of
:mod:`kmeans_limit.estimators` do; rows go through the data model first.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._sklearn_glue import array_like, seed_from, to_torch
from .inference.anneal_penalty import anneal_penalized
from .inference.data import Data, prepare_data
from .inference.dp_means import check_penalty, dp_means
from .inference.kernels import chunk_rows, nearest_centroid
from .inference.lloyd import labelled_sq_distances
from .inference.validation import check_positive_int, check_seed, pyro_seed
from .models import data_scaled_priors, dp_gmm, log_dp_concentration

__all__ = ["DPMeans"]


class DPMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """DP-means (Kulis & Jordan 2012): minimise ``J + λK``, the σ → 0 limit of a Dirichlet-process mixture.

    Parameters
    ----------
    penalty : float > 0, default 1.0
        λ, the price of a cluster, in squared data units (a row farther than ``sqrt(λ)`` from every
        centroid opens one).
    init : {"anneal", "mean"}, default "anneal"
        "anneal" reads K off the annealing path's J(K) and polishes with DP-means; "mean" runs
        DP-means from one centroid at the data mean (Kulis & Jordan's start).
    max_iter : int, default 300
        DP-means passes at most.
    random_state : int, RandomState or None, default 0
        Seeds the annealing's jitter and :meth:`sample`.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters_, n_features)
    labels_ : ndarray of shape (n_samples,)
    n_clusters_ : int
    inertia_ : float
        J on the training data.
    objective_ : float
        ``J + λK``.
    weights_ : ndarray of shape (n_clusters_,)
        Fraction of the (weighted) data in each cluster.
    sigma_ : float
        σ̂ = sqrt(J / (N·D)), the maximum-likelihood σ given the hard fit.
    concentration_ : float
        α(σ̂) = (1 + τ0²/σ̂²)^(D/2) exp(−λ/(2σ̂²)) with τ0 = 2 s (s² the data's mean per-feature
        variance): the DP's concentration at σ̂ (0 when σ̂ = 0).
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(self, penalty: float = 1.0, *, init: str = "anneal", max_iter: int = 300, random_state=0):
        self.penalty = penalty
        self.init = init
        self.max_iter = max_iter
        self.random_state = random_state

    def _prepare(self, X, sample_weight=None, *, reset: bool) -> Data:
        X = to_torch(
            validate_data(self, array_like(X), dtype=[np.float64, np.float32], reset=reset, copy=False)
        )
        weight = None
        if sample_weight is not None:
            weight = to_torch(
                _check_sample_weight(
                    array_like(sample_weight), X.numpy(), dtype=X.numpy().dtype, ensure_non_negative=True
                )
            )
        return prepare_data(X, weight)

    def fit(self, X, y=None, sample_weight=None):
        """Cluster ``X``: K is chosen by the penalty.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        penalty = check_penalty(self.penalty)
        max_iter = check_positive_int("max_iter", self.max_iter)
        if self.init not in ("anneal", "mean"):
            raise ValueError(f"init={self.init!r} should be 'anneal' or 'mean'")
        data = self._prepare(X, sample_weight, reset=True)
        if self.init == "anneal":
            result = anneal_penalized(
                data, penalty, seed=seed_from(self.random_state), dp_max_iter=max_iter
            ).dp
        else:
            result = dp_means(data, penalty, max_iter=max_iter)
        weight = data.weights_or_ones().double()
        mass = torch.bincount(result.labels, weights=weight, minlength=result.n_clusters)
        self.cluster_centers_ = result.means.numpy()
        self.labels_ = result.labels.numpy()
        self.n_clusters_ = result.n_clusters
        self.inertia_ = result.inertia
        self.objective_ = result.objective
        self.weights_ = (mass / mass.sum()).numpy()
        self.sigma_ = math.sqrt(result.inertia / (float(weight.sum()) * data.n_features))
        self._weight_total = float(weight.sum())
        self._tau0 = 2.0 * math.sqrt(max(data.variance, np.finfo(float).tiny))
        self._m0 = data.mean.numpy()
        self.concentration_ = (
            0.0
            if self.sigma_ == 0
            else math.exp(float(log_dp_concentration(self.sigma_, penalty, self._tau0, data.n_features)))
        )
        self.n_iter_ = result.n_iter
        return self

    def _fitted(self, X) -> tuple[Data, torch.Tensor]:
        check_is_fitted(self)
        data = self._prepare(X, reset=False)
        return data, data.to_rows(torch.from_numpy(self.cluster_centers_))

    def predict(self, X) -> np.ndarray:
        """The nearest centroid of each row: ndarray of shape (n_samples,)."""
        data, means = self._fitted(X)
        return nearest_centroid(data.rows, means)[0].numpy()

    def transform(self, X) -> np.ndarray:
        """Euclidean distances to the centroids: ndarray of shape (n_samples, n_clusters_).

        From the differences (not ``‖x‖² − 2x·μ + ‖μ‖²``), so a row at a centroid is at distance 0 to
        rounding of the row, not to the square root of the rounding of its squared norm.
        """
        data, means = self._fitted(X)
        out = torch.empty(data.n_samples, means.shape[0], dtype=data.dtype)
        for rows in chunk_rows(data.n_samples, means.shape[0] * data.n_features):
            out[rows] = torch.cdist(data.rows[rows], means, compute_mode="donot_use_mm_for_euclid_dist")
        return out.numpy()

    def score(self, X, y=None, sample_weight=None) -> float:
        """``−(J + λK)`` of ``X`` with the fitted centroids (higher is better, as KMeans' −inertia)."""
        check_is_fitted(self)
        data = self._prepare(X, sample_weight, reset=False)
        means = data.to_rows(torch.from_numpy(self.cluster_centers_))
        labels = nearest_centroid(data.rows, means)[0]
        sq = labelled_sq_distances(data.rows, means, labels).double() * data.weights_or_ones().double()
        return -(sq.sum().item() + self.penalty * self.n_clusters_)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw from the fitted DP mixture at σ̂, through :func:`~kmeans_limit.models.dp_gmm`.

        The weights are the DP's predictive ones given the fit: ``(N_1, ..., N_K, α(σ̂)) / (N + α(σ̂))``
        (N the total weight), the last component a new cluster whose mean is drawn from the base
        measure ``N(m0, τ0² I)`` (m0 the data mean, τ0 = 2 s).

        Parameters
        ----------
        n_samples : int, default 1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            The component of each row; ``n_clusters_`` for a row from the new cluster.
        """
        check_is_fitted(self)
        n_samples = check_positive_int("n_samples", n_samples)
        means = torch.from_numpy(self.cluster_centers_).double()
        total = self._weight_total
        alpha = self.concentration_
        weights = torch.cat([torch.from_numpy(self.weights_).double() * total, torch.tensor([alpha])]) / (
            total + alpha
        )
        sticks = weights[:-1] / (1.0 - torch.cat([weights.new_zeros(1), weights.cumsum(0)[:-2]])).clamp_min(
            1e-300
        )
        sticks = sticks.clamp(0.0, 1.0)
        k, d = means.shape
        priors = data_scaled_priors(self._m0, (self._tau0 / 2.0) ** 2)
        options = dict(max_clusters=k + 1, n_features=d, n_samples=n_samples, sigma=0.0, priors=priors)
        options.update(concentration=max(alpha, 1e-300), dtype=torch.float64)
        with pyro_seed(check_seed(seed_from(self.random_state))):
            prior = pyro.poutine.trace(dp_gmm).get_trace(**options).nodes["means"]["value"]
            conditioned = pyro.condition(dp_gmm, data={"v": sticks, "means": torch.cat([means, prior[k:]])})
            with pyro.poutine.trace() as tracer:
                conditioned(**{**options, "sigma": self.sigma_})
        nodes = tracer.trace.nodes
        return nodes["x"]["value"].to(torch.from_numpy(self.cluster_centers_).dtype).numpy(), nodes["z"][
            "value"
        ].numpy()

    @property
    def _n_features_out(self) -> int:
        return self.cluster_centers_.shape[0]
