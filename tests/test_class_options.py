"""The options every class loss takes from its runner (fastloss._losses.FAMILY_ARGS): the class
axis anywhere (``axis``) and per-sample weights (``sample_weight``), for every class row of the
registry, on both backends.

The class axis is checked against the same loss in torch's layout (input moved with
np.moveaxis, a copy); per-sample weights against the weighted sums written out here from the
reference twins' per-sample losses, against finite differences of those, and against torch.
"""

import numpy as np
import pytest

import fastloss
from fastloss._losses import FAMILY_ARGS

from _helpers import assert_close, draw_input, ref, registry

CLASS_ROWS = registry("class")
BACKENDS = ("compiled", "reference")


def _backend(name):
    if name == "compiled" and fastloss._config._kernels is None:
        pytest.skip("compiled kernels not available")
    return fastloss.use_backend(name)


def _problem(spec, shape, axis, dtype, seed=0, prob=False, ignore=True):
    """input of `shape` with the classes on `axis`, class-index targets (some ignored) or
    probability targets, class weights."""
    rng = np.random.default_rng(seed)
    x = draw_input(spec, shape, rng)
    if spec.input_domain == "logprob":  # log-probabilities along the class axis
        x = x - np.log(np.exp(x).sum(axis=axis, keepdims=True))
    C = shape[axis]
    if prob:
        t = rng.random(shape)
        t = (t / t.sum(axis=axis, keepdims=True)).astype(dtype)
    else:
        t = rng.integers(0, C, np.delete(shape, axis % len(shape)))
        if ignore:
            t[rng.random(t.shape) < 0.2] = -100
    return x.astype(dtype), t, rng.uniform(0.5, 2.0, C)


def test_every_class_row_takes_the_family_args():
    import inspect

    for spec in CLASS_ROWS:
        params = inspect.signature(getattr(fastloss, spec.name)).parameters
        assert set(FAMILY_ARGS["class"]) <= set(params), spec.name


AXIS_CASES = [((6, 5, 4, 7), -1), ((6, 5, 4, 7), 3), ((7, 9), 0), ((3, 4, 7), 2), ((4, 7, 3, 2), 1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
@pytest.mark.parametrize("shape,axis", AXIS_CASES, ids=[f"{s}@{a}" for s, a in AXIS_CASES])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_class_axis_anywhere_equals_torch_layout(backend, spec, shape, axis, reduction):
    fn = getattr(fastloss, spec.name)
    probs = (False, True) if spec.target_domain == "class_or_prob" else (False,)
    for dtype in (np.float32, np.float64):
        for prob in probs:
            x, t, w = _problem(spec, shape, axis, dtype, prob=prob)
            kw = dict(weight=w, reduction=reduction)
            # torch's layout: classes on axis 1; the other dimensions keep their order, so
            # index targets and per-sample results are the same arrays
            moved = np.moveaxis(t, axis, 1).copy() if prob else t
            go = np.random.default_rng(1).random(np.delete(shape, axis % len(shape)))
            go = go if reduction == "none" else 0.5
            with _backend(backend):
                loss, grad = fn(x, t, axis=axis, return_grad=True, grad_output=go, **kw)
                x_t = np.moveaxis(x, axis, 1).copy()
                loss_t, grad_t = fn(x_t, moved, return_grad=True, grad_output=go, **kw)
            assert loss.dtype == dtype and grad.shape == x.shape
            assert_close(loss, loss_t, dtype)
            assert_close(grad, np.moveaxis(grad_t, 1, axis), dtype)


@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
def test_class_axis_errors(spec):
    fn = getattr(fastloss, spec.name)
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="axis 3 is out of bounds"):
        fn(x, np.zeros((2, 3), np.int64), axis=3)
    with pytest.raises(TypeError, match="axis must be an int"):
        fn(x, np.zeros((2, 3), np.int64), axis=1.0)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*class axis 2"):
        fn(x, np.zeros((2, 4), np.int64), axis=-1)
    rows = fn(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64), axis=-1, reduction="none")
    assert rows.shape == (2, 3)


