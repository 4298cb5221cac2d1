"""The one place the two ArviZ lines differ: arviz 0.23 (``InferenceData``) and arviz 1.x (``xarray.DataTree``).

Python 3.11 gets arviz 0.23, Python 3.12 and later arviz 1.x (the environment markers of
pyproject.toml). A posterior is the structure the installed line builds: an ``arviz.InferenceData`` on
0.23, an ``xarray.DataTree`` on 1.x. Both give a group as ``idata.posterior`` (a Dataset, or a
DataTree node) with ``["means"]``, ``.attrs``, ``.sizes`` and ``.isel``; everything else whose API
differs goes through here: building (:func:`from_dict`, :func:`set_groups`), the groups
(:func:`group_names`, :func:`has_group`, :func:`group`, :func:`update_attrs`), :func:`copy`, netCDF
(:func:`to_netcdf`, :func:`from_netcdf`: groups of one netCDF-4 file, which both lines read and
write, so a file saved by one loads in the other), and the statistics (:func:`ess`, :func:`rhat`,
:func:`mcse`, :func:`hdi`, :func:`summary`, :func:`compare`) and the plot (:func:`plot_forest`). Tables keep arviz 0.23's column names
on both lines (``hdi_3%``, ``elpd_loo``, ``p_loo``...).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "ARVIZ_1",
    "compare",
    "copy",
    "drop_group",
    "ess",
    "from_dict",
    "from_netcdf",
    "group",
    "group_names",
    "has_group",
    "hdi",
    "is_posterior",
    "mcse",
    "plot_forest",
    "rhat",
    "set_groups",
    "summary",
    "to_netcdf",
    "update_attrs",
    "version",
]

#: True when the installed ArviZ is the 1.x line (DataTree), False for 0.23 (InferenceData).
ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1


def version() -> str:
    """The installed ArviZ's version, as a plain str."""
    return str(az.__version__)


def is_posterior(obj) -> bool:
    """Whether ``obj`` is the installed line's posterior structure (InferenceData or DataTree)."""
    return isinstance(obj, xr.DataTree if ARVIZ_1 else az.InferenceData)


def from_dict(
    groups: dict, *, coords: dict | None = None, dims: dict | None = None, attrs: dict | None = None
):
    """Build a posterior from ``{group: {variable: array}}``.

    Parameters
    ----------
    groups : dict of str to dict of str to ndarray
        Arrays of groups other than ``observed_data`` start with (chain, draw).
    coords : dict of str to array-like, optional
    dims : dict of str to list of str, optional
        The dimensions of each variable after (chain, draw).
    attrs : dict, optional
        Put on every group.

    Returns
    -------
    arviz.InferenceData (arviz 0.23) or xarray.DataTree (arviz 1.x)
    """
    idata = (
        az.from_dict(groups, coords=coords, dims=dims)
        if ARVIZ_1
        else az.from_dict(**groups, coords=coords, dims=dims)
    )
    if ARVIZ_1:
        for name in group_names(idata):  # a list is not a netCDF attribute every reader takes back
            idata[name].attrs.pop("sample_dims", None)
    if attrs:
        update_attrs(idata, attrs)
    return idata


def set_groups(idata, groups: dict[str, xr.Dataset]) -> None:
    """Put Datasets in ``idata`` as its groups of those names (new ones, or replacing), in place."""
    for name, dataset in groups.items():
        if ARVIZ_1:
            idata[name] = xr.DataTree(dataset)
        elif has_group(idata, name):
            setattr(idata, name, dataset)
        else:
            idata.add_groups({name: dataset})


def group_names(idata) -> tuple[str, ...]:
    """The names of the groups (``"posterior"``, ``"sample_stats"``...), in order."""
    return tuple(idata.children) if ARVIZ_1 else tuple(idata.groups())


def has_group(idata, name: str) -> bool:
    """Whether ``idata`` has the group ``name``."""
    return name in group_names(idata)


def group(idata, name: str) -> xr.Dataset:
    """The group ``name`` as an ``xarray.Dataset`` (read it; change attributes with :func:`update_attrs`)."""
    if not has_group(idata, name):
        raise ValueError(f"the posterior has no group {name!r}; it has {list(group_names(idata))}")
    return idata[name].to_dataset() if ARVIZ_1 else idata[name]


def drop_group(idata, name: str) -> None:
    """Remove the group ``name`` from ``idata``, in place (nothing when it has none)."""
    if not has_group(idata, name):
        return
    if ARVIZ_1:
        del idata[name]
    else:
        delattr(idata, name)  # InferenceData.__delattr__ drops the group from its list as well


def update_attrs(idata, attrs: dict, groups=None) -> None:
    """Update the attributes of every group (or of those named in ``groups``) with ``attrs``, in place."""
    for name in group_names(idata) if groups is None else groups:
        idata[name].attrs.update(attrs)


def copy(idata):
    """A deep copy: its values and attributes can change without touching ``idata``."""
    return idata.copy(deep=True) if ARVIZ_1 else idata.copy()


def to_netcdf(idata, path) -> None:
    """Write ``idata`` to ``path`` as netCDF-4, one group of the file per group."""
    if ARVIZ_1:
        idata.to_netcdf(str(path), engine="h5netcdf")
    else:
        idata.to_netcdf(str(path))


def from_netcdf(path):
    """Read a netCDF file of groups (written by either line) eagerly, closing the file.

    Returns
    -------
    arviz.InferenceData (arviz 0.23) or xarray.DataTree (arviz 1.x)
    """
    if ARVIZ_1:
        with xr.open_datatree(str(path), engine="h5netcdf") as tree:
            return tree.load().copy(deep=True)  # in memory, nothing left tied to the closed file
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(str(path))


