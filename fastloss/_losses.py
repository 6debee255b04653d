"""The loss registry: one row per public function, read by everything that lists losses.

``LOSSES`` maps each public loss (and the softmax family) to a frozen :class:`LossSpec`.  Each
public wrapper in ``_api`` hands its arguments to the runner of its family, which reads the
row (kernel, parameters, weights, reference twin); ``fastloss eval``, ``fastloss bench``, the
torch bridge's autograd Functions and Modules and the generic test suites iterate this
table.  Adding a loss is one row here, one reference function, one kernel and one wrapper
(see "Adding an elementwise loss" in ``docs/architecture.md``).

A row holds facts about the loss, never test or benchmark code:

* ``family``: ``"class"`` (input ``(N, C, d...)`` with class-index or probability targets),
  ``"elementwise"`` (input and target of one shape), ``"pair"`` (elementwise with two
  differentiable inputs among three arrays, e.g. ``margin_ranking_loss(input1, input2,
  target)``) or ``"axis"`` (softmax family, no target).
* ``"embedding"`` family: losses on rows of D features, ``(N, D)`` or unbatched ``(D,)``
  arrays (``cosine_embedding_loss``, ``triplet_margin_loss``): ``arrays`` are the arguments,
  ``differentiable`` the feature arrays (all but a per-row target).
* ``"margin"`` family: the classification margin losses on rows of C classes, one
  differentiable ``(N, C)`` or unbatched ``(C,)`` input and a target (``multi_margin_loss``:
  class indices ``(N,)``; ``multilabel_margin_loss``: index lists of the input's shape;
  ``multilabel_soft_margin_loss``: 0/1 or soft targets of the input's shape); their kernels
  are row kernels of the embedding list (``EMBEDDING_OPS``).
* ``"box"`` family: bounding-box regression losses of matched box pairs, ``boxes1`` and
  ``boxes2`` of shape ``(N, 4)`` or ``(4,)`` (torchvision.ops' ``generalized_box_iou_loss``
  and kin); their kernels are row kernels of the embedding list (``kernels/boxes-inl.h``),
  their twins in ``reference/_boxes.py``; ``weight`` is one value per box.
* ``arrays`` (pair family): the three array arguments in the order the kernel reads them
  (its x, t and w streams); ``differentiable``: the two whose gradients ``return_grad=True``
  returns, in argument order (the kernel's grad and grad2); ``array_check``: a validator
  ``check(value, input_shape, name)`` of the third array (torch's shape rules).
* ``kernel``: the C op name (``fastloss._kernels.CLASS_OPS`` / ``ELEMENTWISE_OPS`` /
  ``SOFTMAX_OPS`` key); ``kernel_switch=(param, other_kernel)`` picks ``other_kernel`` when
  that parameter is true (``kl_div``'s ``log_target``).
* ``params``: the scalar options, each with its default, its validator and the kernel
  argument it feeds; ``weights``: the array options and how they broadcast.
* ``reference``: the float64 NumPy twin in ``reference/_math.py``; every twin of one family
  shares one keyword signature ``f(x, target, *, reduction, grad_output, need_grad,
  **weights, **params)``.
* ``input_domain`` / ``target_domain``: where valid inputs live (tests and the benchmark draw
  from it): ``"logits"``, ``"prob"``, ``"logprob"``, ``"real"``; targets ``"class"``,
  ``"class_or_prob"``, ``"binary"`` (0/1), ``"sign"`` (-1/+1), ``"prob"``, ``"real"``,
  ``"count"`` (non-negative, e.g. Poisson counts).
* ``torch_name``: the ``torch.nn.functional`` peer (``None``: torch has none);
  ``torch_module``: the ``torch.nn`` Module name that ``fastloss.torch`` provides.
* ``binary_threshold``: for ``fastloss eval``, the input value above which a binary
  prediction is positive (``None``: not a binary classification loss).
* ``examples``: option sets worth exercising beside the defaults (edge values of the
  parameters: ``gamma=0``, ``beta=0``, ``alpha<0`` ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from . import _validate as V
from .reference import _boxes as B
from .reference import _ctc as CTC
from .reference import _math as M
from .reference import _torch_nn as NN

__all__ = ["Param", "Weight", "LossSpec", "LOSSES", "FAMILY_ARGS", "losses"]


def _binder(params):
    """given -> {name: checked value}, unrolled for the usual one or two parameters (a
    generic loop costs a few hundred nanoseconds more on every call); a parameter checked
    later, with the rest of the problem (check None), is passed as given."""
    pairs = tuple((p.name, p.check) for p in params)
    if not pairs:
        return lambda given: {}
    if len(pairs) == 1:
        ((n1, c1),) = pairs
        if c1 is None:
            return lambda given: {n1: given[n1]}
        return lambda given: {n1: c1(given[n1], n1)}
    if len(pairs) == 2 and pairs[0][1] is None and pairs[1][1] is not None:
        (n1, _), (n2, c2) = pairs
        return lambda given: {n1: given[n1], n2: c2(given[n2], n2)}
    return lambda given: {n: given[n] if c is None else c(given[n], n) for n, c in pairs}


@dataclass(frozen=True)
class Param:
    """A scalar option: keyword name, default, validator ``check(value, name)`` returning the
    canonical value (``None``: validated later, with the rest of the problem), and the kernel
    argument it is passed as (``None``: not passed)."""

    name: str
    default: Any
    check: Callable[[Any, str], Any] | None = V.check_nonneg
    kernel_arg: str | None = None


@dataclass(frozen=True)
class Weight:
    """An array option.  ``broadcast``: ``"class"`` = shape ``(C,)``; ``"any"`` = broadcasts
    to the input's shape; ``"last"`` = broadcasts along the last axis (``pos_weight``)."""

    name: str
    broadcast: str = "any"


