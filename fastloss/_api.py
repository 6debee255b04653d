"""Public loss functions.

Each public function is an explicit, documented wrapper whose body hands its arguments to the
runner of its family (class-axis, elementwise or softmax family) together with its registry
row (``fastloss._losses.LOSSES``).  The runner validates everything once (``_validate``),
then runs either the compiled kernels (``fastloss._kernels``, one fused pass) or the NumPy
reference twin named in the row, as selected by ``fastloss.set_backend`` / ``use_backend`` /
``FASTLOSS_BACKEND``.  Both backends see the same canonical arrays and return the same things.
"""

from __future__ import annotations

import operator
from typing import Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _config
from . import _validate as V
from ._losses import LOSSES

__all__ = [
    "cross_entropy",
    "nll_loss",
    "focal_loss",
    "log_softmax",
    "softmax",
    "logsumexp",
    "sigmoid_focal_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
    "soft_margin_loss",
    "poisson_nll_loss",
    "hinge_embedding_loss",
]

Reduction = Literal["none", "mean", "sum"]
GradOutput = Union[float, ArrayLike, None]
#: a NumPy scalar (``"mean"``/``"sum"``), an array (``"none"``), or with ``return_grad=True``
#: the pair ``(loss, grad)``
LossResult = Union[np.floating, np.ndarray, tuple[Union[np.floating, np.ndarray], np.ndarray]]

_NAN = float("nan")


def _finish(reduction, dtype, loss_shape, loss, grad, return_grad):
    """Shape/dtype the results: NumPy scalar for mean/sum, array shaped like the loss for none."""
    if reduction == "none":
        loss = np.asarray(loss, dtype=dtype).reshape(loss_shape)
    else:
        loss = dtype.type(loss)
    return (loss, grad) if return_grad else loss


# ------------------------------------------------------------------ class-axis losses


def _reference_targets_check(p):
    """IndexError for class indices outside [0, C) that are not ignore_index (reference path;
    the compiled path checks inside fl_check_targets)."""
    t = p.target
    bad = (t != p.ignore_index) & ((t < 0) | (t >= p.C))
    if bad.any():
        _raise_bad_target(p, int(np.flatnonzero(bad.reshape(-1))[0]))


def _raise_bad_target(p, flat_index):
    value = p.target.reshape(-1)[flat_index]
    where = np.unravel_index(flat_index, p.loss_shape) if p.loss_shape else ()
    raise IndexError(
        f"target {value} at position {tuple(int(i) for i in where)} is out of "
        f"range [0, {p.C}) and is not ignore_index ({p.ignore_index})"
    )


# the arguments every public function of a family has, read from its locals() in one call
_CLASS_ARGS = operator.itemgetter(
    "input",
    "target",
    "weight",
    "reduction",
    "return_grad",
    "grad_output",
    "grad_out",
    "axis",
    "sample_weight",
)
_ELEMENTWISE_ARGS = operator.itemgetter(
    "input", "target", "reduction", "return_grad", "grad_output", "grad_out"
)


