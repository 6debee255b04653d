"""Shared helpers for the fastloss test suite.

The oracle is always ``fastloss.reference`` (pure NumPy, float64 math in
fastloss/reference/_math.py, itself checked against torch in test_reference_math.py), called
on float64 copies of the very inputs given to the compiled kernels.
"""
import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _config

REDUCTIONS = ("none", "mean", "sum")
FLOATS = (np.float32, np.float64)
SIMD_PATHS = ("baseline", "avx2", "avx512", "wide")  # wide: the avx512 lane counts on baseline ISA

# (rtol, atol relative to the largest finite |expected| entry)
TOL = {np.dtype(np.float32): (2e-4, 1e-6), np.dtype(np.float64): (1e-9, 1e-12)}


def assert_close(actual, expected, dtype, rtol=None, atol=None, err_msg=""):
    """allclose with the dtype's tolerances; NaN matches NaN, inf matches inf of the same sign.
    atol is scaled by the largest finite |expected| (1 when there is none or it is 0) and
    never below the dtype's smallest normal number."""
    r, a = TOL[np.dtype(dtype)]
    rtol = r if rtol is None else rtol
    atol = a if atol is None else atol
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert act.shape == exp.shape, (act.shape, exp.shape, err_msg)
    fin = np.isfinite(exp)
    finite = np.abs(exp[fin])
    scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    # plus the dtype's smallest normal: values below it cannot be stored to full precision
    atol = atol * scale + float(np.finfo(dtype).tiny)
    with np.errstate(all="ignore"):
        ok = (np.array_equal(fin, np.isfinite(act))
              and np.array_equal(np.isnan(exp), np.isnan(act))
              and np.array_equal(exp[~fin & ~np.isnan(exp)], act[~fin & ~np.isnan(act)])
              and bool(np.all(np.abs(act[fin] - exp[fin]) <= atol + rtol * np.abs(exp[fin]))))
    if not ok:  # slow path only to produce numpy's detailed message
        np.testing.assert_allclose(act, exp, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=err_msg)
        raise AssertionError(f"mismatch in non-finite entries {err_msg}: {act!r} vs {exp!r}")


def readonly(a):
    """A read-only copy of `a` that keeps its memory layout (views stay views of a read-only
    base), so any NumPy-level write raises."""
    a = np.asarray(a)
    if a.base is not None and isinstance(a.base, np.ndarray):
        a.base.flags.writeable = False
    a.flags.writeable = False
    return a


def as_f64(value):
    return None if value is None else np.array(value, dtype=np.float64)


def ref(name, x, target, **kw):
    """The reference result for fastloss.<name>(x, target, **kw), computed in float64 from
    the same inputs (float32 inputs are upcast exactly)."""
    kw = dict(kw)
    kw.pop("grad_out", None)
    if kw.get("weight") is not None:
        kw["weight"] = as_f64(kw["weight"])
    t = np.asarray(target)
    if t.dtype.kind == "f":
        t = t.astype(np.float64)
    return getattr(REF, name)(as_f64(x), t, **kw)


def ref_axis(name, x, axis=-1):
    return getattr(REF, name)(as_f64(x), axis=axis)


def float32_exact(values):
    """Values rounded to float32 and returned as float64 (exactly representable in both)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def available_simd():
    """SIMD paths the kernels accept on this CPU (the current one is restored)."""
    K = _config._kernels
    old = K.simd_name()
    ok = []
    for name in SIMD_PATHS:
        try:
            K.set_simd(name)
        except ValueError:
            continue
        ok.append(name)
    K.set_simd(old)
    return ok


@pytest.fixture(params=SIMD_PATHS)
def simd(request):
    """Run the test on one SIMD path (skipped when the CPU lacks it); restore afterwards."""
    K = _config._kernels
    if K is None:
        pytest.skip("compiled kernels not available")
    old = K.simd_name()
    try:
        K.set_simd(request.param)
    except ValueError:
        pytest.skip(f"CPU lacks {request.param}")
    assert K.simd_name() == request.param
    yield request.param
    K.set_simd(old)


@pytest.fixture
def restore_threads():
    old = fastloss.get_num_threads()
    yield
    fastloss.set_num_threads(old)


@pytest.fixture
def compiled():
    """Force the compiled backend for the test (skips when FASTLOSS_BACKEND=reference and no
    kernels were built)."""
    if _config._kernels is None:
        pytest.skip("compiled kernels not available")
    with fastloss.use_backend("compiled"):
        yield


@pytest.fixture(scope="module")
def torch_single_thread():
    """Tiny problems: torch's intra-op thread pool only adds latency (10x on 2 cores)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
