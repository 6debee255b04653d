"""Accuracy of the kernels' own vector exp / log / log1p against NumPy's float64 functions,
over the full input range (random bit patterns), on every SIMD path the CPU has (the `simd`
fixture of conftest.py).

Stated bounds (docs/numerics.md, "Vector math"): exp <= 2 ulp, log <= 2 ulp, log1p <= 3 ulp; exact
special values (exp(-inf) = 0, exp(+inf) = inf, log(0) = -inf, NaN -> NaN, ...)."""

import numpy as np
import pytest

from fastloss import _config

K = _config._kernels
BOUNDS = {"exp": 2.0, "log": 2.0, "log1p": 3.0, "log1p_unit": 3.0, "log1p_nonneg": 3.0}


def random_floats(dtype, n, seed):
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
    else:
        x = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64).view(np.float64)
    return x[np.isfinite(x)]


def max_ulp_error(got, x, fn, dtype):
    want64 = fn(x.astype(np.float64))
    want = want64.astype(dtype)
    ok = np.isfinite(want) & (want != 0)
    spacing = np.spacing(np.abs(want[ok])).astype(np.float64)
    err = np.abs(got[ok].astype(np.float64) - want64[ok]) / spacing
    return float(err.max(initial=0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_accuracy(simd, dtype):
    lim = (-110.0, 100.0) if dtype == np.float32 else (-760.0, 720.0)
    x = random_floats(dtype, 400_000, 1)
    x = np.concatenate(
        [
            np.clip(x, *lim),
            np.random.default_rng(2).uniform(*lim, 400_000),
            np.linspace(-1, 1, 20001),
        ]
    ).astype(dtype)
    with np.errstate(all="ignore"):
        err = max_ulp_error(K.vector_math("exp", x), x, np.exp, dtype)
    assert err <= BOUNDS["exp"], err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["log", "log1p"])
def test_log_accuracy(simd, dtype, name):
    x = np.abs(random_floats(dtype, 400_000, 3))  # includes subnormals and huge values
    rng = np.random.default_rng(7)
    # probabilities (BCE) and values next to 1, where the table's interval holding 1 must keep
    # the relative accuracy of logs near 0
    x = np.concatenate(
        [
            x,
            rng.uniform(0, 1, 200_000),
            1 + rng.uniform(-0.05, 0.05, 200_000),
            1 + np.logspace(-8, -1, 2000),
            1 - np.logspace(-8, -1, 2000),
        ]
    ).astype(dtype)
    if name == "log1p":
        x = np.concatenate(
            [
                x,
                np.random.default_rng(4).uniform(-1, 1, 200_000),
                -np.logspace(-30, -1e-7, 1000),
                np.logspace(-30, 0, 1000),
                -rng.uniform(0, 1, 200_000),
            ]
        ).astype(dtype)
    with np.errstate(all="ignore"):
        err = max_ulp_error(K.vector_math(name, x), x, getattr(np, name), dtype)
    assert err <= BOUNDS[name], err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_unit_accuracy(simd, dtype):
    x = np.concatenate(
        [
            np.random.default_rng(5).uniform(0, 1, 400_000),
            np.logspace(-45 if dtype == np.float32 else -320, 0, 5000),
            [0.0, 1.0, 0.41421356, 0.41421357],
        ]
    ).astype(dtype)
    err = max_ulp_error(K.vector_math("log1p_unit", x), x, np.log1p, dtype)
    assert err <= BOUNDS["log1p_unit"], err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_nonneg_accuracy(simd, dtype):
    # cross entropy's log S = log1p(S - 1), S in [1, C]: one shared division
    rng = np.random.default_rng(6)
    x = np.concatenate(
        [
            rng.uniform(0, 1, 200_000),
            rng.uniform(0, 1e6, 200_000),
            np.logspace(-45 if dtype == np.float32 else -320, 9, 20000),
            [0.0, 1.0, np.sqrt(2) - 1, 0.41421357, 3.0],
        ]
    ).astype(dtype)
    err = max_ulp_error(K.vector_math("log1p_nonneg", x), x, np.log1p, dtype)
    assert err <= BOUNDS["log1p_nonneg"], err
    assert K.vector_math("log1p_nonneg", np.array([0.0], dtype))[0] == 0.0
    assert np.isnan(K.vector_math("log1p_nonneg", np.array([np.nan], dtype))[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(simd, dtype):
    inf, nan = np.inf, np.nan
    big = np.finfo(dtype).max
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-inf, inf, nan, 0.0, -0.0, big, -big, 1e4, -1e4], dtype)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(K.vector_math("exp", x), np.exp(x))
        y = np.array([0.0, -0.0, inf, nan, -1.0, -tiny, 1.0, tiny, big], dtype)
        np.testing.assert_array_equal(K.vector_math("log", y)[:6], np.log(y)[:6])
        np.testing.assert_allclose(K.vector_math("log", y)[6:], np.log(y)[6:], rtol=1e-6)
        z = np.array([-1.0, -2.0, inf, nan, 0.0, -0.5], dtype)
        np.testing.assert_array_equal(K.vector_math("log1p", z)[:5], np.log1p(z)[:5])
    assert np.isnan(K.vector_math("log1p_unit", np.array([nan], dtype)))[0]
    # the subnormal results of exp are rounded once, not flushed to zero
    sub = np.array([-100.0, -103.0] if dtype == np.float32 else [-740.0, -744.0], dtype)
    got = K.vector_math("exp", sub)
    assert (got > 0).all()
    np.testing.assert_allclose(got, np.exp(sub.astype(np.float64)), rtol=0, atol=tiny)