def _class_loss(name, args):
    """cross_entropy / focal_loss / nll_loss: validation, the "mean" normaliser, both backends.
    `args` holds the public function's arguments by name."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    (input, target, weight, reduction, return_grad, grad_output, grad_out, axis, sample_weight) = (
        _CLASS_ARGS(args)
    )
    p = V.class_problem(
        input,
        target,
        weight,
        params["ignore_index"],
        reduction,
        spec.target_domain == "class_or_prob",
        axis,
    )
    go = V.grad_output_for(grad_output, reduction, p.loss_shape)
    grad = V.grad_buffer(grad_out, p.x, return_grad)
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    if grad is not None and p.target_prob is not None:
        V.check_no_overlap(grad, "grad_out", ("target", p.target_prob))
    if sample_weight is not None:
        return _sample_weighted(
            spec, p, params, V.sample_weight_for(sample_weight, p.loss_shape), go, grad, return_grad
        )
    loss = _class_backend(spec, p, params, reduction, go, grad, return_grad)
    return _finish(reduction, p.x.dtype, p.loss_shape, loss, grad, return_grad)


def _sample_weighted(spec, p, params, s, go, grad, return_grad):
    """Per-sample weights s: one fused pass with reduction="none" whose upstream gradient is
    s (times grad_output, over the "mean" denominator), then the weighted reduction of the
    per-sample losses.  "mean" divides by sum(s * w[y]) over the samples not ignored (by
    sum(s) with probability targets), so that s = 1 is the unweighted loss."""
    reduction = p.reduction
    denom = None
    if reduction == "mean":
        if p.target is None:
            denom = float(s.sum())
        else:
            _reference_targets_check(p)  # before indexing the class weights with them
            keep = p.target != p.ignore_index
            t = np.where(keep, p.target, 0)
            wy = keep if p.weight is None else np.where(keep, p.weight.astype(np.float64)[t], 0)
            denom = float(np.sum(s * wy))
    scale = go if reduction == "none" else go * (1.0 if denom is None else _safe_inv(denom))
    rows = _class_backend(
        spec, p, params, "none", V.kernel_ready(s * scale, np.float64), grad, return_grad
    )
    if reduction == "none":
        loss = s * rows
    else:
        loss = float(np.sum(s * rows, dtype=np.float64))
        if denom is not None:
            loss = loss / denom if denom else _NAN
    return _finish(reduction, p.x.dtype, p.loss_shape, loss, grad, return_grad)


def _safe_inv(d):
    """1/d, and 0 for d = 0 (every sample weighted 0 or ignored: loss NaN, gradient 0)."""
    return 1.0 / d if d else 0.0


def _class_backend(spec, p, params, reduction, go, grad, return_grad):
    """One fused pass on the selected backend: the reduced loss (a float), or for "none" the
    per-sample losses; the gradient is written into `grad` (when not None)."""
    N, C, S = p.N, p.C, p.S
    if _config.get_backend() == "reference":
        if p.target is not None:
            _reference_targets_check(p)
        x3 = p.x.reshape(N, C, S)
        t = p.target.reshape(N, S) if p.target is not None else p.target_prob.reshape(N, C, S)
        params = dict(params, ignore_index=p.ignore_index)
        params["weight"] = None if p.weight is None else p.weight.astype(np.float64)
        go_ref = go.reshape(N, S) if isinstance(go, np.ndarray) else go
        loss, g = spec.reference(
            x3, t, reduction=reduction, grad_output=go_ref, need_grad=return_grad, **params
        )
        if grad is not None:
            np.copyto(grad, g.reshape(p.in_shape), casting="unsafe")
        return loss.reshape(p.loss_shape) if reduction == "none" else loss

    K = _config._kernels
    smoothing_name, gamma_name = spec.kernel_args
    smoothing = params[smoothing_name] if smoothing_name else 0.0
    gamma = params[gamma_name] if gamma_name else 0.0
    loss_rows = V.empty(p.loss_shape, p.x.dtype) if reduction == "none" else None
    loss, bad = K.class_loss(
        K.CLASS_OPS[spec.kernel],
        p.x,
        N,
        C,
        S,
        p.target,
        p.target_prob,
        p.weight,
        p.ignore_index,
        smoothing,
        gamma,
        K.REDUCTIONS[reduction],
        go,
        grad,
        loss_rows,
        _config._state["threads"],
    )
    if bad >= 0:
        _raise_bad_target(p, bad)
    return loss_rows if loss is None else loss


def cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    axis: int | None = None,
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Softmax cross entropy from logits, as torch.nn.functional.cross_entropy.

    input: (N, C), (N, C, d1, ..., dk) or unbatched (C,) logits (the class axis is `axis`:
    None = torch's layout, -1 for channel-last).  target: class indices of the input's shape
    without the class axis (any integer dtype) or class probabilities shaped like input.
    sample_weight (shaped like the per-sample loss) weights each sample.
    return_grad=True returns (loss, d loss / d input) from one fused pass; grad_output scales
    the gradient; grad_out is a preallocated gradient buffer (may be `input` for in place).
    """
    return _class_loss("cross_entropy", locals())


def nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    axis: int | None = None,
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Negative log-likelihood on log-probabilities, as torch.nn.functional.nll_loss."""
    return _class_loss("nll_loss", locals())


def focal_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    gamma: float = 2.0,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    axis: int | None = None,
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Multi-class softmax focal loss: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by the sum of w[y] over non-ignored samples, like cross_entropy, so
    gamma=0 reproduces cross_entropy.  Finite for every gamma >= 0 at saturated logits."""
    return _class_loss("focal_loss", locals())


# ------------------------------------------------------------------ softmax family


def _softmax_family(name, x, axis, keepdims=False):
    spec = LOSSES[name]
    x, ax, outer, C, inner = V.axis_problem(x, axis)
    out_shape = x.shape
    if name == "logsumexp" and x.ndim:
        out_shape = x.shape[:ax] + ((1,) if keepdims else ()) + x.shape[ax + 1 :]
    if _config.get_backend() == "reference":
        out = spec.reference(x.reshape(outer, C, inner))
        return np.asarray(out, dtype=x.dtype).reshape(out_shape)
    out = V.empty(out_shape, x.dtype)
    if C == 0:
        out.fill(-np.inf)  # only reachable for logsumexp: the log of an empty sum
        return out
    if x.size:
        K = _config._kernels
        K.softmax(x, outer, C, inner, out, K.SOFTMAX_OPS[spec.kernel], _config._state["threads"])
    return out


def log_softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """log(softmax(x)) along `axis`, max-shifted, one fused pass (no transposing copy)."""
    return _softmax_family("log_softmax", x, axis)


def softmax(x: ArrayLike, axis: int = -1) -> np.ndarray:
    """softmax(x) along `axis`, max-shifted, one fused pass."""
    return _softmax_family("softmax", x, axis)


