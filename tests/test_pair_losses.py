"""The pair family (two differentiable inputs among three arrays: margin_ranking_loss,
gaussian_nll_loss): the compiled kernels against the reference twins on every SIMD path, both
against torch (values and both gradients), finite differences, broadcasting, the gradient
buffers, errors, thread counts, and the torch bridge."""

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss._losses import losses

from _helpers import assert_close

PAIR = [s.name for s in losses("pair")]
REDUCTIONS = ("none", "mean", "sum")


def _arrays(name, shape, dtype, seed=0, var_shape=None):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * 2).astype(dtype)
    b = (rng.standard_normal(shape) * 2).astype(dtype)
    if name == "margin_ranking_loss":
        c = rng.choice([-1.0, 1.0], shape).astype(dtype)
    else:
        c = rng.uniform(0.05, 3.0, shape if var_shape is None else var_shape).astype(dtype)
        if c.size > 3:
            c.flat[:2] = [1e-8, 0.0]  # below eps: clamped (gradient still flows, as torch)
    return a, b, c


def _cases(name):
    """(shape, options, var shape) sets: the row's examples, broadcast layouts."""
    spec = fastloss._losses.LOSSES[name]
    out = [((37, 5), {}, None)] + [((37, 5), dict(e), None) for e in spec.examples]
    if name == "gaussian_nll_loss":
        out += [((37, 5), {}, (37,)), ((37, 5), {}, (37, 1)), ((37, 5), {}, (1, 5))]
    out += [((), {}, None), ((0, 3), {}, None), ((70001,), {}, None)]
    return out


@pytest.mark.parametrize("name", PAIR)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_matches_reference_on_every_simd_path(simd, name, dtype):
    fn, ref = getattr(fastloss, name), getattr(REF, name)
    for shape, opts, var_shape in _cases(name):
        a, b, c = _arrays(name, shape, dtype, var_shape=var_shape)
        for reduction in REDUCTIONS:
            go = np.random.default_rng(1).random(shape) if reduction == "none" else 0.75
            got = fn(a, b, c, reduction=reduction, return_grad=True, grad_output=go, **opts)
            exp = ref(a, b, c, reduction=reduction, return_grad=True, grad_output=go, **opts)
            msg = f"{shape} {opts} {var_shape} {reduction}"
            assert_close(got[0], exp[0], dtype, err_msg=msg)
            for g, e, arr in zip(got[1], exp[1], (a, b if name != "gaussian_nll_loss" else c)):
                assert g.shape == arr.shape and g.dtype == dtype, msg
                assert_close(g, e, dtype, err_msg=msg)


def _torch_grads(name, a, b, c, reduction, **opts):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=name == "margin_ranking_loss")
    tc = torch.tensor(c, requires_grad=name == "gaussian_nll_loss")
    loss = getattr(F, name)(ta, tb, tc, reduction=reduction, **opts)
    second = tb if name == "margin_ranking_loss" else tc
    g1, g2 = torch.autograd.grad(loss.sum(), (ta, second))
    return loss.detach().numpy(), g1.numpy(), g2.numpy()


@pytest.mark.parametrize("name", PAIR)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch(name, reduction, dtype):
    for shape, opts, var_shape in _cases(name):
        if 0 in shape or len(shape) == 0:
            continue  # torch's mean of nothing is NaN too, but its 0-d rules differ by loss
        a, b, c = _arrays(name, shape, dtype, seed=2, var_shape=var_shape)
        if name == "margin_ranking_loss":
            c.flat[:6] = [0.0, 2.0, 0.5, -3.0, 1.0, -1.0]  # torch takes any number
            a.flat[4:6] = b.flat[4:6] + opts.get("margin", 0.0)  # at the kink
        loss, (g1, g2) = getattr(fastloss, name)(
            a, b, c, reduction=reduction, return_grad=True, **opts
        )
        tl, t1, t2 = _torch_grads(name, a, b, c, reduction, **opts)
        assert_close(loss, tl, dtype, err_msg=str(opts))
        assert_close(g1, t1, dtype, err_msg=str(opts))
        assert_close(g2, t2, dtype, err_msg=str(opts))


@pytest.mark.parametrize("name", PAIR)
def test_both_gradients_match_finite_differences(name):
    for shape, opts, var_shape in _cases(name)[:4]:
        a, b, c = _arrays(name, shape, np.float64, seed=3, var_shape=var_shape)
        if name == "gaussian_nll_loss":
            c = np.abs(c) + 0.6  # away from the eps clamp's kink (eps <= 0.5)
        else:
            a = np.where(np.abs(a - b) < 0.3, a + 1.0, a)  # away from the hinge
        fn = getattr(fastloss, name)
        _, (g1, g2) = fn(a, b, c, reduction="mean", return_grad=True, **opts)
        second = 1 if name == "margin_ranking_loss" else 2
        arrays = [np.array(a), np.array(b), np.array(c)]
        for k, g in ((0, g1), (second, g2)):
            num = np.empty_like(arrays[k])
            h = 1e-6
            for i in np.ndindex(arrays[k].shape):
                vals = []
                for step in (h, -h):
                    args = [x.copy() for x in arrays]
                    args[k][i] += step
                    vals.append(float(fn(*args, reduction="mean", **opts)))
                num[i] = (vals[0] - vals[1]) / (2 * h)
            np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", PAIR)
