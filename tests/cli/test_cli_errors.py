"""Bad input as a new user would try it: exit status 2 and one clear line on stderr, never a traceback.

The whole matrix runs through ``main`` in this process (the script's entry point, fast); a few cases
also run as real subprocesses, to hold the installed entry point and ``python -m`` to the same rule.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmeans_limit.io import PointFit, save_point_fit

DATA = "a,b\n0,0\n0,1\n5,5\n5,6\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "ok.csv").write_text(DATA)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "words.csv").write_text("name,b\nx,1\ny,2\n")
    (tmp_path / "holes.csv").write_text("a,b\n1,2\n,3\n")
    (tmp_path / "same.csv").write_text("a,b\n1,1\n1,1\n1,1\n")
    (tmp_path / "broken.json").write_text('{"format": "kmeans-limit/point-fit", "means": [[1, 2]')
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "foreign.nc").write_bytes(b"CDF\x01" + b"\x00" * 40)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    fit = PointFit(np.eye(2), np.array([0.5, 0.5]), 0.3, ("a", "b"), None, {})
    save_point_fit(tmp_path / "fit.json", fit, kind="anneal")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "anneal.json").write_text("{}")
    (tmp_path / "a_file").write_text("x")
    return tmp_path


CASES = [
    (["anneal", "missing.csv", "-k", "2"], ["does not exist"]),
    (["anneal", ".", "-k", "2"], ["is a directory"]),
    (["anneal", "empty.csv", "-k", "2"], ["is empty"]),
    (["anneal", "words.csv", "-k", "2"], ["'x', which is not a number", "--columns"]),
    (["anneal", "holes.csv", "-k", "2"], ["line 3, column 'a', is missing", "impute"]),
    (["anneal", "ok.csv", "-k", "2", "--columns", "c"], ["column 'c' not found", "a, b"]),
    (["anneal", "ok.csv", "-k", "2", "--columns", ","], ["selects no column"]),
    (["anneal", "cube.npy", "-k", "2"], ["should be 2-D"]),
    (["anneal", "same.csv", "-k", "2"], ["1 distinct points, fewer than n_clusters=2", "-k"]),
    (["anneal", "ok.csv", "-k", "5"], ["n_samples=4 should be >= n_clusters=5"]),
    (["anneal", "ok.csv", "-k", "0"], ["'-k' / '--clusters': 0 is not in the range x>=1"]),
    (["anneal", "ok.csv"], ["give -k K (the number of clusters) or --penalty L"]),
    (["anneal", "-k", "2"], ["Missing argument 'DATA'"]),
    (["anneal", "ok.csv", "-k", "two"], ["'two' is not a valid integer"]),
    (["anneal", "ok.csv", "-k", "2", "--cooling", "1.5"], ["--cooling"]),
    (["anneal", "ok.csv", "-k", "1", "--out", "taken"], ["anneal.json exists", "--force"]),
    (["anneal", "ok.csv", "-k", "1", "--out", "a_file"], ["is a file; give a directory"]),
    (["posterior", "ok.csv", "-k", "2", "--sigma", "-1"], ["'--sigma': '-1' should be a finite number > 0"]),
    (["posterior", "ok.csv", "-k", "2", "--sigma", "inf"], ["should be a finite number > 0"]),
    (
        ["posterior", "ok.csv", "-k", "2", "--method", "hmc"],
        ["'hmc' is not one of 'gibbs', 'nuts', 'svi', 'map'"],
    ),
    (["posterior", "ok.csv", "-k", "2", "--num-samples", "0"], ["--num-samples"]),
    (
        ["posterior", "ok.csv", "-k", "2", "--batch-size", "2"],
        ["--batch-size 2 applies to the svi and map methods only"],
    ),
    (
        ["posterior", "ok.csv", "-k", "2", "--method", "svi", "--batch-size", "9"],
        ["batch_size=9 should be <= n_samples=4"],
    ),
    (["posterior", "ok.csv", "-k", "2", "--method", "svi", "--batch-size", "0"], ["--batch-size"]),
    (
        ["compare", "ok.csv", "-k", "2", "--methods", "gibbs,nuts", "--batch-size", "2"],
        ["applies to the svi and map methods only"],
    ),
    (
        ["compare", "ok.csv", "-k", "2", "--methods", "gibbs,hmc"],
        ["distinct methods from gibbs, nuts, svi, map"],
    ),
    (["compare", "ok.csv", "-k", "2", "--methods", "gibbs,gibbs"], ["distinct methods"]),
    (["compare", "ok.csv", "-k", "2", "--methods", "gibbs"], ["two or more distinct methods"]),
    (["sample", "-n", "5"], ["give -k K", "--from FIT"]),
    (["sample", "-n", "5", "-k", "2", "--sigma", "-0.5"], ["should be a finite number >= 0"]),
    (["sample", "-n", "-3", "-k", "2"], ["-n"]),
    (["sample", "-n", "5", "--from", "nofit.json"], ["does not exist"]),
    (["sample", "-n", "5", "--from", "ok.csv"], ["is not a kmeans-limit fit"]),
    (["sample", "-n", "5", "--from", "broken.json"], ["not valid JSON"]),
    (["sample", "-n", "5", "--from", "foreign.json"], ["not a kmeans-limit point fit"]),
    (["sample", "-n", "5", "--from", "foreign.nc"], ["not a readable netCDF file"]),
    (["sample", "-n", "5", "--from", "fit.json", "-k", "3"], ["-k 3 disagrees", "K = 2"]),
    (["sample", "-n", "5", "--from", "."], ["is a directory"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
    (["anneal", "ok.csv", "-k", "2", "--frob"], ["No such option '--frob'"]),
]


@pytest.mark.parametrize(("args", "fragments"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_and_status_2(
    files, monkeypatch, cli_in_process, one_line_error, args, fragments
):
    monkeypatch.chdir(files)
    result = cli_in_process(*args)
    assert result.returncode == 2, result
    one_line_error(result.stderr, *fragments)
    assert result.stdout == ""


def test_no_files_are_left_behind_by_a_refused_run(files, monkeypatch, cli_in_process):
    monkeypatch.chdir(files)
    cli_in_process("anneal", "missing.csv", "-k", "2", "--out", "new_dir")
    assert not (files / "new_dir").exists()
    assert (files / "taken" / "anneal.json").read_text() == "{}"


def test_subprocess_entry_points_fail_the_same_way(files, one_line_error):
    """The installed script and ``python -m kmeans_limit.cli``, run side by side."""
    script = Path(sys.executable).with_name("kmeans-limit")
    cases = [
        ([str(script), "anneal", "missing.csv", "-k", "2"], "does not exist"),
        (
            [sys.executable, "-m", "kmeans_limit.cli", "sample", "-n", "5", "--from", "broken.json"],
            "not valid JSON",
        ),
    ]
    running = [
        subprocess.Popen(argv, cwd=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv, _ in cases
    ]
    for process, (_, fragment) in zip(running, cases, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2 and stdout == ""
        one_line_error(stderr, fragment)


def test_help_on_every_command(cli_in_process):
    top = cli_in_process("--help")
    assert top.returncode == 0 and "zero-variance limit" in top.stdout
    for command in ("demo", "anneal", "explore", "posterior", "sample", "compare"):
        page = cli_in_process(command, "--help")
        assert page.returncode == 0 and "Usage: kmeans-limit " + command in page.stdout
        assert "--seed" in page.stdout
    assert cli_in_process("--version").stdout.startswith("kmeans-limit, version ")