def logsumexp(x: ArrayLike, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(x))) along `axis`, max-shifted; -inf for an all -inf (or empty) slice.
    keepdims=True keeps `axis` with length 1 (the result broadcasts against x)."""
    return _softmax_family("logsumexp", x, axis, keepdims)


# ------------------------------------------------------------------ elementwise losses


def _elementwise(name, args):
    """Every elementwise loss: `args` holds the public function's arguments by name."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    input, target, reduction, return_grad, grad_output, grad_out = _ELEMENTWISE_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    x = V.as_float_array(input, "input")
    t = V.same_shape_target(target, x)
    weights = {}  # given weights: name -> (array, period along the flat index)
    for w_name in spec.weight_names:
        if args[w_name] is not None:
            weights[w_name] = V.periodic_weight(args[w_name], x.shape, x.dtype, w_name)
    go = V.elementwise_grad_output(grad_output, reduction, x.shape, x.dtype)
    grad = V.grad_buffer(grad_out, x, return_grad)
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    if grad is not None:
        V.check_no_overlap(grad, "grad_out", ("target", t))
        for w_name, (w, _) in weights.items():
            V.check_no_overlap(grad, "grad_out", (w_name, w))
    n = x.size
    denom = (x.shape[0] if x.ndim else 1) if reduction == "batchmean" else n
    if "weight" in weights and reduction == "mean" and spec.weighted_mean == "weight_sum":
        w, period = weights["weight"]  # the weight repeats n / period times along the input
        denom = float(np.sum(w, dtype=np.float64)) * (n // period) if n else 0

    if _config.get_backend() == "reference":
        if spec.input_domain == "prob" and n and not ((x >= 0) & (x <= 1)).all():
            _raise_prob_domain(name)
        for w_name in spec.weight_names:  # the kernels' periodic weight, materialised
            w = weights.get(w_name, (None, 0))[0]
            params[w_name] = None if w is None else np.resize(w.astype(np.float64), x.shape)
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        loss, g = spec.reference(
            x, t, reduction=reduction, grad_output=go_ref, need_grad=return_grad, **params
        )
        if grad is not None:
            np.copyto(grad, g, casting="unsafe")
        return _finish(reduction, x.dtype, x.shape, loss, grad, return_grad)

    K = _config._kernels
    p1_name, p2_name = spec.kernel_args
    p1 = params[p1_name] if p1_name else 0.0
    p2 = params[p2_name] if p2_name else 0.0
    w = pw = None
    wp = pwp = 0
    if weights:
        w, wp = weights.get("weight", (None, 0))
        pw, pwp = weights.get("pos_weight", (None, 0))
    rows = None
    if reduction in ("mean", "batchmean"):
        scale = go / denom if denom else _NAN
    elif isinstance(go, np.ndarray):
        rows, scale = go, 1.0
    else:
        scale = go
    loss_rows = V.empty(x.shape, x.dtype) if reduction == "none" else None
    total, bad = 0.0, False
    if n:
        total, bad = K.elementwise(
            K.ELEMENTWISE_OPS[spec.kernel_for(params)],
            x,
            t,
            w,
            wp,
            pw,
            pwp,
            p1,
            p2,
            grad,
            rows,
            scale,
            loss_rows,
            _config._state["threads"],
        )
    if bad:
        _raise_prob_domain(name)
    if reduction == "none":
        loss = loss_rows
    elif reduction == "sum":
        loss = total
    else:
        loss = total / denom if denom else _NAN
    return _finish(reduction, x.dtype, x.shape, loss, grad, return_grad)


def _raise_grad_output_unused():
    raise ValueError(
        "grad_output is only used with return_grad=True (it scales the gradient, never the loss)"
    )


def _raise_prob_domain(name):
    raise ValueError(
        f"{name}: every element of input must be a probability in [0, 1] (found a "
        "value outside it, or NaN)"
    )


def sigmoid_focal_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017) from logits, one fused pass.

    loss = alpha_t (1 - p_t)^gamma BCE-with-logits(input, target); alpha < 0 disables alpha_t.
    Soft targets in [0, 1] work.  Values and gradients stay finite for every gamma >= 0 at
    saturated logits."""
    return _elementwise("sigmoid_focal_loss", locals())


def binary_cross_entropy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.binary_cross_entropy on probabilities (each log clamped at -100 like torch)."""
    return _elementwise("binary_cross_entropy", locals())


def binary_cross_entropy_with_logits(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.binary_cross_entropy_with_logits; pos_weight broadcasts along the last axis.

    Exact at +-inf logits: loss 0 and gradient 0 where the target agrees (torch gives NaN)."""
    return _elementwise("binary_cross_entropy_with_logits", locals())


def mse_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Mean squared error, torch's F.mse_loss; with `weight` (broadcast to the input) each
    term is weighted and "mean" divides by the sum of the weights, as torch 2.13 does."""
    return _elementwise("mse_loss", locals())


def l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Absolute error, torch's F.l1_loss (subgradient 0 at 0); with `weight` (broadcast to the
    input) each term is weighted and "mean" divides by the sum of the weights, as torch."""
    return _elementwise("l1_loss", locals())


def smooth_l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    beta: float = 1.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta/2 (beta=0: L1)."""
    return _elementwise("smooth_l1_loss", locals())


def huber_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    delta: float = 1.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - delta/2); with
    `weight` (broadcast to the input) each term is weighted and "mean" still divides by the
    element count, as torch's huber_loss does."""
    return _elementwise("huber_loss", locals())


