"""Reading data files, and saving and loading fits: every bad file is a clear ValueError."""

import json

import numpy as np
import pytest
import torch

from kmeans_limit.datasets import load_faithful, standardize
from kmeans_limit.inference import arviz_compat
from kmeans_limit.io import (
    PointFit,
    Standardization,
    atomic_write,
    load_fit,
    load_point_fit,
    load_posterior,
    read_data,
    save_point_fit,
    save_posterior,
    standardize_with_stats,
    write_table,
)

MEANS = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.25, 0.75], dtype=torch.float64)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- data files --------------------------------------------------------------------------------


def test_csv_with_header_tsv_without_and_columns_by_name_or_index(tmp_path):
    csv_path = write(tmp_path, "d.csv", "id,a,b\n1,0.5,2\n\n2,1.5,4\n# a comment\n3,2.5,6\n")
    data = read_data(csv_path, columns=["b", "1"])
    assert data.feature_names == ("b", "a")
    assert torch.equal(data.data, torch.tensor([[2.0, 0.5], [4.0, 1.5], [6.0, 2.5]], dtype=torch.float64))
    tsv = read_data(write(tmp_path, "d.tsv", "1\t2\n3\t4\n"))
    assert tsv.feature_names == ("x0", "x1") and tsv.data.shape == (2, 2)


def test_semicolon_and_single_column_files(tmp_path):
    assert read_data(write(tmp_path, "s.csv", "a;b\n1;2\n3;4\n")).data.shape == (2, 2)
    one = read_data(write(tmp_path, "one.csv", "w\n1\n2\n3\n"))
    assert one.feature_names == ("w",) and one.data.shape == (3, 1)


def test_npy_one_and_two_dimensional(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6.0).reshape(3, 2))
    np.save(tmp_path / "v.npy", np.arange(4, dtype=np.int32))
    assert read_data(tmp_path / "a.npy", columns=["1"]).data.tolist() == [[1.0], [3.0], [5.0]]
    assert read_data(tmp_path / "v.npy").data.shape == (4, 1)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n\n  \n", "is empty"),
        ("header.csv", "a,b\n", "header line but no rows"),
        ("text.csv", "a,b\n1,x\n", "column 'b', holds 'x', which is not a number; choose numeric columns"),
        ("na.csv", "a,b\n1,2\nNA,3\n", "line 3, column 'a', is missing"),
        ("blankcell.csv", "a,b\n1,\n", "is missing"),
        ("inf.csv", "a,b\n1,inf\n", "finite number"),
        ("ragged.csv", "a,b\n1,2\n3\n", "line 3 has 1 fields but the first line has 2"),
        ("nafirst.csv", "1.0,NA,3.0\n4,5,6\n", r"line 1 mixes numbers and text \('NA'\)"),
    ],
)
def test_bad_text_files(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        read_data(write(tmp_path, name, content))


def test_missing_directory_binary_and_unknown_columns(tmp_path):
    with pytest.raises(ValueError, match="does not exist; check the path"):
        read_data(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="is a directory"):
        read_data(tmp_path)
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a text file"):
        read_data(tmp_path / "b.csv")
    path = write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(
        ValueError, match=r"column 'c' not found; the columns are a, b \(or 0-based indices 0..1\)"
    ):
        read_data(path, columns=["c"])
    with pytest.raises(ValueError, match="selects no column"):
        read_data(path, columns=[])
    with pytest.raises(ValueError, match="names a column twice"):
        read_data(path, columns=["a", "0"])


def test_bad_npy_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "str.npy", np.array([["a", "b"]]))
    (tmp_path / "junk.npy").write_bytes(b"not an array at all")
    for name, message in [
        ("obj.npy", "holds Python objects"),
        ("cube.npy", r"shape \(2, 2, 2\); it should be 2-D"),
        ("nan.npy", "NaN or inf"),
        ("str.npy", "plain numeric array"),
        ("junk.npy", "not a valid .npy file"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_data(tmp_path / name)


def test_standardize_with_stats_matches_the_library_and_undoes():
    X = load_faithful().data
    Z, stats = standardize_with_stats(X)
    assert torch.equal(Z, standardize(X))
    torch.testing.assert_close(stats.undo(Z), X)
    constant = torch.tensor([[1.0, 5.0], [2.0, 5.0]], dtype=torch.float64)
    assert standardize_with_stats(constant)[1].scale == (0.5, 1.0)


# --- atomic writes -----------------------------------------------------------------------------


def test_atomic_write_refuses_to_overwrite_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("one"))
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        atomic_write(target, lambda tmp: tmp.write_text("two"))
    assert target.read_text() == "one"

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken, force=True)
    assert target.read_text() == "one" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    atomic_write(target, lambda tmp: tmp.write_text("two"), force=True)
    assert target.read_text() == "two"


