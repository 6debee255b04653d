"""Tests of the NumPy reference twins of the remaining torch.nn losses
(fastloss/reference/_torch_nn.py): values and every gradient against torch 2.x float64 autograd
for all options and reductions, torch's edge cases (targets other than +-1, duplicate
multilabel targets, swap, p, var shapes, full=True, exact ties at the hinges), central finite
differences of the gradients, and the documented departures from torch asserted as values.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from fastloss.reference import _torch_nn as R

REDUCTIONS = ["none", "mean", "sum"]
INF = np.inf
NAN = np.nan


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------
# harness
# ----------------------------------------------------------------------------------------------
def T(a):
    return torch.tensor(np.asarray(a, dtype=np.float64))


def close(actual, expected, rtol=1e-12, atol=1e-13):
    """allclose with atol scaled by the largest finite |expected| (at least 1); NaN == NaN."""
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert act.shape == exp.shape, (act.shape, exp.shape)
    fin = np.abs(exp[np.isfinite(exp)])
    scale = max(1.0, float(fin.max())) if fin.size else 1.0
    np.testing.assert_allclose(act, exp, rtol=rtol, atol=atol * scale, equal_nan=True)


def grad_output_for(rng, reduction, shape):
    """grad_output for our call and the same upstream gradient for torch's backward()."""
    if reduction == "none":
        go = rng.uniform(0.5, 1.5, size=shape)
        return go, torch.from_numpy(go.copy())
    return 0.7, torch.tensor(0.7, dtype=torch.float64)


def against_torch(ours, theirs, diff, reduction, seed=0, rtol=1e-12):
    """ours(*diff, reduction=, grad_output=, need_grad=) -> (loss, grad or tuple of grads);
    theirs(*leaf tensors, reduction=) -> torch loss.  Compares the loss and the gradient of
    every differentiable input (torch's None gradient = zeros); returns our result."""
    rng = np.random.default_rng(seed)
    leaves = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in diff]
    t_loss = theirs(*leaves, reduction=reduction)
    go, go_t = grad_output_for(rng, reduction, tuple(t_loss.shape))
    t_loss.backward(go_t)
    t_grads = [
        np.zeros(tuple(leaf.shape)) if leaf.grad is None else leaf.grad.numpy() for leaf in leaves
    ]

    loss, grads = ours(*diff, reduction=reduction, grad_output=go, need_grad=True)
    if reduction != "none":
        assert isinstance(loss, np.float64)
    close(loss, t_loss.detach().numpy(), rtol=rtol)
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert len(grads) == len(diff)
    for g, tg, a in zip(grads, t_grads, diff):
        assert isinstance(g, np.ndarray) and g.dtype == np.float64 and g.shape == np.shape(a)
        close(g, tg, rtol=rtol)
    loss_only, no_grad = ours(*diff, reduction=reduction)
    assert no_grad is None
    close(loss_only, loss, rtol=0, atol=0)
    return loss, (grads if len(grads) > 1 else grads[0])


