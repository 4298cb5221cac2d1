"""The command line as a new user meets it (issue 18): start-up, the inputs people have, errors that
used to be tracebacks, file modes and folders, MAP as a point estimate, many rows, large K."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kmeans_limit.inference import arviz_compat
from kmeans_limit.io import PointFit, load_posterior, save_point_fit

HEAVY = ("torch", "pyro", "arviz", "sklearn", "matplotlib", "xarray", "pandas", "numba", "scipy")


def modules_after(code: str) -> set[str]:
    """The heavy top-level modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return set(result.stdout.split()) & set(HEAVY)


CLI = "from kmeans_limit.cli import main\ntry:\n    main({args!r})\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["posterior", "--help"], ["sample", "--help"]])
def test_help_and_version_import_nothing_heavy(args):
    assert modules_after(CLI.format(args=args)) == set()


def test_the_package_and_the_inference_names_load_on_first_use():
    assert modules_after("import kmeans_limit, kmeans_limit.cli") == set()
    heavy = modules_after("from kmeans_limit.inference import sample_prior")
    assert not heavy & {"sklearn", "arviz", "matplotlib", "pandas"}, heavy
    import kmeans_limit
    import kmeans_limit.inference as inference
    import kmeans_limit.inference.anneal  # noqa: F401  the module: the package attribute stays the function
    from kmeans_limit.estimators import AnnealedKMeans

    assert kmeans_limit.AnnealedKMeans is AnnealedKMeans
    assert callable(inference.anneal) and inference.anneal.__name__ == "anneal"
    assert set(inference.__all__) <= set(dir(inference)) and "AnnealedKMeans" in dir(kmeans_limit)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = inference.nope


# --- inputs --------------------------------------------------------------------------------------


def test_anneal_reads_a_whitespace_file_and_a_gzipped_sipu_file(tmp_path, cli_in_process):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-5, 0.3, (15, 2)), rng.normal(5, 0.3, (15, 2))])
    np.savetxt(tmp_path / "blobs.txt", X)
    result = cli_in_process("anneal", tmp_path / "blobs.txt", "-k", 2, "-q")
    assert result.returncode == 0, result.stderr
    assert "N = 30, D = 2" in result.stdout
    from importlib import resources

    r15 = resources.files("kmeans_limit.datasets").joinpath("r15.data.gz")
    result = cli_in_process("anneal", r15, "-k", 15, "-q")
    assert result.returncode == 0, result.stderr and "N = 600" in result.stdout


# --- errors that were tracebacks -----------------------------------------------------------------

HUGE = "a,b\n1e300,1e300\n-1e300,2e300\n3e300,-1e300\n0,1e300\n"


