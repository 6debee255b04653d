"""log_softmax / softmax / logsumexp along any axis: compiled kernels vs the NumPy float64
reference and scipy.special."""

import zlib

import numpy as np
import pytest

import fastloss

from _helpers import FLOATS, assert_close, readonly, ref_axis

OPS = ("softmax", "log_softmax", "logsumexp")
SHAPES = [(7,), (5, 19), (3, 4, 21), (2, 3, 5, 7), (2, 3000), (2, 70, 5)]
DT_IDS = {np.float32: "f32", np.float64: "f64"}
AXIS_PARAMS = [
    pytest.param(shape, axis, id=f"{'x'.join(map(str, shape))}-ax{axis}")
    for shape in SHAPES
    for axis in range(-len(shape), len(shape))
]


def seeded(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def layouts(rng, shape, dtype, scale=3.0):
    """The same logical problem as a C-contiguous, a strided and a Fortran-ordered array."""
    base = (rng.standard_normal(shape) * scale).astype(dtype)
    yield "C", base
    wide = np.repeat(base, 2, axis=-1)
    yield "strided", wide[..., ::2]
    yield "fortran", np.asfortranarray(base)


def compiled_call(op, x, axis):
    with fastloss.use_backend("compiled"):
        return getattr(fastloss, op)(x, axis=axis)


def expected_shape(op, shape, axis):
    if op != "logsumexp":
        return shape
    ax = axis % len(shape)
    return shape[:ax] + shape[ax + 1 :]


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape,axis", AXIS_PARAMS)
@pytest.mark.parametrize("op", OPS)
def test_matches_reference_every_axis(compiled, op, shape, axis, dtype):
    rng = seeded(op, shape, axis, DT_IDS[dtype])
    for name, x in layouts(rng, shape, dtype):
        x = readonly(x)
        before = x.copy()
        out = getattr(fastloss, op)(x, axis=axis)
        assert isinstance(out, np.ndarray) and out.dtype == dtype
        assert out.shape == expected_shape(op, shape, axis)
        assert not np.shares_memory(out, x)
        assert_close(out, ref_axis(op, x, axis), dtype, err_msg=f"{name}")
        assert np.array_equal(x, before)
    # default axis is the last one
    if axis in (-1, len(shape) - 1):
        np.testing.assert_array_equal(getattr(fastloss, op)(x), out)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape,axis", AXIS_PARAMS)
@pytest.mark.parametrize("op", OPS)
def test_matches_scipy(compiled, op, shape, axis, dtype):
    special = pytest.importorskip("scipy.special")
    rng = seeded("scipy", op, shape, axis, DT_IDS[dtype])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x[(0,) * x.ndim] = -np.inf  # one masked entry
    out = getattr(fastloss, op)(x, axis=axis)
    x64 = x.astype(np.float64)
    if op == "logsumexp":
        expected = special.logsumexp(x64, axis=axis)
    else:
        expected = getattr(special, op)(x64, axis=axis)
    assert_close(out, expected, dtype)


def test_hand_computed_values(compiled):
    x = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(fastloss.softmax(x), [0.25, 0.75], rtol=1e-15)
    np.testing.assert_allclose(fastloss.log_softmax(x), np.log([0.25, 0.75]), rtol=1e-15)
    np.testing.assert_allclose(fastloss.logsumexp(x), np.log(4.0), rtol=1e-15)
    assert fastloss.logsumexp(x).shape == ()
    out = fastloss.softmax([[1.0, 1.0], [2.0, 2.0]], axis=np.int64(0))
    np.testing.assert_allclose(out, [[1 / (1 + np.e)] * 2, [np.e / (1 + np.e)] * 2], rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize(
    "shape,axis",
    [((6, 19), -1), ((6, 19), 0), ((3, 19, 6), 1), ((4, 3000), 1), ((2, 70, 9), 1), ((19,), 0)],
)
def test_masked_and_non_finite_slices(compiled, shape, axis, dtype):
    rng = seeded("masked", shape, axis, DT_IDS[dtype])
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    xm = np.moveaxis(x, axis, -1)  # view: class axis last
    mask = rng.random(xm.shape) < 0.4
    mask[..., 0] = False
    xm[mask] = -np.inf
    special = {}
    if xm.ndim >= 2:
        idx = [np.unravel_index(k, xm.shape[:-1]) for k in range(4)]
        xm[idx[1]] = -np.inf  # an all -inf slice
        xm[idx[2]][3] = np.nan  # a NaN in a slice
        xm[idx[3]][5] = np.inf  # a +inf in a slice
        special = {"allneg": idx[1], "nan": idx[2], "posinf": idx[3]}
    x = readonly(x)
    outs = {op: getattr(fastloss, op)(x, axis=axis) for op in OPS}
    for op, out in outs.items():
        assert_close(out, ref_axis(op, x, axis), dtype, err_msg=op)
    sm = np.moveaxis(outs["softmax"], axis, -1)
    lsm = np.moveaxis(outs["log_softmax"], axis, -1)
    lse = outs["logsumexp"]
    plain = np.ones(xm.shape[:-1], dtype=bool)
    for k in special.values():
        plain[k] = False
    # masked entries: probability exactly 0 and log-probability -inf, rows stay normalised
    assert np.all(sm[mask & plain[..., None]] == 0)
    assert np.all(lsm[mask & plain[..., None]] == -np.inf)
    np.testing.assert_allclose(sm[plain].sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(lse[plain]))
    if special:
        a = special["allneg"]
        assert np.all(np.isnan(sm[a])) and np.all(np.isnan(lsm[a])) and lse[a] == -np.inf
        a = special["nan"]
        assert np.all(np.isnan(sm[a])) and np.all(np.isnan(lsm[a])) and np.isnan(lse[a])
        a = special["posinf"]
        assert np.all(np.isnan(sm[a])) and lse[a] == np.inf


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((5, 300), -1), ((5, 7, 20), 1)])
def test_logsumexp_nan_beside_infinite_max(simd, shape, axis, dtype):
    # the max skips NaN, so a NaN next to +inf (or next to only -inf) must still give NaN,
    # as in torch.logsumexp; rows with +inf or only -inf and no NaN keep +inf / -inf
    x = np.zeros(shape, dtype=dtype)
    xm = np.moveaxis(x, axis, -1)
    xm[0, ..., :2] = [np.nan, np.inf]
    xm[1, ..., :] = -np.inf
    xm[1, ..., 1] = np.nan
    xm[2, ..., 3] = np.inf
    xm[3, ..., :] = -np.inf
    xm[4, ..., 2] = np.nan
    out = fastloss.logsumexp(x, axis=axis)
    expected = np.array([np.nan, np.nan, np.inf, -np.inf, np.nan])
    expected = expected.reshape((5,) + (1,) * (out.ndim - 1)) * np.ones(out.shape)
    np.testing.assert_array_equal(out, expected)
    assert_close(out, ref_axis("logsumexp", x, axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("op", OPS)
def test_all_minus_inf_1d(compiled, op, dtype):
    x = np.full(5, -np.inf, dtype=dtype)
    out = getattr(fastloss, op)(x)
    if op == "logsumexp":
        assert out.shape == () and out == -np.inf
    else:
        assert out.shape == (5,) and np.all(np.isnan(out))


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize(
    "shape,axis",
    [
        ((3, 0), -1),
        ((3, 0), 0),
        ((0, 5), 0),
        ((0, 5), 1),
        ((2, 0, 4), 1),
        ((2, 0, 4), 2),
        ((0,), 0),
        ((0, 0), 1),
    ],
)
@pytest.mark.parametrize("op", OPS)
def test_empty_axes(compiled, op, shape, axis, dtype):
    x = np.zeros(shape, dtype=dtype)
    out = getattr(fastloss, op)(x, axis=axis)
    assert out.dtype == dtype and out.shape == expected_shape(op, shape, axis)
    if op == "logsumexp" and shape[axis] == 0:
        assert np.all(out == -np.inf)  # log of an empty sum
    assert_close(out, ref_axis(op, x, axis), dtype)


@pytest.mark.parametrize(
    "dtype,scale", [(np.float32, 1e30), (np.float64, 1e300)], ids=["f32-1e30", "f64-1e300"]
)
@pytest.mark.parametrize("shape,axis", [((6, 19), -1), ((3, 19, 6), 1), ((6, 19), 0)])
@pytest.mark.parametrize("op", OPS)
def test_huge_logits(compiled, op, shape, axis, dtype, scale):
    rng = seeded("huge", op, shape, axis)
    x = rng.standard_normal(shape).astype(dtype) * dtype(scale)
    out = getattr(fastloss, op)(x, axis=axis)
    assert np.all(np.isfinite(out) | (out == -np.inf))
    assert_close(out, ref_axis(op, x, axis), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("op", OPS)
def test_every_simd_path(simd, op, dtype):
    for shape, axis in [
        ((5, 19), -1),
        ((2, 3000), -1),
        ((3, 4, 21), 1),
        ((2, 70, 9), 1),
        ((3, 4, 21), 0),
        ((7,), 0),
        ((4, 3), 1),
    ]:
        rng = seeded("simd", op, shape, axis, DT_IDS[dtype])
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        x.reshape(-1)[::7] = -np.inf
        out = compiled_call(op, x, axis)
        assert_close(out, ref_axis(op, x, axis), dtype, err_msg=f"{simd} {shape} {axis}")


@pytest.mark.parametrize("ns", [fastloss, fastloss.reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("axis", [0, -1])
def test_zero_d_input_is_one_slice_like_torch(ns, axis):
    torch = pytest.importorskip("torch")
    for v in (2.5, -1e30, np.inf, -np.inf, np.nan):
        for dtype in FLOATS:
            x = dtype(v)
            with np.errstate(all="ignore"):
                got = {n: getattr(ns, n)(x, axis=axis) for n in ("softmax", "log_softmax")}
                got["logsumexp"] = ns.logsumexp(x, axis=axis)
            tx = torch.tensor(v, dtype=torch.float64)
            want = {
                "softmax": torch.softmax(tx, axis),
                "log_softmax": torch.log_softmax(tx, axis),
                "logsumexp": torch.logsumexp(tx, axis),
            }
            for name, value in got.items():
                assert value.shape == () and value.dtype == dtype, name
                np.testing.assert_array_equal(value, want[name].numpy().astype(dtype), name)


@pytest.mark.parametrize("ns", [fastloss, fastloss.reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_logsumexp_keepdims(ns, axis):
    x = np.random.default_rng(3).standard_normal((3, 4, 5))
    got = ns.logsumexp(x, axis=axis, keepdims=True)
    want = np.log(np.exp(x).sum(axis=axis, keepdims=True))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(got.squeeze(axis), ns.logsumexp(x, axis=axis))