@dataclass(frozen=True)
class LossSpec:
    name: str
    family: str
    kernel: str
    reference: Callable[..., Any]
    params: tuple = ()
    weights: tuple = ()
    reductions: tuple = ("none", "mean", "sum")
    default_reduction: str = "mean"
    input_domain: str = "logits"
    target_domain: str = "class"
    torch_name: str | None = None
    torch_module: str | None = None
    binary_threshold: float | None = None
    kernel_switch: tuple | None = None
    # "mean" with a weight: divide by the element count, or by the sum of the weights
    # broadcast to the input ("weight_sum": torch's weighted mse_loss and l1_loss)
    weighted_mean: str = "count"
    examples: tuple = ()
    arrays: tuple = ("input", "target")
    differentiable: tuple = ("input",)
    array_check: Callable | None = None
    # kernel slots fed by constants rather than options ((slot, value), ...), and a predicate
    # of the checked options saying whether the kernel computes the call (else the reference)
    kernel_constants: tuple = ()
    kernel_if: Callable | None = None
    # keyword arguments beyond FAMILY_ARGS that this row's runner handles (default None)
    runner_args: tuple = ()
    param_names: tuple = field(init=False, repr=False)
    weight_names: tuple = field(init=False, repr=False)
    # derived once for the per-call path: the parameter checks and the kernel arguments
    _checks: Callable = field(init=False, repr=False, compare=False)
    kernel_args: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "param_names", tuple(p.name for p in self.params))
        object.__setattr__(self, "weight_names", tuple(w.name for w in self.weights))
        object.__setattr__(self, "_checks", _binder(self.params))
        # the parameter names feeding the kernel's two scalar slots, None where unused:
        # (smoothing, gamma) of a class loss, (p1, p2) of an elementwise loss, (p1, p2, p3,
        # flags) of an embedding loss
        rows = ("p1", "p2", "p3", "flags")
        slots = {"class": ("smoothing", "gamma"), "embedding": rows, "margin": rows}.get(
            self.family, ("p1", "p2")
        )
        if self.family == "box":  # the box runner fills the kernel's slots itself
            slots = ()
        by_slot = {p.kernel_arg: p.name for p in self.params if p.kernel_arg}
        unknown = set(by_slot) - set(slots)
        if unknown:
            raise ValueError(f"{self.name}: unknown kernel argument(s) {sorted(unknown)}")
        object.__setattr__(self, "kernel_args", tuple(by_slot.get(s) for s in slots))

    def defaults(self) -> dict:
        """The parameters' defaults, by name."""
        return {p.name: p.default for p in self.params}

    def check_params(self, given: dict) -> dict:
        """Validated parameter values (in declaration order) from the caller's keywords."""
        return self._checks(given)

    def kernel_for(self, params: dict) -> str:
        if self.kernel_switch is not None and params[self.kernel_switch[0]]:
            return self.kernel_switch[1]
        return self.kernel


