"""Bad arguments raise ValueError / TypeError / IndexError naming the argument (and the value
or shape), identically on the compiled and the reference backends."""

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss._losses import LOSSES

from _helpers import registry

X = np.zeros((4, 5))
T = np.array([0, 1, 2, 3])
X3 = np.zeros((2, 5, 3))
T3 = np.zeros((2, 3), dtype=np.int64)
P = np.full((4, 5), 0.2)
CLASS_FNS = tuple(spec.name for spec in registry("class"))


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def _overlap_case(ns):
    big = np.zeros((5, 5))
    return ns.cross_entropy(big[1:], T, return_grad=True, grad_out=big[:-1])


def _prob_target_overlap(ns):
    buf = np.zeros((4, 5))
    return ns.cross_entropy(X + 1, buf, return_grad=True, grad_out=buf)


E = []  # (id, call(ns), exception, regex the message must match)


def case(id_, exc, match, fn):
    E.append(pytest.param(fn, exc, match, id=id_))


for _f in CLASS_FNS:

    def _g(name):
        return lambda ns, *a, **k: getattr(ns, name)(*a, **k)

    F = _g(_f)
    # target shape / ndim
    case(
        f"{_f}-target-ndim",
        ValueError,
        r"target must have shape \(4,\).*\(4, 1\)",
        lambda ns, F=F: F(ns, X, T[:, None]),
    )
    case(
        f"{_f}-target-len",
        ValueError,
        r"target must have shape \(4,\).*\(3,\)",
        lambda ns, F=F: F(ns, X, T[:3]),
    )
    case(
        f"{_f}-target-spatial",
        ValueError,
        r"target must have shape \(2, 3\)",
        lambda ns, F=F: F(ns, X3, np.zeros(2, dtype=int)),
    )
    case(
        f"{_f}-target-unbatched",
        ValueError,
        r"target must have shape \(\)",
        lambda ns, F=F: F(ns, np.zeros(5), np.array([1])),
    )
    # target values out of range, named in the message
    case(
        f"{_f}-target-too-big",
        IndexError,
        r"target 5 .*\[0, 5\)",
        lambda ns, F=F: F(ns, X, np.array([0, 1, 5, 3])),
    )
    case(
        f"{_f}-target-negative",
        IndexError,
        r"target -3 .*\[0, 5\)",
        lambda ns, F=F: F(ns, X, np.array([0, -3, 1, 1])),
    )
    case(
        f"{_f}-target-spatial-range",
        IndexError,
        r"target 7 at position \(1, 2\)",
        lambda ns, F=F: F(ns, X3, np.array([[0, 1, 2], [3, 4, 7]])),
    )
    case(
        f"{_f}-target-default-ignore-not-ignored",
        IndexError,
        r"target -100",
        lambda ns, F=F: F(ns, X, np.array([0, -100, 1, 1]), ignore_index=1),
    )
    case(
        f"{_f}-target-uint64-huge",
        IndexError,
        r"target",
        lambda ns, F=F: F(ns, X[:1], np.array([2**63 + 5], dtype=np.uint64)),
    )
    case(
        f"{_f}-target-int8-range",
        IndexError,
        r"target 9 ",
        lambda ns, F=F: F(ns, X, np.array([0, 9, 1, 1], dtype=np.int8), reduction="none"),
    )
    case(
        f"{_f}-target-bool",
        TypeError,
        r"target",
        lambda ns, F=F: F(ns, X, np.array([True, False, True, False])),
    )
    case(
        f"{_f}-target-str",
        TypeError,
        r"target",
        lambda ns, F=F: F(ns, X, np.array(["a", "b", "c", "d"])),
    )
    case(
        f"{_f}-target-object",
        TypeError,
        r"target",
        lambda ns, F=F: F(ns, X, np.array([0, 1, 2, None], dtype=object)),
    )
    # input
    case(
        f"{_f}-input-0d",
        ValueError,
        r"input .*at least 1 dimension",
        lambda ns, F=F: F(ns, np.float64(1.0), np.array(0)),
    )
    case(
        f"{_f}-input-str",
        TypeError,
        r"input",
        lambda ns, F=F: F(ns, np.array([["a", "b"]]), np.array([0])),
    )
    case(
        f"{_f}-input-object",
        TypeError,
        r"input",
        lambda ns, F=F: F(ns, np.array([[1.0, None]], dtype=object), np.array([0])),
    )
    case(
        f"{_f}-input-complex",
        TypeError,
        r"input",
        lambda ns, F=F: F(ns, np.zeros((2, 3), dtype=complex), np.array([0, 1])),
    )
    case(
        f"{_f}-zero-classes",
        ValueError,
        r"0 classes",
        lambda ns, F=F: F(ns, np.zeros((3, 0)), np.zeros(3, dtype=int)),
    )
    # options
    case(
        f"{_f}-weight-len",
        ValueError,
        r"weight must have shape \(5,\).*\(4,\)",
        lambda ns, F=F: F(ns, X, T, weight=np.ones(4)),
    )
    case(
        f"{_f}-weight-2d",
        ValueError,
        r"weight",
        lambda ns, F=F: F(ns, X, T, weight=np.ones((1, 5))),
    )
    case(
        f"{_f}-weight-str",
        TypeError,
        r"weight",
        lambda ns, F=F: F(ns, X, T, weight=np.array(["a"] * 5)),
    )
    case(
        f"{_f}-reduction",
        ValueError,
        r"reduction.*'avg'",
        lambda ns, F=F: F(ns, X, T, reduction="avg"),
    )
    case(
        f"{_f}-reduction-batchmean",
        ValueError,
        r"reduction.*'batchmean'",
        lambda ns, F=F: F(ns, X, T, reduction="batchmean"),
    )
    case(
        f"{_f}-reduction-none-object",
        ValueError,
        r"reduction.*None",
        lambda ns, F=F: F(ns, X, T, reduction=None),
    )
    case(
        f"{_f}-ignore-index-float",
        TypeError,
        r"ignore_index",
        lambda ns, F=F: F(ns, X, T, ignore_index=1.5),
    )
    # grad_out
    case(
        f"{_f}-grad_out-shape",
        ValueError,
        r"grad_out.*shape",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=np.zeros((4, 6))),
    )
    case(
        f"{_f}-grad_out-dtype",
        TypeError,
        r"grad_out.*dtype",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=np.zeros((4, 5), dtype=np.float32)),
    )
    case(
        f"{_f}-grad_out-noncontig",
        ValueError,
        r"grad_out.*contiguous",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=np.zeros((4, 10))[:, ::2]),
    )
    case(
        f"{_f}-grad_out-fortran",
        ValueError,
        r"grad_out.*contiguous",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=np.asfortranarray(np.zeros((4, 5)))),
    )
    case(
        f"{_f}-grad_out-readonly",
        ValueError,
        r"grad_out.*read-only",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=_readonly(np.zeros((4, 5)))),
    )
    case(
        f"{_f}-grad_out-no-return_grad",
        ValueError,
        r"grad_out.*return_grad",
        lambda ns, F=F: F(ns, X, T, grad_out=np.zeros((4, 5))),
    )
    case(
        f"{_f}-grad_out-list",
        TypeError,
        r"grad_out",
        lambda ns, F=F: F(ns, X, T, return_grad=True, grad_out=[[0.0] * 5] * 4),
    )
    # grad_output
    case(
        f"{_f}-grad_output-shape-none",
        ValueError,
        r"grad_output.*\(3,\)",
        lambda ns, F=F: F(ns, X, T, reduction="none", return_grad=True, grad_output=np.ones(3)),
    )
    case(
        f"{_f}-grad_output-array-for-mean",
        ValueError,
        r"grad_output.*scalar",
        lambda ns, F=F: F(ns, X, T, reduction="mean", return_grad=True, grad_output=np.ones(4)),
    )
    case(
        f"{_f}-grad_output-str",
        TypeError,
        r"grad_output",
        lambda ns, F=F: F(ns, X, T, reduction="sum", return_grad=True, grad_output="a"),
    )

