"""Tests of the pure-NumPy reference math (fastloss/reference/_math.py) against PyTorch (float64
autograd), finite differences, and high-precision mpmath values where torch's composed
formulas lose accuracy. Deliberate departures from torch are asserted as documented values.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _load_math_module():
    """Import fastloss.reference._math; fall back to loading the file by path so that these
    tests do not depend on the rest of the package importing cleanly."""
    try:
        from fastloss.reference import _math

        return _math
    except Exception:
        path = Path(__file__).resolve().parents[1] / "fastloss" / "reference" / "_math.py"
        spec = importlib.util.spec_from_file_location("_fastloss_reference_math", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


M = _load_math_module()

INF = np.inf
NAN = np.nan
REDUCTIONS = ["none", "mean", "sum"]
GAMMAS = [0.0, 0.25, 0.5, 1.0, 2.0]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def close(actual, expected, rtol=1e-10, atol=1e-13):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def make_grad_output(rng, reduction, loss_shape):
    """grad_output for our call and the matching torch tensor for loss.backward()."""
    if reduction == "none":
        go = rng.uniform(0.5, 1.5, size=loss_shape)
        return go, torch.from_numpy(go.copy())
    go = 0.7
    return go, torch.tensor(go, dtype=torch.float64)


def torch_loss_and_grad(fn, x, go_tensor):
    """Run fn on a float64 leaf tensor built from x; return (loss, grad) as numpy arrays."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    loss = fn(xt)
    loss.backward(go_tensor)
    return loss.detach().numpy(), xt.grad.numpy()


def canon(a):
    """torch layout (N, C, d1, ..., dk) -> canonical (N, C, S)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def canon_target(t):
    """torch index targets (N, d1, ..., dk) -> canonical (N, S)."""
    return t.reshape(t.shape[0], -1)


def per_sample_shape(x_shape):
    return (x_shape[0],) + tuple(x_shape[2:])


def fd_grad(f, x, h=1e-3):
    """4th-order central finite-difference gradient of scalar f at x (float64)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat_x = x.reshape(-1)
    flat_g = g.reshape(-1)
    for k in range(flat_x.size):
        vals = []
        for step in (2, 1, -1, -2):
            xk = flat_x.copy()
            xk[k] += step * h
            vals.append(f(xk.reshape(x.shape)))
        flat_g[k] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


CLASS_SHAPES = [(6, 4), (3, 4, 2, 3)]


def class_inputs(rng, shape, ignore_index=None, scale=2.0):
    """Logits of torch shape `shape` and index targets; a third of them set to ignore_index
    (when it lies outside [0, C)), and class `ignore_index` guaranteed present when inside."""
    c = shape[1]
    x = rng.normal(size=shape) * scale
    t = rng.integers(0, c, size=per_sample_shape(shape))
    flat = t.reshape(-1)
    if ignore_index is not None:
        if 0 <= ignore_index < c:
            flat[::3] = ignore_index
        else:
            flat[1::3] = ignore_index
    return x, t


# ----------------------------------------------------------------------------------------------
# softmax family
# ----------------------------------------------------------------------------------------------
SPECIAL_ROWS = np.array(
    [
        [0.5, -1.0, 2.0, 0.0],
        [INF, 0.0, 1.0, 2.0],
        [-INF, -INF, -INF, -INF],
        [INF, INF, 0.0, -INF],
        [-INF, 0.0, 1.0, -INF],
        [NAN, 0.0, 1.0, 2.0],
        [1e308, 1e308, 0.0, -1e308],
        [1e30, -1e30, 1e30, 0.0],
        [-1e4, 1e4, 0.0, 3.0],
    ]
)


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp"])
def test_softmax_family_matches_torch(name):
    rng = np.random.default_rng(0)
    x3 = rng.normal(size=(3, 4, 5)) * 3  # (N, C, d)
    cases = [(SPECIAL_ROWS, SPECIAL_ROWS[:, :, None]), (x3, x3)]
    for torch_x, ours_x in cases:
        xt = torch.from_numpy(np.ascontiguousarray(torch_x))
        if name == "logsumexp":
            expected = torch.logsumexp(xt, dim=1).numpy().reshape(torch_x.shape[0], -1)
        else:
            expected = getattr(F, name)(xt, dim=1).numpy().reshape(ours_x.shape)
        actual = getattr(M, name)(ours_x)
        close(actual, expected, rtol=1e-14, atol=0)


def test_softmax_family_float32_input_and_no_mutation():
    x = (np.arange(12, dtype=np.float32).reshape(2, 3, 2) - 6) * np.float32(1e30)
    before = x.copy()
    out = M.log_softmax(x)
    assert out.dtype == np.float64 and np.all(np.isfinite(out))
    close(M.softmax(x), np.exp(out), rtol=1e-15, atol=0)
    assert np.array_equal(x, before)
    assert M.logsumexp(np.zeros((0, 3, 1))).shape == (0, 1)


