"""``kmeans-limit sbc``: simulation-based calibration from the command line."""

import csv


def test_sbc_writes_ranks_plots_and_summary(tmp_path, cli_in_process):
    out = tmp_path / "sbc"
    args = ["-k", 2, "--simulations", 8, "--num-samples", 60, "--num-warmup", 30, "--thin", 5, "-q"]
    result = cli_in_process("sbc", *args, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Simulation-based calibration of gibbs: 8 data sets" in result.stdout
    for quantity in ("sigma", "weights_sorted[0]", "log_likelihood"):
        assert quantity in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["sbc.png", "sbc_ranks.csv", "sbc_summary.txt"]
    with open(out / "sbc_ranks.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and "rank_sigma" in rows[0]
    assert (out / "sbc_summary.txt").read_text().strip() == result.stdout.split("\n\nwrote into")[0].strip()


def test_sbc_refuses_options_that_do_not_apply(cli_in_process, one_line_error):
    result = cli_in_process("sbc", "-k", 2, "--simulations", 4, "--num-steps", 3)
    assert result.returncode == 2
    one_line_error(result.stderr, "--num-steps 3 applies to the svi and map methods only")
    result = cli_in_process("sbc", "-k", 2, "--simulations", 1)
    assert result.returncode == 2 and "--simulations" in result.stderr