def fd_check(ours, diff, seed=0, h=1e-6, rtol=1e-6, atol=1e-8):
    """Central differences (float64) of f = sum(go * per-sample loss) against our gradients."""
    rng = np.random.default_rng(seed)
    diff = [np.array(a, dtype=np.float64) for a in diff]
    per, _ = ours(*diff, reduction="none")
    go = rng.uniform(0.5, 1.5, size=np.shape(per))
    _, grads = ours(*diff, reduction="none", grad_output=go, need_grad=True)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def f(args):
        return float(np.sum(go * ours(*args, reduction="none")[0]))

    for k, a in enumerate(diff):
        numeric = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            vals = []
            for step in (h, -h):
                args = [b.copy() for b in diff]
                args[k][idx] += step
                vals.append(f(args))
            numeric[idx] = (vals[0] - vals[1]) / (2 * h)
        close(grads[k], numeric, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------
# poisson_nll_loss
# ----------------------------------------------------------------------------------------------
def poisson_inputs(rng, shape, log_input):
    x = rng.normal(size=shape) if log_input else rng.uniform(0.05, 3.0, size=shape)
    t = rng.poisson(1.5, size=shape).astype(float)  # 0, 1 and > 1: all Stirling branches
    t.reshape(-1)[::4] = rng.uniform(0, 4, size=t.reshape(-1)[::4].shape)  # non-integer too
    return x, t


@pytest.mark.parametrize("shape", [(7,), (3, 4, 2)])
@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("eps", [1e-8, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_poisson_nll_loss_matches_torch(shape, log_input, full, eps, reduction):
    rng = np.random.default_rng(1)
    x, t = poisson_inputs(rng, shape, log_input)
    opts = dict(log_input=log_input, full=full, eps=eps)
    against_torch(
        lambda a, **kw: R.poisson_nll_loss(a, t, **opts, **kw),
        lambda a, reduction: F.poisson_nll_loss(a, T(t), **opts, reduction=reduction),
        [x],
        reduction,
    )


def test_poisson_nll_loss_stirling_only_above_one_and_broadcast():
    x = np.zeros(5)
    t = np.array([0.0, 0.5, 1.0, 1.0 + 1e-9, 3.0])
    loss, _ = R.poisson_nll_loss(x, t, reduction="none", full=True)
    with np.errstate(all="ignore"):
        stirling = t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t)
    close(loss, 1.0 + np.where(t > 1, stirling, 0.0))
    assert loss[2] == 1.0  # y == 1 adds nothing (Paddle once added it)
    # target broadcasting as torch: x (3, 4), target (4,); gradient shaped like x
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(3, 4)), rng.uniform(0, 3, size=4)
    for reduction in REDUCTIONS:
        against_torch(
            lambda a, **kw: R.poisson_nll_loss(a, t, full=True, **kw),
            lambda a, reduction: F.poisson_nll_loss(a, T(t), full=True, reduction=reduction),
            [x],
            reduction,
        )


@pytest.mark.parametrize("log_input", [True, False])
def test_poisson_nll_loss_finite_differences(log_input):
    x, t = poisson_inputs(np.random.default_rng(3), (4, 3), log_input)
    fd_check(lambda a, **kw: R.poisson_nll_loss(a, t, log_input=log_input, full=True, **kw), [x])


def test_poisson_nll_loss_zero_target_departure():
    # log_input=False, x + eps = 0, t = 0: torch 0 * log(0) = NaN; ours: the term is 0
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.0], dtype=torch.float64)
    tl = F.poisson_nll_loss(x, t, log_input=False, eps=0.0, reduction="none")
    tl.sum().backward()
    assert np.isnan(tl[0].item()) and np.isnan(x.grad[0].item())
    loss, grad = R.poisson_nll_loss(
        np.array([0.0, 1.0]),
        np.zeros(2),
        reduction="none",
        log_input=False,
        eps=0.0,
        need_grad=True,
    )
    assert np.array_equal(loss, [0.0, 1.0]) and np.array_equal(grad, [1.0, 1.0])
    loss, _ = R.poisson_nll_loss(np.array([-INF]), np.zeros(1), reduction="none")
    assert loss[0] == 0.0  # exp(-inf) - 0 * (-inf); torch NaN


# ----------------------------------------------------------------------------------------------
# gaussian_nll_loss
# ----------------------------------------------------------------------------------------------
GAUSS_VAR_SHAPES = [
    ((3, 4, 2), (3, 4, 2)),  # heteroscedastic
    ((3, 4, 2), (3, 4)),  # one dim short: unsqueezed at the end
    ((3, 4, 2), (3, 4, 1)),
    ((3, 4, 2), (3, 1, 2)),
    ((3, 4, 2), (1, 4, 2)),
    ((4, 4), (4,)),  # per ROW (torch's unsqueeze), not NumPy's per column
    ((5,), ()),  # 1-d input: a 0-d var is "one dim short"
    ((5,), (1,)),
    ((5,), (5,)),
]


