"""Files a user can trust: reading data (CSV, TSV, ``.npy``) and saving and loading fits.

Data files are read with every problem a new user could meet turned into one ``ValueError`` that
names the file, the place and what to do. Fits are written in open formats only, never pickle:
point fits (the annealed k-means solution) as JSON, posteriors as netCDF groups (``arviz_compat.to_netcdf``: read and written by arviz 0.23 and 1.x).
Every write is atomic (a temporary file in the same folder, then ``os.replace``) and refuses to
replace an existing file unless asked to; everything read back is validated (format tag, version,
shapes, finite values, weights on the simplex).
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._read import read_npy, read_text
from .datasets import Dataset
from .datasets import standardize as _standardize
from .inference.validation import as_data, check_means, check_sigma, check_weights

__all__ = [
    "FORMAT_VERSION",
    "POINT_FIT_FORMAT",
    "POSTERIOR_FORMAT",
    "PointFit",
    "PosteriorFit",
    "Standardization",
    "atomic_write",
    "load_fit",
    "load_point_fit",
    "load_posterior",
    "posterior_fit",
    "read_data",
    "save_point_fit",
    "save_posterior",
    "standardize_with_stats",
    "write_csv_rows",
    "write_table",
]

#: Version of the files this module writes; files of a newer version are refused.
FORMAT_VERSION = 1
POINT_FIT_FORMAT = "kmeans-limit/point-fit"
POSTERIOR_FORMAT = "kmeans-limit/posterior"
#: A JSON fit larger than this is not a fit this package wrote.
MAX_JSON_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: an existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, force: bool = False) -> Path:
    """Write ``path`` through ``write(temporary_path)``, then move it into place with ``os.replace``.

    Parameters
    ----------
    path : path-like
        The final file; its folder must exist.
    write : callable
        Called with a temporary path in the same folder; it must create that file.
    force : bool, default False
        Replace ``path`` if it exists; otherwise an existing file is an error.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false. Nothing is written.
    ValueError
        The folder of ``path`` does not exist.

    Notes
    -----
    The file gets the mode a plain ``open(path, "w")`` would give it: an existing file's mode, or
    0o666 less the umask for a new one (``tempfile.mkstemp`` alone would leave 0o600).
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it, or choose another --out")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    mode = _normal_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv_rows(handle, X, names: Sequence[str], labels=None, *, delimiter: str = ",") -> None:
    """Rows of ``X`` as CSV on an open text ``handle``: a header line, then exact (``repr``) floats,
    and a last ``component`` column when ``labels`` are given (``delimiter="\\t"``: TSV)."""
    X = np.asarray(X.detach().cpu() if isinstance(X, torch.Tensor) else X, dtype=float)
    writer = csv.writer(handle, lineterminator="\n", delimiter=delimiter)
    writer.writerow(list(names) + (["component"] if labels is not None else []))
    labels = None if labels is None else [int(z) for z in labels]
    for i, row in enumerate(X.tolist()):
        writer.writerow([repr(v) for v in row] + ([] if labels is None else [labels[i]]))