#: keyword arguments (default None) that every public function of a family takes and its
#: runner handles before the kernel or the reference twin sees canonical arrays (beside
#: reduction, return_grad, grad_output and grad_out): the class axis and per-sample weights
FAMILY_ARGS = {"class": ("sample_weight", "axis")}

_CLASS_WEIGHT = (Weight("weight", "class"),)
# checked with the rest of the problem (fastloss._validate.class_problem)
_IGNORE = Param("ignore_index", -100, None)


def _margin_p(value, name):
    """multi_margin_loss's exponent: 1 or 2 (torch supports no other)."""
    if isinstance(value, bool) or value not in (1, 2):
        raise ValueError(f"{name} must be 1 or 2 (as torch supports), got {value!r}")
    return int(value)


LOSSES: dict = {
    s.name: s
    for s in (
        LossSpec(
            "cross_entropy",
            "class",
            "cross_entropy",
            M.cross_entropy,
            params=(_IGNORE, Param("label_smoothing", 0.0, V.check_unit_interval, "smoothing")),
            weights=_CLASS_WEIGHT,
            target_domain="class_or_prob",
            torch_name="cross_entropy",
            torch_module="CrossEntropyLoss",
            examples=({"label_smoothing": 0.1}, {"label_smoothing": 1.0}),
            runner_args=("return_metrics",),
        ),
        LossSpec(
            "nll_loss",
            "class",
            "nll",
            M.nll_loss,
            params=(_IGNORE,),
            weights=_CLASS_WEIGHT,
            input_domain="logprob",
            torch_name="nll_loss",
            torch_module="NLLLoss",
        ),
        LossSpec(
            "focal_loss",
            "class",
            "focal",
            M.focal_loss,
            params=(_IGNORE, Param("gamma", 2.0, V.check_nonneg, "gamma")),
            weights=_CLASS_WEIGHT,
            torch_module="FocalLoss",
            examples=(
                {"gamma": 0.0},
                {"gamma": 0.25},
                {"gamma": 0.5},
                {"gamma": 1.0},
                {"gamma": 3.0},
            ),
            runner_args=("return_metrics",),
        ),
        LossSpec(
            "sigmoid_focal_loss",
            "elementwise",
            "sigmoid_focal",
            M.sigmoid_focal_loss,
            params=(
                Param("alpha", 0.25, V.check_focal_alpha, "p1"),
                Param("gamma", 2.0, V.check_nonneg, "p2"),
            ),
            default_reduction="none",
            target_domain="binary",
            torch_name="torchvision.ops.sigmoid_focal_loss",
            torch_module="SigmoidFocalLoss",
            binary_threshold=0.0,
            examples=(
                {"alpha": -1.0, "gamma": 0.0},
                {"alpha": 0.75, "gamma": 0.5},
                {"gamma": 0.25},
                {"gamma": 1.0},
                {"gamma": 3.0},
            ),
        ),
        LossSpec(
            "binary_cross_entropy",
            "elementwise",
            "bce",
            M.binary_cross_entropy,
            weights=(Weight("weight"),),
            input_domain="prob",
            target_domain="binary",
            torch_name="binary_cross_entropy",
            torch_module="BCELoss",
            binary_threshold=0.5,
        ),
        LossSpec(
            "binary_cross_entropy_with_logits",
            "elementwise",
            "bce_logits",
            M.binary_cross_entropy_with_logits,
            weights=(Weight("weight"), Weight("pos_weight", "last")),
            target_domain="binary",
            torch_name="binary_cross_entropy_with_logits",
            torch_module="BCEWithLogitsLoss",
            binary_threshold=0.0,
        ),
        LossSpec(
            "mse_loss",
            "elementwise",
            "mse",
            M.mse_loss,
            weights=(Weight("weight"),),
            weighted_mean="weight_sum",
            input_domain="real",
            target_domain="real",
            torch_name="mse_loss",
            torch_module="MSELoss",
        ),
        LossSpec(
            "l1_loss",
            "elementwise",
            "l1",
            M.l1_loss,
            weights=(Weight("weight"),),
            weighted_mean="weight_sum",
            input_domain="real",
            target_domain="real",
            torch_name="l1_loss",
            torch_module="L1Loss",
        ),
        LossSpec(
            "smooth_l1_loss",
            "elementwise",
            "smooth_l1",
            M.smooth_l1_loss,
            params=(Param("beta", 1.0, V.check_nonneg, "p1"),),
            input_domain="real",
            target_domain="real",
            torch_name="smooth_l1_loss",
            torch_module="SmoothL1Loss",
            examples=({"beta": 0.0}, {"beta": 0.5}, {"beta": 2.5}),
        ),
        LossSpec(
            "huber_loss",
            "elementwise",
            "huber",
            M.huber_loss,
            weights=(Weight("weight"),),
            params=(Param("delta", 1.0, V.check_positive, "p1"),),
            input_domain="real",
            target_domain="real",
            torch_name="huber_loss",
            torch_module="HuberLoss",
            examples=({"delta": 0.3}, {"delta": 2.0}),
        ),
        LossSpec(
            "kl_div",
            "elementwise",
            "kl_div",
            M.kl_div,
            params=(Param("log_target", False, V.as_flag),),
            reductions=("none", "mean", "sum", "batchmean"),
            input_domain="logprob",
            target_domain="prob",
            torch_name="kl_div",
            torch_module="KLDivLoss",
            kernel_switch=("log_target", "kl_div_log_target"),
            examples=({"log_target": True},),
        ),
        LossSpec(
            "soft_margin_loss",
            "elementwise",
            "soft_margin",
            M.soft_margin_loss,
            target_domain="sign",
            torch_name="soft_margin_loss",
            torch_module="SoftMarginLoss",
        ),
        LossSpec(
            "poisson_nll_loss",
            "elementwise",
            "poisson_nll_rate",
            NN.poisson_nll_loss,
            params=(
                Param("log_input", True, V.as_flag),
                Param("full", False, V.as_flag, "p1"),
                Param("eps", 1e-8, V.as_real, "p2"),
            ),
            input_domain="real",
            target_domain="count",
            torch_name="poisson_nll_loss",
            torch_module="PoissonNLLLoss",
            kernel_switch=("log_input", "poisson_nll"),
            # log_input=False needs positive rates: tests/test_new_losses.py
            examples=({"full": True}, {"eps": 0.5}),
        ),
        LossSpec(
            "hinge_embedding_loss",
            "elementwise",
            "hinge_embedding",
            NN.hinge_embedding_loss,
            params=(Param("margin", 1.0, V.as_real, "p1"),),
            input_domain="real",
            target_domain="sign",
            torch_name="hinge_embedding_loss",
            torch_module="HingeEmbeddingLoss",
            examples=({"margin": 0.0}, {"margin": 2.5}),
        ),
        LossSpec(
            "margin_ranking_loss",
            "pair",
            "margin_ranking",
            NN.margin_ranking_loss,
            params=(Param("margin", 0.0, V.as_real, "p1"),),
            input_domain="real",
            target_domain="sign",
            torch_name="margin_ranking_loss",
            torch_module="MarginRankingLoss",
            examples=({"margin": 0.5}, {"margin": -0.25}),
            arrays=("input1", "input2", "target"),
            differentiable=("input1", "input2"),
            array_check=V.same_ndim_target,
        ),
        LossSpec(
            "gaussian_nll_loss",
            "pair",
            "gaussian_nll",
            NN.gaussian_nll_loss,
            params=(
                Param("full", False, V.as_flag, "p1"),
                Param("eps", 1e-6, V.check_positive, "p2"),
            ),
            input_domain="real",
            target_domain="real",
            torch_name="gaussian_nll_loss",
            torch_module="GaussianNLLLoss",
            examples=({"full": True}, {"eps": 0.5}),
            arrays=("input", "target", "var"),
            differentiable=("input", "var"),
            array_check=V.gaussian_var,
        ),
        LossSpec(
            "cosine_embedding_loss",
            "embedding",
            "cosine_embedding",
            NN.cosine_embedding_loss,
            params=(Param("margin", 0.0, V.as_real, "p1"),),
            input_domain="real",
            target_domain="sign",
            torch_name="cosine_embedding_loss",
            torch_module="CosineEmbeddingLoss",
            examples=({"margin": 0.5}, {"margin": -0.3}),
            arrays=("input1", "input2", "target"),
            differentiable=("input1", "input2"),
            kernel_constants=(("p2", NN.COSINE_EMBEDDING_EPSILON),),
        ),
        LossSpec(
            "triplet_margin_loss",
            "embedding",
            "triplet_margin",
            NN.triplet_margin_loss,
            params=(
                Param("margin", 1.0, V.as_real, "p1"),
                Param("p", 2.0, V.as_real, "p2"),
                Param("eps", 1e-6, V.as_real, "p3"),
                Param("swap", False, V.as_flag, "flags"),
            ),
            input_domain="real",
            target_domain="none",
            torch_name="triplet_margin_loss",
            torch_module="TripletMarginLoss",
            examples=({"swap": True}, {"p": 1.0}, {"p": 3.0, "eps": 0.0}, {"margin": 0.1}),
            arrays=("anchor", "positive", "negative"),
            differentiable=("anchor", "positive", "negative"),
            # the kernel's norms: p > 0 (p = inf too); 0 and negative p on the reference
            kernel_if=lambda params: params["p"] > 0,
        ),
        LossSpec(
            "triplet_margin_with_distance_loss",
            "embedding",
            "triplet_margin",
            NN.triplet_margin_with_distance_loss,
            params=(
                Param("distance_function", None, V.distance_function),
                Param("margin", 1.0, V.as_real, "p1"),
                Param("swap", False, V.as_flag, "flags"),
            ),
            input_domain="real",
            target_domain="none",
            torch_name="triplet_margin_with_distance_loss",
            torch_module="TripletMarginWithDistanceLoss",
            examples=({"swap": True}, {"distance_function": "cosine"}),
            arrays=("anchor", "positive", "negative"),
            differentiable=("anchor", "positive", "negative"),
            # the default distance is torch's pairwise_distance (p = 2, eps = 1e-6): the
            # kernel's; "cosine" and callables run on the reference
            kernel_constants=(("p2", 2.0), ("p3", 1e-6)),
            kernel_if=lambda params: params["distance_function"] in (None, "euclidean"),
        ),
        LossSpec(
            "multi_margin_loss",
            "margin",
            "multi_margin",
            NN.multi_margin_loss,
            params=(Param("p", 1, _margin_p, "p2"), Param("margin", 1.0, V.as_real, "p1")),
            weights=_CLASS_WEIGHT,
            input_domain="logits",
            target_domain="class",
            torch_name="multi_margin_loss",
            torch_module="MultiMarginLoss",
            examples=({"p": 2}, {"margin": 0.3}, {"p": 2, "margin": -0.5}),
        ),
        LossSpec(
            "multilabel_margin_loss",
            "margin",
            "multilabel_margin",
            NN.multilabel_margin_loss,
            input_domain="logits",
            target_domain="multilabel",
            torch_name="multilabel_margin_loss",
            torch_module="MultiLabelMarginLoss",
        ),
        LossSpec(
            "multilabel_soft_margin_loss",
            "margin",
            "multilabel_soft_margin",
            NN.multilabel_soft_margin_loss,
            weights=_CLASS_WEIGHT,
            input_domain="logits",
            target_domain="binary",
            torch_name="multilabel_soft_margin_loss",
            torch_module="MultiLabelSoftMarginLoss",
        ),
        LossSpec(
            "log_softmax",
            "axis",
            "log_softmax",
            M.log_softmax,
            reductions=(),
            default_reduction="none",
            target_domain="none",
            torch_name="log_softmax",
        ),
        LossSpec(
            "softmax",
            "axis",
            "softmax",
            M.softmax,
            reductions=(),
            default_reduction="none",
            target_domain="none",
            torch_name="softmax",
        ),
        LossSpec(
            "logsumexp",
            "axis",
            "logsumexp",
            M.logsumexp,
            reductions=(),
            default_reduction="none",
            target_domain="none",
            torch_name="logsumexp",
        ),
    )
}


