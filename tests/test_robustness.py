"""Odd but valid input, inputs never modified, flat memory, 64-bit indexing, GIL release."""

import gc
import os
import threading
import time

import numpy as np
import pytest

import fastloss
import fastloss.reference as ref
from fastloss._losses import LOSSES

from _helpers import draw_input, registry

CLASS_LOSSES = [spec.name for spec in registry("class")]
ELEMENTWISE = [spec.name for spec in registry("elementwise")]


def class_inputs(dtype=np.float32, shape=(16, 7), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    return x, y


def elementwise_inputs(name, dtype=np.float32, shape=(8, 5), seed=0):
    rng = np.random.default_rng(seed)
    x = draw_input(LOSSES[name], shape, rng)
    return x.astype(dtype), rng.uniform(0, 1, shape).astype(dtype)


def readonly(*arrays):
    out = []
    for a in arrays:
        a = np.array(a)
        a.flags.writeable = False
        out.append(a)
    return out


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_class_losses_never_modify_inputs(name):
    x, y = class_inputs()
    w = np.linspace(0.5, 2, 7).astype(np.float32)
    xr, yr, wr = readonly(x, y, w)
    go = readonly(np.ones(16, np.float32))[0]
    for reduction in ("none", "mean", "sum"):
        kw = dict(grad_output=go) if reduction == "none" else {}
        fn = getattr(fastloss, name)
        fn(xr, yr, weight=wr, reduction=reduction, return_grad=True, **kw)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(yr, y)
    if name == "cross_entropy":
        t = readonly(np.full((16, 7), 1 / 7, np.float32))[0]
        fastloss.cross_entropy(xr, t, label_smoothing=0.2, return_grad=True)
        np.testing.assert_array_equal(t, np.full((16, 7), 1 / 7, np.float32))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_losses_never_modify_inputs(name):
    x, t = elementwise_inputs(name)
    xr, tr = readonly(x, t)
    kw = {}
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        kw["weight"] = readonly(np.full(5, 2.0, np.float32))[0]
    if name == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = readonly(np.full(5, 3.0, np.float32))[0]
    for reduction in ("none", "mean", "sum"):
        getattr(fastloss, name)(xr, tr, reduction=reduction, return_grad=True, **kw)
    np.testing.assert_array_equal(xr, x)
    np.testing.assert_array_equal(tr, t)


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp"])
def test_softmax_family_never_modifies_input(name):
    x, _ = class_inputs(shape=(4, 5, 6))
    (xr,) = readonly(x)
    for axis in range(3):
        getattr(fastloss, name)(xr, axis=axis)
    np.testing.assert_array_equal(xr, x)


def test_odd_but_valid_inputs(tmp_path):
    x, y = class_inputs(np.float64, shape=(10, 6))
    expected, g_expected = ref.cross_entropy(x, y, return_grad=True)
    variants = {
        "list": (x.tolist(), y.tolist()),
        "byteswapped": (x.astype(x.dtype.newbyteorder(">")), y.astype(">i8")),
        "fortran": (np.asfortranarray(x), np.asfortranarray(y)),
        "strided": (np.repeat(x, 2, axis=1)[:, ::2], y),
        "int32 target": (x, y.astype(np.int32)),
        "uint8 target": (x, y.astype(np.uint8)),
    }
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    variants["memmap"] = (
        np.load(tmp_path / "x.npy", mmap_mode="r"),
        np.load(tmp_path / "y.npy", mmap_mode="r"),
    )
    for what, (xv, yv) in variants.items():
        loss, g = fastloss.cross_entropy(xv, yv, return_grad=True)
        np.testing.assert_allclose(loss, expected, rtol=1e-12, err_msg=what)
        np.testing.assert_allclose(g, g_expected, rtol=1e-12, atol=1e-15, err_msg=what)
        assert g.dtype == np.float64 and g.flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int8, np.uint16])
