"""Tests of the NumPy reference metrics (fastloss/reference/_metrics.py): error_rate / accuracy
against sklearn.metrics (top_k_accuracy_score, zero_one_loss, accuracy_score) under each tie
policy, on score grids where ties are common; entropy against scipy.stats.entropy and
torch.distributions.Categorical(...).entropy() with its autograd gradient, plus central finite
differences.
"""

import warnings

import numpy as np
import pytest

from fastloss.reference import _metrics as M

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")

REDUCTIONS = ["none", "mean", "sum"]


def close(actual, expected, rtol=1e-13, atol=1e-15):
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert act.shape == exp.shape, (act.shape, exp.shape)
    np.testing.assert_allclose(act, exp, rtol=rtol, atol=atol, equal_nan=True)


def sk_top_k(y, scores, k, weight=None):
    """sklearn's top-k accuracy with every class declared (so a missing class is fine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= n_classes: UndefinedMetricWarning
        return sklearn_metrics.top_k_accuracy_score(
            y, scores, k=k, labels=np.arange(scores.shape[1]), sample_weight=weight
        )


def tied_scores(rng, n, c, levels=3):
    """Scores on a small integer grid (many ties) and targets."""
    return rng.integers(0, levels, size=(n, c)).astype(float), rng.integers(0, c, size=n)


def flatten_classes_last(x, t):
    """torch layout (N, C, d...) -> rows (N * d..., C) and targets (N * d...,)."""
    c = x.shape[1]
    return np.moveaxis(x, 1, -1).reshape(-1, c), t.reshape(-1)


# ----------------------------------------------------------------------------------------------
# error_rate / accuracy
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [3, 5])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("levels", [3, 1000])
def test_sklearn_policy_matches_top_k_accuracy_score(c, use_weight, levels):
    rng = np.random.default_rng(0)
    x, y = tied_scores(rng, 300, c, levels)
    w = rng.uniform(0.1, 2.0, size=300) if use_weight else None
    for k in range(1, c + 1):
        expected = sk_top_k(y, x, k, w)
        acc, none = M.accuracy(x, y, top_k=k, weight=w, ties="sklearn")
        err, _ = M.error_rate(x, y, top_k=k, weight=w, ties="sklearn")
        assert none is None and isinstance(acc, np.float64)
        close(acc, expected)
        close(err, 1.0 - expected)
        # unnormalised: sklearn's normalize=False is our "sum"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            count = sklearn_metrics.top_k_accuracy_score(
                y, x, k=k, labels=np.arange(c), normalize=False, sample_weight=w
            )
        close(M.accuracy(x, y, top_k=k, weight=w, ties="sklearn", reduction="sum")[0], count)


@pytest.mark.parametrize("use_weight", [False, True])
def test_argmax_policy_matches_zero_one_loss_and_reversed_sklearn(use_weight):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    c = 6
    x, y = tied_scores(rng, 400, c)
    w = rng.uniform(0.1, 2.0, size=400) if use_weight else None
    pred = x.argmax(axis=1)  # ties -> lowest index
    close(M.error_rate(x, y, weight=w)[0], sklearn_metrics.zero_one_loss(y, pred, sample_weight=w))
    close(M.accuracy(x, y, weight=w)[0], sklearn_metrics.accuracy_score(y, pred, sample_weight=w))
    close(
        M.error_rate(x, y, weight=w, reduction="sum")[0],
        sklearn_metrics.zero_one_loss(y, pred, normalize=False, sample_weight=w),
    )
    hits = (torch.argmax(torch.from_numpy(x), dim=1) == torch.from_numpy(y)).double()
    if w is None:
        close(M.accuracy(x, y, reduction="none")[0], hits.numpy())
    # top-k: "lowest index first" is sklearn's "highest index first" on reversed classes
    for k in range(1, c + 1):
        close(M.accuracy(x, y, top_k=k, weight=w)[0], sk_top_k(c - 1 - y, x[:, ::-1], k, w))


@pytest.mark.parametrize("use_weight", [False, True])
def test_pessimistic_policy_matches_sklearn_with_target_nudged_down(use_weight):
    """Lowering the target's score to the next float below makes every tie with it a loss and
    changes nothing else (the grid has no value in between)."""
    rng = np.random.default_rng(2)
    c = 5
    x, y = tied_scores(rng, 400, c)
    w = rng.uniform(0.1, 2.0, size=400) if use_weight else None
    nudged = x.copy()
    rows = np.arange(len(y))
    nudged[rows, y] = np.nextafter(x[rows, y], -np.inf)
    for k in range(1, c + 1):
        close(M.accuracy(x, y, top_k=k, weight=w, ties="pessimistic")[0], sk_top_k(y, nudged, k, w))


def test_policies_differ_on_ties_and_agree_without():
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 2.0], [0.0, 5.0, 1.0]])
    y = np.array([1, 0, 1])
    miss = {
        ties: M.error_rate(x, y, ties=ties, reduction="none")[0]
        for ties in ("argmax", "sklearn", "pessimistic")
    }
    assert np.array_equal(miss["argmax"], [1.0, 0.0, 0.0])  # row 0 picks class 0
    assert np.array_equal(miss["sklearn"], [1.0, 1.0, 0.0])  # picks 2 in rows 0 and 1
    assert np.array_equal(miss["pessimistic"], [1.0, 1.0, 0.0])
    top2 = {
        ties: M.error_rate(x, y, ties=ties, top_k=2, reduction="none")[0]
        for ties in ("argmax", "sklearn", "pessimistic")
    }
    assert np.array_equal(top2["argmax"], [0.0, 0.0, 0.0])
    assert np.array_equal(top2["sklearn"], [0.0, 0.0, 0.0])
    assert np.array_equal(top2["pessimistic"], [1.0, 0.0, 0.0])  # 2 others tie with the target
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=(50, 7)), rng.integers(0, 7, size=50)
    values = {M.error_rate(xs, ys, ties=t, top_k=3)[0] for t in M.TIE_POLICIES}
    assert len(values) == 1


@pytest.mark.parametrize("ties", ["argmax", "sklearn", "pessimistic"])
def test_spatial_shapes_ignore_index_and_reductions(ties):
    rng = np.random.default_rng(4)
    n, c, d1, d2 = 4, 5, 3, 2
    x = rng.integers(0, 3, size=(n, c, d1, d2)).astype(float)
    y = rng.integers(0, c, size=(n, d1, d2))
    y.reshape(-1)[::5] = -100
    w = rng.uniform(0.1, 2.0, size=(n, d1, d2))
    rows, t = flatten_classes_last(x, y)
    keep = t != -100
    wk = w.reshape(-1)[keep]
    for k in (1, 2, 4):
        per, _ = M.accuracy(x, y, top_k=k, weight=w, ties=ties, reduction="none")
        assert per.shape == y.shape
        assert np.all(per.reshape(-1)[~keep] == 0.0)
        if ties == "sklearn":
            expected = sk_top_k(t[keep], rows[keep], k, wk)
        elif ties == "argmax":
            expected = sk_top_k(c - 1 - t[keep], rows[keep][:, ::-1], k, wk)
        else:
            nudged = rows[keep].copy()
            idx = np.arange(len(nudged))
            nudged[idx, t[keep]] = np.nextafter(nudged[idx, t[keep]], -np.inf)
            expected = sk_top_k(t[keep], nudged, k, wk)
        close(M.accuracy(x, y, top_k=k, weight=w, ties=ties)[0], expected)
        close(M.error_rate(x, y, top_k=k, weight=w, ties=ties)[0], 1.0 - expected)
        close(M.accuracy(x, y, top_k=k, weight=w, ties=ties, reduction="sum")[0], np.sum(per))
        err_none = M.error_rate(x, y, top_k=k, weight=w, ties=ties, reduction="none")[0]
        close(err_none + per, np.where(y == -100, 0.0, w))


def test_logits_or_probabilities_and_edge_cases():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    z = rng.normal(size=(60, 4)) * 2
    y = rng.integers(0, 4, size=60)
    p = torch.softmax(torch.from_numpy(z), dim=1).numpy()
    for k in (1, 2, 3):
        assert M.error_rate(z, y, top_k=k)[0] == M.error_rate(p, y, top_k=k)[0]
    # top_k >= C: every sample is a hit (sklearn warns and says 1.0)
    assert M.error_rate(z, y, top_k=4)[0] == 0.0 == M.error_rate(z, y, top_k=9)[0]
    # unbatched (C,) with a 0-d target; -inf scores; +inf ties
    assert M.error_rate(np.array([0.0, 3.0, -1.0]), np.array(1), reduction="none")[0] == 0.0
    x = np.array([[-np.inf, -np.inf, 0.0], [np.inf, np.inf, 0.0]])
    assert np.array_equal(M.error_rate(x, np.array([2, 1]), reduction="none")[0], [0.0, 1.0])
    assert M.error_rate(x, np.array([2, 1]), ties="sklearn", reduction="none")[0][1] == 0.0
    # NaN anywhere in a row: a miss under every policy; ignored rows never count
    x = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0], [5.0, 0.0, 0.0]])
    for ties in M.TIE_POLICIES:
        per, _ = M.error_rate(x, np.array([2, 2, -100]), ties=ties, reduction="none")
        assert np.array_equal(per, [1.0, 0.0, 0.0])
    # everything ignored: mean NaN (0 / 0), sum 0; empty batch the same
    assert np.isnan(M.error_rate(x, np.full(3, -100))[0])
    assert M.error_rate(x, np.full(3, -100), reduction="sum")[0] == 0.0
    assert np.isnan(M.accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int))[0])
    # ignore_index inside [0, C) is honoured too
    assert M.accuracy(x[1:2], np.array([1]), ignore_index=1, reduction="sum")[0] == 0.0


def test_metric_argument_errors():
    x, y = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match="ties"):
        M.error_rate(x, y, ties="random")
    with pytest.raises(ValueError, match="top_k"):
        M.error_rate(x, y, top_k=0)
    with pytest.raises(IndexError, match="target"):
        M.accuracy(x, np.array([0, 3]))
    with pytest.raises(ValueError, match="gradient"):
        M.error_rate(x, y, need_grad=True)


# ----------------------------------------------------------------------------------------------
# entropy
# ----------------------------------------------------------------------------------------------
def fd_entropy(x, go, h=1e-6, **kw):
    x = np.array(x, dtype=np.float64)
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        vals = []
        for step in (h, -h):
            xs = x.copy()
            xs[idx] += step
            vals.append(np.sum(go * M.entropy(xs, reduction="none", **kw)[0]))
        g[idx] = (vals[0] - vals[1]) / (2 * h)
    return g


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("base", [None, 2, 10])
def test_entropy_of_probabilities_matches_scipy(axis, base):
    rng = np.random.default_rng(6)
    p = rng.uniform(size=(4, 5, 6))
    p[0, 0, :] = 0.0  # zeros (entr(0) = 0); this row along axis -1 sums to 0 -> NaN (scipy too)
    p[1, 2, 3] = 0.0
    with np.errstate(all="ignore"):
        expected = scipy_stats.entropy(p, base=base, axis=axis)
    h, _ = M.entropy(p, axis=axis, base=base, from_logits=False)
    close(h, expected, rtol=1e-14)
    # scipy's default axis is 0; ours -1 (the class axis of (N, C))
    q = rng.uniform(size=(3, 7))
    close(M.entropy(q, from_logits=False)[0], scipy_stats.entropy(q.T))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("base", [None, 2])
def test_entropy_from_logits_matches_torch_categorical(reduction, base):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    z = rng.normal(size=(5, 3, 6)) * 3
    z[0, 0, [1, 4]] = -np.inf  # masked classes
    z[2, 1, :5] = -np.inf  # a single live class: H = 0
    zt = torch.tensor(z, requires_grad=True)
    ht = torch.distributions.Categorical(logits=zt).entropy()
    if base is not None:
        ht = ht / np.log(base)
    ht = {"none": ht, "mean": ht.mean(), "sum": ht.sum()}[reduction]
    # upstream gradients below 1: above it torch's masked rows turn NaN (see the next test)
    go = rng.uniform(0.2, 0.6, size=(5, 3)) if reduction == "none" else 0.5
    ht.backward(torch.tensor(go, dtype=torch.float64))
    h, g = M.entropy(z, base=base, reduction=reduction, grad_output=go, need_grad=True)
    close(h, ht.detach().numpy(), rtol=1e-13)
    close(g, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(g)) and np.all(g[0, 0, [1, 4]] == 0.0)
    h_only, none = M.entropy(z, base=base, reduction=reduction)
    assert none is None
    close(h_only, h, rtol=0, atol=0)


def test_entropy_masked_logits_finite_where_torch_is_nan():
    """torch's Categorical clamps -inf logits to finfo.min, so an upstream gradient above 1
    overflows finfo.min * g to -inf and -inf * (p = 0) makes the row's gradient NaN."""
    torch = pytest.importorskip("torch")
    z = np.array([0.0, -np.inf, 1.0])
    zt = torch.tensor(z, requires_grad=True)
    (torch.distributions.Categorical(logits=zt).entropy() * 2.0).backward()
    assert np.all(np.isnan(zt.grad.numpy()))
    _, g = M.entropy(z, grad_output=2.0, reduction="sum", need_grad=True)
    zt.grad = None
    torch.distributions.Categorical(logits=zt).entropy().backward()  # upstream 1: finite
    close(g, 2.0 * zt.grad.numpy(), rtol=1e-14)
    assert g[1] == 0.0