def test_write_table_round_trips_exactly(tmp_path):
    X = torch.tensor([[0.1, 1 / 3], [2.0, -7.25]], dtype=torch.float64)
    write_table(tmp_path / "t.csv", X, ("a", "b"), labels=torch.tensor([1, 0]))
    back = read_data(tmp_path / "t.csv", columns=["a", "b"])
    assert torch.equal(back.data, X)
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "a,b,component"


# --- point fits (JSON) -------------------------------------------------------------------------


def point_fit(**extra):
    stats = Standardization((1.0, 2.0), (3.0, 4.0))
    return PointFit(MEANS, WEIGHTS, 0.5, ("a", "b"), stats, extra)


def test_point_fit_round_trip(tmp_path):
    path = save_point_fit(
        tmp_path / "fit.json", point_fit(inertia=1.5, path={"ll": [float("-inf"), 1.0]}), kind="anneal"
    )
    fit = load_point_fit(path)
    assert torch.equal(fit.means, MEANS) and torch.equal(fit.weights, WEIGHTS) and fit.sigma == 0.5
    assert fit.feature_names == ("a", "b") and fit.standardization == Standardization((1.0, 2.0), (3.0, 4.0))
    assert fit.extra["kind"] == "anneal" and fit.extra["inertia"] == 1.5
    assert fit.extra["path"] == {"ll": [None, 1.0]}  # no inf in JSON
    assert isinstance(load_fit(path), PointFit)
    with pytest.raises(FileExistsError):
        save_point_fit(path, point_fit(), kind="anneal")


def test_extra_entries_cannot_replace_core_fields(tmp_path):
    path = save_point_fit(tmp_path / "fit.json", point_fit(sigma=9.0, format="other"), kind="anneal")
    fit = load_point_fit(path)
    assert fit.sigma == 0.5


def corrupt(document, **changes):
    document = dict(document)
    for key, value in changes.items():
        if value is KeyError:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "something-else"}, "is not a kmeans-limit point fit"),
        ({"version": 99}, "format version 99, newer than 1; upgrade kmeans-limit"),
        ({"version": "1"}, "invalid format version"),
        ({"means": [[0.0, 1.0], [2.0]]}, "means should be numbers"),
        ({"means": [0.0, 1.0]}, r"means of shape \(2,\) should be 2-D"),
        ({"weights": [0.5, 0.6]}, "should be non-negative and sum to 1"),
        ({"weights": [1.0]}, r"weights of shape \(1,\) should have shape \(2,\)"),
        ({"sigma": -1.0}, "sigma=-1.0 should be a finite number >= 0"),
        ({"sigma": KeyError}, "sigma=None"),
        ({"feature_names": ["a"]}, "feature_names should be 2 strings"),
        ({"standardization": {"mean": [0, 0], "scale": [0, 1]}}, "positive scales"),
        ({"standardization": [1]}, "should hold mean and scale"),
    ],
)
def test_corrupt_point_fits(tmp_path, changes, message):
    path = save_point_fit(tmp_path / "fit.json", point_fit(), kind="anneal")
    path.write_text(corrupt(json.loads(path.read_text()), **changes))
    with pytest.raises(ValueError, match=message):
        load_fit(path)