def test_integer_and_half_logits_compute_in_float32(dtype):
    x, y = class_inputs(np.float32, shape=(9, 4))
    xv = (x * 10).astype(dtype)
    loss, g = fastloss.cross_entropy(xv, y, return_grad=True)
    assert isinstance(loss, np.float32) and g.dtype == np.float32
    le, ge = ref.cross_entropy(xv.astype(np.float32), y, return_grad=True)
    np.testing.assert_allclose(loss, le, rtol=1e-5)
    np.testing.assert_allclose(g, ge, rtol=1e-5, atol=1e-7)
    out = fastloss.mse_loss(xv, xv, reduction="none")
    assert out.dtype == np.float32 and not out.any()


def test_single_class_and_huge_class_count():
    x = np.random.default_rng(0).standard_normal((5, 1)).astype(np.float32)
    loss, g = fastloss.cross_entropy(x, np.zeros(5, np.int64), reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, 0)
    np.testing.assert_array_equal(g, 0)
    C = 131072
    x = np.random.default_rng(1).standard_normal((2, C)).astype(np.float32) * 5
    y = np.array([3, C - 1])
    loss, g = fastloss.cross_entropy(x, y, reduction="none", return_grad=True)
    le, ge = ref.cross_entropy(x, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, le, rtol=2e-5)
    np.testing.assert_allclose(g, ge, rtol=2e-4, atol=1e-9)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.skipif(
    bool(os.environ.get("FASTLOSS_SANITIZED")),
    reason="AddressSanitizer's quarantine keeps freed memory resident",
)
def test_rss_stays_flat_over_100k_calls():
    x, y = class_inputs(shape=(8, 10))
    t = np.random.default_rng(0).uniform(0, 1, (8, 10)).astype(np.float32)
    buf = np.empty_like(x)

    def burst(n):
        for _ in range(n):
            fastloss.cross_entropy(x, y, return_grad=True)
            fastloss.focal_loss(x, y, reduction="none", return_grad=True, grad_out=buf)
            fastloss.binary_cross_entropy_with_logits(x, t, return_grad=True)
            fastloss.log_softmax(x)
            try:
                fastloss.cross_entropy(x, y + 100)
            except IndexError:
                pass

    burst(2000)  # warm up caches and allocator pools
    gc.collect()
    before = _rss_bytes()
    burst(20000)  # 100k calls
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 100k calls"


def test_kernels_release_the_gil():
    """While one thread is inside a long kernel call, another Python thread keeps running."""
    x = np.random.default_rng(0).standard_normal((2048, 4096)).astype(np.float32)
    y = np.zeros(2048, np.int64)
    old = fastloss.get_num_threads()
    fastloss.set_num_threads(1)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    try:
        th = threading.Thread(target=ticker)
        th.start()
        time.sleep(0.01)
        start = time.perf_counter()
        for _ in range(5):
            fastloss.cross_entropy(x, y, return_grad=True)
        end = time.perf_counter()
        done.set()
        th.join()
    finally:
        fastloss.set_num_threads(old)
    inside = [t for t in ticks if start < t < end]
    # with the GIL held during the ~5 calls the ticker could not run at all
    assert len(inside) >= 5, f"only {len(inside)} ticks during {end - start:.3f}s of kernels"


@pytest.mark.slow
def test_more_than_2_31_elements():
    """64-bit indexing: one row of 2^31 + 16 float32 (8 GiB input + 8 GiB gradient)."""
    n = 2**31 + 16
    try:
        x = np.zeros((1, n), np.float32)
    except MemoryError:
        pytest.skip("not enough memory")
    x[0, -1] = 5.0
    y = np.array([n - 1])
    loss = fastloss.cross_entropy(x, y)
    # p_y = e^5 / (n - 1 + e^5)
    expected = np.log(n - 1 + np.exp(5.0)) - 5.0
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    lse = fastloss.logsumexp(x)
    np.testing.assert_allclose(lse, np.log(n - 1 + np.exp(5.0)), rtol=1e-5)
    del x