@pytest.mark.parametrize("axis", [-1, 0])
def test_entropy_of_probabilities_gradient_matches_torch_categorical(axis):
    """Categorical(probs=x) normalises x as we do, so autograd through it is our gradient (for
    x > 0; at x = 0 torch's clamp at finfo.eps gives ~36, we give 0, see the docstring)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    x = rng.uniform(0.05, 2.0, size=(4, 5))  # not normalised
    xt = torch.tensor(x, requires_grad=True)
    src = xt if axis == -1 else xt.T
    ht = torch.distributions.Categorical(probs=src).entropy()
    go = rng.uniform(0.5, 1.5, size=ht.shape)
    ht.backward(torch.from_numpy(go))
    h, g = M.entropy(x, axis=axis, from_logits=False, grad_output=go, need_grad=True)
    close(h, ht.detach().numpy())
    close(g, xt.grad.numpy(), rtol=1e-12)
    # the zero-probability departure
    x0 = np.array([[0.2, 0.0, 0.3, 0.5]])
    x0t = torch.tensor(x0, requires_grad=True)
    torch.distributions.Categorical(probs=x0t).entropy().sum().backward()
    assert 35.0 < x0t.grad[0, 1].item() < 37.0
    h0, g0 = M.entropy(x0, from_logits=False, need_grad=True)
    assert g0[0, 1] == 0.0
    close(g0[0, [0, 2, 3]], x0t.grad.numpy()[0, [0, 2, 3]], rtol=1e-12)


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("axis", [-1, 0])
def test_entropy_finite_differences(from_logits, axis):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 4)) if from_logits else rng.uniform(0.1, 2.0, size=(3, 4))
    kw = dict(axis=axis, from_logits=from_logits, base=3)
    go = rng.uniform(0.5, 1.5, size=np.shape(M.entropy(x, **kw)[0]))
    _, g = M.entropy(x, reduction="none", grad_output=go, need_grad=True, **kw)
    close(g, fd_entropy(x, go, **kw), rtol=1e-6, atol=1e-8)


def test_entropy_edge_cases():
    # one dominant class: H ~ 51 e^-50 is kept to full precision (log1p of the rest)
    h, g = M.entropy(np.array([0.0, -50.0]), need_grad=True)
    e = np.exp(-50.0)
    expected = np.log1p(e) + 50.0 * e / (1.0 + e)
    close(h, expected, rtol=1e-14, atol=0)
    # the same distribution given as probabilities, and the same logits shifted
    close(M.entropy(np.array([1.0, e]), from_logits=False)[0], expected, rtol=1e-14, atol=0)
    close(M.entropy(np.array([1e300, 1e300 - 0.0]))[0], np.log(2.0), rtol=1e-15)
    # NaN, +inf, all -inf rows give NaN (their gradient NaN), other rows unaffected
    z = np.array([[np.nan, 0.0], [np.inf, 0.0], [-np.inf, -np.inf], [0.0, 0.0]])
    h, g = M.entropy(z, need_grad=True)
    assert np.all(np.isnan(h[:3])) and h[3] == np.log(2.0)
    assert np.all(np.isnan(g[:3])) and np.array_equal(g[3], [0.0, 0.0])
    # a one-hot probability row: H = 0, gradient 0
    h, g = M.entropy(np.array([0.0, 1.0, 0.0]), from_logits=False, need_grad=True)
    assert h == 0.0 and np.array_equal(g, [0.0, 0.0, 0.0])