# ----------------------------------------------------------------------------------------------
# cross_entropy with index targets
# ----------------------------------------------------------------------------------------------
def run_ce_index(shape, reduction, use_weight, ignore_index, smoothing, seed=1):
    rng = np.random.default_rng(seed)
    x, t = class_inputs(rng, shape, ignore_index)
    c = shape[1]
    w = rng.uniform(0.2, 2.0, size=c) if use_weight else None
    go, go_t = make_grad_output(rng, reduction, per_sample_shape(shape))
    loss, grad = M.cross_entropy(
        canon(x),
        canon_target(t),
        weight=w,
        ignore_index=ignore_index,
        label_smoothing=smoothing,
        reduction=reduction,
        grad_output=canon_target(go) if reduction == "none" else go,
        need_grad=True,
    )
    wt = None if w is None else torch.from_numpy(w)
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt,
            torch.from_numpy(t),
            weight=wt,
            ignore_index=ignore_index,
            label_smoothing=smoothing,
            reduction=reduction,
        ),
        x,
        go_t,
    )
    return loss, grad, tl, tg, t


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_index_matches_torch(shape, reduction, use_weight, ignore_index, smoothing):
    loss, grad, tl, tg, _ = run_ce_index(shape, reduction, use_weight, ignore_index, smoothing)
    if reduction == "none":
        close(loss.reshape(tl.shape), tl)
    else:
        assert np.ndim(loss) == 0
        close(loss, tl)
    assert grad.dtype == np.float64
    close(grad.reshape(tg.shape), tg)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_all_ignored(smoothing, reduction):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 2))
    t = np.full((4, 2), -100)
    w = np.array([1.0, 2.0, 0.5])
    loss, grad = M.cross_entropy(
        x,
        t,
        weight=w,
        ignore_index=-100,
        label_smoothing=smoothing,
        reduction=reduction,
        grad_output=None,
        need_grad=True,
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt,
            torch.from_numpy(t),
            weight=torch.from_numpy(w),
            label_smoothing=smoothing,
            reduction=reduction,
        ),
        x,
        torch.ones(4, 2, dtype=torch.float64) if reduction == "none" else None,
    )
    if reduction == "mean":
        assert np.isnan(loss)
    else:
        close(loss, tl, atol=0)
    assert np.array_equal(grad, np.zeros_like(x))  # zero, not NaN
    close(grad, tg, atol=0)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_zero_total_weight_matches_torch(smoothing):
    # non-ignored samples whose weights are all 0: "mean" is 0/0 -> NaN loss and NaN gradient
    # in the kept rows (torch's behaviour), 0 in the ignored row
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0], [0.3, 0.2, 0.1]])
    t = np.array([0, 0, -100])
    w = np.array([0.0, 1.0, 1.0])
    loss, grad = M.cross_entropy(
        x[:, :, None],
        t[:, None],
        weight=w,
        ignore_index=-100,
        label_smoothing=smoothing,
        reduction="mean",
        grad_output=None,
        need_grad=True,
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt, torch.from_numpy(t), weight=torch.from_numpy(w), label_smoothing=smoothing
        ),
        x,
        None,
    )
    assert np.isnan(loss) and np.isnan(tl)
    close(grad[:, :, 0], tg)


@pytest.mark.parametrize("probs", [False, True])
def test_cross_entropy_empty(probs):
    x = np.zeros((0, 3, 2))
    t = np.zeros((0, 3, 2)) if probs else np.zeros((0, 2), dtype=np.int64)
    loss, grad = M.cross_entropy(
        x,
        t,
        weight=None,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="mean",
        grad_output=None,
        need_grad=True,
    )
    assert np.isnan(loss) and grad.shape == x.shape
    loss, grad = M.cross_entropy(
        x,
        t,
        weight=None,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="sum",
        grad_output=2.0,
        need_grad=True,
    )
    assert loss == 0.0 and grad.shape == x.shape
    loss, grad = M.cross_entropy(
        x,
        t,
        weight=None,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="none",
        grad_output=np.zeros((0, 2)),
        need_grad=True,
    )
    assert loss.shape == (0, 2) and grad.shape == x.shape


def test_cross_entropy_nan_row_is_local():
    x = np.array([[NAN, 0.0, 1.0], [0.0, 1.0, 2.0], [2.0, NAN, 0.0], [1.0, 1.0, -1.0]])
    t = np.array([0, 1, -100, 2])
    loss, grad = M.cross_entropy(
        x[:, :, None],
        t[:, None],
        weight=None,
        ignore_index=-100,
        label_smoothing=0.0,
        reduction="none",
        grad_output=None,
        need_grad=True,
    )
    loss, grad = loss[:, 0], grad[:, :, 0]
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(xt, torch.from_numpy(t), reduction="none"),
        x,
        torch.ones(4, dtype=torch.float64),
    )
    close(loss, tl)  # NaN only in row 0; the ignored NaN row 2 has loss 0 like torch
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1:]))
    close(grad[[0, 1, 3]], tg[[0, 1, 3]])
    # deliberate: the gradient of an ignored row is 0 even if the row holds NaN (torch: NaN)
    assert np.all(np.isnan(tg[2])) and np.array_equal(grad[2], np.zeros(3))


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_masked_logits(smoothing, reduction):
    x = np.array([[-INF, 0.0, 1.0, -INF], [0.0, -INF, 2.0, 1.0], [3.0, 1.0, -INF, 0.0]])
    t = np.array([1, 3, 0])
    loss, grad = M.cross_entropy(
        x[:, :, None],
        t[:, None],
        weight=None,
        ignore_index=-100,
        label_smoothing=smoothing,
        reduction=reduction,
        grad_output=None,
        need_grad=True,
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt, torch.from_numpy(t), reduction=reduction, label_smoothing=smoothing
        ),
        x,
        torch.ones(3, dtype=torch.float64) if reduction == "none" else None,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad[:, :, 0], tg)
    assert np.all(np.isfinite(grad))
    if smoothing == 0.0:
        assert np.all(np.isfinite(loss))
        assert np.all(grad[:, :, 0][np.isneginf(x)] == 0.0)
    else:
        assert np.all(np.isposinf(loss))  # -log p = inf in the smoothing term (torch too)


