"""Elementwise losses: against the NumPy reference over dtypes x shapes x options, finite
differences, identities with the class losses, saturation, torch parity."""

import itertools
import math
import zlib

import numpy as np
import pytest

import fastloss
import fastloss.reference as ref
from fastloss._losses import LOSSES

from _helpers import case_ids, draw_elementwise, elementwise_cases, materialise, torch_peer

DTYPES = [np.float32, np.float64]
# (300,) and (9, 131): several of the kernels' blocks (8 vectors of up to 16 lanes), ending in
# a partial block; with "last" weights (period 131) every segment starts a fresh block
SHAPES = [(), (0,), (1,), (33,), (4, 17), (3, 5, 7), (300,), (9, 131)]


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)


def close(actual, expected, dtype):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape
    t = tol(dtype)
    scale = np.max(np.abs(e[np.isfinite(e)]), initial=0.0)
    np.testing.assert_allclose(a, e, rtol=t["rtol"], atol=t["atol"] * (1 + scale), equal_nan=True)


def inputs(name, shape, dtype, seed=0, options=None):
    return draw_elementwise(name, shape, dtype, seed, options)


CASES = elementwise_cases()


@pytest.mark.parametrize("name,opts", CASES, ids=case_ids(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_reference(name, opts, dtype, shape):
    x, t = inputs(name, shape, dtype, options=opts)
    kw = materialise(opts, shape, dtype)
    for reduction in LOSSES[name].reductions:
        la, ga = getattr(fastloss, name)(x, t, reduction=reduction, return_grad=True, **kw)
        le, ge = getattr(ref, name)(x, t, reduction=reduction, return_grad=True, **kw)
        close(la, le, dtype)
        close(ga, ge, dtype)
        assert ga.dtype == dtype and np.asarray(la).dtype == dtype
        if reduction != "none":
            assert isinstance(la, dtype)


@pytest.mark.parametrize("name,opts", CASES, ids=case_ids(CASES))
def test_gradient_matches_finite_differences(name, opts):
    """4th-order central differences of the compiled loss and of the reference, float64."""
    shape = (3, 4)
    x, t = inputs(name, shape, np.float64, seed=3, options=opts)
    kw = materialise(opts, shape, np.float64)
    if LOSSES[name].input_domain == "real":
        x = t + np.where(np.abs(x) < 0.2, 0.7, x)  # stay away from the kinks
        # (0.55: not a hinge margin of the examples either)
        x[0, 0] = t[0, 0] + 3.0 * kw.get("beta", kw.get("delta", 1.0)) + 0.55
    h = 1e-4 if LOSSES[name].input_domain != "prob" else 1e-6
    for fn in (getattr(fastloss, name), getattr(ref, name)):
        _, g = fn(x, t, reduction="sum", return_grad=True, **kw)
        num = np.empty_like(x)
        for i in np.ndindex(x.shape):
            vals = []
            for step in (2, 1, -1, -2):
                xp = x.copy()
                xp[i] += step * h
                # element i's own loss: an elementwise loss's other terms do not depend on
                # x[i], and leaving them out keeps exp(x) terms' roundoff out of the quotient
                vals.append(float(fn(xp, t, reduction="none", **kw)[i]))
            num[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)


def test_grad_output_and_grad_out():
    x, t = inputs("binary_cross_entropy_with_logits", (5, 6), np.float32)
    go = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    buf = np.empty_like(x)
    loss, g = fastloss.binary_cross_entropy_with_logits(
        x, t, reduction="none", return_grad=True, grad_output=go, grad_out=buf
    )
    assert g is buf
    le, ge = ref.binary_cross_entropy_with_logits(
        x, t, reduction="none", return_grad=True, grad_output=go
    )
    close(g, ge, np.float32)
    _, g2 = fastloss.mse_loss(x, t, reduction="mean", return_grad=True, grad_output=2.5)
    _, g1 = fastloss.mse_loss(x, t, reduction="mean", return_grad=True)
    np.testing.assert_allclose(g2, 2.5 * g1.astype(np.float64), rtol=1e-6)
    # in place on the input
    xc = x.copy()
    _, g3 = fastloss.mse_loss(xc, t, return_grad=True, grad_out=xc)
    assert g3 is xc
    close(g3, g1, np.float32)


def test_identity_sigmoid_focal_gamma0_is_bce_with_logits():
    x, t = inputs("sigmoid_focal_loss", (64, 9), np.float64, seed=5)
    a = fastloss.sigmoid_focal_loss(x, t, gamma=0.0, alpha=-1.0, return_grad=True)
    b = fastloss.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-15)


def test_identity_two_class_softmax_is_bce_with_logits_of_difference():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 2)) * 4
    y = rng.integers(0, 2, 200)
    ce, gce = fastloss.cross_entropy(x, y, reduction="none", return_grad=True)
    z = x[:, 1] - x[:, 0]
    bce, gb = fastloss.binary_cross_entropy_with_logits(
        z, y.astype(np.float64), reduction="none", return_grad=True
    )
    np.testing.assert_allclose(ce, bce, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gce[:, 1], gb, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gce[:, 0], -gb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_sigmoid_focal_saturation_is_finite_and_exact(dtype, gamma):
    x = np.array([-np.inf, -1e30, -1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4, 1e30, np.inf], dtype)
    for tv in (0.0, 1.0):
        t = np.full_like(x, tv)
        for alpha in (0.25, -1.0):
            loss, g = fastloss.sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, return_grad=True)
            le, ge = ref.sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha, return_grad=True)
            finite = np.isfinite(x) | ((x > 0) == (tv == 1))  # agreeing infinities are finite
            assert np.isfinite(loss[finite]).all() and np.isfinite(g).all()
            close(loss, le, dtype)
            close(g, ge, dtype)
            # loss only runs its own formula for 1 - p_t (and the zero-guarded |x| term)
            close(fastloss.sigmoid_focal_loss(x, t, gamma=gamma, alpha=alpha), le, dtype)
            total = fastloss.sigmoid_focal_loss(
                x[finite], t[finite], gamma=gamma, alpha=alpha, reduction="sum"
            )
            assert np.isfinite(total)
            close(total, le[finite].astype(np.float64).sum(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_at_infinity(dtype):
    x = np.array([np.inf, -np.inf, np.inf, -np.inf], dtype)
    t = np.array([1, 0, 0, 1], dtype)
    loss, g = fastloss.binary_cross_entropy_with_logits(x, t, reduction="none", return_grad=True)
    assert loss[0] == 0 and loss[1] == 0 and loss[2] == np.inf and loss[3] == np.inf
    np.testing.assert_array_equal(g, np.array([0, 0, 1, -1], dtype))
    # the summed path (no per-element output) forms the loss differently: same exact values
    total, g_sum = fastloss.binary_cross_entropy_with_logits(
        x[:2], t[:2], reduction="sum", return_grad=True
    )
    assert total == 0
    np.testing.assert_array_equal(g_sum, np.zeros(2, dtype))
    assert fastloss.binary_cross_entropy_with_logits(x, t, reduction="sum") == np.inf


def test_bce_clamps_log_like_torch():
    x = np.array([0.0, 1.0, 0.0, 1.0])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    loss = fastloss.binary_cross_entropy(x, t, reduction="none")
    np.testing.assert_array_equal(loss, [100.0, 100.0, 0.0, 0.0])


@pytest.mark.parametrize("bad", [-0.1, 1.5, np.nan])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("at", [5, 20_000, -3])  # hard-label windows, and the tail
@pytest.mark.parametrize("grad", [False, True])
def test_bce_rejects_non_probabilities(bad, backend, at, grad):
    x = np.full(40000, 0.5)  # large enough to be split into several chunks
    x[at] = bad
    with fastloss.use_backend(backend), pytest.raises(ValueError, match="input"):
        fastloss.binary_cross_entropy(x, np.zeros_like(x), return_grad=grad)


def test_empty_and_batchmean():
    x = np.zeros((0, 3), np.float32)
    assert np.isnan(fastloss.mse_loss(x, x))
    assert fastloss.mse_loss(x, x, reduction="sum") == 0
    loss, g = fastloss.l1_loss(x, x, reduction="none", return_grad=True)
    assert loss.shape == (0, 3) and g.shape == (0, 3)
    lp = np.log(np.full((4, 5), 0.2))
    t = np.full((4, 5), 0.2)
    t[0] = [1, 0, 0, 0, 0]
    assert np.isclose(
        fastloss.kl_div(lp, t, reduction="batchmean"), fastloss.kl_div(lp, t, reduction="sum") / 4
    )


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "binary_cross_entropy"])
def test_deterministic_across_threads(name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300_001).astype(np.float32)
    if name == "binary_cross_entropy":
        x = rng.random(300_001).astype(np.float32)
    t = (rng.random(300_001) > 0.5).astype(np.float32)
    t[77_777] = 0.25  # one window of soft targets among the hard-label ones
    fn = getattr(fastloss, name)
    old = fastloss.get_num_threads()
    try:
        fastloss.set_num_threads(1)
        a = fn(x, t, reduction="sum", return_grad=True)
        fastloss.set_num_threads(2)
        b = fn(x, t, reduction="sum", return_grad=True)
    finally:
        fastloss.set_num_threads(old)
    assert a[0].tobytes() == b[0].tobytes()
    assert a[1].tobytes() == b[1].tobytes()


