"""Both ArviZ lines: arviz 0.23 (InferenceData, Python 3.11) and arviz 1.x (DataTree, Python 3.12+).

Whichever line is installed, every public module imports, a fit is the structure that line expects,
tables keep one set of columns, and a posterior saved as netCDF by either line loads (the files under
``tests/data/`` were written by :func:`write_reference_file` under each line: ``python
tests/unit/test_arviz_lines.py DIR`` writes the running line's).
"""

import importlib
import pkgutil
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from kmeans_limit.inference import arviz_compat, compare_k, fit_posterior, invariant_summary
from kmeans_limit.io import load_posterior, save_posterior

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
QUICK = {"num_samples": 30, "num_warmup": 10, "num_chains": 2, "progress": False, "seed": 0}


def test_the_line_matches_the_python():
    """arviz 0.23 below Python 3.12, 1.x from it (pyproject's markers), and a fit is that line's structure."""
    assert arviz_compat.ARVIZ_1 == (sys.version_info >= (3, 12))
    assert arviz_compat.version().startswith("1." if arviz_compat.ARVIZ_1 else "0.23")
    import arviz

    expected = xr.DataTree if arviz_compat.ARVIZ_1 else arviz.InferenceData
    X = np.random.default_rng(0).normal(size=(12, 2))
    idata = fit_posterior(X, 2, **QUICK)
    assert isinstance(idata, expected) and arviz_compat.is_posterior(idata)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(
        arviz_compat.group_names(idata)
    )
    assert idata.posterior.attrs["arviz_version"] == arviz_compat.version()


