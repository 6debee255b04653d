"""Property-based tests: every public function against its NumPy reference twin over random
shapes, dtypes, options and awkward values (+-inf, NaN, 1e30, subnormals, ties)."""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st

import fastloss  # noqa: E402
import fastloss.reference as ref  # noqa: E402
from fastloss._losses import LOSSES  # noqa: E402

from _helpers import registry  # noqa: E402

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

AWKWARD = [0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 1e-40, -1e-40, np.inf, -np.inf, np.nan, 20.0, -20.0]


def tolerances(dtype):
    return (2e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-12)


def assert_matches(actual, expected, dtype, what):
    rtol, atol = tolerances(dtype)
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, what
    # inf/NaN must agree exactly; finite values within tolerance scaled to the data
    assert np.array_equal(np.isnan(a), np.isnan(e)), (what, a, e)
    fin = np.isfinite(e)
    assert np.array_equal(a[~fin & ~np.isnan(e)], e[~fin & ~np.isnan(e)]), (what, a, e)
    scale = np.max(np.abs(e[fin]), initial=0.0)
    np.testing.assert_allclose(a[fin], e[fin], rtol=rtol, atol=atol * (1 + scale), err_msg=what)


@st.composite
def float_arrays(draw, shape, dtype, awkward=True, low=-30.0, high=30.0):
    n = int(np.prod(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(low, high, size=shape)
    if n and draw(st.booleans()):  # ties and exact values
        x = np.round(x)
    if awkward and n and draw(st.booleans()):
        k = draw(st.integers(1, min(n, 4)))
        idx = draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=k))
        vals = draw(st.lists(st.sampled_from(AWKWARD), min_size=k, max_size=k))
        x.reshape(-1)[idx] = vals
    with np.errstate(over="ignore"):
        return x.astype(dtype)


dtypes = st.sampled_from([np.float32, np.float64])
reductions = st.sampled_from(["none", "mean", "sum"])


@st.composite
def class_case(draw):
    dtype = draw(dtypes)
    N = draw(st.integers(0, 9))
    C = draw(st.sampled_from([1, 2, 3, 7, 16, 17, 49, 70]))
    extra = draw(st.sampled_from([(), (1,), (3,), (2, 5), (17,)]))
    x = draw(float_arrays((N, C) + extra, dtype))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, C, size=(N,) + extra)
    ignore = draw(st.sampled_from([-100, 0]))
    if y.size and draw(st.booleans()):
        y.reshape(-1)[::3] = ignore
    weight = draw(st.none() | st.just(True))
    if weight:
        weight = rng.uniform(0.1, 3.0, size=C).astype(dtype)
    return x, y, ignore, weight, draw(reductions)


@SETTINGS
@given(case=class_case(), smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_cross_entropy_matches_reference(case, smoothing):
    x, y, ignore, weight, reduction = case
    kw = dict(
        weight=weight,
        ignore_index=ignore,
        label_smoothing=smoothing,
        reduction=reduction,
        return_grad=True,
    )
    with np.errstate(all="ignore"):
        la, ga = fastloss.cross_entropy(x, y, **kw)
        le, ge = ref.cross_entropy(x, y, **kw)
    assert_matches(la, le, x.dtype, "loss")
    assert_matches(ga, ge, x.dtype, "grad")


@SETTINGS
@given(case=class_case(), gamma=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.5]))
def test_focal_loss_matches_reference(case, gamma):
    x, y, ignore, weight, reduction = case
    kw = dict(
        gamma=gamma, weight=weight, ignore_index=ignore, reduction=reduction, return_grad=True
    )
    with np.errstate(all="ignore"):
        la, ga = fastloss.focal_loss(x, y, **kw)
        le, ge = ref.focal_loss(x, y, **kw)
    assert_matches(la, le, x.dtype, "loss")
    assert_matches(ga, ge, x.dtype, "grad")