@pytest.mark.parametrize("shapes", GAUSS_VAR_SHAPES)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("eps", [1e-6, 0.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_loss_matches_torch(shapes, full, eps, reduction):
    x_shape, v_shape = shapes
    rng = np.random.default_rng(4)
    x = rng.normal(size=x_shape)
    t = rng.normal(size=x_shape)
    v = rng.uniform(0.05, 2.0, size=v_shape)  # eps = 0.5 clamps some: straight-through grads
    against_torch(
        lambda a, b, **kw: R.gaussian_nll_loss(a, t, b, full=full, eps=eps, **kw),
        lambda a, b, reduction: F.gaussian_nll_loss(
            a, T(t), b, full=full, eps=eps, reduction=reduction
        ),
        [x, v],
        reduction,
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_loss_python_number_var(reduction):
    """A float var: torch's loss and input gradient; our extra 0-d var gradient equals torch's
    gradient of the same var given as a full tensor, summed (and finite differences)."""
    rng = np.random.default_rng(5)
    x, t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    for var in (0.7, 1e-9):  # the second is clamped at eps (straight-through)
        against_torch(
            lambda a, **kw: _with_first_grad(R.gaussian_nll_loss(a, t, var, full=True, **kw)),
            lambda a, reduction: F.gaussian_nll_loss(a, T(t), var, full=True, reduction=reduction),
            [x],
            reduction,
        )
        go, go_t = grad_output_for(rng, reduction, (3, 4) if reduction == "none" else ())
        _, (_, gv) = R.gaussian_nll_loss(
            x, t, var, full=True, reduction=reduction, grad_output=go, need_grad=True
        )
        assert isinstance(gv, np.ndarray) and gv.shape == ()
        vt = torch.full((3, 4), var, dtype=torch.float64, requires_grad=True)
        F.gaussian_nll_loss(T(x), T(t), vt, full=True, reduction=reduction).backward(go_t)
        close(gv, vt.grad.sum().item())
    h = 1e-6
    f = [R.gaussian_nll_loss(x, t, 0.7 + s, reduction="sum")[0] for s in (h, -h)]
    _, (_, gv) = R.gaussian_nll_loss(x, t, 0.7, reduction="sum", need_grad=True)
    close(gv, (f[0] - f[1]) / (2 * h), rtol=1e-6)
    # a Python int is taken as the float (torch 2.13 raises TypeError from torch.any)
    with pytest.raises(TypeError):
        F.gaussian_nll_loss(T(x), T(t), 1)
    close(
        R.gaussian_nll_loss(x, t, 1, reduction="sum")[0],
        F.gaussian_nll_loss(T(x), T(t), 1.0, reduction="sum").item(),
    )


def _with_first_grad(result):
    loss, grads = result
    return loss, (None if grads is None else grads[0])


@pytest.mark.parametrize("shapes", GAUSS_VAR_SHAPES[:6])
def test_gaussian_nll_loss_finite_differences(shapes):
    x_shape, v_shape = shapes
    rng = np.random.default_rng(6)
    x, t = rng.normal(size=x_shape), rng.normal(size=x_shape)
    v = rng.uniform(0.3, 2.0, size=v_shape)
    fd_check(lambda a, b, **kw: R.gaussian_nll_loss(a, t, b, full=True, **kw), [x, v])


@pytest.mark.parametrize(
    "x_shape, v_shape",
    [((4, 3), (1, 1)), ((4, 3), ()), ((4, 3), (3,)), ((4, 3), (1,)), ((4, 3), (2, 3))],
)
def test_gaussian_nll_loss_var_shape_errors_as_torch(x_shape, v_shape):
    x = np.zeros(x_shape)
    v = np.ones(v_shape)
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(T(x), T(x), T(v))
    with pytest.raises(ValueError, match="var is of incorrect size"):
        R.gaussian_nll_loss(x, x, v, reduction="mean")


def test_gaussian_nll_loss_negative_var_raises():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(T(x), T(x), T([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="var has negative"):
        R.gaussian_nll_loss(x, x, np.array([1.0, -1.0, 1.0]), reduction="mean")
    with pytest.raises(ValueError, match="var has negative"):
        R.gaussian_nll_loss(x, x, -1.0, reduction="mean")


# ----------------------------------------------------------------------------------------------
# margin_ranking_loss, hinge_embedding_loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(9,), ()])
@pytest.mark.parametrize("margin", [0.0, 0.5])
@pytest.mark.parametrize("targets", [(-1.0, 1.0), (-1.0, 1.0, 0.0, 2.0, 0.5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_ranking_loss_matches_torch(shape, margin, targets, reduction):
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=shape), rng.normal(size=shape)
    y = rng.choice(targets, size=shape)
    against_torch(
        lambda a, b, **kw: R.margin_ranking_loss(a, b, y, margin=margin, **kw),
        lambda a, b, reduction: F.margin_ranking_loss(
            a, b, T(y), margin=margin, reduction=reduction
        ),
        [x1, x2],
        reduction,
    )


def test_margin_ranking_loss_ties_and_broadcast():
    # -y (x1 - x2) + margin == 0 exactly: clamp_min passes the gradient (torch's choice)
    x1 = np.array([1.0, 1.0, 1.0, 0.25])
    x2 = np.array([0.5, 1.5, 0.3, 0.25])
    y = np.array([1.0, -1.0, 0.0, 2.0])
    for reduction in REDUCTIONS:
        _, (g1, g2) = against_torch(
            lambda a, b, **kw: R.margin_ranking_loss(a, b, y, margin=0.5, **kw),
            lambda a, b, reduction: F.margin_ranking_loss(
                a, b, T(y), margin=0.5, reduction=reduction
            ),
            [x1, x2],
            reduction,
        )
    # broadcasting (torch accepts (4,) against (1,)); x2's gradient is summed to (1,)
    against_torch(
        lambda a, b, **kw: R.margin_ranking_loss(a, b, y, margin=0.5, **kw),
        lambda a, b, reduction: F.margin_ranking_loss(a, b, T(y), margin=0.5, reduction=reduction),
        [x1, np.array([0.7])],
        "none",
    )


@pytest.mark.parametrize("shape", [(3, 5), (7,)])
@pytest.mark.parametrize("margin", [1.0, 0.3, -0.5])
@pytest.mark.parametrize("targets", [(-1.0, 1.0), (-1.0, 1.0, 0.0, 2.0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_hinge_embedding_loss_matches_torch(shape, margin, targets, reduction):
    rng = np.random.default_rng(8)
    x = rng.normal(size=shape)
    y = rng.choice(targets, size=shape)
    against_torch(
        lambda a, **kw: R.hinge_embedding_loss(a, y, margin=margin, **kw),
        lambda a, reduction: F.hinge_embedding_loss(a, T(y), margin=margin, reduction=reduction),
        [x],
        reduction,
    )


def test_hinge_embedding_loss_ties_other_targets_and_broadcast():
    x = np.array([1.0, 0.25, 0.25, 0.25, 1.0])
    y = np.array([-1.0, -1.0, 0.0, 2.0, 1.0])
    loss, grad = against_torch(
        lambda a, **kw: R.hinge_embedding_loss(a, y, **kw),
        lambda a, reduction: F.hinge_embedding_loss(a, T(y), reduction=reduction),
        [x],
        "sum",
    )
    # target 0 / 2: both terms, x + max(0, 1 - x) = 1 for x <= 1, gradient 1 - 1 = 0;
    # margin - x == 0 (first entry): the gradient -1 passes
    close(grad, 0.7 * np.array([-1.0, -1.0, 0.0, 0.0, 1.0]))
    rng = np.random.default_rng(9)
    xb, yb = rng.normal(size=(2, 3)), rng.choice([-1.0, 1.0], size=(3,))
    against_torch(
        lambda a, **kw: R.hinge_embedding_loss(a, yb, **kw),
        lambda a, reduction: F.hinge_embedding_loss(a, T(yb), reduction=reduction),
        [xb],
        "none",
    )


def test_margin_and_hinge_finite_differences():
    rng = np.random.default_rng(10)
    x1, x2 = rng.normal(size=8), rng.normal(size=8)
    y = rng.choice([-1.0, 1.0, 0.0, 2.0], size=8)
    fd_check(lambda a, b, **kw: R.margin_ranking_loss(a, b, y, margin=0.3, **kw), [x1, x2])
    fd_check(lambda a, **kw: R.hinge_embedding_loss(a, y, margin=0.4, **kw), [x1])


# ----------------------------------------------------------------------------------------------
# multilabel_soft_margin_loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 4), (4,)])
@pytest.mark.parametrize("weight_shape", [None, (4,), "input"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_soft_margin_loss_matches_torch(shape, weight_shape, soft, reduction):
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape) * 3
    t = rng.uniform(size=shape) if soft else rng.integers(0, 2, size=shape).astype(float)
    w = None
    if weight_shape is not None:
        w = rng.uniform(0.2, 2.0, size=shape if weight_shape == "input" else weight_shape)
    wt = None if w is None else T(w)
    against_torch(
        lambda a, **kw: R.multilabel_soft_margin_loss(a, t, weight=w, **kw),
        lambda a, reduction: F.multilabel_soft_margin_loss(a, T(t), weight=wt, reduction=reduction),
        [x],
        reduction,
    )


def test_multilabel_soft_margin_loss_fd_and_saturation():
    rng = np.random.default_rng(12)
    x, t, w = rng.normal(size=(4, 3)), rng.uniform(size=(4, 3)), rng.uniform(0.5, 2, size=3)
    fd_check(lambda a, **kw: R.multilabel_soft_margin_loss(a, t, weight=w, **kw), [x])
    # |x| = 800: torch's logsigmoid is stable too; exact values
    x = np.array([[800.0, -800.0, 800.0]])
    t = np.array([[1.0, 0.0, 0.0]])
    against_torch(
        lambda a, **kw: R.multilabel_soft_margin_loss(a, t, **kw),
        lambda a, reduction: F.multilabel_soft_margin_loss(a, T(t), reduction=reduction),
        [x],
        "none",
    )
    # +-inf with agreeing targets: ours 0 (a zero coefficient contributes 0), torch NaN
    x = np.array([[INF, -INF]])
    t = np.array([[1.0, 0.0]])
    loss, grad = R.multilabel_soft_margin_loss(x, t, reduction="none", need_grad=True)
    assert loss[0] == 0.0 and np.array_equal(grad, [[0.0, 0.0]])
    assert np.isnan(F.multilabel_soft_margin_loss(T(x), T(t), reduction="none")[0].item())


# ----------------------------------------------------------------------------------------------
# multilabel_margin_loss
# ----------------------------------------------------------------------------------------------
def multilabel_targets(rng, n, c):
    """Rows with duplicates, garbage (in range) after the first -1, no targets, all targets."""
    t = np.full((n, c), -1, dtype=np.int64)
    for i in range(n):
        kind = i % 5
        if kind == 0:  # first entry -1: no targets, loss 0
            t[i] = rng.integers(-1, c, size=c)
            t[i, 0] = -1
        elif kind == 1:  # every class, no terminator
            t[i] = rng.permutation(c)
        elif kind == 2:  # duplicates, then -1, then garbage
            t[i, :3] = [1, 1, 0]
            t[i, 4:] = rng.integers(0, c, size=c - 4)
        else:
            k = rng.integers(1, c)
            t[i, :k] = rng.integers(0, c, size=k)  # may repeat
            t[i, k:] = rng.integers(-1, c, size=c - k)
            t[i, k] = -1
    return t


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multilabel_margin_loss_matches_torch(unbatched, grid, reduction):
    rng = np.random.default_rng(13)
    n, c = 10, 6
    # grid scores (multiples of 0.5) make 1 - x_j + x_i == 0 frequent: the strict z > 0
    x = rng.integers(-2, 3, size=(n, c)) * 0.5 if grid else rng.normal(size=(n, c))
    t = multilabel_targets(rng, n, c)
    if unbatched:
        x, t = x[2], t[2]
    tt = torch.from_numpy(t)
    against_torch(
        lambda a, **kw: R.multilabel_margin_loss(a, t, **kw),
        lambda a, reduction: F.multilabel_margin_loss(a, tt, reduction=reduction),
        [x],
        reduction,
    )


def test_multilabel_margin_loss_duplicates_counted_twice_and_fd():
    x = np.array([[1.0, 0.0, 0.5, 2.0]])
    loss, grad = R.multilabel_margin_loss(
        x, np.array([[0, 0, -1, 2]]), reduction="sum", need_grad=True
    )
    # slot j = 0 listed twice against i = 1, 2, 3: 2 * (0 + 0.5 + 2) / 4; z = 0 gives no gradient
    assert loss == 1.25
    assert np.array_equal(grad, [[-1.0, 0.0, 0.5, 0.5]])
    rng = np.random.default_rng(14)
    xs, ts = rng.normal(size=(5, 5)), multilabel_targets(rng, 5, 5)
    fd_check(lambda a, **kw: R.multilabel_margin_loss(a, ts, **kw), [xs])


def test_multilabel_margin_loss_out_of_range_target():
    x = np.zeros((1, 3))
    for bad in ([[0, -2, 1]], [[0, -1, 7]]):  # torch checks entries after the -1 too
        with pytest.raises(RuntimeError, match="out of range"):
            F.multilabel_margin_loss(T(x), torch.tensor(bad))
        with pytest.raises(IndexError, match="target"):
            R.multilabel_margin_loss(x, np.array(bad), reduction="mean")


# ----------------------------------------------------------------------------------------------
# multi_margin_loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_multi_margin_loss_matches_torch(unbatched, p, margin, use_weight, grid, reduction):
    rng = np.random.default_rng(15)
    n, c = 8, 5
    x = rng.integers(-3, 4, size=(n, c)) * 0.5 if grid else rng.normal(size=(n, c))
    y = rng.integers(0, c, size=n)
    w = rng.uniform(0.2, 2.0, size=c) if use_weight else None
    if unbatched:
        x, y = x[0], y[0]
    wt = None if w is None else T(w)
    yt = torch.tensor(y)
    against_torch(
        lambda a, **kw: R.multi_margin_loss(a, y, p=p, margin=margin, weight=w, **kw),
        lambda a, reduction: F.multi_margin_loss(
            a, yt, p=p, margin=margin, weight=wt, reduction=reduction
        ),
        [x],
        reduction,
    )


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_loss_finite_differences(p):
    rng = np.random.default_rng(16)
    x, y, w = rng.normal(size=(5, 4)), rng.integers(0, 4, size=5), rng.uniform(0.5, 2, size=4)
    fd_check(lambda a, **kw: R.multi_margin_loss(a, y, p=p, margin=0.8, weight=w, **kw), [x])


def test_multi_margin_loss_out_of_range_target():
    for bad in (3, -1):
        with pytest.raises(RuntimeError, match="out of range"):
            F.multi_margin_loss(T(np.zeros((1, 3))), torch.tensor([bad]))
        with pytest.raises(IndexError, match="target"):
            R.multi_margin_loss(np.zeros((1, 3)), np.array([bad]), reduction="mean")


def test_margin_kernels_nan_departure():
    """torch's multi_margin / multilabel_margin kernels skip NaN terms (`if (z > 0)`); ours
    propagate NaN to the loss and the gradient of the row."""
    x = np.array([[NAN, 0.0, 0.0], [0.0, 0.0, 0.0]])
    tm = F.multi_margin_loss(T(x), torch.tensor([1, 1]), reduction="none")
    close(tm.numpy(), [1 / 3, 2 / 3])  # the NaN row gives 1/3 in torch
    loss, grad = R.multi_margin_loss(x, np.array([1, 1]), reduction="none", need_grad=True)
    assert np.isnan(loss[0]) and loss[1] == 2 / 3
    assert np.isnan(grad[0, 0]) and np.all(np.isfinite(grad[1]))
    tl = F.multilabel_margin_loss(T(x), torch.tensor([[1, -1, 0], [1, -1, 0]]), reduction="none")
    close(tl.numpy(), [1 / 3, 2 / 3])
    loss, grad = R.multilabel_margin_loss(
        x, np.array([[1, -1, 0], [1, -1, 0]]), reduction="none", need_grad=True
    )
    assert np.isnan(loss[0]) and loss[1] == 2 / 3 and np.isnan(grad[0, 0])


def test_empty_batches():
    """ "mean" of nothing is NaN, "sum" 0, gradients empty (torch's multi_margin and
    multilabel_margin return an uninitialised number for the mean, so only ours is asserted)."""
    e2 = np.zeros((0, 3))
    cases = [
        lambda **kw: R.multi_margin_loss(e2, np.zeros(0, dtype=np.int64), **kw),
        lambda **kw: R.multilabel_margin_loss(e2, np.zeros((0, 3), dtype=np.int64), **kw),
        lambda **kw: R.multilabel_soft_margin_loss(e2, e2, **kw),
        lambda **kw: R.cosine_embedding_loss(e2, e2, np.zeros(0), **kw),
        lambda **kw: R.triplet_margin_loss(e2, e2, e2, **kw),
        lambda **kw: R.poisson_nll_loss(np.zeros(0), np.zeros(0), **kw),
        lambda **kw: R.gaussian_nll_loss(np.zeros(0), np.zeros(0), np.ones(0), **kw),
        lambda **kw: R.margin_ranking_loss(np.zeros(0), np.zeros(0), np.zeros(0), **kw),
        lambda **kw: R.hinge_embedding_loss(np.zeros(0), np.zeros(0), **kw),
    ]
    for case in cases:
        mean, grads = case(reduction="mean", need_grad=True)
        assert np.isnan(mean)
        for g in grads if isinstance(grads, tuple) else (grads,):
            assert g.size == 0
        assert case(reduction="sum")[0] == 0.0
    assert np.isnan(F.triplet_margin_loss(T(e2), T(e2), T(e2)).item())


# ----------------------------------------------------------------------------------------------
# cosine_embedding_loss
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
@pytest.mark.parametrize("targets", [(-1.0, 1.0), (-1.0, 1.0, 0.0, 2.0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cosine_embedding_loss_matches_torch(unbatched, margin, targets, reduction):
    rng = np.random.default_rng(17)
    x1, x2 = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    x1[3] = 0.0  # a zero vector: cos = 0 through the 1e-12 added to the squared norms
    x2[5] = 1e-7  # tiny: the epsilon matters
    y = rng.choice(targets, size=8)
    if unbatched:
        x1, x2, y = x1[0], x2[0], y[0]
    against_torch(
        lambda a, b, **kw: R.cosine_embedding_loss(a, b, y, margin=margin, **kw),
        lambda a, b, reduction: F.cosine_embedding_loss(
            a, b, T(y), margin=margin, reduction=reduction
        ),
        [x1, x2],
        reduction,
    )


def test_cosine_embedding_loss_broadcast_and_fd():
    rng = np.random.default_rng(18)
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(1, 3))
    y = np.array([1.0, -1.0, -1.0, 0.0, 1.0])
    against_torch(
        lambda a, b, **kw: R.cosine_embedding_loss(a, b, y, margin=-0.5, **kw),
        lambda a, b, reduction: F.cosine_embedding_loss(
            a, b, T(y), margin=-0.5, reduction=reduction
        ),
        [x1, x2],
        "mean",
    )
    fd_check(
        lambda a, b, **kw: R.cosine_embedding_loss(a, b, y, margin=-0.5, **kw),
        [x1, rng.normal(size=(5, 3))],
    )


# ----------------------------------------------------------------------------------------------
# triplet losses
# ----------------------------------------------------------------------------------------------
P_VALUES = [2.0, 1.0, 3.0, 0.5, INF]


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("margin", [1.0, 0.2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_margin_loss_matches_torch(unbatched, p, swap, margin, reduction):
    rng = np.random.default_rng(19)
    a, pos, neg = (rng.normal(size=(8, 4)) for _ in range(3))
    if unbatched:
        a, pos, neg = a[1], pos[1], neg[1]
    against_torch(
        lambda *x, **kw: R.triplet_margin_loss(*x, p=p, swap=swap, margin=margin, **kw),
        lambda *x, reduction: F.triplet_margin_loss(
            *x, p=p, swap=swap, margin=margin, reduction=reduction
        ),
        [a, pos, neg],
        reduction,
        rtol=1e-11,
    )


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("p", [0.0, -1.0, 2.0])
def test_triplet_margin_loss_eps_and_odd_p(eps, p):
    """eps is added to the difference (pairwise_distance); p = 0 counts nonzeros (gradient 0,
    torch None), p = -1 as torch's vector_norm."""
    rng = np.random.default_rng(20)
    a, pos, neg = (rng.normal(size=(6, 3)) for _ in range(3))
    against_torch(
        lambda *x, **kw: R.triplet_margin_loss(*x, p=p, eps=eps, swap=True, **kw),
        lambda *x, reduction: F.triplet_margin_loss(
            *x, p=p, eps=eps, swap=True, reduction=reduction
        ),
        [a, pos, neg],
        "none",
        rtol=1e-11,
    )


def test_triplet_swap_tie_and_zero_distance():
    """positive == anchor: d(a, n) == d(p, n), torch.minimum splits the gradient in halves;
    with eps = 0 also d(a, p) = 0 (norm gradient 0 there)."""
    rng = np.random.default_rng(21)
    a = rng.normal(size=(4, 3))
    neg = a + rng.normal(size=(4, 3)) * 0.3
    for eps in (1e-6, 0.0):
        for p in (2.0, 1.0, INF):
            against_torch(
                lambda *x, **kw: R.triplet_margin_loss(*x, p=p, eps=eps, swap=True, **kw),
                lambda *x, reduction: F.triplet_margin_loss(
                    *x, p=p, eps=eps, swap=True, reduction=reduction
                ),
                [a, a.copy(), neg],
                "sum",
            )


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_finite_differences(p, swap):
    rng = np.random.default_rng(22)
    a, pos, neg = (rng.normal(size=(5, 3)) for _ in range(3))
    fd_check(
        lambda *x, **kw: R.triplet_margin_loss(*x, p=p, swap=swap, margin=2.0, **kw), [a, pos, neg]
    )


def test_triplet_margin_loss_broadcast():
    rng = np.random.default_rng(23)
    a, pos, neg = rng.normal(size=(5, 3)), rng.normal(size=(1, 3)), rng.normal(size=(5, 3))
    against_torch(
        lambda *x, **kw: R.triplet_margin_loss(*x, swap=True, margin=3.0, **kw),
        lambda *x, reduction: F.triplet_margin_loss(*x, swap=True, margin=3.0, reduction=reduction),
        [a, pos, neg],
        "none",
    )


def _torch_cosine_distance(u, w):
    return 1.0 - F.cosine_similarity(u, w, dim=-1)


def _np_l1_distance(u, w, need_grad=False):
    return R.pairwise_distance(u, w, p=1.0, eps=0.0, need_grad=need_grad)


DISTANCES = [
    (None, None),
    ("euclidean", lambda u, w: F.pairwise_distance(u, w)),
    ("cosine", _torch_cosine_distance),
    (_np_l1_distance, lambda u, w: F.pairwise_distance(u, w, p=1.0, eps=0.0)),
]


@pytest.mark.parametrize("distance", DISTANCES, ids=["default", "euclidean", "cosine", "callable"])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_margin_with_distance_loss_matches_torch(distance, unbatched, swap, reduction):
    ours_d, torch_d = distance
    rng = np.random.default_rng(24)
    a, pos, neg = (rng.normal(size=(8, 4)) for _ in range(3))
    margin = 0.5 if ours_d == "cosine" else 1.0
    if unbatched:
        a, pos, neg = a[2], pos[2], neg[2]
    against_torch(
        lambda *x, **kw: R.triplet_margin_with_distance_loss(
            *x, distance_function=ours_d, swap=swap, margin=margin, **kw
        ),
        lambda *x, reduction: F.triplet_margin_with_distance_loss(
            *x, distance_function=torch_d, swap=swap, margin=margin, reduction=reduction
        ),
        [a, pos, neg],
        reduction,
    )


def test_cosine_distance_straight_through_clamp_and_fd():
    """Vectors shorter than eps = 1e-8: torch divides by the clamped norm but differentiates
    the unclamped one; ours likewise (so no finite-difference check there)."""
    x1 = np.array([[1e-9, 0.0], [3.0, 4.0], [0.0, 0.0]])
    x2 = np.array([[2e-9, 1e-9], [1.0, 0.0], [1.0, 2.0]])
    leaves = [torch.tensor(v, requires_grad=True) for v in (x1, x2)]
    td = _torch_cosine_distance(*leaves)
    td.sum().backward()
    d, (g1, g2) = R.cosine_distance(x1, x2, need_grad=True)
    close(d, td.detach().numpy(), rtol=1e-14)
    close(g1, leaves[0].grad.numpy())
    close(g2, leaves[1].grad.numpy())
    rng = np.random.default_rng(25)
    a, pos, neg = (rng.normal(size=(4, 3)) for _ in range(3))
    fd_check(
        lambda *x, **kw: R.triplet_margin_with_distance_loss(
            *x, distance_function="cosine", swap=True, margin=0.8, **kw
        ),
        [a, pos, neg],
    )


def test_triplet_distance_function_protocol():
    rng = np.random.default_rng(26)
    a, pos, neg = (rng.normal(size=(4, 3)) for _ in range(3))

    def plain(u, w):  # forward-only NumPy callable
        return np.sqrt(np.sum((u - w) ** 2, axis=-1))

    loss, _ = R.triplet_margin_with_distance_loss(
        a, pos, neg, distance_function=plain, reduction="sum"
    )
    ref, _ = R.triplet_margin_loss(a, pos, neg, eps=0.0, reduction="sum")
    close(loss, ref)
    with pytest.raises(TypeError, match="need_grad"):
        R.triplet_margin_with_distance_loss(
            a, pos, neg, distance_function=plain, reduction="sum", need_grad=True
        )
    with pytest.raises(ValueError, match="distance_function"):
        R.triplet_margin_with_distance_loss(
            a, pos, neg, distance_function="manhattan", reduction="sum"
        )


def test_pairwise_distance_matches_torch():
    """Random rows, a row where x1 == x2 (difference = eps), and a grid with eps = 0.25 where
    x1 - x2 + eps is exactly 0 in some entries (p < 1: gradient 0 there; p = inf: ties)."""
    rng = np.random.default_rng(27)
    x1, x2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    x2[0] = x1[0]
    g1 = rng.integers(-2, 3, size=(6, 4)) * 0.25
    g2 = g1 + rng.choice([0.25, 0.5, -0.25], size=(6, 4))
    for u, w, eps in ((x1, x2, 1e-6), (x1, x2, 0.0), (g1, g2, 0.25)):
        for p in P_VALUES + [0.0]:
            leaves = [torch.tensor(v, requires_grad=True) for v in (u, w)]
            td = F.pairwise_distance(*leaves, p=p, eps=eps)
            td.sum().backward()
            d, grads = R.pairwise_distance(u, w, p=p, eps=eps, need_grad=True)
            close(d, td.detach().numpy())
            close(R.pairwise_distance(u, w, p=p, eps=eps), d, rtol=0, atol=0)
            for g, leaf in zip(grads, leaves):
                close(g, np.zeros(g.shape) if leaf.grad is None else leaf.grad.numpy())
    assert math.isclose(R.pairwise_distance(np.zeros(3), np.zeros(3), p=INF), 1e-6)