def test_foreign_and_broken_files(tmp_path):
    cases = {
        "trunc.json": b'{"format": "kmeans-limit/point-fit", "means": [[1',
        "nan.json": b'{"format": "kmeans-limit/point-fit", "version": 1, "sigma": NaN}',
        "list.json": b"[1, 2, 3]",
        "data.csv": b"a,b\n1,2\n",
        "empty.nc": b"",
        "fake.nc": b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
    }
    expected = {
        "trunc.json": "not valid JSON",
        "nan.json": "holds NaN; a fit file has finite numbers only",
        "list.json": "is not a kmeans-limit fit",
        "data.csv": "is not a kmeans-limit fit",
        "empty.nc": "is not a kmeans-limit fit",
        "fake.nc": "not a readable netCDF file",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=expected[name]):
            load_fit(tmp_path / name)
    with pytest.raises(ValueError, match="does not exist"):
        load_fit(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="is a directory"):
        load_fit(tmp_path)


# --- posteriors (netCDF) -----------------------------------------------------------------------


def fake_idata(chains=2, draws=30, n_clusters=2, n_features=2, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(n_clusters), size=(chains, draws))
    means = rng.normal(size=(chains, draws, n_clusters, n_features))
    sigma = rng.uniform(0.2, 0.4, size=(chains, draws))
    return arviz_compat.from_dict(
        {"posterior": {"weights": weights, "means": means, "sigma": sigma}},
        dims={"weights": ["cluster"], "means": ["cluster", "feature"]},
    )


def test_posterior_round_trip(tmp_path):
    idata = fake_idata()
    stats = Standardization((1.0, 2.0), (3.0, 4.0))
    path = save_posterior(tmp_path / "p.nc", idata, feature_names=("a", "b"), standardization=stats)
    fit = load_fit(path)
    assert fit.means.shape == (60, 2, 2) and fit.weights.shape == (60, 2) and fit.sigma.shape == (60,)
    np.testing.assert_array_equal(fit.sigma.numpy(), idata.posterior["sigma"].values.reshape(-1))
    assert fit.feature_names == ("a", "b") and fit.standardization == stats
    with pytest.raises(FileExistsError):
        save_posterior(path, idata, feature_names=("a", "b"))
    assert not any(
        key.startswith("kmeans_limit") for key in idata.posterior.attrs
    )  # caller's object untouched


def test_plain_arviz_netcdf_is_accepted_with_default_names(tmp_path):
    arviz_compat.to_netcdf(fake_idata(), tmp_path / "plain.nc")
    fit = load_posterior(tmp_path / "plain.nc")
    assert fit.feature_names == ("x0", "x1") and fit.standardization is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.drop_vars("sigma"), "no posterior variable 'sigma'"),
        (lambda p: p.assign(sigma=-p["sigma"]), "a σ draw is <= 0"),
        (lambda p: p.assign(weights=p["weights"] * 2), "not on the simplex"),
        (lambda p: p.assign(means=p["means"].where(p["means"] > 2)), "holds NaN or inf"),
        (lambda p: p.rename({"cluster": "component"}), "has dims"),
        (lambda p: p.assign_attrs(kmeans_limit_version=7), "newer than 1"),
        (lambda p: p.assign_attrs(kmeans_limit_feature_names="[1"), "not valid JSON"),
    ],
)
def test_corrupt_posteriors(tmp_path, edit, message):
    idata = fake_idata()
    arviz_compat.set_groups(idata, {"posterior": edit(arviz_compat.group(idata, "posterior"))})
    arviz_compat.to_netcdf(idata, tmp_path / "bad.nc")
    with pytest.raises(ValueError, match=message):
        load_fit(tmp_path / "bad.nc")


def test_netcdf_without_posterior(tmp_path):
    arviz_compat.to_netcdf(
        arviz_compat.from_dict({"observed_data": {"x": np.zeros((3, 2))}}), tmp_path / "obs.nc"
    )
    with pytest.raises(ValueError, match="has no posterior group"):
        load_fit(tmp_path / "obs.nc")


# --- the inputs people have (issue 18) ---------------------------------------------------------


