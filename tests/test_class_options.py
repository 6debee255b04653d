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


# ------------------------------------------------------------------ return_metrics


def _expected_metrics(x, t, axis, k, ignore=-100, s=None):
    """Top-k accuracy written out with a stable argsort (ties to the lower class index, as
    np.argmax): the rank of the target is its position in the descending order."""
    xs = np.moveaxis(np.asarray(x, np.float64), axis, -1).reshape(-1, x.shape[axis])
    tt = np.asarray(t).reshape(-1)
    order = np.argsort(-xs, axis=1, kind="stable")
    keep = tt != ignore
    rank = np.argmax(order == np.where(keep, tt, 0)[:, None], axis=1)
    hit = (rank < k) & ~np.isnan(xs).any(axis=1) & keep
    w = keep.astype(float) if s is None else np.where(keep, np.reshape(s, -1), 0.0)
    return float(np.dot(w, hit) / w.sum())


METRIC_CASES = [((3000, 100), 1), ((5000, 10), 1), ((40, 7, 33), 1), ((20, 6, 5, 11), -1)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["cross_entropy", "focal_loss"])
@pytest.mark.parametrize("shape,axis", METRIC_CASES, ids=[str(s) for s, _ in METRIC_CASES])
def test_return_metrics_against_a_sort(backend, name, shape, axis):
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal(shape).astype(dtype)
        x[..., :2] = np.round(x[..., :2])  # ties
        C = shape[axis]
        t = rng.integers(0, C, np.delete(shape, axis % len(shape)))
        t.flat[::9] = -100
        x.flat[5] = np.nan  # one NaN row: a miss
        fn = getattr(fastloss, name)
        with _backend(backend):
            loss, grad, m = fn(
                x, t, axis=axis, return_grad=True, return_metrics=("error_rate", "top1", "top5")
            )
            plain_loss, plain_grad = fn(x, t, axis=axis, return_grad=True)
        np.testing.assert_array_equal(loss, plain_loss)  # the loss is untouched
        np.testing.assert_array_equal(grad, plain_grad)
        acc1 = _expected_metrics(x, t, axis, 1)
        assert m["top1"] == pytest.approx(acc1, abs=1e-12)
        assert m["error_rate"] == pytest.approx(1 - acc1, abs=1e-12)
        assert m["top5"] == pytest.approx(_expected_metrics(x, t, axis, 5), abs=1e-12)


def test_return_metrics_match_sklearn_and_weights_and_in_place():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4000, 12))
    t = rng.integers(0, 12, 4000)
    s = rng.uniform(0, 2, 4000)
    for k in (1, 3):
        _, m = fastloss.cross_entropy(x, t, return_metrics=f"top{k}", sample_weight=s)
        ref = sklearn_metrics.top_k_accuracy_score(t, x, k=k, sample_weight=s, labels=range(12))
        assert m[f"top{k}"] == pytest.approx(ref, abs=1e-12)
    # in place (grad_out=x): the ranks come from the scores, not from the gradient
    y = x.copy()
    _, g, m = fastloss.cross_entropy(y, t, return_grad=True, grad_out=y, return_metrics="accuracy")
    assert g is y and m["accuracy"] == pytest.approx(np.mean(x.argmax(1) == t), abs=1e-12)


def test_return_metrics_on_several_threads(restore_threads):
    from fastloss import _kernels

    rng = np.random.default_rng(10)
    x = rng.standard_normal((40000, 30)).astype(np.float32)
    t = rng.integers(0, 30, 40000)
    out = []
    _kernels.thread_guard("off")
    try:
        for n in (1, 2, 3):
            fastloss.set_num_threads(n)
            out.append(fastloss.cross_entropy(x, t, return_metrics=("error_rate", "top5")))
    finally:
        _kernels.thread_guard("reset")
    assert out[0][1] == out[1][1] == out[2][1]
    assert out[0][1]["error_rate"] == pytest.approx(1 - np.mean(x.argmax(1) == t), abs=1e-12)


def test_return_metrics_errors():
    x, t = np.zeros((4, 3)), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="unknown metric 'top0'"):
        fastloss.cross_entropy(x, t, return_metrics="top0")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        fastloss.cross_entropy(x, t, return_metrics=["f1"])
    with pytest.raises(TypeError, match="names are strings"):
        fastloss.focal_loss(x, t, return_metrics=[5])
    with pytest.raises(ValueError, match="class-index targets"):
        fastloss.cross_entropy(x, np.full((4, 3), 1 / 3), return_metrics="accuracy")
    with pytest.raises(ValueError, match="at least one"):
        fastloss.cross_entropy(x, t, return_metrics=())