@pytest.fixture
def files(tmp_path, monkeypatch):
    (tmp_path / "ok.csv").write_text("a,b\n0,0\n0,1\n5,5\n5,6\n")
    (tmp_path / "same.csv").write_text("a,b\n1,1\n1,1\n1,1\n")
    (tmp_path / "huge.csv").write_text(HUGE)
    (tmp_path / "semi.csv").write_text("a;b\n1,5;2,5\n3,5;4,25\n")
    (tmp_path / "a_file").write_text("x")
    save_point_fit(
        tmp_path / "fit.json",
        PointFit(np.eye(2), np.array([0.5, 0.5]), 0.3, ("a", "b"), None, {}),
        kind="anneal",
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [
    (["anneal", "huge.csv", "-k", "2"], ["too large for float64", "--standardize"]),
    (["posterior", "huge.csv", "-k", "2"], ["too large for float64", "--standardize"]),
    (["anneal", "semi.csv", "-k", "2"], ["decimal commas ('1,5') separated by semicolons", "'.'"]),
    (["posterior", "same.csv", "-k", "1", "--out", "new"], ["same point", "--sigma"]),
    (["posterior", "ok.csv", "-k", "2", "--sigma", "1e-300"], ["--sigma 1e-300 is too small", "give σ >="]),
    (["sample", "-n", "5", "-k", "1000000000000"], ["-k 1000000000000 is too large", "GiB"]),
    (["sample", "-n", "100000000000", "-k", "2"], ["-n 100000000000 is too large", "fewer points"]),
    (
        ["sample", "-n", "5", "--from", "fit.json", "--features", "7"],
        ["--features 7 does not apply", "D = 2"],
    ),
    (["sample", "-n", "5", "-k", "2", "--out", "gen.txt"], ["extension '.txt'", ".csv, .tsv, .npy"]),
    (["sample", "-n", "5", "-k", "2", "--out", "gen"], ["no extension"]),
    (["sample", "-n", "5", "-k", "2", "--out", "nowhere/gen.csv"], ["folder nowhere does not exist"]),
    (["sample", "-n", "5", "-k", "2", "--standardized-units"], ["applies with --from FIT only"]),
    (["anneal", "ok.csv", "-k", "2", "--out", "a_file/sub"], ["a_file is a file, not a folder"]),
]


@pytest.mark.parametrize(("args", "fragments"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_one_line_errors_with_status_2(files, cli_in_process, one_line_error, args, fragments):
    result = cli_in_process(*args)
    assert result.returncode == 2, result
    one_line_error(result.stderr, *fragments)
    assert result.stdout == "" and not (files / "new").exists()


def test_standardize_fits_data_near_the_top_of_float64(files, cli_in_process):
    result = cli_in_process("anneal", "huge.csv", "-k", 2, "--standardize", "-q")
    assert result.returncode == 0, result.stderr
    assert "it is Lloyd's fixed point" in result.stdout


def test_an_unwritable_out_is_status_2(files, cli_in_process, one_line_error, monkeypatch):
    """Checked with os.access (the tests may run as root, for whom chmod does not bite)."""
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    for args, fragment in [
        (["anneal", "ok.csv", "-k", 2, "--out", "new"], "cannot create new in . (permission denied)"),
        (["sample", "-n", 3, "-k", 2, "--out", "g.csv"], "cannot write into . (permission denied)"),
    ]:
        result = cli_in_process(*args)
        assert result.returncode == 2
        one_line_error(result.stderr, fragment)
    assert not (files / "new").exists()


def test_a_run_that_fails_while_writing_leaves_no_empty_folder(files, cli_in_process, monkeypatch):
    from kmeans_limit import _jobs

    def fail(*args, **kwargs):
        raise ValueError("disk full (simulated)")

    monkeypatch.setattr(_jobs, "save_point_fit", fail)
    result = cli_in_process("anneal", "ok.csv", "-k", 2, "--out", "fresh")
    assert result.returncode == 2 and "disk full" in result.stderr
    assert not (files / "fresh").exists()


def test_outputs_get_the_umask_mode(files, run_cli):
    def umask_027():
        os.umask(0o027)

    env = {k: v for k, v in os.environ.items() if k != "KMEANS_LIMIT_DEBUG"}
    for args in (
        ["anneal", "ok.csv", "-k", "2", "--out", "fit"],
        ["sample", "-n", "5", "-k", "2", "--out", "g.npy"],
    ):
        argv = [sys.executable, "-m", "kmeans_limit.cli", *args]
        done = subprocess.run(
            argv, cwd=files, env=env, preexec_fn=umask_027, capture_output=True, timeout=180
        )
        assert done.returncode == 0, done.stderr
    for path in [*(files / "fit").iterdir(), files / "g.npy"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_sample_writes_tsv(files, cli_in_process):
    result = cli_in_process("sample", "-n", 4, "-k", 2, "--features", 3, "--out", "g.tsv")
    assert result.returncode == 0, result.stderr
    lines = (files / "g.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["x0", "x1", "x2", "component"] and len(lines) == 5


# --- MAP, many rows, large K ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs12(tmp_path_factory):
    """72 points around twelve well separated centres."""
    rng = np.random.default_rng(1)
    centres = np.array([[x, y] for x in range(4) for y in range(3)], dtype=float) * 10
    X = np.repeat(centres, 6, axis=0) + 0.5 * rng.normal(size=(72, 2))
    path = tmp_path_factory.mktemp("k12") / "k12.csv"
    np.savetxt(path, X, delimiter=",", header="u,v", comments="")
    return path


def test_map_is_reported_and_saved_as_a_point_estimate(blobs12, tmp_path, cli_in_process):
    out = tmp_path / "map"
    args = ["-k", 3, "--method", "map", "--num-steps", 50, "--columns", "u,v", "--out", out, "-q"]
    result = cli_in_process("posterior", blobs12, *args)
    assert result.returncode == 0, result.stderr
    assert "a point estimate, the posterior mode" in result.stdout
    assert (
        "chains x" not in result.stdout and "hdi" not in result.stdout and "sd" not in result.stdout.split()
    )
    assert sorted(p.name for p in out.iterdir()) == ["posterior.nc", "posterior_centroids.png"]
    fit = load_posterior(out / "posterior.nc")
    assert fit.means.shape == (1, 3, 2)
    assert int(fit.idata.posterior.attrs["point_estimate_repeated"]) == 1


def test_log_likelihood_is_chosen_by_size_with_a_note_or_by_the_option(
    blobs12, tmp_path, cli_in_process, monkeypatch
):
    from kmeans_limit import _jobs

    base = ["-k", 2, "--num-samples", 10, "--num-warmup", 5, "--chains", 1]
    monkeypatch.setattr(_jobs, "LOG_LIKELIHOOD_LIMIT", 100)
    auto = cli_in_process("posterior", blobs12, *base, "--out", tmp_path / "auto")
    assert auto.returncode == 0, auto.stderr
    assert (
        "not storing the pointwise log-likelihood: 720 values" in auto.stderr
        and "--log-likelihood" in auto.stderr
    )
    assert "log_likelihood" not in arviz_compat.group_names(
        arviz_compat.from_netcdf(tmp_path / "auto" / "posterior.nc")
    )
    kept = cli_in_process("posterior", blobs12, *base, "--log-likelihood", "--out", tmp_path / "kept")
    assert kept.returncode == 0 and "note" not in kept.stderr
    assert "log_likelihood" in arviz_compat.group_names(
        arviz_compat.from_netcdf(tmp_path / "kept" / "posterior.nc")
    )
    monkeypatch.setattr(_jobs, "LOG_LIKELIHOOD_LIMIT", 10**9)
    dropped = cli_in_process(
        "posterior", blobs12, *base, "--no-log-likelihood", "--out", tmp_path / "dropped"
    )
    assert dropped.returncode == 0 and "log_likelihood" not in arviz_compat.group_names(
        arviz_compat.from_netcdf(tmp_path / "dropped" / "posterior.nc")
    )


def test_anneal_summary_at_large_k_is_short_and_says_so(blobs12, tmp_path, cli_in_process):
    result = cli_in_process("anneal", blobs12, "-k", 12, "-q", "--out", tmp_path / "a12")
    assert result.returncode == 0, result.stderr
    assert "K = 12 > 10: label-invariant quantities only" in result.stdout
    assert "(11 values)" in result.stdout and "mean 11" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < 200
    document = json.loads((tmp_path / "a12" / "anneal.json").read_text())
    assert len(document["means"]) == 12  # everything is in the file


def test_posterior_summary_and_plots_at_large_k(blobs12, tmp_path, cli_in_process):
    out = tmp_path / "p12"
    args = ["-k", 12, "--num-samples", 20, "--num-warmup", 10, "--chains", 2, "-q", "--out", out]
    result = cli_in_process("posterior", blobs12, *args)
    assert result.returncode == 0, result.stderr
    assert "label-invariant quantities only" in result.stdout and "effective K" in result.stdout
    assert "weight 11" not in result.stdout
    with Image.open(out / "posterior_pairs.png") as image:
        assert max(image.size) < 1600, image.size
    with Image.open(out / "posterior_centroids.png") as image:
        assert max(image.size) < 1000


def test_help_says_what_out_writes(cli_in_process):
    posterior = cli_in_process("posterior", "--help").stdout
    assert (
        "posterior.nc" in posterior
        and "posterior_pairs.png" in posterior
        and "--no-log-likelihood" in posterior
    )
    compare = cli_in_process("compare", "--help").stdout
    assert "compare.csv" in compare and "no plots" in compare and "PNG" not in compare
    assert "whitespace" in cli_in_process("--help").stdout


def test_compare_csv_has_no_index_column_and_map_is_named_a_point(blobs12, tmp_path, run_cli):
    """A subprocess: compare_posteriors warns on MAP's zero spread, which pytest would make an error."""
    args = ["-k", 2, "--methods", "gibbs,map", "--num-samples", 20, "--num-warmup", 10, "--num-steps", 50]
    result = run_cli("compare", blobs12, *args, "-q", "--out", tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "map is a point estimate" in result.stdout
    header = (tmp_path / "c" / "compare.csv").read_text().splitlines()[0].split(",")
    assert header[0] != "" and all(header)


def test_draws_default_to_fewer_for_mini_batch_svi():
    from kmeans_limit._jobs import default_draws

    assert default_draws(None, "gibbs", None) == default_draws(None, "svi", None) == 1000
    assert default_draws(None, "svi", 1000) == 250 and default_draws(40, "svi", 1000) == 40


def test_identical_rows_fit_at_a_fixed_sigma(files, cli_in_process):
    result = cli_in_process("posterior", "same.csv", "-k", 1, "--sigma", 0.5, "--num-samples", 20, "-q")
    assert result.returncode == 0, result.stderr
    assert "posterior (gibbs): 2 chains x 20 draws, N = 3" in result.stdout
