"""Sums over rows that may be spread over several processes.

The fitting algorithms only ever combine rows through sums: counts, weighted sums, sums of squares,
log-likelihoods, potentials. They take a ``comm`` and pass every such sum through it. The
single-process default, :data:`LOCAL`, leaves each sum as it is; :class:`ProcessGroupComm`
all-reduces it over a ``torch.distributed`` process group, so that each process can hold a shard of
the rows and every process ends with the same parameters
(:mod:`kmeans_limit.inference.distributed`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["LOCAL", "Comm", "ProcessGroupComm"]


class Comm:
    """All the rows live in this process: every reduction is the identity.

    Attributes
    ----------
    rank : int
    world_size : int
    """

    rank = 0
    world_size = 1

    def sum_(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Sum each tensor over the processes, in place; returns them."""
        return tensors

    def total(self, value: float) -> float:
        """A Python number summed over the processes."""
        return value

    def maximum(self, value: float) -> float:
        """A Python number's maximum over the processes."""
        return value

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in some process."""
        return bool(flag)

    def gather_objects(self, obj) -> list:
        """``obj`` of every process, in rank order."""
        return [obj]

    def farthest(
        self, values: torch.Tensor, count: int, X: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``count`` rows of largest ``values`` over all processes: their rows, weights and labels.

        Parameters
        ----------
        values : tensor of shape (n_samples,)
        count : int, at most the total number of rows
        X : tensor of shape (n_samples, n_features)
        weight : tensor of shape (n_samples,)
        labels : long tensor of shape (n_samples,)

        Returns
        -------
        rows : tensor of shape (count, n_features)
        weights : tensor of shape (count,)
        labels : long tensor of shape (count,)
            In scikit-learn's order (``np.argpartition``, as its ``_relocate_empty_clusters_dense``).
        """
        far = np.argpartition(values.cpu().numpy(), -count)[: -count - 1 : -1].copy()
        far = torch.from_numpy(far).to(X.device)
        return X[far], weight[far], labels[far]

    def pick_rows(self, X: torch.Tensor, cumulative: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Rows by inverse-CDF sampling: for each target t, the first row whose ``cumulative`` reaches t.

        Parameters
        ----------
        X : tensor of shape (n_samples, n_features)
        cumulative : tensor of shape (n_samples,)
            Running sum of non-negative masses over the rows (over all processes' rows in order of
            rank, each process holding its own part, starting from 0 in every process).
        targets : tensor of shape (n_draws,)
            Values in ``[0, total mass]``, the same in every process.

        Returns
        -------
        tensor of shape (n_draws, n_features)
        """
        index = torch.searchsorted(cumulative, targets).clamp_max_(cumulative.shape[0] - 1)
        return X[index]


#: The single-process communicator.
LOCAL = Comm()


class ProcessGroupComm(Comm):
    """Reductions over a ``torch.distributed`` process group (gloo on CPU, NCCL on GPU).

    Parameters
    ----------
    group : ProcessGroup, optional
        Default: the world group.
    """

    def __init__(self, group=None):
        import torch.distributed as dist

        self.dist, self.group = dist, group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)

    def sum_(self, *tensors):
        """One all-reduce for all the tensors (packed in float64, written back in their dtypes)."""
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        self.dist.all_reduce(flat, group=self.group)
        start = 0
        for t in tensors:
            t.copy_(flat[start : start + t.numel()].view(t.shape))
            start += t.numel()
        return tensors

    def _reduce(self, value: float, op, device) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        self.dist.all_reduce(tensor, op=op, group=self.group)
        return tensor.item()

    def total(self, value: float) -> float:
        return self._reduce(float(value), self.dist.ReduceOp.SUM, self.device)

    def maximum(self, value: float) -> float:
        return self._reduce(float(value), self.dist.ReduceOp.MAX, self.device)

    def any(self, flag: bool) -> bool:
        return self.maximum(1.0 if flag else 0.0) > 0

    def gather_objects(self, obj) -> list:
        out = [None] * self.world_size
        self.dist.all_gather_object(out, obj, group=self.group)
        return out

    @property
    def device(self) -> torch.device:
        """Where this group's collectives run: the current CUDA device under NCCL, else the CPU."""
        if self.dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _owned_rows(self, X, local_index, owner, extra=()):
        """Rows at ``local_index`` where this rank is ``owner``, summed into every rank (others add 0)."""
        mine = owner == self.rank
        rows = torch.where(mine[:, None], X[local_index], 0.0)
        extras = [torch.where(mine, e[local_index], 0).to(X.dtype) for e in extra]
        self.sum_(rows, *extras)
        return rows, extras

    def farthest(self, values, count, X, weight, labels):
        """Each rank's top ``count``; the best ``count`` over all, largest first (ties: lower rank first)."""
        local = values.topk(min(count, values.shape[0]))
        padded = values.new_full((count,), -torch.inf)
        padded[: local.values.shape[0]] = local.values
        index = torch.zeros(count, dtype=torch.long, device=X.device)
        index[: local.indices.shape[0]] = local.indices
        everyone = [torch.empty_like(padded) for _ in range(self.world_size)]
        self.dist.all_gather(everyone, padded, group=self.group)
        best = torch.cat(everyone).topk(count).indices  # topk over rank-major order: stable enough
        owner, slot = best // count, best % count
        rows, (row_weight, row_label) = self._owned_rows(X, index[slot], owner, (weight, labels))
        return rows, row_weight, row_label.round().long()

    def pick_rows(self, X, cumulative, targets):
        """The rank whose share of the running sum holds each target picks the row; the rows are shared."""
        totals = torch.tensor(self.gather_objects(cumulative[-1].item()), dtype=cumulative.dtype)
        starts = torch.cumsum(totals, 0) - totals
        # The first rank whose running sum reaches the target (the last rank past the end: rounding).
        owner = torch.searchsorted(torch.cumsum(totals, 0), targets.cpu()).clamp_max_(self.world_size - 1)
        local_targets = targets - starts[owner].to(targets.device)
        index = torch.searchsorted(cumulative, local_targets).clamp_max_(cumulative.shape[0] - 1)
        return self._owned_rows(X, index, owner.to(X.device))[0]
