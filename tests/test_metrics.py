"""The metrics: error_rate, accuracy and entropy (registry family "metric", the row ops of
src/kernels/row_stats-inl.h).

The compiled kernels against the NumPy twins (fastloss.reference, reference/_metrics.py) on
every SIMD path, dtype and loop shape (long rows, small-C tiles, (N, C, d...) tiles with and
without the scratch copy, partial tiles); against scikit-learn, SciPy and torch directly;
the entropy gradient against finite differences and torch autograd; bit-identical results
for 1 to 4 threads; the errors; and fastloss.evaluate's ranks and mean entropy.
"""

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _api, _config
from fastloss._losses import LOSSES, TIE_POLICIES

from _helpers import assert_close, option_cases, registry

FLOATS = (np.float32, np.float64)
REDUCTIONS = ("none", "mean", "sum")
RANK_METRICS = ("error_rate", "accuracy")

# loop shapes of the row ops (FL_SMALL_C = 48, FL_COLS_SCRATCH_C = 256): small-C tiles with a
# partial last tile, long rows, (N, C, d1, d2) tiles (scratch copy / direct, partial tiles),
# one unbatched (C,) sample, a single class
LAYOUTS = {
    "NC": (37, 11),
    "NC-48": (19, 48),
    "NC-wide": (9, 130),
    "NCd": (5, 7, 4, 3),
    "NCd-wide": (2, 300, 9),
    "C": (6,),
    "N1": (13, 1),
}


def _class_of(shape):
    return shape[1] if len(shape) > 1 else shape[0]


def _target_shape(shape):
    return (shape[0],) + shape[2:] if len(shape) > 1 else ()


