"""fastloss.linear_cross_entropy (fused linear + cross entropy in row chunks) against torch's
F.linear_cross_entropy, the unfused F.cross_entropy(F.linear(...)), the NumPy reference twin
(full float64 logits) and finite differences; chunking invariance, memory, errors, metrics,
and the torch bridge."""

import tracemalloc

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _linear_ce

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _case(rng, dtype, N=23, H=7, C=11, out=(), ignore=True, bias=True, weight=True):
    x = rng.standard_normal((N, H)).astype(dtype)
    w = (rng.standard_normal((C, *out, H)) / np.sqrt(H)).astype(dtype)
    b = rng.standard_normal((C, *out)).astype(dtype) if bias else None
    y = rng.integers(0, C, (N, *out))
    if ignore:
        y.reshape(-1)[::4] = -100
    cw = rng.uniform(0.5, 2.0, C).astype(dtype) if weight else None
    return x, w, y, b, cw


def _torch_grads(fn, x, w, y, b, cw, upstream=None, **kw):
    """loss and (d/dx, d/dw, d/db) from torch autograd of fn (a torch formula)."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    cwt = None if cw is None else torch.tensor(cw)
    loss = fn(xt, wt, torch.tensor(y), bt, cwt, **kw)
    up = torch.ones_like(loss) if upstream is None else torch.tensor(upstream)
    loss.backward(up)
    grads = (xt.grad.numpy(), wt.grad.numpy(), None if bt is None else bt.grad.numpy())
    return loss.detach().numpy(), grads


def _fused(xt, wt, yt, bt, cwt, **kw):
    return F.linear_cross_entropy(xt, wt, yt, linear_bias=bt, weight=cwt, **kw)


def _unfused(xt, wt, yt, bt, cwt, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    logits = torch.einsum("nh,...h->n...", xt, wt)
    if bt is not None:
        logits = logits + bt
    return F.cross_entropy(
        logits,
        yt,
        weight=cwt,
        reduction=reduction,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )


def _close(a, b, dtype, what):
    if b is None:
        assert a is None, what
        return
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **TOL[dtype])


def _check(got, want, dtype):
    (la, ga), (lb, gb) = got, want
    _close(la, lb, dtype, "loss")
    for name, a, b in zip(("input", "weight", "bias"), ga, gb):
        _close(a, b, dtype, f"grad {name}")


# ------------------------------------------------------------------ against torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"bias": False, "weight": False, "ignore": False},
        {"label_smoothing": 0.15},
        {"label_smoothing": 1.0, "bias": False},
        {"ignore_index": 3},
    ],
    ids=["all", "plain", "smoothing", "smoothing1", "ignore3"],
)
@pytest.mark.parametrize("peer", ["fused", "unfused"])
def test_values_and_three_gradients_equal_torch(dtype, reduction, opts, peer):
    rng = np.random.default_rng(1)
    opts = dict(opts)
    case_kw = {k: opts.pop(k) for k in ("bias", "weight", "ignore") if k in opts}
    x, w, y, b, cw = _case(rng, dtype, **case_kw)
    if "ignore_index" in opts:
        y[(y == opts["ignore_index"]) | (y < 0)] = 0
        y[1::3] = opts["ignore_index"]
    upstream = rng.standard_normal(y.shape) if reduction == "none" else None
    got = fastloss.linear_cross_entropy(
        x,
        w,
        y,
        linear_bias=b,
        weight=cw,
        reduction=reduction,
        return_grad=True,
        grad_output=upstream,
        chunk_rows=5,
        **opts,
    )
    if peer == "fused":
        want = _torch_grads(_fused, x, w, y, b, cw, upstream, reduction=reduction, **opts)
    else:
        want = _torch_grads(_unfused, x, w, y, b, cw, upstream, reduction=reduction, **opts)
    _check(got, want, dtype)
    assert np.asarray(got[0]).dtype == dtype and all(g is None or g.dtype == dtype for g in got[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_batch(dtype, reduction):
    rng = np.random.default_rng(2)
    x, w, y, b, cw = _case(rng, dtype)
    y[:] = -100
    loss, (gx, gw, gb) = fastloss.linear_cross_entropy(
        x, w, y, linear_bias=b, weight=cw, reduction=reduction, return_grad=True
    )
    want_loss, _ = _torch_grads(_fused, x, w, y, b, cw, reduction=reduction)
    if reduction == "mean":
        assert np.isnan(loss) and np.isnan(want_loss)
    else:
        _close(loss, want_loss, dtype, "loss")
    for g in (gx, gw, gb):  # torch's reference path: 0 (its chunked path: NaN)
        assert not g.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_k_dimensional_weight_and_probability_targets_and_unbatched(dtype):
    rng = np.random.default_rng(3)
    x, w, y, b, cw = _case(rng, dtype, out=(3,))
    for reduction in ("mean", "none"):
        got = fastloss.linear_cross_entropy(
            x, w, y, linear_bias=b, weight=cw, reduction=reduction, return_grad=True, chunk_rows=4
        )
        want = _torch_grads(_fused, x, w, y, b, cw, reduction=reduction)
        _check(got, want, dtype)
    # probabilities of the logits' shape (N, C); ignore_index must stay None
    x, w, _, b, cw = _case(rng, dtype)
    p = rng.dirichlet(np.ones(w.shape[0]), size=x.shape[0]).astype(dtype)
    got = fastloss.linear_cross_entropy(
        x, w, p, linear_bias=b, weight=cw, label_smoothing=0.1, return_grad=True, chunk_rows=6
    )
    want = _torch_grads(_fused, x, w, p, b, cw, label_smoothing=0.1)
    _check(got, want, dtype)
    # unbatched: input (H,), target ()
    got = fastloss.linear_cross_entropy(
        x[0], w, np.int64(4), linear_bias=b, reduction="none", return_grad=True
    )
    want = _torch_grads(_fused, x[0], w, np.int64(4), b, None, reduction="none")
    _check(got, want, dtype)
    assert got[0].shape == () and got[1][0].shape == x[0].shape


# ------------------------------------------------------------------ reference, chunks, FD


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_equals_reference_twin_for_every_chunking(dtype):
    rng = np.random.default_rng(4)
    x, w, y, b, cw = _case(rng, dtype, N=29)
    kw = dict(linear_bias=b, weight=cw, label_smoothing=0.05, return_grad=True)
    want = REF.linear_cross_entropy(x, w, y, **kw)
    results = []
    for chunk_rows in (1, 7, 29, 1000):
        got = fastloss.linear_cross_entropy(x, w, y, chunk_rows=chunk_rows, **kw)
        _check(got, want, dtype)
        results.append(got)
    # a budget of bytes picks the chunk the same way
    assert _linear_ce._chunk_rows(None, 3 * 11 * x.itemsize, 29, 11, x.itemsize) == 3
    got = fastloss.linear_cross_entropy(x, w, y, max_memory=3 * 11 * x.itemsize, **kw)
    _check(got, results[0], dtype)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    x, w, y, b, cw = _case(rng, np.float64, N=6, H=3, C=4)
    kw = dict(weight=cw, label_smoothing=0.1, reduction="sum", chunk_rows=4)
    _, grads = fastloss.linear_cross_entropy(x, w, y, linear_bias=b, return_grad=True, **kw)
    arrays = [x, w, b]
    h = 1e-6
    for k, (a, g) in enumerate(zip(arrays, grads)):
        num = np.empty_like(a)
        for i in np.ndindex(a.shape):
            vals = []
            for s in (h, -h):
                moved = [v.copy() for v in arrays]
                moved[k][i] += s
                vals.append(
                    fastloss.linear_cross_entropy(moved[0], moved[1], y, linear_bias=moved[2], **kw)
                )
            num[i] = (vals[0] - vals[1]) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_numpy_only_weight_accumulation(monkeypatch):
    """Without SciPy grad_weight is accumulated in vocabulary blocks: the same result."""
    rng = np.random.default_rng(6)
    x, w, y, b, cw = _case(rng, np.float64, N=40, C=50)
    kw = dict(linear_bias=b, weight=cw, return_grad=True, chunk_rows=6)
    want = fastloss.linear_cross_entropy(x, w, y, **kw)
    monkeypatch.setattr(_linear_ce, "_blas", None)
    monkeypatch.setattr(_linear_ce, "_VOCAB_BLOCK", 16)
    got = fastloss.linear_cross_entropy(x, w, y, **kw)
    _check(got, want, np.float64)


def test_ignored_rows_are_dropped_before_the_projection():
    """A NaN hidden state in an ignored row never reaches the GEMMs: the results equal those
    without that row (the unfused formula gets NaN in grad_weight: 0 * NaN)."""
    rng = np.random.default_rng(7)
    x, w, y, b, cw = _case(rng, np.float64)
    x[0] = np.nan
    assert y[0] == -100
    loss, (gx, gw, gb) = fastloss.linear_cross_entropy(
        x, w, y, linear_bias=b, weight=cw, return_grad=True, chunk_rows=3
    )
    loss2, (gx2, gw2, gb2) = fastloss.linear_cross_entropy(
        x[1:], w, y[1:], linear_bias=b, weight=cw, return_grad=True
    )
    np.testing.assert_allclose(loss, loss2, rtol=1e-12)
    np.testing.assert_allclose(gw, gw2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb, gb2, rtol=1e-12, atol=1e-15)
    assert not gx[0].any() and np.allclose(gx[1:], gx2)


# ------------------------------------------------------------------ memory


def _peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_memory_is_one_chunk_of_logits_not_n_by_c():
    rng = np.random.default_rng(8)
    N, H, C, B = 2048, 16, 3000, 64
    x, w, y, _, _ = _case(rng, np.float32, N=N, H=H, C=C, bias=False, weight=False)
    chunk = B * C * 4
    full = N * C * 4  # the unfused logits alone (25 MB)
    # forward only: one chunk of logits and per-row values
    peak, _ = _peak(lambda: fastloss.linear_cross_entropy(x, w, y, chunk_rows=B))
    assert peak < chunk + 64 * N + (1 << 20), (peak, chunk)
    peak, out = _peak(
        lambda: fastloss.linear_cross_entropy(x, w, y, chunk_rows=B, reduction="none")
    )
    assert out.shape == (N,)
    assert peak < chunk + 64 * N + (1 << 20) and peak < full / 10
    # with the gradients: beside the outputs, one chunk (no C x H temporary per chunk)
    peak, (_, grads) = _peak(
        lambda: fastloss.linear_cross_entropy(x, w, y, chunk_rows=B, return_grad=True)
    )
    outputs = sum(g.nbytes for g in grads if g is not None)
    assert peak - outputs < chunk + 64 * N + (1 << 20), (peak - outputs, chunk)


def test_grad_out_buffers_are_written_and_returned():
    rng = np.random.default_rng(9)
    x, w, y, b, cw = _case(rng, np.float32)
    bufs = (np.empty_like(x), np.empty_like(w), np.empty_like(b))
    loss, grads = fastloss.linear_cross_entropy(
        x, w, y, linear_bias=b, return_grad=True, grad_out=bufs, chunk_rows=4
    )
    assert all(g is buf for g, buf in zip(grads, bufs))
    want = fastloss.linear_cross_entropy(x, w, y, linear_bias=b, return_grad=True)
    _check((loss, grads), want, np.float32)


# ------------------------------------------------------------------ metrics


def test_metrics_from_the_chunks_equal_numpy_on_the_full_logits():
    rng = np.random.default_rng(10)
    x, w, y, b, _ = _case(rng, np.float64, N=50, C=20)
    loss, metrics = fastloss.linear_cross_entropy(
        x, w, y, linear_bias=b, chunk_rows=7, return_metrics=["accuracy", "top5", "error_rate"]
    )
    z = x @ w.T + b
    keep = y != -100
    rank = (z[keep] > z[keep, y[keep]][:, None]).sum(axis=1)
    assert metrics["accuracy"] == pytest.approx(np.mean(rank < 1))
    assert metrics["top5"] == pytest.approx(np.mean(rank < 5))
    assert metrics["error_rate"] == pytest.approx(1 - np.mean(rank < 1))
    assert loss == pytest.approx(fastloss.cross_entropy(z, y))
    # with the gradients: (loss, grads, metrics); the reference backend agrees
    _, grads, m2 = fastloss.linear_cross_entropy(
        x, w, y, return_grad=True, return_metrics="top5", chunk_rows=7
    )
    _, m3 = REF.linear_cross_entropy(x, w, y, return_metrics="top5")
    assert m2["top5"] == pytest.approx(m3["top5"]) and len(grads) == 3


# ------------------------------------------------------------------ errors


def test_errors_name_the_argument():
    rng = np.random.default_rng(11)
    x, w, y, b, cw = _case(rng, np.float32)
    lce = fastloss.linear_cross_entropy
    with pytest.raises(ValueError, match="input"):
        lce(x[None], w, y)
    with pytest.raises(ValueError, match="linear_weight"):
        lce(x, w[:, :3], y)
    with pytest.raises(ValueError, match="linear_weight"):
        lce(x, w[0], y)
    with pytest.raises(TypeError, match="linear_weight"):
        lce(x, w.astype(np.float64), y)
    with pytest.raises(TypeError, match="linear_bias"):
        lce(x, w, y, linear_bias=b.astype(np.float64))
    with pytest.raises(ValueError, match="linear_bias"):
        lce(x, w, y, linear_bias=b[:3])
    with pytest.raises(ValueError, match="weight"):
        lce(x, w, y, weight=cw[:3])
    with pytest.raises(ValueError, match="target"):
        lce(x, w, y[:5])
    with pytest.raises(TypeError, match="target"):
        lce(x, w, y.astype(np.float32))
    with pytest.raises(TypeError, match="target"):
        lce(x, w, y.astype(str))
    with pytest.raises(IndexError, match="out of range"):
        lce(x, w, np.where(y == -100, 11, y))
    p = np.full((x.shape[0], w.shape[0]), 1 / w.shape[0], np.float32)
    with pytest.raises(ValueError, match="ignore_index"):
        lce(x, w, p, ignore_index=-100)
    with pytest.raises(ValueError, match="unbatched"):
        lce(x[0], w[:, None], np.int64(1))
    with pytest.raises(ValueError, match="reduction"):
        lce(x, w, y, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        lce(x, w, y, label_smoothing=1.5)
    with pytest.raises(ValueError, match="chunk_rows"):
        lce(x, w, y, chunk_rows=0)
    with pytest.raises(TypeError, match="chunk_rows"):
        lce(x, w, y, chunk_rows=2.5)
    with pytest.raises(ValueError, match="max_memory"):
        lce(x, w, y, max_memory=0)
    with pytest.raises(ValueError, match="grad_output"):
        lce(x, w, y, grad_output=2.0)
    with pytest.raises(ValueError, match="grad_out"):
        lce(x, w, y, grad_out=(np.empty_like(x), np.empty_like(w)))
    with pytest.raises(ValueError, match="grad_input"):
        lce(x, w, y, return_grad=True, grad_out=(np.empty_like(x[1:]), np.empty_like(w)))
    with pytest.raises(ValueError, match="return_metrics"):
        lce(x, w, y, return_metrics="top0")


def test_empty_batch():
    w = np.ones((4, 3))
    x = np.zeros((0, 3))
    y = np.zeros(0, np.int64)
    assert np.isnan(fastloss.linear_cross_entropy(x, w, y))
    loss, (gx, gw, gb) = fastloss.linear_cross_entropy(
        x, w, y, reduction="sum", return_grad=True, linear_bias=np.zeros(4)
    )
    assert loss == 0 and gx.shape == (0, 3) and not gw.any() and not gb.any()


# ------------------------------------------------------------------ torch bridge


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_torch_bridge_gradients_equal_torch(reduction, dtype):
    import fastloss.torch as FL

    g = torch.Generator().manual_seed(12)
    N, H, C = 19, 6, 13
    x = torch.randn(N, H, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(C, H, dtype=dtype, generator=g, requires_grad=True)
    b = torch.randn(C, dtype=dtype, generator=g, requires_grad=True)
    y = torch.randint(0, C, (N,), generator=g)
    y[::5] = -100
    cw = torch.rand(C, dtype=dtype, generator=g) + 0.5
    kw = dict(linear_bias=b, weight=cw, reduction=reduction, label_smoothing=0.1)
    opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=4)
    ours = FL.linear_cross_entropy(x, w, y, options=opts, **kw)
    theirs = F.linear_cross_entropy(x, w, y, **kw)
    up = torch.randn(ours.shape, dtype=dtype, generator=g) if reduction == "none" else None
    go = torch.autograd.grad(ours, (x, w, b), up)
    gt = torch.autograd.grad(theirs, (x, w, b), up)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
    torch.testing.assert_close(ours, theirs, **tol)
    for a, c in zip(go, gt):
        torch.testing.assert_close(a, c, **tol)
    with torch.no_grad():  # no node, no gradients
        assert FL.linear_cross_entropy(x, w, y, **kw).grad_fn is None


def test_torch_bridge_module_equals_torch_module():
    import fastloss.torch as FL

    torch.manual_seed(13)
    ours = FL.LinearCrossEntropyLoss(8, 10, bias=True, label_smoothing=0.1)
    theirs = torch.nn.LinearCrossEntropyLoss(8, 10, bias=True, label_smoothing=0.1)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(15, 8, requires_grad=True)
    y = torch.randint(0, 10, (15,))
    lo, lt = ours(x, y), theirs(x, y)
    torch.testing.assert_close(lo, lt)
    (gxo, gwo, gbo) = torch.autograd.grad(lo, (x, ours.linear.weight, ours.linear.bias))
    (gxt, gwt, gbt) = torch.autograd.grad(lt, (x, theirs.linear.weight, theirs.linear.bias))
    for a, c in ((gxo, gxt), (gwo, gwt), (gbo, gbt)):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="linear_weight"):
        FL.linear_cross_entropy(x, ours.linear.weight.double(), y)