for _f in ("nll_loss", "focal_loss"):
    case(
        f"{_f}-float-target", TypeError, r"target.*integer", lambda ns, _f=_f: getattr(ns, _f)(X, P)
    )

case(
    "cross_entropy-prob-target-shape",
    ValueError,
    r"probability target.*\(4, 5\)",
    lambda ns: ns.cross_entropy(X, np.full((4, 4), 0.25)),
)
case(
    "cross_entropy-label_smoothing-negative",
    ValueError,
    r"label_smoothing",
    lambda ns: ns.cross_entropy(X, T, label_smoothing=-0.1),
)
case(
    "cross_entropy-label_smoothing-above-1",
    ValueError,
    r"label_smoothing.*1\.5",
    lambda ns: ns.cross_entropy(X, T, label_smoothing=1.5),
)
case(
    "cross_entropy-label_smoothing-nan",
    ValueError,
    r"label_smoothing",
    lambda ns: ns.cross_entropy(X, T, label_smoothing=float("nan")),
)
case(
    "cross_entropy-label_smoothing-str",
    TypeError,
    r"label_smoothing",
    lambda ns: ns.cross_entropy(X, T, label_smoothing="big"),
)
case(
    "focal_loss-gamma-negative",
    ValueError,
    r"gamma.*-1",
    lambda ns: ns.focal_loss(X, T, gamma=-1.0),
)
case(
    "focal_loss-gamma-nan", ValueError, r"gamma", lambda ns: ns.focal_loss(X, T, gamma=float("nan"))
)
case("focal_loss-gamma-str", TypeError, r"gamma", lambda ns: ns.focal_loss(X, T, gamma="two"))
case("cross_entropy-grad_out-overlaps-input", ValueError, r"grad_out.*overlap", _overlap_case)
case("cross_entropy-grad_out-is-prob-target", ValueError, r"grad_out.*target", _prob_target_overlap)