def test_cross_entropy_huge_logits_float32():
    x32 = np.array([[1e30, -1e30, 0.0], [-1e30, 0.0, 1e30], [3e38, 3e38, -3e38]], dtype=np.float32)
    t = np.array([0, 0, 1])
    before = x32.copy()
    loss, grad = M.cross_entropy(
        x32[:, :, None],
        t[:, None],
        weight=None,
        ignore_index=-100,
        label_smoothing=0.0,
        reduction="none",
        grad_output=None,
        need_grad=True,
    )
    assert np.array_equal(x32, before)
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(xt, torch.from_numpy(t), reduction="none"),
        x32.astype(np.float64),
        torch.ones(3, dtype=torch.float64),
    )
    close(loss[:, 0], tl, atol=0)
    close(grad[:, :, 0], tg)
    close(loss[:, 0], [0.0, np.float64(np.float32(1e30)) * 2, np.log(2.0)], rtol=1e-15)


def test_cross_entropy_saturated_gradient_keeps_relative_precision():
    # p_y = 1 - q with q ~ 4e-18: the target entry of the gradient is -q, not 0
    x = np.array([[40.0, 0.0, 0.0]])[:, :, None]
    loss, grad = M.cross_entropy(
        x,
        np.array([[0]]),
        weight=None,
        ignore_index=-100,
        label_smoothing=0.0,
        reduction="sum",
        grad_output=None,
        need_grad=True,
    )
    q = 2 * np.exp(-40.0) / (1 + 2 * np.exp(-40.0))
    close(grad[0, :, 0], [-q, q / 2, q / 2], rtol=1e-14, atol=0)
    close(loss, np.log1p(2 * np.exp(-40.0)), rtol=1e-14, atol=0)


def test_cross_entropy_need_grad_false():
    x = np.random.default_rng(3).normal(size=(4, 3, 1))
    t = np.array([[0], [1], [2], [1]])
    loss, grad = M.cross_entropy(
        x,
        t,
        weight=None,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="mean",
        grad_output=None,
        need_grad=False,
    )
    assert grad is None
    loss2, _ = M.cross_entropy(
        x,
        t,
        weight=None,
        ignore_index=-100,
        label_smoothing=0.1,
        reduction="mean",
        grad_output=5.0,
        need_grad=True,
    )
    assert loss == loss2  # grad_output scales the gradient only


# ----------------------------------------------------------------------------------------------
# cross_entropy with probability targets
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probs_matches_torch(shape, reduction, use_weight, smoothing):
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape) * 2
    t = rng.dirichlet(np.ones(shape[1]), size=per_sample_shape(shape))  # (..., C)
    t = np.moveaxis(t, -1, 1).copy()
    w = rng.uniform(0.2, 2.0, size=shape[1]) if use_weight else None
    go, go_t = make_grad_output(rng, reduction, per_sample_shape(shape))
    before = (x.copy(), t.copy())
    loss, grad = M.cross_entropy(
        canon(x),
        canon(t),
        weight=w,
        ignore_index=-100,
        label_smoothing=smoothing,
        reduction=reduction,
        grad_output=canon_target(go) if reduction == "none" else go,
        need_grad=True,
    )
    assert np.array_equal(x, before[0]) and np.array_equal(t, before[1])
    wt = None if w is None else torch.from_numpy(w)
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt, torch.from_numpy(t), weight=wt, label_smoothing=smoothing, reduction=reduction
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad.reshape(tg.shape), tg)


def test_cross_entropy_probs_zero_target_masked_logit_is_zero_not_nan():
    # deliberate difference: t = 0 where log p = -inf contributes 0 (torch: NaN); the value
    # equals torch's at a huge finite negative logit instead of -inf
    x = np.array([[-INF, 0.0, 1.0], [0.0, 1.0, 2.0]])
    t = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    w = np.array([0.0, 1.0, 2.0])
    for weight in (None, w):
        loss, grad = M.cross_entropy(
            x[:, :, None],
            t[:, :, None],
            weight=weight,
            ignore_index=-100,
            label_smoothing=0.0,
            reduction="sum",
            grad_output=None,
            need_grad=True,
        )
        wt = None if weight is None else torch.from_numpy(weight)
        nan_loss, _ = torch_loss_and_grad(
            lambda xt: F.cross_entropy(xt, torch.from_numpy(t), weight=wt, reduction="sum"), x, None
        )
        assert np.isnan(nan_loss)
        x_fin = np.where(np.isinf(x), -1e300, x)
        tl, tg = torch_loss_and_grad(
            lambda xt: F.cross_entropy(xt, torch.from_numpy(t), weight=wt, reduction="sum"),
            x_fin,
            None,
        )
        assert np.isfinite(loss)
        close(loss, tl)
        close(grad[:, :, 0], tg)
    # zero weight times -inf log-probability also contributes 0 (target class 0 has w = 0)
    t2 = np.array([[0.5, 0.5, 0.0]])
    loss, _ = M.cross_entropy(
        x[:1, :, None],
        t2[:, :, None],
        weight=w,
        ignore_index=-100,
        label_smoothing=0.0,
        reduction="sum",
        grad_output=None,
        need_grad=False,
    )
    assert np.isfinite(loss)