def losses(*families: str) -> list:
    """The registry rows of the given families (all rows when none is given), in order."""
    return [s for s in LOSSES.values() if not families or s.family in families]


# --------------------------------------------------------------------------------------------
# The metrics (issue 23): family "metric", not losses.  error_rate / accuracy take class scores
# (logits or probabilities) and class-index targets like the class losses, entropy one input;
# their kernels are the row ops of src/kernels/row_stats-inl.h (fastloss._kernels.ROW_OPS),
# their twins the float64 functions of reference/_metrics.py.  Their own runners in _api take
# the per-sample weights (sample_weight) and the class axis (axis).
from .reference import _metrics as MT  # noqa: E402

#: the tie policies of error_rate / accuracy, in the order of FL_TIE_POLICIES (fl_kernel_list.h)
TIE_POLICIES = MT.TIE_POLICIES


def check_top_k(value, name):
    """top_k: an int >= 1 (not a bool)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    v = V.as_int(value, name)
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return v


def check_ties(value, name):
    """ties: one of TIE_POLICIES."""
    if not isinstance(value, str) or value not in TIE_POLICIES:
        raise ValueError(f"{name} must be one of {TIE_POLICIES}, got {value!r}")
    return value


def check_base(value, name):
    """base of the logarithm: None (natural log, nats) or a finite real > 0 other than 1."""
    if value is None:
        return None
    v = V.as_real(value, name)
    if not (v > 0 and v != 1 and v < float("inf")):
        raise ValueError(
            f"{name} must be a finite number > 0 other than 1 (or None), got {value!r}"
        )
    return v


_METRIC_PARAMS = (
    Param("top_k", 1, check_top_k),
    _IGNORE,
    Param("ties", "argmax", check_ties),
)
LOSSES.update(
    {
        s.name: s
        for s in (
            LossSpec(
                "error_rate",
                "metric",
                "rank",
                MT.error_rate,
                params=_METRIC_PARAMS,
                examples=({"top_k": 3}, {"ties": "sklearn"}, {"ties": "pessimistic"}),
            ),
            LossSpec(
                "accuracy",
                "metric",
                "rank",
                MT.accuracy,
                params=_METRIC_PARAMS,
                examples=({"top_k": 3}, {"ties": "sklearn"}, {"ties": "pessimistic"}),
            ),
            LossSpec(
                "entropy",
                "metric",
                "entropy",
                MT.entropy,
                params=(
                    Param("axis", -1, None),
                    Param("base", None, check_base),
                    Param("from_logits", True, V.as_flag),
                ),
                default_reduction="none",
                target_domain="none",
                torch_name="torch.distributions.Categorical.entropy",
                examples=({"base": 2.0}, {"from_logits": False}),
            ),
        )
    }
)


def check_accumulate(value, name):
    """dtype of the CTC recursion: None (the default, see fastloss.ctc_loss), "float32" or
    "float64"."""
    if value is not None and value not in ("float32", "float64"):
        raise ValueError(f'{name} must be None, "float32" or "float64", got {value!r}')
    return value


LOSSES["ctc_loss"] = LossSpec(
    "ctc_loss",
    "ctc",
    "ctc",
    CTC.ctc_loss,
    params=(
        Param("blank", 0, V.as_int),
        Param("zero_infinity", False, V.as_flag),
        Param("from_logits", False, V.as_flag),
        Param("accumulate", None, check_accumulate),
    ),
    input_domain="logprob",
    target_domain="ctc",
    torch_name="ctc_loss",
    torch_module="CTCLoss",
    examples=({"zero_infinity": True}, {"from_logits": True}, {"blank": 3}),
    arrays=("log_probs", "targets", "input_lengths", "target_lengths"),
    differentiable=("log_probs",),
)


# --------------------------------------------------------------------------------------------
# The box regression losses (issue 25): family "box", rows of 4 coordinates, and Focal L1 (an
# elementwise loss of the same paper).  Formulas and sources: reference/_boxes.py and
# docs/numerics.md ("Box losses").
BOX_FORMATS = ("xyxy", "cxcywh")


def check_box_fmt(value, name):
    """fmt: "xyxy" (x1, y1, x2, y2) or "cxcywh" (centre, width, height)."""
    if not isinstance(value, str) or value not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {value!r}")
    return value


def check_ciou_alpha(value, name):
    """complete_box_iou_loss's alpha convention: "torchvision", "mmdet" or "yolo"."""
    if not isinstance(value, str) or value not in B.CIOU_ALPHAS:
        raise ValueError(f"{name} must be one of {B.CIOU_ALPHAS}, got {value!r}")
    return value


