"""One representation of the data to fit, made once by validation and consumed by every kernel.

Centring is decided here and nowhere else. The squared distances ``‖x‖² − 2x·μ + ‖μ‖²`` behind every
kernel (Lloyd, EM, annealing, k-means++, the Gibbs conditionals, the log-likelihoods, the NUTS
potential) round in proportion to ``‖x‖²``: for rows far from the origin compared with their spread
they cancel catastrophically (float32 data at 1e4 times their spread from the origin keep no correct
digit). :func:`prepare_data` therefore subtracts the column means from such rows once, and records
what it took off. Parameters in the data's units (centroids, the prior mean ``m0``) are moved by that
offset on the way in (:meth:`Data.to_rows`) and back on the way out (:meth:`Data.to_data`); densities
do not change under the shift, so the program's density of the original rows equals the kernels'
density of the centred ones.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._comm import LOCAL, Comm
from ._moments import column_moments
from .kernels import centred_copy, chunk_rows
from .validation import as_data, check_sample_weight

__all__ = ["HEADROOM", "Data", "needs_centring", "prepare_data"]

#: Rows whose squared norms, summed over all rows and times this, would overflow the dtype are refused.
HEADROOM = 16.0


class Data(NamedTuple):
    """The rows to fit, as the kernels see them.

    Attributes
    ----------
    rows : tensor of shape (n_samples, n_features)
        ``X − offset`` in ``X``'s dtype and on its device (``X`` itself, not a copy, when
        ``offset`` is zero).
    offset : tensor of shape (n_features,)
        What was taken off every row: the column means when the rows were centred, zeros otherwise.
        In the rows' dtype, so that ``rows + offset`` is ``X`` to rounding.
    weight : tensor of shape (n_samples,) or None
        The per-row sample weights (``None``: every row counts once).
    mean : tensor of shape (n_features,), float64
        The (unweighted) column means of ``X``, in the data's units, over every process's rows.
    variance : float
        The mean per-feature variance ``Σ_n ‖x_n − x̄‖² / (N·D)`` (unweighted, 1/N), over every
        process's rows: the data's spread, in squared data units.
    n_total : int
        Rows over every process (``n_samples`` in a single process).
    """

    rows: torch.Tensor
    offset: torch.Tensor
    weight: torch.Tensor | None
    mean: torch.Tensor
    variance: float
    n_total: int

    @property
    def n_samples(self) -> int:
        """Rows held here."""
        return self.rows.shape[0]

    @property
    def n_features(self) -> int:
        return self.rows.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.rows.dtype

    @property
    def device(self) -> torch.device:
        return self.rows.device

    @property
    def centred(self) -> bool:
        """Whether the rows were shifted (``offset`` is not zero)."""
        return bool(self.offset.any())

    def to_rows(self, values: torch.Tensor) -> torch.Tensor:
        """Points in the data's units (``(..., n_features)``) moved to the rows' frame: ``values − offset``.

        The difference is taken in the wider of the two dtypes, then rounded to the rows' dtype:
        float64 centroids of float32 rows far from the origin keep their digits relative to the spread.
        """
        values = values.to(device=self.device)
        if self.centred:
            wide = torch.promote_types(values.dtype, self.dtype)
            values = values.to(wide) - self.offset.to(wide)
        return values.to(self.dtype)

    def to_data(self, values: torch.Tensor) -> torch.Tensor:
        """Points in the rows' frame (``(..., n_features)``) moved back to the data's units: ``values + offset``."""
        return values + self.offset.to(values.dtype) if self.centred else values

    def weights_or_ones(self) -> torch.Tensor:
        """``weight``, or ones of shape (n_samples,) when there are none."""
        if self.weight is not None:
            return self.weight
        return torch.ones(self.n_samples, dtype=self.dtype, device=self.device)


def _moments(X: torch.Tensor, comm: Comm) -> tuple[torch.Tensor, float, int]:
    """Column means (float64, (D,)), mean squared row norm and the row count, over every process."""
    n_total = comm.total(X.shape[0])
    if X.device.type == "cpu" and X.is_contiguous():
        column_sums, total = column_moments(X.numpy())
        sums, second = torch.from_numpy(column_sums), torch.tensor(total, dtype=torch.float64)
    else:
        sums = X.new_zeros(X.shape[1], dtype=torch.float64)
        second = X.new_zeros((), dtype=torch.float64)
        for rows in chunk_rows(X.shape[0], X.shape[1], device=X.device):
            x = X[rows].double()
            sums += x.sum(0)
            second += x.square().sum()
    sums, second = comm.sum_(sums, second)
    return sums / n_total, second.item() / n_total, int(n_total)


def needs_centring(mean: torch.Tensor, mean_sq_norm: float) -> bool:
    """Whether rows with these moments are centred: ``‖x̄‖²`` above the total variance ``E‖x − x̄‖²``.

    Parameters
    ----------
    mean : tensor of shape (n_features,)
        The column means.
    mean_sq_norm : float
        ``E‖x‖²``, the mean squared row norm.

    Notes
    -----
    The rounding of ``‖x‖² − 2x·μ + ‖μ‖²`` is proportional to ``E‖x‖² = ‖x̄‖² + E‖x − x̄‖²``, that of
    centred rows to ``E‖x − x̄‖²``. When ``‖x̄‖²`` is at most the total variance (standardized data,
    for instance) centring would gain at most a factor 2 in accuracy and costs a copy of ``X``: the
    rows are used as they are.
    """
    mean_sq = float(mean.square().sum())
    return mean_sq > mean_sq_norm - mean_sq


def prepare_data(
    X, sample_weight=None, *, name: str = "X", comm: Comm = LOCAL, positive_total: bool = True
) -> Data:
    """Validate ``X`` (and ``sample_weight``) once, and decide once whether to centre the rows.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), or Data
        Finite and 2-D. float32 and float64 tensors keep their dtype and device; anything else
        becomes float64. A :class:`Data` is returned as it is (with ``sample_weight`` None).
    sample_weight : array-like of shape (n_samples,), optional
        Finite and non-negative, not all zero (unless ``positive_total=False``).
    name : str, default "X"
        The argument's name in error messages.
    comm : Comm, default LOCAL
        Where the other rows are: the means and spread are those of every process's rows.
    positive_total : bool, default True
        Whether the weights of the rows held here must have a positive sum.

    Returns
    -------
    Data

    Raises
    ------
    ValueError
        For data that are not finite, not 2-D or empty, or weights that do not fit them, naming the
        value; for rows whose squared norms, summed over all rows (times ``HEADROOM``), overflow the
        dtype even after centring.
    """
    if isinstance(X, Data):
        if sample_weight is not None:
            raise ValueError("sample_weight should be None with a prepared Data (it carries its weights)")
        return X
    X = as_data(X, name)
    weight = check_sample_weight(sample_weight, X, positive_total=positive_total)
    mean, mean_sq_norm, n_total = _moments(X, comm)
    if not math.isfinite(mean_sq_norm):
        raise _too_large(name, X.dtype, mean_sq_norm)
    variance = max(mean_sq_norm - float(mean.square().sum()), 0.0) / X.shape[1]
    offset, rows_sq_norm = X.new_zeros(X.shape[1]), mean_sq_norm
    if needs_centring(mean, mean_sq_norm):
        offset = mean.to(X.dtype)
        X = centred_copy(X, offset)
        variance = _centred_variance(X, comm)  # measured on the centred rows: no cancellation
        rows_sq_norm = variance * X.shape[1]
    # The kernels sum squared norms over the rows in the rows' dtype: N·E‖r‖² must stay finite there.
    if HEADROOM * n_total * rows_sq_norm > torch.finfo(X.dtype).max:
        raise _too_large(name, X.dtype, rows_sq_norm)
    return Data(X, offset, weight, mean, variance, n_total)


def _too_large(name: str, dtype: torch.dtype, mean_sq_norm: float) -> ValueError:
    return ValueError(
        f"{name} is too large for {dtype}: its squared norms (mean ‖x‖² = {mean_sq_norm:.3g}, after "
        f"centring) summed over the rows overflow it; rescale it (e.g. standardize) or use float64"
    )


def _centred_variance(rows: torch.Tensor, comm: Comm) -> float:
    """``Σ_n ‖r_n − r̄‖² / (N·D)`` of rows whose mean is about 0 (only rounding is left of it)."""
    mean, mean_sq_norm, _ = _moments(rows, comm)
    return max(mean_sq_norm - float(mean.square().sum()), 0.0) / rows.shape[1]