def ess(data, method: str = "bulk"):
    """Effective sample size of draws: an array (chain, draw) gives a float, a Dataset one per variable."""
    found = az.ess(data, method=method)
    return float(np.asarray(found).item()) if isinstance(data, np.ndarray) else found


def rhat(data):
    """Rank-normalized split R-hat (Vehtari et al. 2021) of draws: an array (chain, draw) or a Dataset."""
    found = az.rhat(data)
    return float(np.asarray(found).item()) if isinstance(data, np.ndarray) else found


def mcse(data, method: str = "mean"):
    """Monte-Carlo standard error of draws: an array (chain, draw) or a Dataset with (chain, draw)."""
    found = az.mcse(data, method=method)
    # arviz 0.23 gives an array of one number for an array of draws, 1.x a number
    return float(np.asarray(found).item()) if isinstance(data, np.ndarray) else found


def hdi(values: np.ndarray, prob: float = 0.94) -> tuple[float, float]:
    """The highest-density interval of one quantity's draws, shape (n,): (low, high)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if ARVIZ_1:
        low, high = np.asarray(az.hdi(values, prob=prob))
    else:
        low, high = az.hdi(values, hdi_prob=prob)
    return float(low), float(high)


def summary(dataset, *, var_names=None, hdi_prob: float = 0.94, kind: str = "all", **kwargs) -> pd.DataFrame:
    """``az.summary`` of draws (chain, draw, ...), with arviz 0.23's columns on both lines.

    Parameters
    ----------
    dataset : xarray.Dataset, or a posterior (InferenceData or DataTree: its ``posterior`` group)
    var_names : list of str, optional
        The variables to summarize; all by default.
    hdi_prob : float, default 0.94
        The HDI's columns are ``hdi_{(1 - p) / 2:%}`` and ``hdi_{(1 + p) / 2:%}`` (``hdi_3%``, ``hdi_97%``).
    kind : {"all", "stats", "diagnostics"}, default "all"
    **kwargs
        Passed to ``az.summary`` (``round_to``, ``var_names``...).

    Returns
    -------
    pandas.DataFrame
        mean, sd, hdi_3%, hdi_97%, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat (as ``kind`` asks).
    """
    if is_posterior(dataset):
        dataset = group(dataset, "posterior")
    if var_names is not None:
        dataset = dataset[list(var_names)]
    if not ARVIZ_1:
        return az.summary(dataset, hdi_prob=hdi_prob, kind=kind, **kwargs)
    kwargs.setdefault("round_to", 2)  # arviz 0.23's default; 1.x's "auto" gives text
    table = az.summary(dataset, kind=kind, ci_kind="hdi", ci_prob=hdi_prob, **kwargs)
    percent = f"{hdi_prob * 100:g}"
    low, high = (f"hdi_{100 * (1 - hdi_prob) / 2:g}%", f"hdi_{100 * (1 + hdi_prob) / 2:g}%")
    table = table.rename(columns={f"hdi{percent}_lb": low, f"hdi{percent}_ub": high})
    order = ["mean", "sd", low, high, "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    return table[[c for c in order if c in table.columns] + [c for c in table.columns if c not in order]]


def plot_forest(fits: dict, var_names=None, *, hdi_prob: float = 0.94):
    """Forest plot of the posteriors in ``fits`` (name to posterior), chains combined, with matplotlib.

    Returns
    -------
    What the line's ``az.plot_forest`` returns: matplotlib axes (0.23) or a PlotCollection (1.x).
    """
    if ARVIZ_1:
        return az.plot_forest(
            dict(fits),
            var_names=var_names,
            combined=True,
            ci_kind="hdi",
            ci_probs=(0.5, hdi_prob),
            backend="matplotlib",
        )
    return az.plot_forest(
        list(fits.values()), model_names=list(fits), var_names=var_names, combined=True, hdi_prob=hdi_prob
    )


#: arviz 1.x's compare columns under arviz 0.23's LOO names.
_COMPARE_COLUMNS = {"elpd": "elpd_loo", "p": "p_loo"}


def compare(fits: dict, ic: str = "loo") -> pd.DataFrame:
    """``az.compare`` of fits with a pointwise ``log_likelihood``: LOO (both lines) or WAIC (0.23 only).

    Returns
    -------
    pandas.DataFrame
        Indexed by the names of ``fits``, best first, with ``rank``, ``elpd_loo``, ``p_loo``,
        ``elpd_diff`` (the best's elpd minus this one's, >= 0 on both lines), ``weight``, ``se``,
        ``dse``, ``warning`` (``elpd_waic``... for WAIC); arviz 1.x adds ``p_worse``.

    Raises
    ------
    ValueError
        ``ic`` not "loo" or "waic", or "waic" on arviz 1.x (which has no WAIC).
    """
    if ic not in ("loo", "waic"):
        raise ValueError(f"ic={ic!r} should be 'loo' or 'waic'")
    if ARVIZ_1:
        if ic != "loo":
            raise ValueError(f"ic={ic!r}: arviz {version()} compares by LOO only; use ic='loo'")
        table = az.compare(fits, round_to=None).rename(columns=_COMPARE_COLUMNS)
        table["elpd_diff"] = 0.0 - table["elpd_diff"]  # 0.23's sign: how far below the best, >= 0
        return table
    with warnings.catch_warnings():
        # arviz 0.23's compare calls DataFrame.sort_values(inplace=True), deprecated in pandas 3.1;
        # nothing a caller can act on, so this one message is silenced here.
        warnings.filterwarnings(
            "ignore",
            message="The inplace keyword in DataFrame.sort_values is deprecated",
            category=getattr(pd.errors, "Pandas4Warning", DeprecationWarning),
        )
        return az.compare(fits, ic=ic)