for _op in ("softmax", "log_softmax", "logsumexp"):
    case(
        f"{_op}-axis-too-big",
        ValueError,
        r"axis 2 .*2 dimensions",
        lambda ns, _op=_op: getattr(ns, _op)(X, axis=2),
    )
    case(
        f"{_op}-axis-too-negative",
        ValueError,
        r"axis -3",
        lambda ns, _op=_op: getattr(ns, _op)(X, axis=-3),
    )
    case(f"{_op}-axis-float", TypeError, r"axis", lambda ns, _op=_op: getattr(ns, _op)(X, axis=1.0))
    case(
        f"{_op}-0d-axis-1",
        ValueError,
        r"axis 1",
        lambda ns, _op=_op: getattr(ns, _op)(np.float64(3.0), axis=1),
    )
    case(f"{_op}-str", TypeError, r"x", lambda ns, _op=_op: getattr(ns, _op)(np.array(["a", "b"])))
    case(
        f"{_op}-object",
        TypeError,
        r"x",
        lambda ns, _op=_op: getattr(ns, _op)(np.array([1.0, None], dtype=object)),
    )


@pytest.mark.parametrize("fn,exc,match", E)
def test_error_names_the_argument_on_both_backends(compiled, fn, exc, match):
    with pytest.raises(exc, match=match) as info_compiled:
        fn(fastloss)
    with pytest.raises(exc, match=match) as info_reference:
        fn(REF)
    assert type(info_compiled.value) is type(info_reference.value)


def test_valid_edge_arguments_do_not_raise(compiled):
    """The boundaries of the valid ranges are accepted."""
    for ns in (fastloss, REF):
        ns.cross_entropy(X, T, label_smoothing=0.0)
        ns.cross_entropy(X, T, label_smoothing=1.0)
        ns.focal_loss(X, T, gamma=0.0)
        ns.cross_entropy(X, np.array([0, 1, 4, 4]))  # C - 1 is a valid class
        ns.cross_entropy(X, np.array([0, 7, 4, 7]), ignore_index=7)  # ignore_index outside [0, C)
        ns.cross_entropy(X, T, weight=[1, 2, 3, 4, 5])  # a list is fine
        ns.nll_loss(X, T.astype(np.uint8), ignore_index=255)
        ns.softmax(X, axis=-2)
        ns.cross_entropy(X, T, reduction="none", return_grad=True, grad_output=2.0)  # broadcast


def test_backend_selection_errors():
    with pytest.raises(ValueError, match="backend"):
        fastloss.set_backend("fast")
    with pytest.raises(ValueError, match="backend"):
        with fastloss.use_backend("gpu"):
            pass
    assert fastloss.get_backend() in ("compiled", "reference")


# ------------------------------------------------------------------ contracts torch keeps too


@pytest.mark.parametrize("ns", [fastloss, REF], ids=["compiled", "reference"])
@pytest.mark.parametrize("name", [s.name for s in registry("class", "elementwise")])
def test_grad_output_without_return_grad_is_refused(ns, name):
    x = np.zeros((4, 5)) if name != "binary_cross_entropy" else np.full((4, 5), 0.5)
    t = T if LOSSES[name].family == "class" else np.zeros((4, 5))
    with pytest.raises(ValueError, match="grad_output is only used with return_grad=True"):
        getattr(ns, name)(x, t, grad_output=2.0)


@pytest.mark.parametrize("ns", [fastloss, REF], ids=["compiled", "reference"])
@pytest.mark.parametrize("ignore_index", [0, 1, 7])
def test_probability_targets_refuse_a_class_ignore_index(ns, ignore_index):
    with pytest.raises(ValueError, match="ignore_index=.* probability targets"):
        ns.cross_entropy(X, P, ignore_index=ignore_index)
    ns.cross_entropy(X, P, ignore_index=-1)  # negative values are accepted, as torch does


@pytest.mark.parametrize("ns", [fastloss, REF], ids=["compiled", "reference"])
@pytest.mark.parametrize("alpha", [1.5, np.inf, np.nan, -np.inf])
def test_sigmoid_focal_alpha_outside_its_range_is_refused(ns, alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        ns.sigmoid_focal_loss(X, np.zeros_like(X), alpha=alpha)


def test_torch_tensor_that_requires_grad_gets_a_typeerror_naming_the_fix():
    torch = pytest.importorskip("torch")
    x = torch.zeros(4, 5, requires_grad=True)
    for call in (
        lambda: fastloss.cross_entropy(x, T),
        lambda: fastloss.mse_loss(X, x),
        lambda: fastloss.cross_entropy(X, T, weight=torch.ones(5, requires_grad=True)),
        lambda: fastloss.softmax(x),
    ):
        with pytest.raises(TypeError, match=r"requires grad.*detach\(\)"):
            call()
    # a tensor that does not require grad is just an array
    assert np.isclose(fastloss.cross_entropy(x.detach(), T), np.log(5))
