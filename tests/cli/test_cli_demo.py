"""The main job: ``kmeans-limit demo`` end to end, as a user runs it (defaults, a subprocess)."""

import csv
import time

import numpy as np
from PIL import Image

from kmeans_limit._demo import DEMO_FILES
from kmeans_limit.io import load_point_fit, load_posterior


def test_demo_runs_in_under_a_minute_and_writes_every_file(tmp_path, run_cli, cli_in_process, one_line_error):
    start = time.perf_counter()
    result = run_cli("demo", "--out", tmp_path / "demo", cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"
    out = tmp_path / "demo"
    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_FILES)
    for line in [
        "Old Faithful",
        "splits made at σ = 1.378 (the first transition in theory: √λmax(Cov X) = 1.379,",  # the dense path
        "critical σ of the split clusters (√λmax of their responsibility-weighted covariance",
        "it is Lloyd's fixed point",
        "posterior (gibbs, σ learned): 2 chains x 1000 draws",
        "new data by ancestral sampling, 272 points from each fit",
    ]:
        assert line in result.stdout, line
    assert (out / "summary.txt").read_text().strip() == result.stdout.strip()

    hard = load_point_fit(out / "anneal.json")
    assert hard.extra["lloyd_fixed_point"] is True and hard.feature_names == ("eruptions", "waiting")
    posterior = load_posterior(out / "posterior.nc")
    assert posterior.means.shape == (2000, 2, 2)
    # the posterior is aligned with the hard fit: cluster k is near centroid k in both
    np.testing.assert_allclose(posterior.means.mean(0).numpy(), hard.means.numpy(), atol=0.15)
    for name in ("generated_hard.csv", "generated_posterior.csv"):
        rows = list(csv.reader((out / name).read_text().splitlines()))
        assert rows[0] == ["eruptions", "waiting", "component"] and len(rows) == 273
        minutes = np.array(rows[1:], dtype=float)[:, :2]
        assert 1 < minutes[:, 0].mean() < 6 and 40 < minutes[:, 1].mean() < 100  # the data's units
    for name in DEMO_FILES:
        if name.endswith(".png"):
            with Image.open(out / name) as image:
                assert image.format == "PNG" and min(image.size) > 300

    again = cli_in_process("demo", "--out", out)
    assert again.returncode == 2
    one_line_error(again.stderr, "exists", "--force")