def test_every_public_module_imports():
    names = ["kmeans_limit", "kmeans_limit.cli", "kmeans_limit.inference", "kmeans_limit.models"]
    # models/ and inference/ install under kmeans_limit from folders of their own: walk each package
    for package in ("kmeans_limit", "kmeans_limit.inference", "kmeans_limit.models"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    assert {"kmeans_limit.inference", "kmeans_limit.models", "kmeans_limit.inference.arviz_compat"} <= set(
        names
    )
    for name in names:
        importlib.import_module(name)
    # and the lazily exported names of the inference package all resolve
    inference = importlib.import_module("kmeans_limit.inference")
    for name in inference.__all__:
        assert getattr(inference, name) is not None, name


def test_arviz_is_imported_only_by_the_compatibility_module():
    """No name of one line outside arviz_compat: nothing else imports arviz or builds a DataTree."""
    pattern = re.compile(r"^\s*(import arviz|from arviz)|open_datatree|xr\.DataTree\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("kmeans_limit", "inference", "models", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "arviz_compat.py"
        and path != Path(__file__).resolve()
        and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_groups_copies_and_attrs():
    idata = arviz_compat.from_dict(
        {"posterior": {"a": np.zeros((2, 3))}, "observed_data": {"x": np.ones((4, 2))}}, attrs={"tag": "t"}
    )
    assert arviz_compat.group_names(idata) == ("posterior", "observed_data")
    assert arviz_compat.has_group(idata, "posterior") and not arviz_compat.has_group(idata, "log_likelihood")
    assert idata.observed_data["x"].dims[0] != "chain"  # observed data has no sample dims
    copy = arviz_compat.copy(idata)
    arviz_compat.update_attrs(copy, {"tag": "changed"})
    copy.posterior["a"] = copy.posterior["a"] + 1.0
    assert idata.posterior.attrs["tag"] == "t" and float(idata.posterior["a"].sum()) == 0.0
    assert copy.observed_data.attrs["tag"] == "changed"
    arviz_compat.set_groups(copy, {"extra": xr.Dataset({"b": ("k", [1.0, 2.0])}), "posterior": xr.Dataset()})
    assert "extra" in arviz_compat.group_names(copy) and "a" not in copy.posterior
    assert isinstance(arviz_compat.group(idata, "posterior"), xr.Dataset)
    with pytest.raises(ValueError, match="no group 'log_likelihood'"):
        arviz_compat.group(idata, "log_likelihood")
    arviz_compat.drop_group(copy, "extra")
    arviz_compat.drop_group(copy, "never_there")  # nothing to drop: no error
    assert arviz_compat.group_names(copy) == ("posterior", "observed_data")
    assert arviz_compat.group_names(idata) == ("posterior", "observed_data")


def test_statistics_agree_with_their_definitions():
    """ess/rhat/mcse of i.i.d. draws, the HDI of a known sample, and the summary's columns."""
    draws = np.random.default_rng(1).normal(size=(4, 500))
    ess = arviz_compat.ess(draws)
    assert 1500 < ess < 2600  # i.i.d.: about the 2000 draws
    assert abs(arviz_compat.rhat(draws) - 1) < 0.01
    # mcse of the mean = sd / sqrt(ESS), both computed by arviz from the same draws
    assert arviz_compat.mcse(draws) == pytest.approx(draws.std(ddof=1) / np.sqrt(ess), rel=0.05)
    low, high = arviz_compat.hdi(np.arange(101.0), prob=0.9)  # 91 points of 101 hold 90%
    assert high - low == pytest.approx(90.0, abs=1.0)
    table = arviz_compat.summary(xr.Dataset({"v": (("chain", "draw"), draws)}))
    assert list(table.columns[:4]) == ["mean", "sd", "hdi_3%", "hdi_97%"]
    assert {"mcse_mean", "ess_bulk", "r_hat"} <= set(table.columns)
    assert table.loc["v", "mean"] == pytest.approx(draws.mean(), abs=0.01)


def test_compare_k_and_invariant_summary_on_this_line():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 0.3, size=(15, 2)), rng.normal(3, 0.3, size=(15, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # LOO's Pareto-k warning on few draws
        table = compare_k(X, [1, 2], **QUICK)
    assert {"rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse"} <= set(table.columns)
    assert table.index[0] == "K=2" and (table["elpd_diff"] >= 0).all()
    if arviz_compat.ARVIZ_1:
        with pytest.raises(ValueError, match="LOO only"):
            compare_k(X, [1, 2], ic="waic", **QUICK)
    summary = invariant_summary(fit_posterior(X, 2, **QUICK))
    assert {"mean", "sd", "ess_bulk", "r_hat", "hdi_3%", "hdi_97%"} <= set(summary.columns)


def reference_posterior():
    """The posterior of the files under tests/data: 2 chains x 4 draws, K = 2, D = 2, fixed numbers."""
    rng = np.random.default_rng(17)
    posterior = {
        "weights": rng.dirichlet([5.0, 5.0], size=(2, 4)),
        "means": rng.normal(size=(2, 4, 2, 2)),
        "sigma": rng.uniform(0.5, 1.0, size=(2, 4)),
    }
    return arviz_compat.from_dict(
        {"posterior": posterior}, dims={"weights": ["cluster"], "means": ["cluster", "feature"]}
    )


def write_reference_file(folder: Path) -> Path:
    """Save :func:`reference_posterior` as the running line's file, ``posterior_arviz<major>.nc``."""
    name = f"posterior_arviz{'1' if arviz_compat.ARVIZ_1 else '023'}.nc"
    return save_posterior(folder / name, reference_posterior(), feature_names=("u", "v"), force=True)


@pytest.mark.parametrize("name", ["posterior_arviz023.nc", "posterior_arviz1.nc"])
def test_a_file_saved_by_either_line_loads(name):
    expected = reference_posterior().posterior
    fit = load_posterior(DATA / name)
    assert arviz_compat.is_posterior(fit.idata) and fit.feature_names == ("u", "v")
    np.testing.assert_array_equal(fit.means.numpy(), expected["means"].values.reshape(8, 2, 2))
    np.testing.assert_array_equal(fit.weights.numpy(), expected["weights"].values.reshape(8, 2))
    np.testing.assert_array_equal(fit.sigma.numpy(), expected["sigma"].values.reshape(8))


def test_a_fit_round_trips_on_this_line(tmp_path):
    X = np.random.default_rng(2).normal(size=(10, 2))
    idata = fit_posterior(X, 2, **QUICK)
    fit = load_posterior(save_posterior(tmp_path / "p.nc", idata, feature_names=("a", "b")))
    np.testing.assert_array_equal(fit.means.numpy(), idata.posterior["means"].values.reshape(60, 2, 2))
    assert arviz_compat.group_names(fit.idata) == arviz_compat.group_names(idata)
    assert (
        fit.idata.posterior.attrs["kmeans_limit_format"]
        and "kmeans_limit_format" not in idata.posterior.attrs
    )


def test_summary_of_a_posterior_and_the_forest_plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fit = reference_posterior()
    table = arviz_compat.summary(fit, var_names=["sigma"])
    assert list(table.index) == ["sigma"]
    assert table.loc["sigma", "mean"] == pytest.approx(float(fit.posterior["sigma"].mean()), abs=0.01)
    arviz_compat.plot_forest({"a": fit, "b": arviz_compat.copy(fit)}, var_names=["sigma", "weights"])
    assert plt.get_fignums()
    plt.close("all")


if __name__ == "__main__":
    print(write_reference_file(Path(sys.argv[1])))