def check_focal_l1_beta(value, name):
    """Focal L1's beta: in (0, 1) (ln(beta) < 0 keeps its gradient positive)."""
    v = V.as_real(value, name)
    if not 0 < v < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return v


_BOX_EPS = Param("eps", 1e-7, V.check_nonneg)
_BOX_TAIL = (Param("fmt", "xyxy", check_box_fmt), Param("validate", False, V.as_flag))


def _box_row(name, kernel, module, torch_name=None, params=(), examples=()):
    return LossSpec(
        name,
        "box",
        kernel,
        getattr(B, name),
        params=(_BOX_EPS,) + params + _BOX_TAIL,
        weights=(Weight("weight", "box"),),
        default_reduction="none",
        input_domain="box",
        target_domain="box",
        torch_name=torch_name,
        torch_module=module,
        arrays=("boxes1", "boxes2"),
        differentiable=("boxes1", "boxes2"),
        runner_args=("grad_boxes2",),
        examples=({"fmt": "cxcywh"}, {"eps": 0.0}) + examples,
    )


LOSSES.update(
    {
        s.name: s
        for s in (
            _box_row("iou_loss", "box_iou", "IoULoss"),
            _box_row(
                "generalized_box_iou_loss",
                "box_giou",
                "GeneralizedBoxIoULoss",
                "torchvision.ops.generalized_box_iou_loss",
            ),
            _box_row(
                "distance_box_iou_loss",
                "box_diou",
                "DistanceBoxIoULoss",
                "torchvision.ops.distance_box_iou_loss",
            ),
            _box_row(
                "complete_box_iou_loss",
                "box_ciou",
                "CompleteBoxIoULoss",
                "torchvision.ops.complete_box_iou_loss",
                params=(Param("ciou_alpha", "torchvision", check_ciou_alpha),),
                examples=({"ciou_alpha": "mmdet"}, {"ciou_alpha": "yolo"}),
            ),
            _box_row("efficient_iou_loss", "box_eiou", "EfficientIoULoss"),
            _box_row(
                "focal_eiou_loss",
                "box_focal_eiou",
                "FocalEIoULoss",
                params=(
                    Param("gamma", 0.5, V.check_nonneg),
                    Param("detach_weight", True, V.as_flag),
                ),
                examples=(
                    {"detach_weight": False},
                    {"gamma": 0.0},
                    {"gamma": 2.0, "detach_weight": False},
                ),
            ),
            LossSpec(
                "focal_l1_loss",
                "elementwise",
                "focal_l1",
                B.focal_l1_loss,
                params=(
                    Param("alpha", 1.0, V.check_positive, "p1"),
                    Param("beta", math.exp(-1.0), check_focal_l1_beta, "p2"),
                ),
                input_domain="real",
                target_domain="real",
                torch_module="FocalL1Loss",
                examples=(
                    {"beta": 0.1, "alpha": -1.0 / math.log(0.1)},
                    {"alpha": 0.5, "beta": 0.2},
                ),
            ),
        )
    }
)


# Fused linear + cross entropy (issue 28): family "linear".  The projection's three arrays
# (input, linear_weight, target); differentiable input, linear_weight and linear_bias.  No
# kernel of its own: the GEMMs are BLAS, the loss is the cross-entropy class kernel run on
# row chunks of the logits (fastloss/_linear_ce.py).
from .reference import _linear_ce as LCE  # noqa: E402

LOSSES["linear_cross_entropy"] = LossSpec(
    "linear_cross_entropy",
    "linear",
    "cross_entropy",
    LCE.linear_cross_entropy,
    params=(Param("label_smoothing", 0.0, V.check_unit_interval),),
    weights=_CLASS_WEIGHT,
    input_domain="real",
    target_domain="class_or_prob",
    torch_name="linear_cross_entropy",
    torch_module="LinearCrossEntropyLoss",
    examples=({"label_smoothing": 0.1},),
    arrays=("input", "linear_weight", "target"),
    differentiable=("input", "linear_weight", "linear_bias"),
    # ignore_index is a runner argument, not a Param: torch's default None (-100 for class
    # indices; with probability targets any value raises) is not the class rows' -100
    runner_args=("linear_bias", "ignore_index", "return_metrics", "chunk_rows", "max_memory"),
)