# ----------------------------------------------------------------------------------------------
# nll_loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nll_loss_matches_torch(shape, reduction, use_weight, ignore_index):
    rng = np.random.default_rng(5)
    x, t = class_inputs(rng, shape, ignore_index)
    w = rng.uniform(0.2, 2.0, size=shape[1]) if use_weight else None
    go, go_t = make_grad_output(rng, reduction, per_sample_shape(shape))
    loss, grad = M.nll_loss(
        canon(x),
        canon_target(t),
        weight=w,
        ignore_index=ignore_index,
        reduction=reduction,
        grad_output=canon_target(go) if reduction == "none" else go,
        need_grad=True,
    )
    wt = None if w is None else torch.from_numpy(w)
    tl, tg = torch_loss_and_grad(
        lambda xt: F.nll_loss(
            xt, torch.from_numpy(t), weight=wt, ignore_index=ignore_index, reduction=reduction
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad.reshape(tg.shape), tg)


@pytest.mark.parametrize("targets", [[-100, -100, -100], [0, 0, -100]])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_all_ignored_and_zero_weight(targets, reduction):
    x = np.array([[-1.0, -2.0, -0.5], [-0.1, -3.0, -2.0], [-INF, -1.0, -1.0]])
    t = np.array(targets)
    w = np.array([0.0, 1.0, 1.0])
    loss, grad = M.nll_loss(
        x[:, :, None],
        t[:, None],
        weight=w,
        ignore_index=-100,
        reduction=reduction,
        grad_output=None,
        need_grad=True,
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.nll_loss(
            xt, torch.from_numpy(t), weight=torch.from_numpy(w), reduction=reduction
        ),
        x,
        torch.ones(3, dtype=torch.float64) if reduction == "none" else None,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad[:, :, 0], tg)
    if targets[0] == -100:
        assert np.array_equal(grad, np.zeros_like(grad))
        assert np.isnan(loss) if reduction == "mean" else np.all(loss == 0)


def test_nll_loss_empty():
    x = np.zeros((0, 4, 1))
    t = np.zeros((0, 1), dtype=np.int64)
    assert np.isnan(
        M.nll_loss(
            x, t, weight=None, ignore_index=-100, reduction="mean", grad_output=None, need_grad=True
        )[0]
    )
    loss, grad = M.nll_loss(
        x, t, weight=None, ignore_index=-100, reduction="sum", grad_output=None, need_grad=True
    )
    assert loss == 0.0 and grad.shape == x.shape


# ----------------------------------------------------------------------------------------------
# focal_loss (multi-class)
# ----------------------------------------------------------------------------------------------
def torch_focal(xt, t, gamma, w, ignore_index, reduction):
    """Composed torch formula: -w[y] (1 - p_y)^gamma log p_y, mean over sum of w[y]."""
    logp = F.log_softmax(xt, dim=1)
    tt = torch.from_numpy(t)
    keep = tt != ignore_index
    ts = torch.where(keep, tt, torch.zeros_like(tt))
    logp_y = logp.gather(1, ts.unsqueeze(1)).squeeze(1)
    w_y = torch.ones(ts.shape, dtype=torch.float64) if w is None else torch.from_numpy(w)[ts]
    w_y = torch.where(keep, w_y, torch.zeros_like(w_y))
    per = torch.where(keep, -w_y * (1 - logp_y.exp()) ** gamma * logp_y, torch.zeros_like(w_y))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.sum() / w_y.sum()


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_focal_gamma0_is_cross_entropy(shape, reduction, use_weight, ignore_index):
    rng = np.random.default_rng(6)
    x, t = class_inputs(rng, shape, ignore_index)
    w = rng.uniform(0.2, 2.0, size=shape[1]) if use_weight else None
    go, go_t = make_grad_output(rng, reduction, per_sample_shape(shape))
    loss, grad = M.focal_loss(
        canon(x),
        canon_target(t),
        gamma=0.0,
        weight=w,
        ignore_index=ignore_index,
        reduction=reduction,
        grad_output=canon_target(go) if reduction == "none" else go,
        need_grad=True,
    )
    wt = None if w is None else torch.from_numpy(w)
    tl, tg = torch_loss_and_grad(
        lambda xt: F.cross_entropy(
            xt, torch.from_numpy(t), weight=wt, ignore_index=ignore_index, reduction=reduction
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad.reshape(tg.shape), tg)


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.5])
def test_focal_matches_torch_composed(shape, reduction, gamma):
    rng = np.random.default_rng(7)
    x, t = class_inputs(rng, shape, -100)
    w = rng.uniform(0.2, 2.0, size=shape[1])
    go, go_t = make_grad_output(rng, reduction, per_sample_shape(shape))
    loss, grad = M.focal_loss(
        canon(x),
        canon_target(t),
        gamma=gamma,
        weight=w,
        ignore_index=-100,
        reduction=reduction,
        grad_output=canon_target(go) if reduction == "none" else go,
        need_grad=True,
    )
    tl, tg = torch_loss_and_grad(lambda xt: torch_focal(xt, t, gamma, w, -100, reduction), x, go_t)
    close(np.reshape(loss, np.shape(tl)), tl, rtol=1e-9, atol=1e-12)
    close(grad.reshape(tg.shape), tg, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_focal_gradient_finite_differences(gamma, reduction):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 3, 2)) * 3
    x[0, 1, 0] += 8.0  # one confident sample
    t = np.array([[1, 0], [2, -100], [0, 1], [2, 2]])
    t[0, 0] = 1
    w = np.array([0.5, 1.5, 1.0])

    def f(xx):
        return M.focal_loss(
            xx,
            t,
            gamma=gamma,
            weight=w,
            ignore_index=-100,
            reduction=reduction,
            grad_output=None,
            need_grad=False,
        )[0]

    _, grad = M.focal_loss(
        x,
        t,
        gamma=gamma,
        weight=w,
        ignore_index=-100,
        reduction=reduction,
        grad_output=1.3,
        need_grad=True,
    )
    close(grad, 1.3 * fd_grad(f, x), rtol=1e-7, atol=1e-9)


