"""The sbc job behind ``kmeans-limit sbc``: files, summary, and refusals before any work."""

import csv

import pytest

from kmeans_limit._sbc_job import SBC_FILES, SBCJob, run_sbc_job

SMALL = dict(simulations=6, n_samples=8, num_samples=20, num_warmup=10, chains=1, thin=2, bins=2, seed=3)


def test_job_writes_ranks_plots_and_summary(tmp_path):
    summary, paths = run_sbc_job(SBCJob(2, **SMALL, out=tmp_path / "out"))
    assert sorted(p.name for p in paths.values()) == sorted(SBC_FILES)
    with (tmp_path / "out" / "sbc_ranks.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {"simulation", "data_seed", "fit_seed", "rank_sigma", "true_log_likelihood"} <= set(rows[0])
    assert all(0 <= int(r["rank_sigma"]) <= 10 for r in rows)
    assert (tmp_path / "out" / "sbc.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "sbc_summary.txt").read_text().strip() == summary
    assert "Simulation-based calibration of gibbs: 6 data sets of N = 8 rows" in summary
    assert len(summary.splitlines()) < 25  # one screen
    for name in ("sigma", "weights_sorted[0]", "log_likelihood"):
        assert name in summary


def test_job_refuses_existing_outputs_and_files_before_any_work(tmp_path):
    (tmp_path / "sbc.png").write_text("old")
    with pytest.raises(ValueError, match="sbc.png exists; pass --force"):
        run_sbc_job(SBCJob(2, **SMALL, out=tmp_path))
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        run_sbc_job(SBCJob(2, **SMALL, out=tmp_path / "file"))
    with pytest.raises(
        ValueError, match="--num-steps and --batch-size apply to the svi and map methods only"
    ):
        run_sbc_job(SBCJob(2, **SMALL, num_steps=10))
    with pytest.raises(ValueError, match="method='lloyd'"):
        run_sbc_job(SBCJob(2, **{**SMALL, "method": "lloyd"}))


def test_job_without_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary, paths = run_sbc_job(SBCJob(1, **{**SMALL, "sigma": 0.5}))
    assert paths == {} and list(tmp_path.iterdir()) == []
    assert "σ fixed at 0.5" in summary and "sigma " not in summary
