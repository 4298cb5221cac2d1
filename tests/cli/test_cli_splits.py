"""The command line's annealing text and files name the split σ and the critical σ for what they are;
``main`` called from Python leaves the warning machinery of the process as it was."""

import warnings

import pytest

from kmeans_limit import _jobs, cli
from kmeans_limit.datasets import load_sipu
from kmeans_limit.io import load_point_fit


@pytest.fixture(scope="module")
def r15_csv(tmp_path_factory):
    data = load_sipu("r15")
    path = tmp_path_factory.mktemp("data") / "r15.csv"
    path.write_text("x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in data.data.tolist()))
    return path


def numbers_after(text: str, prefix: str) -> tuple[list[float], int]:
    """The numbers printed after ``prefix`` (a long list shows its head, "...", its last) and their count."""
    line = next(line for line in text.splitlines() if prefix in line)
    values = line.split(prefix, 1)[1].split(" (", 1)[0]
    shown = [float(v) for v in values.split(",") if v.strip() != "..."]
    counted = line.split(prefix, 1)[1].split(" (", 1)[1].split(" values)")[0] if "..." in values else None
    return shown, int(counted) if counted is not None else len(shown)


def test_r15_summary_prints_split_sigmas_below_the_first_transition(r15_csv, cli_in_process):
    """The defect: "split at σ_c = 1, 1.048, ..." on r15, the second above the theoretical first."""
    result = cli_in_process("anneal", r15_csv, "-k", 15, "--standardize", "--quiet")
    assert result.returncode == 0, result.stderr
    split, n_split = numbers_after(result.stdout, "splits made at σ = ")
    first = float(result.stdout.split("√λmax(Cov X) = ")[1].split(",")[0])
    assert first == pytest.approx(1.0, abs=1e-3)  # standardized: λmax(Cov X) is about 1
    assert n_split == 14 and all(s <= first for s in split)
    assert split == sorted(split, reverse=True) and split[0] == pytest.approx(0.9 * first, rel=1e-3)
    critical, n_critical = numbers_after(result.stdout, "unstable below it): ")
    assert n_critical == 14 and critical[0] == pytest.approx(first, rel=1e-3)


def test_anneal_json_round_trips_split_and_critical_sigmas(tmp_path):
    data = _jobs.Data(load_sipu("r15", standardized=True).data, ("x", "y"), None, "r15")
    outcome = _jobs.run_anneal(data.X, 15, seed=0, cooling=0.9, weights="learn")
    paths = _jobs.plan_outputs(tmp_path / "out", _jobs.ANNEAL_FILES, force=False)
    with _jobs.writing(paths):
        _jobs.write_anneal(outcome, data, paths, force=False, seed=0)
    extra = load_point_fit(paths["anneal.json"]).extra
    assert extra["split_sigmas"] == outcome.result.split_sigmas.tolist()  # JSON floats round trip exactly
    assert extra["critical_sigmas"] == outcome.result.critical_sigmas.tolist()
    assert extra["path"]["sigma"][1] == extra["split_sigmas"][0]


def test_cooling_help_says_what_the_schedule_does(cli_in_process):
    result = cli_in_process("anneal", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "multiplied by this at each level" not in text
    assert "cooling × √λmax of the split cluster's covariance" in text and "cooling^4" in text


def test_main_leaves_the_warning_filters_and_showwarning_as_they_were(cli_in_process):
    filters, showwarning = list(warnings.filters), warnings.showwarning
    assert cli_in_process("--version").returncode == 0
    assert cli_in_process("anneal", "no-such-file.csv", "-k", 2).returncode == 2
    assert warnings.filters == filters and warnings.showwarning is showwarning


def test_warnings_inside_main_print_one_line_and_later_ones_print_as_before(monkeypatch, capsys):
    def warn(**_kwargs):
        warnings.warn("first line\nsecond line", UserWarning, stacklevel=1)

    monkeypatch.setattr(cli.cli, "main", warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        cli.main([])
        assert capsys.readouterr().err == "kmeans-limit: warning: first line\n"
        assert warnings.showwarning is before
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("later", UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["later"]
        assert "kmeans-limit" not in capsys.readouterr().err