def _mp_focal_sample(xs, y, gamma, w):
    """High-precision per-sample focal loss and gradient (mpmath numerical differentiation)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 200
    gamma = mpmath.mpf(gamma)

    def loss(*v):
        v = [mpmath.mpf(a) for a in v]
        m = max(v)
        s = mpmath.fsum(mpmath.exp(a - m) for a in v)
        log_p = (v[y] - m) - mpmath.log(s)
        q = -mpmath.expm1(log_p)
        return -w * q**gamma * log_p

    xs = [mpmath.mpf(float(a)) for a in xs]
    value = loss(*xs)
    grad = []
    for j in range(len(xs)):
        order = [0] * len(xs)
        order[j] = 1
        grad.append(mpmath.diff(loss, xs, tuple(order)))
    return float(value), [float(g) for g in grad]


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("margin", [3.0, 20.0, 40.0, 300.0])
def test_focal_near_saturation_high_precision(gamma, margin):
    # torch's composed formula loses (1 - p_y) to cancellation here; compare with mpmath
    rows = np.array([[margin, 0.0, -1.0], [0.0, margin, 0.5]])
    t = np.array([0, 2])  # sample 0: confident and right; sample 1: confident and wrong
    w = np.array([0.7, 1.0, 1.3])
    loss, grad = M.focal_loss(
        rows[:, :, None],
        t[:, None],
        gamma=gamma,
        weight=w,
        ignore_index=-100,
        reduction="none",
        grad_output=None,
        need_grad=True,
    )
    for i in range(2):
        value, g = _mp_focal_sample(rows[i], t[i], gamma, w[t[i]])
        close(loss[i, 0], value, rtol=1e-13, atol=0)
        close(grad[i, :, 0], g, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_saturation_finite(gamma, reduction):
    big = 1e4
    x = np.array([[big, -big, 0.0], [-big, big, 0.0], [0.0, 0.0, big], [big, big, -big]])
    t = np.array([0, 0, 2, 1])
    w = np.array([2.0, 1.0, 0.5])
    loss, grad = M.focal_loss(
        x[:, :, None],
        t[:, None],
        gamma=gamma,
        weight=w,
        ignore_index=-100,
        reduction=reduction,
        grad_output=None,
        need_grad=True,
    )
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    loss_n, grad_n = M.focal_loss(
        x[:, :, None],
        t[:, None],
        gamma=gamma,
        weight=w,
        ignore_index=-100,
        reduction="none",
        grad_output=None,
        need_grad=True,
    )
    loss_n, grad_n = loss_n[:, 0], grad_n[:, :, 0]
    # confident and right: loss 0 and gradient 0
    assert loss_n[0] == 0.0 and loss_n[2] == 0.0
    assert np.all(grad_n[[0, 2]] == 0.0)
    # confident and wrong: (1 - p_y) = 1, loss = w * 2e4, gradient w * (p - onehot)
    close(loss_n[1], 2.0 * 2e4, rtol=1e-15)
    close(grad_n[1], [-2.0, 2.0, 0.0], rtol=1e-15)
    # tie between two saturated classes: p_y = q = 1/2
    close(loss_n[3], 0.5**gamma * np.log(2.0), rtol=1e-14)
    factor = 0.5**gamma * (1 + gamma * np.log(2.0))
    close(grad_n[3], [0.5 * factor, -0.5 * factor, 0.0], rtol=1e-14)
    if gamma == 0.0:
        tl, tg = torch_loss_and_grad(
            lambda xt: F.cross_entropy(
                xt, torch.from_numpy(t), weight=torch.from_numpy(w), reduction=reduction
            ),
            x,
            torch.ones(4, dtype=torch.float64) if reduction == "none" else None,
        )
        close(np.reshape(loss, np.shape(tl)), tl)
        close(grad[:, :, 0], tg)


def test_focal_all_ignored_and_empty():
    x = np.random.default_rng(9).normal(size=(3, 4, 1))
    t = np.full((3, 1), 1)
    loss, grad = M.focal_loss(
        x,
        t,
        gamma=2.0,
        weight=None,
        ignore_index=1,
        reduction="mean",
        grad_output=None,
        need_grad=True,
    )
    assert np.isnan(loss) and np.array_equal(grad, np.zeros_like(x))
    loss, grad = M.focal_loss(
        np.zeros((0, 4, 1)),
        np.zeros((0, 1), np.int64),
        gamma=2.0,
        weight=None,
        ignore_index=-100,
        reduction="mean",
        grad_output=None,
        need_grad=True,
    )
    assert np.isnan(loss) and grad.shape == (0, 4, 1)


def test_focal_masked_logits():
    x = np.array([[-INF, 0.0, 1.0], [1.0, -INF, 0.0]])[:, :, None]
    t = np.array([[1], [1]])  # second sample targets a masked class
    for gamma in GAMMAS:
        loss, grad = M.focal_loss(
            x,
            t,
            gamma=gamma,
            weight=None,
            ignore_index=-100,
            reduction="none",
            grad_output=None,
            need_grad=True,
        )
        assert np.isfinite(loss[0, 0]) and np.isposinf(loss[1, 0])
        assert np.all(np.isfinite(grad)) and grad[0, 0, 0] == 0.0
        p = np.exp(1.0) / (1 + np.exp(1.0))
        close(grad[1, :, 0], [p, -1.0, 1 - p], rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# sigmoid_focal_loss
# ----------------------------------------------------------------------------------------------
def torch_sigmoid_focal(xt, t, alpha, gamma, reduction):
    """torchvision.ops.sigmoid_focal_loss, written out."""
    from fastloss.reference._oracles import torchvision_sigmoid_focal_loss

    tt = torch.from_numpy(np.asarray(t, dtype=np.float64))
    return torchvision_sigmoid_focal_loss(xt, tt, alpha, gamma, reduction)


ELEMENTWISE_SHAPES = [(), (7,), (3, 4, 2)]


@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_matches_torch(shape, reduction, alpha, gamma, soft):
    rng = np.random.default_rng(10)
    x = rng.normal(size=shape) * 3
    t = rng.uniform(size=shape) if soft else rng.integers(0, 2, size=shape).astype(np.float64)
    go, go_t = make_grad_output(rng, reduction, shape)
    loss, grad = M.sigmoid_focal_loss(
        x, t, alpha=alpha, gamma=gamma, reduction=reduction, grad_output=go, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: torch_sigmoid_focal(xt, t, alpha, gamma, reduction), x, go_t
    )
    close(np.reshape(loss, np.shape(tl)), tl, rtol=1e-9, atol=1e-13)
    close(grad, tg, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_sigmoid_focal_gradient_finite_differences(gamma, alpha):
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(size=8) * 3, [9.0, -9.0, 12.0, -12.0]])
    t = np.concatenate([rng.uniform(size=4), rng.integers(0, 2, size=4), [1.0, 0.0, 0.0, 1.0]])

    def f(xx):
        return M.sigmoid_focal_loss(
            xx, t, alpha=alpha, gamma=gamma, reduction="sum", grad_output=None, need_grad=False
        )[0]

    _, grad = M.sigmoid_focal_loss(
        x, t, alpha=alpha, gamma=gamma, reduction="sum", grad_output=None, need_grad=True
    )
    close(grad, fd_grad(f, x), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_near_saturation_high_precision(gamma):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 200
    x = np.array([20.0, -20.0, 40.0, -300.0, 5.0, -30.0])
    t = np.array([1.0, 0.0, 1.0, 0.0, 0.3, 1.0])
    alpha = 0.25
    loss, grad = M.sigmoid_focal_loss(
        x, t, alpha=alpha, gamma=gamma, reduction="none", grad_output=None, need_grad=True
    )
    g = mpmath.mpf(gamma)
    for k in range(x.size):
        tk = mpmath.mpf(t[k])
        a_t = alpha * tk + (1 - alpha) * (1 - tk)

        def f(v):
            p = 1 / (1 + mpmath.exp(-v))
            ce = -(tk * mpmath.log(p) + (1 - tk) * mpmath.log(1 - p))
            u = tk * (1 - p) + (1 - tk) * p
            return a_t * ce * u**g

        xv = mpmath.mpf(x[k])
        close(loss[k], float(f(xv)), rtol=1e-13, atol=1e-300)
        close(grad[k], float(mpmath.diff(f, xv)), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("big", [1e4, 1e300, INF])
def test_sigmoid_focal_saturation(gamma, big):
    x = np.array([big, -big, big, -big])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    alpha = 0.25
    loss, grad = M.sigmoid_focal_loss(
        x, t, alpha=alpha, gamma=gamma, reduction="none", grad_output=None, need_grad=True
    )
    assert np.all(np.isfinite(grad))
    # agreeing targets: exactly 0 (torch's composed formula: NaN for gamma < 1 or at inf)
    assert loss[0] == 0.0 and loss[1] == 0.0 and grad[0] == 0.0 and grad[1] == 0.0
    # disagreeing: (1 - p_t) = 1, loss = alpha_t * |x|, gradient alpha_t * (p - t)
    close(loss[2:], [0.75 * big, 0.25 * big], rtol=1e-15)
    close(grad[2:], [0.75, -0.25], rtol=1e-15)
    if np.isfinite(big):
        for reduction in ("mean", "sum"):
            lr, gr = M.sigmoid_focal_loss(
                x,
                t,
                alpha=alpha,
                gamma=gamma,
                reduction=reduction,
                grad_output=None,
                need_grad=True,
            )
            assert np.isfinite(lr) and np.all(np.isfinite(gr))


# ----------------------------------------------------------------------------------------------
# binary_cross_entropy
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
def test_bce_matches_torch(shape, reduction, use_weight):
    rng = np.random.default_rng(12)
    x = rng.uniform(0.01, 0.99, size=shape)
    t = rng.uniform(size=shape)
    w = rng.uniform(0.2, 2.0, size=shape) if use_weight else None
    go, go_t = make_grad_output(rng, reduction, shape)
    loss, grad = M.binary_cross_entropy(
        x, t, weight=w, reduction=reduction, grad_output=go, need_grad=True
    )
    wt = None if w is None else torch.from_numpy(np.asarray(w))
    tl, tg = torch_loss_and_grad(
        lambda xt: F.binary_cross_entropy(
            xt, torch.from_numpy(np.asarray(t)), weight=wt, reduction=reduction
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad, tg)


def test_bce_edges_match_torch_exactly():
    # log clamp at -100, log1p(-x), and the float32 EPSILON in the backward
    xs = np.array([0.0, 0.0, 1.0, 1.0, 1e-14, 1e-14, 1 - 1e-14, 1e-10, 1e-7, 0.5, 1e-300])
    ts = np.array([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.3, 0.0])
    w = np.linspace(0.5, 1.5, xs.size)
    loss, grad = M.binary_cross_entropy(
        xs, ts, weight=w, reduction="none", grad_output=None, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.binary_cross_entropy(
            xt, torch.from_numpy(ts), weight=torch.from_numpy(w), reduction="none"
        ),
        xs,
        torch.ones(xs.size, dtype=torch.float64),
    )
    close(loss, tl, rtol=1e-15, atol=0)
    close(grad, tg, rtol=1e-15, atol=0)
    assert M.BCE_EPSILON == float(np.float32(1e-12))


# ----------------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("use_pos_weight", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_bce_with_logits_matches_torch(reduction, use_weight, use_pos_weight, soft):
    rng = np.random.default_rng(13)
    shape = (5, 4)
    x = rng.normal(size=shape) * 4
    x[0, 0], x[0, 1] = 40.0, -40.0
    t = rng.uniform(size=shape) if soft else rng.integers(0, 2, size=shape).astype(np.float64)
    w = rng.uniform(0.2, 2.0, size=shape) if use_weight else None
    pw = rng.uniform(0.5, 3.0, size=shape[-1]) if use_pos_weight else None
    go, go_t = make_grad_output(rng, reduction, shape)
    pw_b = None if pw is None else np.broadcast_to(pw, shape).copy()
    loss, grad = M.binary_cross_entropy_with_logits(
        x, t, weight=w, pos_weight=pw_b, reduction=reduction, grad_output=go, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.binary_cross_entropy_with_logits(
            xt,
            torch.from_numpy(t),
            weight=None if w is None else torch.from_numpy(w),
            pos_weight=None if pw is None else torch.from_numpy(pw),
            reduction=reduction,
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl, rtol=1e-12, atol=1e-14)
    close(grad, tg, rtol=1e-12, atol=1e-14)


def test_bce_with_logits_infinite_logits():
    x = np.array([INF, -INF, INF, -INF, 1e4, -1e4])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    pw = np.full(6, 2.0)
    loss, grad = M.binary_cross_entropy_with_logits(
        x, t, weight=None, pos_weight=pw, reduction="none", grad_output=None, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.binary_cross_entropy_with_logits(
            xt, torch.from_numpy(t), pos_weight=torch.from_numpy(pw), reduction="none"
        ),
        x,
        torch.ones(6, dtype=torch.float64),
    )
    # deliberate difference: agreeing targets give 0 (torch: NaN)
    assert np.isnan(tl[0]) and np.isnan(tl[1])
    close(loss, [0.0, 0.0, INF, INF, 0.0, 0.0], rtol=0, atol=0)
    close(grad, [0.0, 0.0, 1.0, -2.0, 0.0, 0.0], rtol=0, atol=0)
    close(grad, tg, rtol=0, atol=0)  # torch's gradient is fine
    # torch's (1 - t) * x term also makes x = -inf, t = 1 NaN (0 * -inf); ours is inf
    assert np.isnan(tl[3])
    close(loss[[2, 4, 5]], tl[[2, 4, 5]], rtol=0, atol=0)
    lsum, gsum = M.binary_cross_entropy_with_logits(
        x[[0, 1, 4, 5]],
        t[[0, 1, 4, 5]],
        weight=None,
        pos_weight=None,
        reduction="mean",
        grad_output=None,
        need_grad=True,
    )
    assert lsum == 0.0 and np.all(gsum == 0.0)


# ----------------------------------------------------------------------------------------------
# regression losses
# ----------------------------------------------------------------------------------------------
REGRESSION = [
    ("mse_loss", None),
    ("l1_loss", None),
    ("smooth_l1_loss", 0.0),
    ("smooth_l1_loss", 0.5),
    ("smooth_l1_loss", 1.0),
    ("huber_loss", 0.5),
    ("huber_loss", 1.0),
    ("huber_loss", 2.0),
]


def regression_inputs(rng, shape, param):
    x = rng.normal(size=shape) * 2
    t = rng.normal(size=shape) * 2
    flat_x, flat_t = x.reshape(-1), t.reshape(-1)
    if flat_x.size >= 3:
        flat_t[0] = flat_x[0]  # exact tie: subgradient at 0
        if param:
            flat_t[1] = flat_x[1] - param  # exactly at the kink
            flat_t[2] = flat_x[2] + param
    return x, t


def call_regression(name, param, x, t, reduction, go, need_grad=True):
    fn = getattr(M, name)
    params = {} if param is None else {"beta" if name == "smooth_l1_loss" else "delta": param}
    return fn(x, t, reduction=reduction, grad_output=go, need_grad=need_grad, **params)


def torch_regression(name, param, xt, t, reduction):
    tt = torch.from_numpy(np.asarray(t, dtype=np.float64))
    if name == "smooth_l1_loss":
        return F.smooth_l1_loss(xt, tt, reduction=reduction, beta=param)
    if name == "huber_loss":
        return F.huber_loss(xt, tt, reduction=reduction, delta=param)
    return getattr(F, name)(xt, tt, reduction=reduction)


@pytest.mark.parametrize("name,param", REGRESSION)
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_matches_torch(name, param, shape, reduction):
    rng = np.random.default_rng(14)
    x, t = regression_inputs(rng, shape, param)
    go, go_t = make_grad_output(rng, reduction, shape)
    loss, grad = call_regression(name, param, x, t, reduction, go)
    tl, tg = torch_loss_and_grad(
        lambda xt: torch_regression(name, param, xt, t, reduction), x, go_t
    )
    close(np.reshape(loss, np.shape(tl)), tl)
    close(grad, tg)


@pytest.mark.parametrize("name,param", REGRESSION)
def test_regression_special_values_match_torch(name, param):
    x = np.array([0.0, 1.0, INF, -INF, NAN, 3.0, 1e300])
    t = np.array([0.0, 1.0, 0.0, 0.0, 0.0, NAN, -1e300])
    loss, grad = call_regression(name, param, x, t, "none", None)
    tl, tg = torch_loss_and_grad(
        lambda xt: torch_regression(name, param, xt, t, "none"),
        x,
        torch.ones(x.size, dtype=torch.float64),
    )
    close(loss, tl, rtol=1e-15, atol=0)
    assert grad[0] == 0.0 and grad[1] == 0.0
    if name == "l1_loss" or param == 0.0:
        # deliberate: torch's abs backward gives sign(NaN) = 0; we keep NaN in the gradient
        assert np.all(tg[4:6] == 0.0) and np.all(np.isnan(grad[4:6]))
        grad, tg = np.delete(grad, [4, 5]), np.delete(tg, [4, 5])
    close(grad, tg, rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------------------------
# kl_div
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss:UserWarning")
@pytest.mark.parametrize("shape", ELEMENTWISE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(shape, reduction, log_target):
    rng = np.random.default_rng(15)
    x = np.log(rng.uniform(0.05, 1.0, size=shape))
    t = rng.uniform(0.0, 1.0, size=shape)
    if t.size >= 2:
        t.reshape(-1)[1] = 0.0  # zero target probability with a finite log-probability
    if log_target:
        t = np.log(rng.uniform(0.05, 1.0, size=shape))
    go, go_t = make_grad_output(rng, reduction, shape)
    loss, grad = M.kl_div(
        x, t, reduction=reduction, log_target=log_target, grad_output=go, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.kl_div(
            xt, torch.from_numpy(np.asarray(t)), reduction=reduction, log_target=log_target
        ),
        x,
        go_t,
    )
    close(np.reshape(loss, np.shape(tl)), tl, rtol=1e-10, atol=1e-14)
    close(grad, tg)


def test_kl_div_zero_probability_targets():
    x = np.array([-INF, -1.0, NAN, -0.5, -INF])
    t = np.array([0.0, 0.0, 0.0, 0.5, 0.5])
    loss, grad = M.kl_div(
        x, t, reduction="none", log_target=False, grad_output=None, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.kl_div(xt, torch.from_numpy(t), reduction="none"),
        x,
        torch.ones(5, dtype=torch.float64),
    )
    assert np.isnan(tl[0])  # torch: 0 * (-inf) = NaN; ours: 0 (zero target contributes 0)
    close(loss, [0.0, 0.0, NAN, 0.5 * (np.log(0.5) + 0.5), INF], rtol=1e-15, atol=0)
    close(loss[1:], tl[1:], rtol=1e-15, atol=0)
    close(grad, tg, rtol=0, atol=0)

    with np.errstate(divide="ignore"):
        lt = np.log(t)  # log_target: -inf log-targets; torch gives NaN even for finite x
    loss, grad = M.kl_div(
        x, lt, reduction="none", log_target=True, grad_output=None, need_grad=True
    )
    tl, tg = torch_loss_and_grad(
        lambda xt: F.kl_div(xt, torch.from_numpy(lt), reduction="none", log_target=True),
        x,
        torch.ones(5, dtype=torch.float64),
    )
    assert np.isnan(tl[1])
    close(loss, [0.0, 0.0, NAN, 0.5 * (np.log(0.5) + 0.5), INF], rtol=1e-15, atol=0)
    close(loss[3:], tl[3:], rtol=1e-15, atol=0)
    close(grad, tg, rtol=0, atol=0)


def test_kl_div_batchmean_zero_d():
    loss, grad = M.kl_div(
        np.float64(-1.0),
        np.float64(0.5),
        reduction="batchmean",
        log_target=False,
        grad_output=2.0,
        need_grad=True,
    )
    tl = F.kl_div(
        torch.tensor(-1.0, dtype=torch.float64),
        torch.tensor(0.5, dtype=torch.float64),
        reduction="batchmean",
    )
    close(loss, tl.numpy())
    close(grad, -1.0)


# ----------------------------------------------------------------------------------------------
# empty inputs, dtypes, grad_output / need_grad conventions of the elementwise losses
# ----------------------------------------------------------------------------------------------
def elementwise_calls():
    """name -> call(x, t, reduction, grad_output, need_grad) of every elementwise registry
    row's reference, inputs moved into the row's domain (and "<name>_batchmean" where the
    row has that reduction, "mean" standing for it)."""
    from fastloss._losses import losses

    def make(spec, batchmean=False):
        def call(x, t, r, go, ng):
            if spec.input_domain == "prob":
                x = np.clip(x, 0.1, 0.9)
            if spec.target_domain in ("prob", "binary"):
                t = np.abs(t) if spec.target_domain == "prob" else np.clip(t, 0, 1)
            if batchmean and r == "mean":
                r = "batchmean"
            return spec.reference(x, t, reduction=r, grad_output=go, need_grad=ng)

        return call

    calls = {}
    for spec in losses("elementwise"):
        calls[spec.name] = make(spec)
        if "batchmean" in spec.reductions:
            calls[spec.name + "_batchmean"] = make(spec, batchmean=True)
    return calls


@pytest.mark.parametrize("name", sorted(elementwise_calls()))
def test_elementwise_empty_and_conventions(name):
    call = elementwise_calls()[name]
    for shape in [(0,), (0, 3)]:
        x = np.zeros(shape)
        loss, grad = call(x, x, "mean", None, True)
        assert np.isnan(loss) and grad.shape == shape
        loss, grad = call(x, x, "sum", None, True)
        assert loss == 0.0 and grad.shape == shape
        loss, grad = call(x, x, "none", np.zeros(shape), True)
        assert loss.shape == shape and grad.shape == shape

    rng = np.random.default_rng(16)
    x32 = rng.uniform(0.2, 0.8, size=(3, 2)).astype(np.float32)
    t32 = rng.uniform(0.2, 0.8, size=(3, 2)).astype(np.float32)
    before = (x32.copy(), t32.copy())
    loss64, grad64 = call(x32.astype(np.float64), t32.astype(np.float64), "sum", None, True)
    loss, grad = call(x32, t32, "sum", 2.5, True)
    assert np.array_equal(x32, before[0]) and np.array_equal(t32, before[1])
    assert grad.dtype == np.float64 and grad.shape == x32.shape
    assert loss == loss64  # grad_output does not touch the loss
    close(grad, 2.5 * grad64, rtol=1e-15, atol=0)
    assert call(x32, t32, "mean", None, False)[1] is None
    loss_n, grad_n = call(x32, t32, "none", np.full((3, 2), 3.0), True)
    assert loss_n.dtype == np.float64 and loss_n.shape == (3, 2)
    close(grad_n, 3.0 * grad64, rtol=1e-15, atol=0)
