"""Hand cases of the torch.nn losses beyond the registry's generic suites: the options and
targets those suites do not draw (Poisson rates with log_input=False, counts above 1 for the
Stirling term, hinge targets other than +-1, margins at the kink), against torch's own
functions and their autograd gradients, in float32 and float64, on every reduction."""

import numpy as np
import pytest

import fastloss

from _helpers import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch(name, x, t, reduction, **kw):
    xt = torch.tensor(x, requires_grad=True)
    loss = getattr(F, name)(xt, torch.tensor(t), reduction=reduction, **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def _poisson_cases(rng, shape):
    counts = rng.poisson(3.0, shape).astype(np.float64)
    counts.flat[:4] = [0.0, 1.0, 2.0, 17.0]
    log_rates = rng.normal(0.5, 1.0, shape)
    rates = rng.uniform(0.01, 6.0, shape)
    return [
        (log_rates, counts, {}),
        (log_rates, counts, {"full": True}),
        (log_rates, counts + rng.random(shape), {"full": True}),  # non-integer counts
        (rates, counts, {"log_input": False}),
        (rates, counts, {"log_input": False, "full": True, "eps": 1e-3}),
    ]


def _hinge_cases(rng, shape):
    x = rng.normal(0.5, 1.5, shape)
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    other = rng.choice([-1.0, 1.0, 0.0, 2.0, 0.5], shape)  # torch: both terms for those
    at_kink = sign.copy()
    xk = x.copy()
    xk.flat[:5] = 1.0  # margin - x == 0: torch's clamp_min passes the gradient there
    at_kink.flat[:5] = -1.0
    return [
        (x, sign, {}),
        (x, other, {}),
        (x, sign, {"margin": 0.0}),
        (x, other, {"margin": -0.5}),
        (xk, at_kink, {}),
    ]


CASES = {"poisson_nll_loss": _poisson_cases, "hinge_embedding_loss": _hinge_cases}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch_on_the_cases_generic_suites_miss(name, reduction, dtype):
    rng = np.random.default_rng(11)
    for x, t, kw in CASES[name](rng, (37, 5)):
        x, t = x.astype(dtype), t.astype(dtype)
        loss, grad = getattr(fastloss, name)(x, t, reduction=reduction, return_grad=True, **kw)
        loss_t, grad_t = _torch(name, x, t, reduction, **kw)
        assert loss.dtype == dtype and grad.dtype == dtype
        assert_close(loss, loss_t, dtype, err_msg=str(kw))
        assert_close(grad, grad_t, dtype, err_msg=str(kw))


def test_poisson_rates_gradient_matches_finite_differences():
    rng = np.random.default_rng(12)
    x = rng.uniform(0.2, 5.0, 40)
    t = rng.poisson(2.0, 40).astype(np.float64)
    for kw in ({"log_input": False}, {"log_input": False, "full": True, "eps": 0.1}):
        _, g = fastloss.poisson_nll_loss(x, t, reduction="sum", return_grad=True, **kw)
        h = 1e-6
        rows = [fastloss.poisson_nll_loss(x + s * h, t, reduction="none", **kw) for s in (1, -1)]
        np.testing.assert_allclose(g, (rows[0] - rows[1]) / (2 * h), rtol=1e-6, atol=1e-8)


def test_poisson_zero_count_is_finite_where_torch_gives_nan():
    """t (...) with t = 0 is 0, also where (...) is infinite: x = -inf rate 0 and a zero count
    is a perfect prediction (torch: 0 * -inf = NaN)."""
    x = np.array([-np.inf, 0.0])
    t = np.array([0.0, 0.0])
    loss, grad = fastloss.poisson_nll_loss(x, t, reduction="none", return_grad=True)
    np.testing.assert_array_equal(loss, [0.0, 1.0])
    np.testing.assert_array_equal(grad, [0.0, 1.0])
    loss, grad = fastloss.poisson_nll_loss(
        np.array([0.0]), np.array([0.0]), log_input=False, eps=0.0, return_grad=True
    )
    assert loss == 0.0 and grad[0] == 1.0


@pytest.mark.parametrize(
    "name,option", [("poisson_nll_loss", "eps"), ("hinge_embedding_loss", "margin")]
)
def test_real_options_refuse_non_numbers(name, option):
    with pytest.raises(TypeError, match=option):
        getattr(fastloss, name)(np.zeros(3), np.ones(3), **{option: "big"})


def test_torch_modules_take_torchs_constructor():
    import fastloss.torch as FL

    x = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    t = torch.poisson(torch.full((20, 3), 2.0, dtype=torch.float64))
    for ours, theirs in (
        (FL.PoissonNLLLoss(log_input=True, full=True), torch.nn.PoissonNLLLoss(full=True)),
        (FL.HingeEmbeddingLoss(margin=0.5), torch.nn.HingeEmbeddingLoss(margin=0.5)),
    ):
        target = t if isinstance(theirs, torch.nn.PoissonNLLLoss) else torch.sign(t - 2.0)
        a, b = ours(x, target), theirs(x, target)
        ga, gb = torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0]
        assert torch.allclose(a, b) and torch.allclose(ga, gb)