@pytest.mark.parametrize("name,opts", CASES, ids=case_ids(CASES))
def test_torch_parity(name, opts):
    torch = pytest.importorskip("torch")
    for dtype, reduction in itertools.product(DTYPES, ["none", "mean", "sum"]):
        x, t = inputs(name, (6, 7), dtype, seed=11, options=opts)
        kw = materialise(opts, (6, 7), dtype)
        xt = torch.tensor(x, requires_grad=True)
        tt = torch.tensor(t)
        # weights broadcast to the input's shape: torch's weighted mse/l1/huber want exactly it
        tkw = {
            k: torch.tensor(np.broadcast_to(v, x.shape).copy())
            for k, v in kw.items()
            if isinstance(v, np.ndarray)
        }
        other = {k: v for k, v in kw.items() if not isinstance(v, np.ndarray)}
        out = torch_peer(name)(xt, tt, reduction=reduction, **tkw, **other)
        go = torch.ones_like(out) * 1.5
        out.backward(go)
        la, ga = getattr(fastloss, name)(
            x, t, reduction=reduction, return_grad=True, grad_output=go.numpy(), **kw
        )
        rt = 2e-4 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(la, out.detach().numpy(), rtol=rt, atol=rt)
        np.testing.assert_allclose(ga, xt.grad.numpy(), rtol=rt, atol=rt)