def rank_inputs(shape, dtype, seed, ties=True, nan=True, ignore=True):
    """Scores (with many exact ties when `ties`: small integers), class targets (every fifth
    ignored) and one NaN score."""
    rng = np.random.default_rng(seed)
    if ties:
        x = rng.integers(-2, 3, shape).astype(dtype)
    else:
        x = rng.standard_normal(shape).astype(dtype)
    C = _class_of(shape)
    y = np.asarray(rng.integers(0, C, _target_shape(shape)))
    if ignore and y.ndim:
        y.reshape(-1)[::5] = -100
    if nan and x.size > 3:
        x.reshape(-1)[x.size // 2] = np.nan
    return x, y


def _w(shape, seed=7):
    return np.random.default_rng(seed).uniform(0.0, 2.0, _target_shape(shape))


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_rank_metrics_match_reference(layout, dtype, simd):
    """Every tie policy, every top_k from 1 to C + 1, all reductions, with and without
    sample weights: hits and misses are exact, the weighted sums within rounding."""
    shape = LAYOUTS[layout]
    C = _class_of(shape)
    x, y = rank_inputs(shape, dtype, seed=len(layout))
    w = _w(shape)
    ks = sorted({1, 2, 3, C, C + 1} | set(range(1, C + 1, max(1, C // 6))))
    for name in RANK_METRICS:
        fn, twin = getattr(fastloss, name), getattr(REF, name)
        for ties in TIE_POLICIES:
            for k in ks:
                for sw in (None, w):
                    for reduction in REDUCTIONS:
                        kw = dict(top_k=k, ties=ties, reduction=reduction, sample_weight=sw)
                        got, want = fn(x, y, **kw), twin(x.astype(np.float64), y, **kw)
                        msg = f"{name} {kw}"
                        assert np.asarray(got).dtype == dtype, msg
                        if reduction == "none" or sw is None:
                            np.testing.assert_array_equal(got, np.asarray(want, dtype), msg)
                        else:
                            assert_close(got, want, dtype, err_msg=msg)


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_entropy_matches_reference(layout, dtype, simd):
    """Values and gradients along the class axis (axis 1, and the last axis of a
    channel-last copy), every reduction and base, logits with -inf masks and one NaN row."""
    shape = LAYOUTS[layout]
    rng = np.random.default_rng(3 + len(layout))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    ax = 1 if len(shape) > 1 else 0
    if x.size > 8:
        x.reshape(-1)[1::7] = -np.inf  # masked classes (a few whole samples stay finite)
        x.reshape(-1)[x.size // 2] = np.nan
    for xx, axis in ((x, ax), (np.ascontiguousarray(np.moveaxis(x, ax, -1)), -1)):
        for base in (None, 2.0):
            for reduction in REDUCTIONS:
                kw = dict(axis=axis, base=base, reduction=reduction)
                go = None
                if reduction == "none":
                    go = rng.uniform(-2, 2, np.delete(xx.shape, axis))
                h, g = fastloss.entropy(xx, return_grad=True, grad_output=go, **kw)
                he, ge = REF.entropy(xx.astype(np.float64), return_grad=True, grad_output=go, **kw)
                assert_close(h, he, dtype, err_msg=f"entropy {kw}")
                assert_close(g, ge, dtype, err_msg=f"entropy grad {kw}")
                assert g.dtype == dtype and np.asarray(h).dtype == dtype


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_entropy_of_probabilities_matches_reference(dtype, simd):
    rng = np.random.default_rng(11)
    for shape in ((37, 11), (9, 130), (4, 6, 5)):
        p = rng.uniform(0, 1, shape).astype(dtype)
        p.reshape(-1)[::9] = 0  # zero weights: contribute 0, gradient 0
        for reduction in REDUCTIONS:
            kw = dict(axis=1, from_logits=False, reduction=reduction, base=3.0)
            h, g = fastloss.entropy(p, return_grad=True, **kw)
            he, ge = REF.entropy(p.astype(np.float64), return_grad=True, **kw)
            assert_close(h, he, dtype, err_msg=str(kw))
            assert_close(g, ge, dtype, err_msg=str(kw))


def test_registry_option_cases(simd):
    """The rows' own examples (option_cases) on both backends, float64."""
    for spec in registry("metric"):
        for opts in option_cases(spec):
            fn, twin = getattr(fastloss, spec.name), getattr(REF, spec.name)
            if spec.name == "entropy":
                x = np.random.default_rng(1).uniform(0.1, 2.0, (20, 7))
                np.testing.assert_allclose(fn(x, **opts), twin(x, **opts), rtol=1e-12)
                continue
            x, y = rank_inputs((40, 9), np.float64, seed=2)
            for reduction in REDUCTIONS:
                assert np.array_equal(
                    fn(x, y, reduction=reduction, **opts),
                    twin(x, y, reduction=reduction, **opts),
                    equal_nan=True,
                ), (spec.name, opts, reduction)


# ------------------------------------------------------------------ semantics


def test_ties_nan_and_ignore_by_hand(compiled):
    x = np.array(
        [
            [1.0, 3.0, 3.0, 0.0],  # target 2 tied with class 1 (lower)
            [3.0, 3.0, 1.0, 0.0],  # target 0 tied with class 1 (higher)
            [5.0, 2.0, 2.0, 2.0],  # target 2 tied with 1 and 3, below 0
            [0.0, np.nan, 9.0, 1.0],  # NaN: a miss whatever the rank
            [0.0, 1.0, 2.0, 3.0],  # ignored
        ]
    )
    y = np.array([2, 0, 2, 2, -100])
    hits = {
        ("argmax", 1): [0, 1, 0, 0, 0],
        ("sklearn", 1): [1, 0, 0, 0, 0],
        ("pessimistic", 1): [0, 0, 0, 0, 0],
        ("argmax", 2): [1, 1, 0, 0, 0],
        ("sklearn", 2): [1, 1, 0, 0, 0],
        ("pessimistic", 2): [1, 1, 0, 0, 0],
        ("argmax", 3): [1, 1, 1, 0, 0],
        ("sklearn", 3): [1, 1, 1, 0, 0],
        ("pessimistic", 3): [1, 1, 0, 0, 0],
        ("pessimistic", 4): [1, 1, 1, 0, 0],
    }
    for (ties, k), h in hits.items():
        got = fastloss.accuracy(x, y, ties=ties, top_k=k, reduction="none")
        np.testing.assert_array_equal(got, h, f"{ties} top_k={k}")
        miss = fastloss.error_rate(x, y, ties=ties, top_k=k, reduction="none")
        np.testing.assert_array_equal(miss, [1 - v if i < 4 else 0 for i, v in enumerate(h)])
        assert fastloss.accuracy(x, y, ties=ties, top_k=k) == pytest.approx(sum(h) / 4)
        assert fastloss.error_rate(x, y, ties=ties, top_k=k, reduction="sum") == 4 - sum(h)


def test_accuracy_plus_error_rate_is_one(compiled):
    x, y = rank_inputs((300, 12), np.float32, seed=4)
    w = _w((300, 12))
    for ties in TIE_POLICIES:
        for k in (1, 3, 12):
            a = fastloss.accuracy(x, y, top_k=k, ties=ties, sample_weight=w)
            e = fastloss.error_rate(x, y, top_k=k, ties=ties, sample_weight=w)
            assert a + e == pytest.approx(1.0, abs=1e-6)


def test_empty_and_all_ignored(compiled):
    for fn in (fastloss.error_rate, fastloss.accuracy):
        assert np.isnan(fn(np.zeros((0, 4)), np.zeros(0, np.int64)))
        assert fn(np.zeros((0, 4)), np.zeros(0, np.int64), reduction="sum") == 0
        assert fn(np.zeros((0, 4)), np.zeros(0, np.int64), reduction="none").shape == (0,)
        x, y = rank_inputs((10, 4), np.float64, seed=5)
        y[:] = -100
        assert np.isnan(fn(x, y)) and fn(x, y, reduction="sum") == 0
        assert np.isnan(fn(x, y, sample_weight=np.zeros(10) + 0.5))
        # all weights 0: nothing counted
        assert np.isnan(fn(x, np.zeros(10, np.int64), sample_weight=np.zeros(10)))
    assert fastloss.entropy(np.zeros((3, 0))).tolist() == [0.0, 0.0, 0.0]
    assert fastloss.entropy(np.zeros((0, 5))).shape == (0,)
    assert np.isnan(fastloss.entropy(np.zeros((0, 5)), reduction="mean"))
    assert fastloss.entropy(np.float64(3.0)) == 0.0  # 0-d: one class
    h, g = fastloss.entropy(np.zeros((2, 0)), return_grad=True)
    assert h.shape == (2,) and g.shape == (2, 0)


def test_entropy_special_rows(compiled):
    inf = np.inf
    x = np.array(
        [
            [0.0, -inf, 0.0],  # a masked class: log 2
            [-inf, -inf, -inf],  # nothing left: NaN
            [0.0, inf, 1.0],  # +inf: NaN
            [0.0, np.nan, 1.0],  # NaN
            [1.0, 1.0, 1.0],  # uniform: log 3
        ]
    )
    for dtype in FLOATS:
        h, g = fastloss.entropy(x.astype(dtype), return_grad=True, grad_output=3.0, reduction="sum")
        hn = fastloss.entropy(x.astype(dtype))
        np.testing.assert_allclose(hn[[0, 4]], [np.log(2), np.log(3)], rtol=1e-6)
        assert np.isnan(hn[1:4]).all() and np.isnan(h)
        assert np.isnan(g[1:4]).all()  # the whole row
        np.testing.assert_array_equal(g[0, 1], 0.0)  # masked: gradient 0 (torch: NaN for 3.0)
        np.testing.assert_allclose(g[[0, 4]], 0.0, atol=1e-7)  # at a maximum of H


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_entropy_of_a_dominant_class_keeps_its_precision(dtype, simd):
    """H = (1 + d) e^-d for logits (d, 0), to full relative precision down to e^-d near the
    smallest normal number (1 - Z would lose it: Z rounds to 1)."""
    for d in (5.0, 20.0, 40.0, 80.0) if dtype == np.float32 else (5.0, 40.0, 200.0, 700.0):
        x = np.array([[d, 0.0], [0.0, d]], dtype=dtype)
        for big in (x, np.tile(x, (1, 40))[:, :60]):  # small-C tiles and long rows
            want = REF.entropy(big.astype(np.float64))
            np.testing.assert_allclose(
                fastloss.entropy(big), want, rtol=2e-5 if dtype == np.float32 else 1e-12
            )
        e = np.exp(-d) / (1 + np.exp(-d))
        np.testing.assert_allclose(
            fastloss.entropy(x)[0], -(1 - e) * np.log1p(-e) - e * np.log(e), rtol=1e-5
        )


# ------------------------------------------------------------------ against other libraries


@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_against_sklearn(dtype, compiled):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    C = 9
    for ties_data in (True, False):
        x, y = rank_inputs((400, C), dtype, seed=9, ties=ties_data, nan=False, ignore=False)
        w = rng.uniform(0, 3, 400)
        labels = np.arange(C)
        for k in range(1, C):
            for sw in (None, w):
                want = sk.top_k_accuracy_score(y, x, k=k, labels=labels, sample_weight=sw)
                got = fastloss.accuracy(x, y, top_k=k, ties="sklearn", sample_weight=sw)
                assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (k, sw is None)
                want = sk.top_k_accuracy_score(
                    y, x, k=k, labels=labels, sample_weight=sw, normalize=False
                )
                got = fastloss.accuracy(
                    x, y, top_k=k, ties="sklearn", sample_weight=sw, reduction="sum"
                )
                assert got == pytest.approx(want, rel=1e-6)
        for sw in (None, w):
            pred = x.argmax(axis=1)  # ties to the lowest index
            want = sk.zero_one_loss(y, pred, sample_weight=sw)
            assert fastloss.error_rate(x, y, sample_weight=sw) == pytest.approx(want, rel=1e-6)
            want = sk.zero_one_loss(y, pred, sample_weight=sw, normalize=False)
            assert fastloss.error_rate(x, y, sample_weight=sw, reduction="sum") == pytest.approx(
                want, rel=1e-6
            )
            want = sk.accuracy_score(y, pred, sample_weight=sw)
            assert fastloss.accuracy(x, y, sample_weight=sw) == pytest.approx(want, rel=1e-6)


def test_against_scipy(compiled):
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(12)
    for shape, axis in (((50, 7), 1), ((6, 40, 5), 1), ((8, 5, 300), -1), ((30,), 0)):
        z = rng.standard_normal(shape) * 2
        p = special.softmax(z, axis=axis)
        for base in (None, 2.0, 10.0):
            want = stats.entropy(p, base=base, axis=axis)
            np.testing.assert_allclose(fastloss.entropy(z, axis=axis, base=base), want, rtol=1e-12)
            u = rng.uniform(0, 5, shape)  # unnormalised weights, as scipy takes them
            want = stats.entropy(u, base=base, axis=axis)
            got = fastloss.entropy(u, axis=axis, base=base, from_logits=False)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            got = fastloss.entropy(u.astype(np.float32), axis=axis, base=base, from_logits=False)
            np.testing.assert_allclose(got, want, rtol=1e-5)


def test_against_torch_categorical(compiled):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    for shape in ((64, 10), (16, 300), (4, 6, 5)):
        z = rng.standard_normal(shape) * 3
        zt = torch.tensor(np.moveaxis(z, 1, -1).copy(), requires_grad=True)  # torch: last axis
        h = torch.distributions.Categorical(logits=zt).entropy()
        go = rng.uniform(-1, 1, h.shape)
        h.backward(torch.tensor(go))
        got, g = fastloss.entropy(z, axis=1, return_grad=True, grad_output=go)
        np.testing.assert_allclose(got, h.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, np.moveaxis(zt.grad.numpy(), -1, 1), rtol=1e-9, atol=1e-12)
        # float32 against torch's float32
        h32 = torch.distributions.Categorical(
            logits=torch.tensor(z, dtype=torch.float32).movedim(1, -1)
        ).entropy()
        np.testing.assert_allclose(
            fastloss.entropy(z.astype(np.float32), axis=1), h32.numpy(), rtol=2e-5, atol=1e-6
        )
    # a masked class: the same value; torch's gradient is NaN for an upstream gradient > 1
    z = np.array([[0.0, -np.inf, 1.0]])
    zt = torch.tensor(z, requires_grad=True)
    h = torch.distributions.Categorical(logits=zt).entropy()
    h.backward(torch.tensor([1.0]))
    got, g = fastloss.entropy(z, return_grad=True)
    np.testing.assert_allclose(got, h.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------ entropy gradient


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("shape", [(4, 5), (3, 60), (2, 3, 4)], ids=str)
def test_entropy_gradient_matches_finite_differences(shape, from_logits, simd):
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shape) if from_logits else rng.uniform(0.2, 2.0, shape)
    if from_logits:
        x.reshape(-1)[::7] = -np.inf  # masked: gradient 0
    go = rng.uniform(0.5, 1.5, np.delete(shape, 1))
    kw = dict(axis=1, base=2.0, from_logits=from_logits)

    def f(v):
        return float(np.sum(go * fastloss.entropy(v, **kw)))

    _, g = fastloss.entropy(x, return_grad=True, grad_output=go, **kw)
    h = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        if not np.isfinite(x[i]):
            continue
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (f(xp) - f(xm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(33, 9), (7, 130), (3, 9, 20), (3, 300, 5)], ids=str)
def test_entropy_grad_out_in_place_and_scales(shape, simd):
    """In place (grad_out=input) on every loop shape: each reads a class before writing its
    gradient (the long rows keep their exps in the gradient buffer only when it is not x)."""
    rng = np.random.default_rng(15)
    for from_logits in (True, False):
        x = rng.uniform(0.1, 3.0, shape)
        kw = dict(axis=1, from_logits=from_logits, reduction="mean", return_grad=True)
        _, want = REF.entropy(x, **kw)
        _, other = fastloss.entropy(x, grad_out=np.empty_like(x), **kw)
        y = x.copy()
        _, g = fastloss.entropy(y, grad_out=y, **kw)
        assert g is y
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(other, want, rtol=1e-12, atol=1e-15)


def test_entropy_gradient_scales(compiled):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((20, 6))
    _, g_sum = fastloss.entropy(x, reduction="sum", return_grad=True, grad_output=2.0)
    _, g_mean = fastloss.entropy(x, reduction="mean", return_grad=True, grad_output=2.0)
    _, g_none = fastloss.entropy(x, return_grad=True, grad_output=np.full(20, 2.0))
    np.testing.assert_allclose(g_sum, 20 * g_mean, rtol=1e-12)
    np.testing.assert_allclose(g_sum, g_none, rtol=1e-12)


def test_awkward_inputs(compiled):
    """Read-only, non-contiguous, float16, integer and list inputs: the same values as a
    plain float copy (and nothing written into the inputs)."""
    x, y = rank_inputs((40, 2, 9), np.float64, seed=23, nan=False)
    sw = _w((40, 2, 9))
    xr = x.copy()
    xr.flags.writeable = False
    xs = np.ascontiguousarray(np.moveaxis(x, 1, -1))[:, :, ::1].transpose(0, 2, 1)  # strided
    assert not xs.flags.c_contiguous
    for xx in (xr, xs):
        for name in RANK_METRICS:
            fn = getattr(fastloss, name)
            assert fn(xx, y, sample_weight=sw) == fn(x.copy(), y, sample_weight=sw)
        h, g = fastloss.entropy(xx, axis=1, return_grad=True)
        h2, g2 = fastloss.entropy(x.copy(), axis=1, return_grad=True)
        np.testing.assert_array_equal(h, h2)
        np.testing.assert_array_equal(g, g2)
    np.testing.assert_array_equal(xr, x)
    xi = np.arange(24).reshape(4, 6) % 5
    t = np.array([0, 1, 2, 3], np.uint8)
    assert fastloss.accuracy(xi, t).dtype == np.float32  # integers compute in float32
    assert fastloss.accuracy(xi, t) == fastloss.accuracy(xi.astype(np.float32), t)
    assert fastloss.accuracy(xi.tolist(), t.tolist()) == fastloss.accuracy(xi, t)
    h16 = fastloss.entropy(x.astype(np.float16), axis=1)
    assert h16.dtype == np.float32
    np.testing.assert_allclose(h16, REF.entropy(x.astype(np.float16), axis=1), rtol=1e-5)


# ------------------------------------------------------------------ threads


@pytest.mark.parametrize(
    "shape",
    [(40000, 10), (300, 1000), (6, 12, 5000)],
    ids=["small-rows", "rows", "cols"],
)
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_bit_identical_for_any_thread_count(shape, dtype, restore_threads, compiled):
    """Inputs of more than 8 chunks (FL_CHUNK_ELEMS = 32768 elements): the chunk sums are
    added in chunk order whatever the thread count."""
    assert np.prod(shape) > 8 * _config._kernels.TUNING["chunk_elems"]
    x, y = rank_inputs(shape, dtype, seed=16, ties=False)
    w = np.random.default_rng(17).uniform(0, 2, _target_shape(shape))
    z = np.random.default_rng(18).standard_normal(shape).astype(dtype)
    results = []
    for n in (1, 2, 3, 4):
        fastloss.set_num_threads(n)
        results.append(
            [
                fastloss.error_rate(x, y, top_k=2, sample_weight=w),
                fastloss.accuracy(x, y, reduction="sum"),
                fastloss.accuracy(x, y, ties="pessimistic", reduction="none"),
                *fastloss.entropy(z, axis=1, reduction="sum", return_grad=True),
                fastloss.entropy(z, axis=1, reduction="none"),
            ]
        )
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_errors(backend):
    if backend == "compiled" and _config._kernels is None:
        pytest.skip("compiled kernels not available")
    x, y = rank_inputs((6, 4), np.float64, seed=19, nan=False, ignore=False)
    with fastloss.use_backend(backend):
        for fn in (fastloss.error_rate, fastloss.accuracy):
            with pytest.raises(ValueError, match="top_k"):
                fn(x, y, top_k=0)
            with pytest.raises(TypeError, match="top_k"):
                fn(x, y, top_k=2.0)
            with pytest.raises(TypeError, match="top_k"):
                fn(x, y, top_k=True)
            with pytest.raises(ValueError, match="ties"):
                fn(x, y, ties="lowest")
            with pytest.raises(ValueError, match="reduction"):
                fn(x, y, reduction="batchmean")
            bad = y.copy()
            bad[3] = 4
            with pytest.raises(IndexError, match=r"target 4 at position \(3,\)"):
                fn(x, bad)
            bad[3] = -1
            with pytest.raises(IndexError, match="-1"):
                fn(x, bad, reduction="none")
            with pytest.raises(ValueError, match="target must have shape"):
                fn(x, y[:5])
            with pytest.raises(TypeError, match="integer class indices"):
                fn(x, y.astype(np.float64))
            with pytest.raises(ValueError, match="sample_weight"):
                fn(x, y, sample_weight=-np.ones(6))
            with pytest.raises(ValueError, match="sample_weight"):
                fn(x, y, sample_weight=np.ones(5))
            with pytest.raises(ValueError, match="axis"):
                fn(x, y, axis=2)
            with pytest.raises(TypeError, match="positional"):
                fn(x, y, 2)
        for base in (1, 1.0, 0.0, -2.0, np.inf, np.nan):
            with pytest.raises(ValueError, match="base"):
                fastloss.entropy(x, base=base)
        with pytest.raises(TypeError, match="base"):
            fastloss.entropy(x, base="e")
        with pytest.raises(ValueError, match="grad_output"):
            fastloss.entropy(x, grad_output=2.0)
        with pytest.raises(ValueError, match="grad_out"):
            fastloss.entropy(x, grad_out=np.empty_like(x))
        with pytest.raises(ValueError, match="axis"):
            fastloss.entropy(x, axis=2)
        with pytest.raises(ValueError, match="reduction"):
            fastloss.entropy(x, reduction="batchmean")
        with pytest.raises(ValueError, match="grad_output"):
            fastloss.entropy(x, return_grad=True, grad_output=np.ones(5))


# ------------------------------------------------------------------ fastloss.evaluate


def test_target_ranks_follow_argmax(compiled):
    """The ranks fastloss.evaluate counts top-k accuracies from: one pass, ties to the lower
    class as numpy.argmax (checked by a stable descending sort), -1 where ignored or NaN."""
    x, y = rank_inputs((120, 7, 3), np.float32, seed=20)
    ranks = _api._target_ranks(x, y, -100)
    order = np.argsort(-x, axis=1, kind="stable")  # NaN sorts last here: those rows are -1
    want = np.argmax(order == np.where(y == -100, 0, y)[:, None], axis=1)
    nan_rows = np.isnan(x).any(axis=1)
    keep = (y != -100) & ~nan_rows
    np.testing.assert_array_equal(ranks[keep], want[keep])
    assert (ranks[~keep] == -1).all() and nan_rows.any()


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_evaluate_reports_accuracy_and_mean_entropy(backend):
    if backend == "compiled" and _config._kernels is None:
        pytest.skip("compiled kernels not available")
    x, y = rank_inputs((50, 9, 2), np.float64, seed=21, ties=False, nan=False)
    with fastloss.use_backend(backend):
        doc = fastloss.evaluate("cross_entropy", x, y, chunk_rows=7, top_k=[1, 3])
    keep = y != -100
    h = REF.entropy(x, axis=1)
    assert doc["mean_entropy"] == pytest.approx(h[keep].mean(), rel=1e-12)
    assert doc["accuracy"] == pytest.approx(REF.accuracy(x, y), rel=1e-12)
    assert doc["top_k_accuracy"][3] == pytest.approx(REF.accuracy(x, y, top_k=3), rel=1e-12)
    p = np.random.default_rng(22).dirichlet(np.ones(9), 50)
    doc = fastloss.evaluate("cross_entropy", x[:, :, 0], p)  # probability targets: all samples
    assert doc["mean_entropy"] == pytest.approx(h[:, 0].mean(), rel=1e-12)
    doc = fastloss.evaluate("mse_loss", x, x)
    assert doc["mean_entropy"] is None


def test_rows_are_in_the_registry():
    assert {s.name for s in registry("metric")} == {"error_rate", "accuracy", "entropy"}
    assert LOSSES["error_rate"].kernel == LOSSES["accuracy"].kernel == "rank"
    assert tuple(_config._kernels.TIES) == TIE_POLICIES