def write_table(
    path, X, names: Sequence[str], *, labels=None, force: bool = False, delimiter: str = ","
) -> Path:
    """Write :func:`write_csv_rows` to ``path`` atomically (refusing to overwrite without ``force``)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            write_csv_rows(handle, X, names, labels, delimiter=delimiter)

    return atomic_write(path, write, force=force)


# ---------------------------------------------------------------------------------------------
# Reading data
# ---------------------------------------------------------------------------------------------


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"data file '{path}' does not exist; check the path")
    if path.is_dir():
        raise ValueError(f"'{path}' is a directory; give a CSV, TSV or .npy file")
    if path.stat().st_size == 0:
        raise ValueError(f"data file '{path}' is empty; it needs at least one row of numbers")


def read_data(path: str | os.PathLike, *, columns: Sequence[str] | None = None) -> Dataset:
    """Read a data file: CSV, TSV or whitespace-separated text (header line detected, gzip read
    transparently) or a NumPy ``.npy`` array.

    Parameters
    ----------
    path : path-like
        ``.npy`` is read with ``allow_pickle=False``; anything else is read as text, gunzipped first
        when it starts with the gzip magic bytes (e.g. the sipu ``.data.gz`` files). The delimiter is
        a tab for ``.tsv``/``.tab``; otherwise ``,``, ``;`` or a tab when the first lines hold one,
        and otherwise runs of whitespace (the sipu ``.data`` format, ``numpy.savetxt``'s default).
        Numbers with decimal commas (``1,5;2,5``) are refused with what to do. Blank lines and lines
        starting with ``#`` are skipped.
    columns : sequence of str, optional
        The columns to keep, each a header name or a 0-based index; all by default. Columns without
        a header are named ``x0``, ``x1``, ...

    Returns
    -------
    Dataset
        ``data`` as float64 of shape (n_samples, n_features) and the column names.

    Raises
    ------
    ValueError
        A missing, empty, binary or non-numeric file; decimal commas; a missing value; ragged rows;
        an unknown column. The message names what was detected (e.g. "read as comma-separated").

    Notes
    -----
    The first line is a header when any of its fields is not a number. A single column is fine:
    that is 1-D clustering.
    """
    path = Path(path)
    _check_path(path)
    reader = read_npy if path.suffix.lower() == ".npy" else read_text
    dataset = reader(path, columns)
    return Dataset(as_data(dataset.data, f"data file '{path}'"), dataset.feature_names)


class Standardization(NamedTuple):
    """Per-column centre and scale: ``standardized = (x - mean) / scale``."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def undo(self, Z: torch.Tensor) -> torch.Tensor:
        """Back to the original units: ``Z * scale + mean``."""
        return Z * Z.new_tensor(self.scale) + Z.new_tensor(self.mean)


def standardize_with_stats(X: torch.Tensor) -> tuple[torch.Tensor, Standardization]:
    """Each column centred and scaled to unit (1/N) variance, and the centre and scale used.

    The moments are taken on columns divided by their largest magnitude first, so that data near
    the top of the dtype's range (1e300 in float64) standardize instead of overflowing; a constant
    column is only centred (scale 1).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)

    Returns
    -------
    tensor of shape (n_samples, n_features), Standardization
    """
    if bool(torch.isfinite(X.abs().amax().square() * X.shape[0])):
        scale = X.std(0, unbiased=False)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return _standardize(X), Standardization(tuple(X.mean(0).tolist()), tuple(scale.tolist()))
    peak = X.abs().amax(0)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    unit = X / peak
    mean_unit = unit.mean(0)
    std_unit = unit.std(0, unbiased=False)
    spread = std_unit > 0
    scale_unit = torch.where(spread, std_unit, 1 / peak)
    Z = (unit - mean_unit) / scale_unit
    mean, scale = mean_unit * peak, torch.where(spread, std_unit * peak, torch.ones_like(peak))
    return Z, Standardization(tuple(mean.tolist()), tuple(scale.tolist()))


# ---------------------------------------------------------------------------------------------
# Point fits (JSON)
# ---------------------------------------------------------------------------------------------


class PointFit(NamedTuple):
    """A point estimate of the mixture: what ``sample --from`` needs, and where it came from.

    Attributes
    ----------
    means : tensor of shape (n_clusters, n_features)
    weights : tensor of shape (n_clusters,)
    sigma : float
    feature_names : tuple of str
    standardization : Standardization or None
        Set when the fit was made on standardized data (its means are in standardized units).
    extra : dict
        Everything else stored, as plain JSON values: for ``anneal.json`` the inertia, the labels,
        ``split_sigmas`` (the σ each split was made at), ``critical_sigmas`` (the split clusters'
        critical σ) and the annealing path.
    """

    means: torch.Tensor
    weights: torch.Tensor
    sigma: float
    feature_names: tuple[str, ...]
    standardization: Standardization | None
    extra: dict


def _plain(value):
    """Tensors, arrays and tuples as nested lists of Python numbers, non-finite floats as None (JSON)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf or NaN: e.g. the log-likelihood at σ = 0, where there is no density
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def save_point_fit(path, fit: PointFit, *, kind: str, force: bool = False) -> Path:
    """Save a point fit as JSON (``format``, ``version`` and ``kind`` tagged), atomically.

    Parameters
    ----------
    path : path-like
    fit : PointFit
    kind : str
        What made it, e.g. ``"anneal"``.
    force : bool, default False
        Replace an existing file.
    """
    from . import __version__

    document = {
        **_plain(fit.extra),  # first, so that no extra entry can replace a core field
        "format": POINT_FIT_FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "created_by": f"kmeans-limit {__version__}",
        "means": _plain(fit.means),
        "weights": _plain(fit.weights),
        "sigma": float(fit.sigma),
        "feature_names": list(fit.feature_names),
        "standardization": None if fit.standardization is None else fit.standardization._asdict(),
    }
    text = json.dumps(document, indent=1, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text + "\n"), force=force)


def _reject_constant(name: str):
    raise ValueError(f"holds {name}; a fit file has finite numbers only")


def _read_json(path: Path) -> dict:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"'{path}' is larger than any fit this package writes; it is not a kmeans-limit fit")
    try:
        document = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"'{path}' is not valid JSON; it is corrupt or not a kmeans-limit fit") from None
    except ValueError as error:
        raise ValueError(f"'{path}' {error}") from None
    if not isinstance(document, dict) or document.get("format") != POINT_FIT_FORMAT:
        raise ValueError(f'\'{path}\' is not a kmeans-limit point fit (no "format": "{POINT_FIT_FORMAT}")')
    return document


def _check_version(version, path: Path) -> None:
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"'{path}' has an invalid format version {version!r}; the file is corrupt")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"'{path}' has format version {version}, newer than {FORMAT_VERSION}; upgrade kmeans-limit"
        )


def _check_names(names, n_features: int, path: Path) -> tuple[str, ...]:
    if not isinstance(names, list) or len(names) != n_features or not all(isinstance(n, str) for n in names):
        raise ValueError(f"'{path}': feature_names should be {n_features} strings; the file is corrupt")
    return tuple(names)


def _check_standardization(value, n_features: int, path: Path) -> Standardization | None:
    if value is None:
        return None
    try:
        mean = np.asarray(value["mean"], dtype=float)
        scale = np.asarray(value["scale"], dtype=float)
    except (TypeError, KeyError, ValueError):
        raise ValueError(
            f"'{path}': standardization should hold mean and scale lists; the file is corrupt"
        ) from None
    shapes_ok = mean.shape == scale.shape == (n_features,)
    if not shapes_ok or not np.isfinite(mean).all() or not (scale > 0).all() or not np.isfinite(scale).all():
        raise ValueError(f"'{path}': standardization should be {n_features} finite means and positive scales")
    return Standardization(tuple(mean.tolist()), tuple(scale.tolist()))


def _numeric(value, name: str, path: Path) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"'{path}': {name} should be numbers; the file is corrupt") from None


def load_point_fit(path: str | os.PathLike) -> PointFit:
    """Load and validate a point fit written by :func:`save_point_fit`.

    Raises
    ------
    ValueError
        Not JSON, not a kmeans-limit point fit, a newer version, or values of the wrong shape,
        non-finite, negative σ or weights off the simplex.
    """
    path = Path(path)
    document = _read_json(path)
    _check_version(document.get("version"), path)
    try:
        means = check_means(_numeric(document.get("means"), "means", path))
        weights = check_weights(_numeric(document.get("weights"), "weights", path), means.shape[0])
        sigma = check_sigma(document.get("sigma"))
    except ValueError as error:
        raise ValueError(f"'{path}': {error}; the file is corrupt") from None
    names = _check_names(document.get("feature_names"), means.shape[1], path)
    standardization = _check_standardization(document.get("standardization"), means.shape[1], path)
    known = {"format", "version", "means", "weights", "sigma", "feature_names", "standardization"}
    extra = {k: v for k, v in document.items() if k not in known}
    return PointFit(means, weights, sigma, names, standardization, extra)


# ---------------------------------------------------------------------------------------------
# Posteriors (netCDF)
# ---------------------------------------------------------------------------------------------

#: The posterior variables a fit needs, with their dimensions after (chain, draw).
POSTERIOR_VARS = {"weights": ("cluster",), "means": ("cluster", "feature"), "sigma": ()}
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class PosteriorFit(NamedTuple):
    """Posterior draws of the mixture, chains stacked: what ``sample --from`` needs.

    Attributes
    ----------
    idata : arviz.InferenceData (arviz 0.23) or xarray.DataTree (arviz 1.x)
    means : tensor of shape (n_draws, n_clusters, n_features)
    weights : tensor of shape (n_draws, n_clusters)
    sigma : tensor of shape (n_draws,)
    feature_names : tuple of str
    standardization : Standardization or None
    """

    idata: object
    means: torch.Tensor
    weights: torch.Tensor
    sigma: torch.Tensor
    feature_names: tuple[str, ...]
    standardization: Standardization | None


def _plain_attrs(idata) -> None:
    """Every group's attributes as types netCDF stores: str subclasses (``torch.__version__`` is one)
    become plain str, bools ints, and anything else not a number or a string its text."""
    from .inference import arviz_compat

    for group in arviz_compat.group_names(idata):
        attrs = idata[group].attrs
        for key, value in attrs.items():
            if isinstance(value, bool | np.bool_):
                attrs[key] = int(value)
            elif isinstance(value, str) or not isinstance(value, numbers.Number | np.ndarray):
                attrs[key] = str(value)


def save_posterior(
    path,
    idata,
    *,
    feature_names: Sequence[str],
    standardization: Standardization | None = None,
    force: bool = False,
) -> Path:
    """Save an ``InferenceData`` as netCDF, tagged with format, version and provenance, atomically.

    The tags go into ``idata.posterior.attrs`` (``kmeans_limit_format``, ``kmeans_limit_version``,
    ``kmeans_limit_feature_names`` and ``kmeans_limit_standardization``, the last two as JSON text).
    """
    from . import __version__
    from .inference import arviz_compat

    idata = arviz_compat.copy(
        idata
    )  # the tags and plain attributes are the file's, not the caller's object's
    _plain_attrs(idata)
    attrs = idata.posterior.attrs
    attrs["kmeans_limit_format"] = POSTERIOR_FORMAT
    attrs["kmeans_limit_version"] = FORMAT_VERSION
    attrs["kmeans_limit_created_by"] = f"kmeans-limit {__version__}"
    attrs["kmeans_limit_feature_names"] = json.dumps(list(feature_names))
    attrs["kmeans_limit_standardization"] = json.dumps(
        None if standardization is None else standardization._asdict()
    )
    return atomic_write(path, lambda tmp: arviz_compat.to_netcdf(idata, tmp), force=force)


def _open_netcdf(path: Path):
    from .inference import arviz_compat

    try:
        return arviz_compat.from_netcdf(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ValueError(
            f"'{path}' is not a readable netCDF file ({type(error).__name__}); it is corrupt"
        ) from None


def _posterior_array(posterior, name: str, path: Path) -> torch.Tensor:
    if name not in posterior:
        raise ValueError(f"'{path}' has no posterior variable {name!r}; it is not a kmeans-limit posterior")
    variable = posterior[name]
    expected = ("chain", "draw", *POSTERIOR_VARS[name])
    if tuple(variable.dims) != expected:
        raise ValueError(f"'{path}': posterior {name!r} has dims {variable.dims}, expected {expected}")
    values = np.asarray(variable.values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"'{path}': posterior {name!r} is empty or holds NaN or inf; the file is corrupt")
    return torch.as_tensor(values.reshape(-1, *values.shape[2:]))


def _attr_json(attrs, name: str, path: Path):
    try:
        return json.loads(attrs[name]) if name in attrs else None
    except (TypeError, json.JSONDecodeError):
        raise ValueError(f"'{path}': attribute {name} is not valid JSON; the file is corrupt") from None


def posterior_fit(idata, where: str | os.PathLike = "the posterior") -> PosteriorFit:
    """Validate an ``InferenceData`` (in memory, or as read from a file) as a :class:`PosteriorFit`.

    Parameters
    ----------
    idata : arviz.InferenceData
    where : str or path-like
        Named in error messages (the file it came from).

    Raises
    ------
    ValueError
        As :func:`load_posterior`.
    """
    from .inference import arviz_compat

    path = where
    if not arviz_compat.has_group(idata, "posterior"):
        raise ValueError(f"'{path}' has no posterior group; it is not a kmeans-limit posterior")
    posterior = idata.posterior
    version = posterior.attrs.get("kmeans_limit_version")
    tagged = posterior.attrs.get("kmeans_limit_format") == POSTERIOR_FORMAT
    if tagged or (version is not None and not isinstance(version, str)):
        # save_posterior stores the format version under this key; fit_posterior's own attrs use
        # it for the package version (a string such as "0.1.0"), which is not a format version
        _check_version(version, path)
    weights, means, sigma = (_posterior_array(posterior, n, path) for n in ("weights", "means", "sigma"))
    if means.shape[1] != weights.shape[1] or (sigma <= 0).any():
        raise ValueError(f"'{path}': means and weights disagree on the clusters, or a σ draw is <= 0")
    if (weights < 0).any() or ((weights.sum(-1) - 1).abs() > 1e-4).any():
        raise ValueError(f"'{path}': posterior weights are not on the simplex; the file is corrupt")
    names = _attr_json(posterior.attrs, "kmeans_limit_feature_names", path)
    if names is None:
        names = [f"x{j}" for j in range(means.shape[2])]
    names = _check_names(names, means.shape[2], path)
    standardization = _check_standardization(
        _attr_json(posterior.attrs, "kmeans_limit_standardization", path), means.shape[2], path
    )
    return PosteriorFit(idata, means, weights, sigma, names, standardization)


def load_posterior(path: str | os.PathLike) -> PosteriorFit:
    """Load and validate a posterior saved as netCDF (by :func:`save_posterior` or ``to_netcdf``).

    Raises
    ------
    ValueError
        Not netCDF, no posterior group, missing ``weights``/``means``/``sigma``, wrong dims or
        shapes, non-finite values, σ <= 0, weights off the simplex, or a newer format version.
    """
    path = Path(path)
    return posterior_fit(_open_netcdf(path), path)


def load_fit(path: str | os.PathLike) -> PointFit | PosteriorFit:
    """Load a point fit (JSON) or a posterior (netCDF), told apart by the file's first bytes.

    Raises
    ------
    ValueError
        A missing file, a directory, or a file that is neither (with what to do).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"fit file '{path}' does not exist; check the path")
    if path.is_dir():
        raise ValueError(f"'{path}' is a directory; give a fit file (.json or .nc) written by kmeans-limit")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(HDF5_MAGIC) or head.startswith(b"CDF"):
        return load_posterior(path)
    if head.lstrip().startswith(b"{"):
        return load_point_fit(path)
    raise ValueError(
        f"'{path}' is not a kmeans-limit fit: expected a JSON point fit or a netCDF posterior "
        "(written by 'kmeans-limit anneal' or 'kmeans-limit posterior' with --out)"
    )