def summed_reference(name, x, t):
    """The per-element reference losses, summed exactly (math.fsum)."""
    per = getattr(ref, name)(x, t, reduction="none")
    return math.fsum(np.asarray(per, np.float64).tolist())


def check_mean_and_gradient(name, x, t, rtol, simd):
    """The mean loss (rtol) and gradient of fastloss.<name> against the reference."""
    mean, g = getattr(fastloss, name)(x, t, return_grad=True)
    exp_mean, exp_g = getattr(ref, name)(x, t, return_grad=True)
    np.testing.assert_allclose(float(mean), float(exp_mean), rtol=rtol, err_msg=simd)
    close(g, exp_g, x.dtype.type)
    return mean, g


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_logits_nan_input_with_zero_pos_weight(backend, dtype, simd):
    """NaN logits give NaN loss and gradient (as in torch), also where pos_weight = 0 and
    t = 1 zero both terms' coefficients (found by hypothesis: the kernels returned 0)."""
    n = 300  # several blocks; the NaN lanes sit in full and partial vectors
    x = np.linspace(-5, 5, n).astype(dtype)
    nan_at = [0, 17, 128, n - 1]
    x[nan_at] = np.nan
    t = np.ones(n, dtype)
    pw = np.zeros(n, dtype)
    with fastloss.use_backend(backend):
        loss, g = fastloss.binary_cross_entropy_with_logits(
            x, t, pos_weight=pw, reduction="none", return_grad=True
        )
    assert np.isnan(loss[nan_at]).all() and np.isnan(g[nan_at]).all()
    rest = np.setdiff1d(np.arange(n), nan_at)
    assert (loss[rest] == 0).all() and (g[rest] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["normal", "soft", "confident", "outside01", "inf", "nan"])