def test_whitespace_separated_text_as_sipu_and_numpy_savetxt_write_it(tmp_path):
    sipu = write(tmp_path, "s.data", "    664159    550946\n    665845    557965\n  597173 575538\n")
    data = read_data(sipu)
    assert data.feature_names == ("x0", "x1")
    torch.testing.assert_close(data.data[1], torch.tensor([665845.0, 557965.0], dtype=torch.float64))
    X = np.random.default_rng(0).normal(size=(7, 3))
    np.savetxt(tmp_path / "saved.txt", X)  # "%.18e" separated by single spaces
    np.testing.assert_array_equal(read_data(tmp_path / "saved.txt").data.numpy(), X)
    headed = write(tmp_path, "h.txt", "a b\n1 2\n3\t4\n")
    assert read_data(headed).feature_names == ("a", "b")


def test_gzipped_text_is_read_as_it_is(tmp_path):
    import gzip

    (tmp_path / "s.data.gz").write_bytes(gzip.compress(b"1 2\n3 4\n5 6\n"))
    np.testing.assert_array_equal(read_data(tmp_path / "s.data.gz").data.numpy(), [[1, 2], [3, 4], [5, 6]])
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    with pytest.raises(ValueError, match="corrupt gzip file"):
        read_data(tmp_path / "bad.gz")


def test_the_packaged_sipu_files_read_like_the_library_loads_them():
    from importlib import resources

    from kmeans_limit.datasets import load_sipu

    path = resources.files("kmeans_limit.datasets").joinpath("r15.data.gz")
    torch.testing.assert_close(read_data(path).data, load_sipu("r15").data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "1,5;2,5\n3,25;4,0\n",
            "decimal commas \\('1,5'\\) separated by semicolons.*'\\.' as the decimal mark",
        ),
        ("a;b\n1,5;2\n3;4,75\n", "decimal commas"),
        ("1,5\t2,5\n3,5\t4,5\n", "separated by tabs"),
        ("1 x\n2 3\n", "mixes numbers and text \\('x'\\).*read as whitespace-separated"),
        ("1,2\n3,4,5\n", "has 3 fields.*read as comma-separated"),
    ],
)
def test_refused_text_says_what_was_detected(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_data(write(tmp_path, "d.csv", content))


def test_integer_csv_is_not_taken_for_decimal_commas(tmp_path):
    np.testing.assert_array_equal(
        read_data(write(tmp_path, "d.csv", "1,5\n3,25\n")).data.numpy(), [[1, 5], [3, 25]]
    )


def test_standardize_near_the_top_of_float64_does_not_overflow():
    X = torch.tensor([[1e300, 5.0], [-1e300, 5.0], [3e300, 5.0], [0.0, 5.0]], dtype=torch.float64)
    Z, stats = standardize_with_stats(X)
    assert torch.isfinite(Z).all() and len(torch.unique(Z[:, 0])) == 4
    torch.testing.assert_close(Z[:, 0].std(unbiased=False), torch.tensor(1.0, dtype=torch.float64))
    assert stats.scale[1] == 1.0 and torch.equal(Z[:, 1], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(stats.undo(Z), X, rtol=1e-12, atol=1e-12 * 3e300)  # rounding of the scale


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_mode_of_a_normal_write(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.txt", lambda tmp: tmp.write_text("x"))
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "new.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask
    os.chmod(tmp_path / "new.txt", 0o640)
    atomic_write(tmp_path / "new.txt", lambda tmp: tmp.write_text("y"), force=True)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # a replaced file keeps its mode


def test_atomic_write_into_a_missing_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist; create it first"):
        atomic_write(tmp_path / "no" / "f.txt", lambda tmp: tmp.write_text("x"))


def test_a_posterior_straight_from_to_netcdf_with_a_package_version_loads(tmp_path):
    idata = fake_idata()
    idata.posterior.attrs["kmeans_limit_version"] = "0.1.0"  # fit_posterior's attrs: the package version
    arviz_compat.to_netcdf(idata, tmp_path / "direct.nc")
    assert load_posterior(tmp_path / "direct.nc").means.shape[1:] == (2, 2)
