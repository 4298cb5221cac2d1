"""The command line on data in their own units: the default priors follow the data (issue 12)."""

import numpy as np

from kmeans_limit.datasets import load_faithful
from kmeans_limit.inference import anneal, arviz_compat


def test_posterior_in_minutes_holds_the_hard_fit_in_its_hdi(tmp_path, cli_in_process):
    # Raw Old Faithful (minutes), no --standardize. With the old defaults (m0 = 0, tau0 = 2, made for
    # standardized data) the posterior means of waiting sat about 4 minutes below the hard fit's 80.3
    # and 54.6, outside their HDI; the data-scaled default puts m0 at the data mean and scales tau0, b0.
    faithful = load_faithful(standardized=False)
    path = tmp_path / "faithful.csv"
    np.savetxt(path, faithful.data.numpy(), delimiter=",", header="eruptions,waiting", comments="")
    out = tmp_path / "fit"
    args = ["-k", 2, "--num-samples", 400, "--num-warmup", 200, "--chains", 2, "--seed", 1, "-q"]
    result = cli_in_process("posterior", path, *args, "--out", out)
    assert result.returncode == 0, result.stderr
    idata = arviz_compat.from_netcdf(out / "posterior.nc")
    assert idata.posterior.attrs["priors"] == "data-scaled"
    np.testing.assert_allclose(idata.posterior.attrs["prior_m0"], faithful.data.mean(0).numpy(), rtol=1e-12)
    hard = anneal(faithful.data, 2).means.numpy()
    means = idata.posterior["means"]
    draws = means.values.reshape(-1, *means.shape[2:])  # (draws, cluster, feature)
    posterior_mean = draws.mean(0)
    for k in range(2):  # match each hard centroid to its posterior component (labels are canonical)
        j = int(np.argmin(((posterior_mean - hard[k]) ** 2).sum(-1)))
        for d in range(2):
            low, high = arviz_compat.hdi(draws[:, j, d], prob=0.94)
            assert low <= hard[k, d] <= high, (k, d, hard[k, d], low, high)