def test_bce_logits_summed_loss_is_accurate(dtype, kind, simd):
    """Without weights and pos_weight, when only the sum (or mean) is wanted, the kernel adds
    the log1p(exp(-|x|)) terms of many elements as the log of their product.  The sum must
    still agree with the exactly summed per-element reference losses: for ordinary logits,
    for soft targets and targets outside [0, 1] (the term's coefficient t + (1 - t) is still
    1), for confident logits (losses near 1e-13 / 1e-17, so no term may be lost next to 1),
    with +-inf logits whose targets agree (loss 0) and with one NaN."""
    rng = np.random.default_rng(zlib.crc32(f"{kind} {np.dtype(dtype).name}".encode()))
    n = 100_003  # many flushes of the product, ending in a partial vector
    x = rng.standard_normal(n) * 3
    t = rng.uniform(0, 1, n)
    if kind in ("normal", "confident", "inf", "nan"):
        t = np.round(t)
    if kind == "outside01":
        t = rng.uniform(-0.5, 1.5, n)
    if kind == "confident":
        x = np.where(t > 0, 1.0, -1.0) * (30.0 if dtype == np.float32 else 40.0)
        x += rng.uniform(-1, 1, n)
    if kind == "inf":
        pick = rng.random(n) < 0.2
        x[pick] = np.where(t[pick] > 0, np.inf, -np.inf)
    if kind == "nan":
        x[n // 2] = np.nan
    x, t = x.astype(dtype), t.astype(dtype)
    exp_sum = summed_reference("binary_cross_entropy_with_logits", x, t)
    if kind == "confident":
        assert 0 < exp_sum / n < (1e-11 if dtype == np.float32 else 1e-15)
    got = fastloss.binary_cross_entropy_with_logits(x, t, reduction="sum")
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    if kind == "nan":
        assert np.isnan(got)
    else:
        np.testing.assert_allclose(float(got), exp_sum, rtol=rtol, err_msg=simd)
    check_mean_and_gradient("binary_cross_entropy_with_logits", x, t, rtol, simd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["hard", "soft", "mixed", "confident", "clamped", "tiny"])
def test_bce_summed_loss_is_accurate(dtype, kind, simd):
    """Without weights, when only the sum (or mean) is wanted, the kernel takes the terms of
    hard-label windows (all targets exactly 0 or 1) per lane as one log of a product of four
    vectors' probabilities.  The sum must agree with the exactly summed per-element reference
    losses: for hard and soft targets and windows of both; for confident predictions (losses
    near 1e-12, which the log of the rounded product would get wrong in the fifth digit); for
    x = 0 or 1 against the target (terms clamped at 100 like torch); and for x near the
    smallest normal numbers and below (float products that leave the normal range take the
    per-element formula)."""
    rng = np.random.default_rng(zlib.crc32(f"bce {kind} {np.dtype(dtype).name}".encode()))
    n = 100_003  # several windows of 2048 and chunks of 32768, ending in a partial vector
    x = rng.uniform(0, 1, n)
    t = np.round(rng.uniform(0, 1, n))
    if kind == "soft":
        t = rng.uniform(0, 1, n)
    if kind == "mixed":
        t[rng.choice(n, 20, replace=False)] = 0.5
    if kind == "confident":
        eps = 1e-5 if dtype == np.float32 else 1e-12
        x = np.where(t > 0, 1 - rng.uniform(0, eps, n), rng.uniform(0, eps, n))
    if kind == "clamped":
        pick = rng.random(n) < 0.1
        x[pick] = 1 - t[pick]
    if kind == "tiny":
        tiny = float(np.finfo(dtype).tiny)
        pick = rng.random(n) < 0.05
        x[pick] = np.where(
            t[pick] > 0,
            tiny * rng.uniform(1e-3, 4, pick.sum()),
            1 - tiny * rng.uniform(1e-3, 4, pick.sum()),
        )
    x, t = x.astype(dtype), t.astype(dtype)
    exp_sum = summed_reference("binary_cross_entropy", x, t)
    if kind == "confident":
        assert 0 < exp_sum / n < (1e-4 if dtype == np.float32 else 1e-11)
    got = fastloss.binary_cross_entropy(x, t, reduction="sum")
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(float(got), exp_sum, rtol=rtol, err_msg=simd)
    mean, g = check_mean_and_gradient("binary_cross_entropy", x, t, rtol, simd)
    # the gradient written over the input (opt-in) must not change the loss
    xin = x.copy()
    mean2, g2 = fastloss.binary_cross_entropy(xin, t, return_grad=True, grad_out=xin)
    assert g2 is xin and mean2 == mean
    np.testing.assert_array_equal(g2, g)