@SETTINGS
@given(case=class_case())
def test_nll_and_probability_targets_match_reference(case):
    x, y, ignore, weight, reduction = case
    with np.errstate(all="ignore"):
        la, ga = fastloss.nll_loss(
            x, y, weight=weight, ignore_index=ignore, reduction=reduction, return_grad=True
        )
        le, ge = ref.nll_loss(
            x, y, weight=weight, ignore_index=ignore, reduction=reduction, return_grad=True
        )
    assert_matches(la, le, x.dtype, "nll loss")
    assert_matches(ga, ge, x.dtype, "nll grad")
    t = np.abs(np.nan_to_num(x, nan=0.5, posinf=1.0, neginf=0.0)) % 1.0
    with np.errstate(all="ignore"):
        la, ga = fastloss.cross_entropy(x, t, weight=weight, reduction=reduction, return_grad=True)
        le, ge = ref.cross_entropy(x, t, weight=weight, reduction=reduction, return_grad=True)
    assert_matches(la, le, x.dtype, "prob loss")
    assert_matches(ga, ge, x.dtype, "prob grad")


@SETTINGS
@given(
    dtype=dtypes,
    shape=st.sampled_from([(5,), (3, 4), (2, 17, 3), (0, 4), (4, 0, 2)]),
    data=st.data(),
)
def test_softmax_family_matches_reference(dtype, shape, data):
    x = data.draw(float_arrays(shape, dtype))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    for name in ("log_softmax", "softmax", "logsumexp"):
        with np.errstate(all="ignore"):
            a = getattr(fastloss, name)(x, axis=axis)
            e = getattr(ref, name)(x, axis=axis)
        assert_matches(a, e, dtype, name)


def _param_strategies(spec):
    """Each parameter drawn from its default and the row's example values."""
    values = {p.name: [p.default] for p in spec.params}
    for example in spec.examples:
        for name, value in example.items():
            if value not in values[name]:
                values[name].append(value)
    return {name: st.sampled_from(v) for name, v in values.items() if name != "ignore_index"}


ELEMENTWISE = {spec.name: _param_strategies(spec) for spec in registry("elementwise")}


@SETTINGS
@given(
    name=st.sampled_from(sorted(ELEMENTWISE)),
    dtype=dtypes,
    shape=st.sampled_from([(), (0,), (7,), (3, 5), (2, 3, 33)]),
    data=st.data(),
)
def test_elementwise_losses_match_reference(name, dtype, shape, data):
    kw = {k: data.draw(v) for k, v in ELEMENTWISE[name].items()}
    spec = LOSSES[name]
    kw["reduction"] = data.draw(st.sampled_from(spec.reductions))
    if spec.input_domain == "prob":
        x = data.draw(float_arrays(shape, dtype, awkward=False, low=0.0, high=1.0))
        t = data.draw(float_arrays(shape, dtype, awkward=False, low=0.0, high=1.0))
    elif spec.input_domain == "logprob":
        x = data.draw(float_arrays(shape, dtype, low=-20.0, high=0.0))
        t = data.draw(float_arrays(shape, dtype, awkward=False, low=0.0, high=1.0))
        if kw.get("log_target"):
            with np.errstate(divide="ignore"):
                t = np.log(t)
    else:
        x = data.draw(float_arrays(shape, dtype))
        hard = data.draw(st.booleans())  # 0/1 targets: ties and saturated labels
        t = data.draw(float_arrays(shape, dtype, awkward=False, low=0.0, high=1.0))
        if hard:
            t = np.round(t)
        if spec.target_domain == "sign":  # labels -1 / +1 (soft ones in between)
            t = 2 * t - 1
        if spec.target_domain == "count":  # counts 0..4 (fractional ones in between)
            t = 4 * t
    for w in spec.weights:  # one value per last-axis entry
        if x.ndim and data.draw(st.booleans()):
            low = 0.125 if w.broadcast == "last" else 0.0
            kw[w.name] = data.draw(
                float_arrays(
                    shape[-1:],
                    dtype,
                    awkward=False,
                    low=low,
                    high=3 if w.broadcast == "last" else 2,
                )
            )
    with np.errstate(all="ignore"):
        la, ga = getattr(fastloss, name)(x, t, return_grad=True, **kw)
        le, ge = getattr(ref, name)(x, t, return_grad=True, **kw)
    assert_matches(la, le, dtype, f"{name} loss {kw}")
    assert_matches(ga, ge, dtype, f"{name} grad {kw}")