def kl_div(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Literal["none", "mean", "sum", "batchmean"] = "mean",
    log_target: bool = False,
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.kl_div: input is log-probabilities; 0 log 0 = 0; reduction may be "batchmean"."""
    return _elementwise("kl_div", locals())


def soft_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.soft_margin_loss, log(1 + exp(-y x)) for targets y = +-1, as softplus(-y x):
    finite where torch's literal form overflows to inf (-y x > 88 in float32)."""
    return _elementwise("soft_margin_loss", locals())


def poisson_nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    log_input: bool = True,
    full: bool = False,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.poisson_nll_loss: exp(x) - t x on log rates (log_input=True), else
    x - t log(x + eps); full=True adds the Stirling term where t > 1."""
    return _elementwise("poisson_nll_loss", locals())


def hinge_embedding_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 1.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.hinge_embedding_loss: max(0, margin - x) where y != 1, plus x where y != -1."""
    return _elementwise("hinge_embedding_loss", locals())


# ------------------------------------------------------------------ metrics
# error_rate / accuracy / entropy (registry family "metric"): one pass of a row op of
# src/kernels/row_stats-inl.h (fastloss._kernels.row_op), or the twin in reference/_metrics.py

__all__ += ["error_rate", "accuracy", "entropy"]

#: a NumPy scalar ("mean"/"sum") or an array shaped like the per-sample values ("none")
MetricResult = Union[np.floating, np.ndarray]
_RANK_ARGS = operator.itemgetter("input", "target", "sample_weight", "reduction", "axis")
_ENTROPY_ARGS = operator.itemgetter("input", "reduction", "return_grad", "grad_output", "grad_out")


def _rank_metric(name, args):
    """error_rate / accuracy: the class problem of the class losses (same axis, targets and
    errors), per-sample weights, then the rank op or the reference twin."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    input, target, sample_weight, reduction, axis = _RANK_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    p = V.class_problem(input, target, None, params["ignore_index"], reduction, False, axis)
    s = None if sample_weight is None else V.sample_weight_for(sample_weight, p.loss_shape)
    N, C, S = p.N, p.C, p.S
    if _config.get_backend() == "reference":
        _reference_targets_check(p)
        loss, _ = spec.reference(
            p.x.reshape(N, C, S),
            p.target.reshape(N, S),
            reduction=reduction,
            top_k=params["top_k"],
            weight=None if s is None else s.reshape(N, S),
            ignore_index=p.ignore_index,
            ties=params["ties"],
        )
        if reduction == "none":
            loss = loss.reshape(p.loss_shape)
        return _finish(reduction, p.x.dtype, p.loss_shape, loss, None, False)
    K = _config._kernels
    out = V.empty(p.loss_shape, p.x.dtype) if reduction == "none" else None
    total, kept, bad = K.row_op(
        K.ROW_OPS[spec.kernel],
        p.x,
        N,
        C,
        S,
        p.target,
        p.ignore_index,
        max(1, min(params["top_k"], C)),  # a rank is below C: larger k change nothing
        K.TIES[params["ties"]],
        name == "accuracy",
        None if s is None else V.kernel_ready(s, np.float64),
        None,
        1.0,
        None,
        None,
        out,
        _config._state["threads"],
    )
    if bad >= 0:
        _raise_bad_target(p, bad)
    if reduction == "none":
        loss = out
    elif reduction == "sum":
        loss = total
    else:
        loss = total / kept if kept else _NAN
    return _finish(reduction, p.x.dtype, p.loss_shape, loss, None, False)


def _entropy(args):
    """entropy: the input viewed as (outer, C, inner) around `axis`, then the entropy op (on
    log(input) for probabilities, with the gradient divided by input) or the reference."""
    spec = LOSSES["entropy"]
    params = spec.check_params(args)
    input, reduction, return_grad, grad_output, grad_out = _ENTROPY_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    x, ax, outer, C, inner = V.axis_problem(input, params["axis"], "input")
    loss_shape = x.shape[:ax] + x.shape[ax + 1 :]
    go = V.grad_output_for(grad_output, reduction, loss_shape)
    grad = V.grad_buffer(grad_out, x, return_grad)
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    base, from_logits = params["base"], params["from_logits"]
    n = outer * inner
    if _config.get_backend() == "reference":
        loss, g = spec.reference(
            x.reshape(outer, C, inner),
            axis=1,
            base=base,
            from_logits=from_logits,
            reduction=reduction,
            grad_output=go.reshape(outer, inner) if isinstance(go, np.ndarray) else go,
            need_grad=return_grad,
        )
        if grad is not None:
            np.copyto(grad, g.reshape(x.shape), casting="unsafe")
        if reduction == "none":
            loss = loss.reshape(loss_shape)
        return _finish(reduction, x.dtype, loss_shape, loss, grad, return_grad)
    inv_log_base = 1.0 if base is None else 1.0 / float(np.log(base))
    out = V.empty(loss_shape, x.dtype) if reduction == "none" else None
    total = 0.0
    if C == 0:  # an empty distribution: entropy 0 (as scipy), nothing to differentiate
        if out is not None:
            out.fill(0)
    elif n:
        z = x
        if not from_logits:  # softmax(log x) = x / sum(x): the logits path on log x
            if grad is not None and np.may_share_memory(grad, x):
                x = x.copy()  # in place: the gradient overwrites x, which divides it below
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.log(x)
        scale = go * inv_log_base  # per sample (a float64 array) for "none"
        if reduction == "mean":
            scale /= n
        K = _config._kernels
        total, _, _ = K.row_op(
            K.ROW_OPS[spec.kernel],
            z,
            outer,
            C,
            inner,
            None,
            0,
            1,
            0,
            False,
            None,
            None,
            inv_log_base,
            grad,
            scale,
            out,
            _config._state["threads"],
        )
        if grad is not None and not from_logits:
            # dH/dx = (dH/dz) / x; a zero class (a masked logit) keeps its 0 (NaN rows: NaN)
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(grad, x, out=grad, where=x != 0)
    if reduction == "none":
        loss = out
    elif reduction == "sum":
        loss = total
    else:
        loss = total / n if n else _NAN
    return _finish(reduction, x.dtype, loss_shape, loss, grad, return_grad)


def error_rate(
    input: ArrayLike,
    target: ArrayLike,
    *,
    top_k: int = 1,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    ties: Literal["argmax", "sklearn", "pessimistic"] = "argmax",
    reduction: Reduction = "mean",
    axis: int | None = None,
) -> MetricResult:
    """Top-k classification error rate from class scores (logits or probabilities), one pass:
    the fraction of samples whose target is not among the top_k scores (ties by `ties`)."""
    return _rank_metric("error_rate", locals())


def accuracy(
    input: ArrayLike,
    target: ArrayLike,
    *,
    top_k: int = 1,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    ties: Literal["argmax", "sklearn", "pessimistic"] = "argmax",
    reduction: Reduction = "mean",
    axis: int | None = None,
) -> MetricResult:
    """Top-k accuracy from class scores, one pass: 1 - error_rate for "mean"."""
    return _rank_metric("accuracy", locals())


def entropy(
    input: ArrayLike,
    *,
    axis: int = -1,
    base: float | None = None,
    from_logits: bool = True,
    reduction: Reduction = "none",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Shannon entropy of softmax(input) (or of input normalised, from_logits=False) along
    `axis`, with its gradient -p_k (log p_k + H) from the same pass."""
    return _entropy(locals())


def _target_ranks(input, target, ignore_index):
    """The rank of each sample's target among its scores (0: the top; ties to the lower class
    index, as numpy.argmax), -1 for samples whose target is ignore_index or whose scores hold a
    NaN: one pass of the rank kernel over (N, C, d1, ...) scores, for targets of shape
    (N, d1, ...) already checked (fastloss.evaluate's top-k counts, every k at once).  Compiled
    backend only."""
    x = V.as_float_array(input, "input")
    N, C = x.shape[0], x.shape[1]
    S = x.size // (N * C) if N * C else 0
    t = V.kernel_ready(np.asarray(target), np.int64).reshape(-1)
    ranks = np.empty(t.shape, np.int64)
    K = _config._kernels
    K.row_op(
        K.ROW_OPS["rank"],
        x,
        N,
        C,
        S,
        t,
        ignore_index,
        1,
        K.TIES["argmax"],
        True,
        None,
        ranks,
        1.0,
        None,
        None,
        None,
        _config._state["threads"],
    )
    return ranks.reshape(np.shape(target))