def _weighted_expected(spec, x, t, s, w, reduction, prob, **opts):
    """The per-sample-weighted loss from the reference twin's per-sample losses (float64)."""
    rows = ref(spec.name, x, t, weight=w, reduction="none", **opts)
    if reduction == "none":
        return s * rows
    if reduction == "sum":
        return np.sum(s * rows)
    if prob:
        return np.sum(s * rows) / np.sum(s)
    keep = t != -100
    return np.sum(s * rows) / np.sum(s * keep * w[np.where(keep, t, 0)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("shape", [(9, 5), (3, 5, 4)], ids=["NC", "NCd"])
def test_sample_weight_against_the_weighted_reference_and_finite_differences(
    backend, spec, reduction, shape
):
    probs = (False, True) if spec.target_domain == "class_or_prob" else (False,)
    opts = dict(spec.examples[0]) if spec.examples else {}
    for prob in probs:
        x, t, w = _problem(spec, shape, 1, np.float64, seed=3, prob=prob)
        s = np.random.default_rng(4).uniform(0, 3, np.delete(shape, 1))
        s.flat[0] = 0.0  # a zero weight is allowed
        kw = dict(weight=w, reduction=reduction, sample_weight=s, **opts)
        with _backend(backend):
            loss, grad = getattr(fastloss, spec.name)(x, t, return_grad=True, **kw)
        expected = _weighted_expected(spec, x, t, s, w, reduction, prob, **opts)
        assert_close(loss, expected, np.float64)

        # d/dx of the weighted sum of the per-sample losses (for "none": of their sum)
        def total(xx):
            e = _weighted_expected(spec, xx, t, s, w, reduction, prob, **opts)
            return float(np.sum(e))

        h = 1e-6
        fd = np.empty_like(x)
        for i in range(x.size):
            xp, xm = x.copy(), x.copy()
            xp.flat[i] += h
            xm.flat[i] -= h
            fd.flat[i] = (total(xp) - total(xm)) / (2 * h)
        assert_close(grad, fd, np.float64, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
def test_sample_weight_of_ones_is_the_unweighted_loss(compiled, spec):
    for dtype in (np.float32, np.float64):
        x, t, w = _problem(spec, (40, 6, 3), 1, dtype, seed=5)
        fn = getattr(fastloss, spec.name)
        for reduction in ("none", "mean", "sum"):
            a, ga = fn(x, t, weight=w, reduction=reduction, return_grad=True)
            b, gb = fn(
                x, t, weight=w, reduction=reduction, return_grad=True, sample_weight=np.ones(1)
            )
            assert b.dtype == dtype
            assert_close(b, a, dtype)
            assert_close(gb, ga, dtype)


@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
def test_sample_weight_all_zero_gives_nan_mean_and_zero_gradient(spec):
    x, t, w = _problem(spec, (5, 4), 1, np.float64, ignore=False)
    loss, grad = getattr(fastloss, spec.name)(x, t, sample_weight=np.zeros(5), return_grad=True)
    assert np.isnan(loss) and not grad.any()


@pytest.mark.parametrize("spec", CLASS_ROWS, ids=lambda s: s.name)
def test_sample_weight_errors(spec):
    fn = getattr(fastloss, spec.name)
    x, t = np.zeros((4, 3)), np.zeros(4, np.int64)
    for bad in (-np.ones(4), np.full(4, np.nan), np.full(4, np.inf)):
        with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
            fn(x, t, sample_weight=bad)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not broadcast"):
        fn(x, t, sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="sample_weight must be real numbers"):
        fn(x, t, sample_weight=np.array(["a"] * 4))
    with pytest.raises(IndexError, match="out of range"):
        fn(x, np.full(4, 7), sample_weight=np.ones(4))


def test_sample_weight_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((30, 7, 4)).astype(dtype)
        t = rng.integers(0, 7, (30, 4))
        t[rng.random(t.shape) < 0.2] = -100
        w = rng.uniform(0.5, 2, 7)
        s = rng.uniform(0, 2, (30, 4))
        loss, grad = fastloss.cross_entropy(
            x, t, weight=w, sample_weight=s, label_smoothing=0.1, return_grad=True
        )
        xt = torch.tensor(x, requires_grad=True)
        tt, wt, st = torch.tensor(t), torch.tensor(w, dtype=xt.dtype), torch.tensor(s)
        rows = F.cross_entropy(xt, tt, weight=wt, label_smoothing=0.1, reduction="none")
        keep = tt != -100
        denom = (st * keep * wt[tt.clamp(min=0)]).sum()
        expected = (rows.double() * st).sum() / denom
        expected.backward()
        assert_close(loss, expected.item(), dtype)
        assert_close(grad, xt.grad.numpy(), dtype)