def test_grad_out_buffers_are_written_and_returned(name):
    a, b, c = _arrays(name, (40, 3), np.float32)
    bufs = (np.empty_like(a), np.empty_like(b if name == "margin_ranking_loss" else c))
    loss, grads = getattr(fastloss, name)(a, b, c, return_grad=True, grad_out=bufs)
    assert grads[0] is bufs[0] and grads[1] is bufs[1]
    _, expected = getattr(fastloss, name)(a, b, c, return_grad=True)
    np.testing.assert_array_equal(grads[0], expected[0])
    np.testing.assert_array_equal(grads[1], expected[1])
    with pytest.raises(TypeError, match="tuple of 2 arrays"):
        getattr(fastloss, name)(a, b, c, return_grad=True, grad_out=bufs[0])
    with pytest.raises(ValueError, match="grad_out for"):
        getattr(fastloss, name)(a, b, c, return_grad=True, grad_out=(bufs[0][:3], bufs[1]))
    with pytest.raises(ValueError, match="return_grad"):
        getattr(fastloss, name)(a, b, c, grad_out=bufs)
    with pytest.raises(ValueError, match="grad_output"):
        getattr(fastloss, name)(a, b, c, grad_output=2.0)


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_errors_as_torch(backend):
    x = np.zeros((4, 3))
    with fastloss.use_backend(backend):
        with pytest.raises(ValueError, match="negative"):
            fastloss.gaussian_nll_loss(x, x, -np.ones((4, 3)))
        with pytest.raises(ValueError, match="incorrect size"):
            fastloss.gaussian_nll_loss(x, x, np.ones(3))
        with pytest.raises(ValueError, match="as many dimensions"):
            fastloss.margin_ranking_loss(x, x, np.ones(12))
        with pytest.raises(ValueError, match="broadcast"):
            fastloss.margin_ranking_loss(x, np.zeros((4, 2)), np.ones((4, 3)))
        with pytest.raises(ValueError, match="eps"):
            fastloss.gaussian_nll_loss(x, x, 1.0, eps=0.0)
        with pytest.raises(TypeError, match="margin"):
            fastloss.margin_ranking_loss(x, x, np.ones((4, 3)), margin="wide")


def test_a_number_var_gets_a_0d_gradient():
    a, b, _ = _arrays("gaussian_nll_loss", (9, 2), np.float64)
    loss, (ga, gv) = fastloss.gaussian_nll_loss(a, b, 0.7, return_grad=True)
    _, (_, gfull) = fastloss.gaussian_nll_loss(a, b, np.full((9, 2), 0.7), return_grad=True)
    assert gv.shape == () and np.isclose(gv, gfull.sum())


@pytest.mark.parametrize("name", PAIR)
def test_bit_identical_for_any_thread_count(restore_threads, name):
    from fastloss import _kernels

    a, b, c = _arrays(name, (400003,), np.float32, seed=4)
    runs = []
    _kernels.thread_guard("off")
    try:
        for n in (1, 2, 3):
            fastloss.set_num_threads(n)
            loss, (g1, g2) = getattr(fastloss, name)(a, b, c, return_grad=True)
            runs.append(np.asarray(loss).tobytes() + g1.tobytes() + g2.tobytes())
    finally:
        _kernels.thread_guard("reset")
    assert runs[0] == runs[1] == runs[2]


def test_torch_bridge_functions_and_modules():
    torch = pytest.importorskip("torch")
    import fastloss.torch as FL

    F = torch.nn.functional
    torch.manual_seed(0)
    for reduction in REDUCTIONS:
        for dt in (torch.float32, torch.float64):
            x1 = torch.randn(50, dtype=dt, requires_grad=True)
            x2 = torch.randn(50, dtype=dt, requires_grad=True)
            y = torch.sign(torch.randn(50, dtype=dt))
            pairs = [
                (
                    FL.margin_ranking_loss(x1, x2, y, margin=0.2, reduction=reduction),
                    F.margin_ranking_loss(x1, x2, y, margin=0.2, reduction=reduction),
                    (x1, x2),
                )
            ]
            x = torch.randn(6, 4, dtype=dt, requires_grad=True)
            t = torch.randn(6, 4, dtype=dt)
            for v in (
                torch.rand(6, dtype=dt, requires_grad=True),
                torch.rand(6, 4, dtype=dt, requires_grad=True),
                torch.rand(6, 1, dtype=dt, requires_grad=True),
            ):
                pairs.append(
                    (
                        FL.GaussianNLLLoss(full=True, reduction=reduction)(x, t, v),
                        torch.nn.GaussianNLLLoss(full=True, reduction=reduction)(x, t, v),
                        (x, v),
                    )
                )
            for ours, theirs, wrt in pairs:
                go = torch.rand_like(ours)
                assert torch.allclose(ours, theirs)
                for p, q in zip(
                    torch.autograd.grad(ours, wrt, go), torch.autograd.grad(theirs, wrt, go)
                ):
                    assert torch.allclose(p, q)
    module = FL.MarginRankingLoss(margin=0.1)
    assert torch.allclose(module(x1, x2, y), F.margin_ranking_loss(x1, x2, y, margin=0.1))
    # gradcheck in float64, both inputs
    a = torch.randn(7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([1.0, -1.0] * 3 + [1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p, q: FL.margin_ranking_loss(p, q, s, margin=5.0), (a, b)
    )
    v = (torch.rand(7, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, w: FL.gaussian_nll_loss(p, b.detach(), w), (a, v))
