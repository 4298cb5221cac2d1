"""The wheel installs models/ and inference/ under kmeans_limit only, never as top-level packages."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (path,) = out.glob("kmeans_limit-*.whl")
    return path


def test_wheel_has_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"kmeans_limit", next(t for t in top_level if t.endswith(".dist-info"))}
    assert not any(name.startswith(("models/", "inference/")) for name in names)


def test_wheel_carries_subpackages_data_and_entry_point(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    for module in ("models/spherical_gmm.py", "inference/kernels.py", "inference/sampling.py"):
        assert f"kmeans_limit/{module}" in names
    assert "kmeans_limit/datasets/faithful.csv" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kmeans-limit = kmeans_limit.cli:main" in archive.read(entry_points).decode()