def _misaligned(a):
    """A C-contiguous copy of `a` whose data starts one byte off alignment."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(buf[1:].data, dtype=a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def test_misaligned_arrays_are_copied_not_read_through_typed_pointers():
    x, y = class_inputs(np.float64, shape=(50, 9))
    xm, ym = _misaligned(x), _misaligned(y)
    loss, g = fastloss.cross_entropy(xm, ym, reduction="none", return_grad=True)
    le, ge = ref.cross_entropy(x, y, reduction="none", return_grad=True)
    np.testing.assert_allclose(loss, le, rtol=1e-12)
    np.testing.assert_allclose(g, ge, rtol=1e-12, atol=1e-15)
    t = np.random.default_rng(0).uniform(0, 1, x.shape)
    a = fastloss.binary_cross_entropy_with_logits(xm, _misaligned(t), reduction="none")
    np.testing.assert_allclose(
        a, ref.binary_cross_entropy_with_logits(x, t, reduction="none"), rtol=1e-12
    )
    with pytest.raises(ValueError, match="grad_out"):
        fastloss.cross_entropy(x, y, return_grad=True, grad_out=_misaligned(np.empty_like(x)))


def _loss_in_child(args):
    x, y = args
    return float(fastloss.cross_entropy(x, y)), fastloss.get_num_threads()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_do_not_hang_after_parent_used_threads():
    """GNU OpenMP's pool does not survive fork(); children must run without it."""
    import multiprocessing as mp

    x = np.random.default_rng(0).standard_normal((4096, 256)).astype(np.float32)
    y = np.zeros(4096, np.int64)
    old = fastloss.get_num_threads()
    fastloss.set_num_threads(2)
    try:
        expected = float(fastloss.cross_entropy(x, y))  # parent starts the OpenMP pool
        with mp.get_context("fork").Pool(2) as pool:
            out = pool.map_async(_loss_in_child, [(x, y)] * 4).get(timeout=60)
    finally:
        fastloss.set_num_threads(old)
    assert [v for v, _ in out] == [expected] * 4  # bit-identical: chunking ignores threads
    assert all(n == 1 for _, n in out)


def test_hostile_scalars_raise_clear_errors():
    x, y = class_inputs(np.float64, shape=(4, 3))
    with pytest.raises(ValueError, match="ignore_index"):
        fastloss.cross_entropy(x, y, ignore_index=2**70)
    with pytest.raises(ValueError, match="positive int"):
        fastloss.set_num_threads(2**40)
    with pytest.raises(TypeError, match="class indices must be integers"):
        fastloss.cross_entropy(x, y.astype(np.float64))
    for backend in ("compiled", "reference"):
        with fastloss.use_backend(backend), pytest.raises(IndexError, match="1099511627776"):
            fastloss.cross_entropy(x, np.array([0, 1, 2**40, 1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_outputs_start_on_a_huge_page_boundary(dtype):
    """Gradients, per-element losses and softmax outputs of 4 MiB and more are allocated
    2 MiB-aligned (whole transparent huge pages); they are ordinary writeable C arrays that
    own no memory shared with the inputs, and hold the right values."""
    from fastloss import _validate as V

    small = V.empty((3, 5), dtype)
    assert small.shape == (3, 5) and small.dtype == dtype and small.flags.c_contiguous
    rng = np.random.default_rng(7)
    n = (4 << 20) // np.dtype(dtype).itemsize // 10 + 3  # just over 4 MiB of (n, 10)
    x = rng.normal(0, 2, (n, 10)).astype(dtype)
    y = rng.integers(0, 10, n)
    loss, g = fastloss.cross_entropy(x, y, reduction="none", return_grad=True)
    sm = fastloss.softmax(x)
    lrows = fastloss.mse_loss(x, x * 0.5, reduction="none")
    for a in (g, sm, lrows):
        assert a.shape == x.shape and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % (2 << 20) == 0
        assert not np.shares_memory(a, x)
    assert not np.shares_memory(g, sm)
    exp_loss, exp_grad = ref.cross_entropy(
        x.astype(np.float64), y, reduction="none", return_grad=True
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(g, exp_grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(sm, ref.softmax(x.astype(np.float64)), rtol=tol, atol=tol)
    np.testing.assert_allclose(lrows, (0.5 * x.astype(np.float64)) ** 2, rtol=tol, atol=tol)
    g[:] = 0  # writeable, and freeing it later is ordinary
    del g, sm, lrows
    gc.collect()
