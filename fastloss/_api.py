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
from collections.abc import Sequence
from typing import Callable, Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _config
from . import _validate as V
from ._losses import LOSSES
from .reference import _boxes as _BOXES
from .reference import _torch_nn as NN

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
    "margin_ranking_loss",
    "gaussian_nll_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
]

Reduction = Literal["none", "mean", "sum"]
GradOutput = Union[float, ArrayLike, None]
#: a NumPy scalar (``"mean"``/``"sum"``), an array (``"none"``), or with ``return_grad=True``
#: the pair ``(loss, grad)``
LossResult = Union[np.floating, np.ndarray, tuple[Union[np.floating, np.ndarray], np.ndarray]]
#: triplet losses: with ``return_grad=True`` ``(loss, (grad_anchor, grad_positive, grad_negative))``
TripletResult = Union[
    np.floating,
    np.ndarray,
    tuple[Union[np.floating, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
]
#: losses with two differentiable inputs: with ``return_grad=True`` ``(loss, (grad_1, grad_2))``
PairResult = Union[
    np.floating, np.ndarray, tuple[Union[np.floating, np.ndarray], tuple[np.ndarray, np.ndarray]]
]

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
    # return_metrics (cross_entropy, focal_loss): the targets' ranks from the same chunks
    metrics = _metric_names(args.get("return_metrics"), p)
    ranks = V.empty((p.N * p.S,), np.dtype(np.int64)) if metrics else None
    s = None
    if sample_weight is not None:
        s = V.sample_weight_for(sample_weight, p.loss_shape)
        result = _sample_weighted(spec, p, params, s, go, grad, return_grad, ranks)
    else:
        loss = _class_backend(spec, p, params, reduction, go, grad, return_grad, ranks)
        result = _finish(reduction, p.x.dtype, p.loss_shape, loss, grad, return_grad)
    if not metrics:
        return result
    values = _metric_values(metrics, p, ranks, s)
    return (*result, values) if return_grad else (result, values)


def _sample_weighted(spec, p, params, s, go, grad, return_grad, ranks=None):
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
        spec, p, params, "none", V.kernel_ready(s * scale, np.float64), grad, return_grad, ranks
    )
    if reduction == "none":
        loss = s * rows
    else:
        loss = float(np.sum(s * rows, dtype=np.float64))
        if denom is not None:
            loss = loss / denom if denom else _NAN
    return _finish(reduction, p.x.dtype, p.loss_shape, loss, grad, return_grad)


_METRIC_HELP = '"error_rate", "accuracy" or "top<k>" (top-k accuracy, e.g. "top5")'


def _metric_names(value, p):
    """The metrics asked for with return_metrics, each with its k: {name: k}."""
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    if p.target is None:
        raise ValueError("return_metrics needs class-index targets (not probabilities)")
    out = {}
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"return_metrics: names are strings ({_METRIC_HELP}), got {name!r}")
        if name in ("error_rate", "accuracy"):
            out[name] = 1
        elif name.startswith("top") and name[3:].isdigit() and int(name[3:]) >= 1:
            out[name] = int(name[3:])
        else:
            raise ValueError(f"return_metrics: unknown metric {name!r} (use {_METRIC_HELP})")
    if not out:
        raise ValueError(f"return_metrics: name at least one metric ({_METRIC_HELP})")
    return out


def _metric_values(metrics, p, ranks, s):
    """The metrics from the targets' ranks (argmax ties; -1 where ignored or NaN, a NaN row
    counting as a miss), weighted by the sample weights s when given, over the samples whose
    target is not ignore_index (NaN when there is none)."""
    kept = (p.target != p.ignore_index).reshape(-1)
    w = None if s is None else np.where(kept, s.reshape(-1), 0.0)
    total = float(np.count_nonzero(kept)) if w is None else float(w.sum())
    out = {}
    for name, k in metrics.items():
        hit = ranks.view(np.uint64) < k  # -1 (ignored, NaN) wraps to the largest uint64
        got = np.count_nonzero(hit) if w is None else float(np.dot(w, hit))
        acc = got / total if total else _NAN
        out[name] = np.float64(1.0 - acc if name == "error_rate" else acc)
    return out


def _rank_pass(x, N, C, S, target, ignore_index, ranks):
    """The targets' ranks among their scores (argmax ties; -1 where ignored or NaN) into
    ranks: one pass of the rank op over x viewed as (N, C, S), int64 targets (N*S)."""
    K = _config._kernels
    K.row_op(
        K.ROW_OPS["rank"],
        x,
        N,
        C,
        S,
        target,
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


def _reference_ranks(x3, t, ignore_index):
    """The reference backend's ranks of the targets among their scores (argmax ties), -1 where
    ignored or where the scores hold a NaN: (N, C, S) scores, (N, S) targets, already checked."""
    keep = t != ignore_index
    ts = np.where(keep, t, 0)[:, None, :]
    xy = np.take_along_axis(x3, ts, axis=1)
    classes = np.arange(x3.shape[1]).reshape(1, -1, 1)
    rank = np.sum(x3 > xy, axis=1) + np.sum((x3 == xy) & (classes < ts), axis=1)
    bad = ~keep | np.any(np.isnan(x3), axis=1)
    return np.where(bad, -1, rank).reshape(-1)


def _safe_inv(d):
    """1/d, and 0 for d = 0 (every sample weighted 0 or ignored: loss NaN, gradient 0)."""
    return 1.0 / d if d else 0.0


def _class_backend(spec, p, params, reduction, go, grad, return_grad, ranks=None):
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
        if ranks is not None:  # the scores before an in-place gradient overwrites them
            ranks[...] = _reference_ranks(x3, p.target.reshape(N, S), p.ignore_index)
        if grad is not None:
            np.copyto(grad, g.reshape(p.in_shape), casting="unsafe")
        return loss.reshape(p.loss_shape) if reduction == "none" else loss

    K = _config._kernels
    if ranks is not None and not (S == 1 and C > K.TUNING["small_c"]):
        # return_metrics on small-C tiles: the rank op's own pass, before the loss (an
        # in-place gradient overwrites the scores); fused only into the row layout, where
        # its second read of a chunk comes from cache (docs/performance.md)
        _rank_pass(p.x, N, C, S, p.target, p.ignore_index, ranks)
        ranks = None
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
        ranks,
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
    return_metrics: str | Sequence[str] | None = None,
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
    return_metrics: str | Sequence[str] | None = None,
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


_PAIR_ARGS = operator.itemgetter("reduction", "return_grad", "grad_output", "grad_out")


def _gradient_scale(reduction, go, n):
    """(per-element multipliers or None, uniform multiplier) of the kernels' gradient for a
    loss of n terms: "mean"'s 1/n, or the upstream gradient (an array for "none")."""
    if reduction == "mean":
        return None, (go / n if n else _NAN)
    if isinstance(go, np.ndarray):
        return go.reshape(-1), 1.0
    return None, go


def _reduced(reduction, total, rows, n):
    """The loss from the kernels' total of n terms, or their per-term array for "none"."""
    if reduction == "none":
        return rows
    if reduction == "sum":
        return total
    return total / n if n else _NAN


def _sum_to(g, shape):
    """g (the broadcast shape) summed back to `shape` (the adjoint of broadcasting), in float64
    then cast back: the gradient of an input that was broadcast."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    return np.sum(g, axis=axes, dtype=np.float64).reshape(shape).astype(g.dtype)


def _pair(name, args):
    """Losses with two differentiable inputs among three arrays (margin_ranking_loss,
    gaussian_nll_loss): one fused pass writes both gradients.  The row's `arrays` feed the
    kernel's x, t and w streams; `differentiable` names the two gradients returned, in
    argument order, as (loss, (grad_1, grad_2))."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    reduction, return_grad, grad_output, grad_out = _PAIR_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    a_name, b_name, c_name = spec.arrays
    a = V.as_float_array(args[a_name], a_name)
    b = V.as_float_array(args[b_name], b_name)
    c = spec.array_check(args[c_name], a.shape, c_name)
    dt = np.result_type(a.dtype, b.dtype)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape, c.shape)
    except ValueError:
        raise ValueError(
            f"{a_name} {a.shape}, {b_name} {b.shape} and {c_name} {np.shape(args[c_name])} "
            "do not broadcast together"
        ) from None
    given = {a_name: a, b_name: b, c_name: c}
    # each gradient is shaped like its argument as given (var: also a Python number's 0-d)
    grad_shapes = [
        np.shape(args[n]) if n == c_name else given[n].shape for n in spec.differentiable
    ]
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    go = V.elementwise_grad_output(grad_output, reduction, shape, dt)
    outs = _pair_grad_out(grad_out, return_grad, grad_shapes, dt, spec.differentiable)
    n = int(np.prod(shape))

    if _config.get_backend() == "reference":
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        loss, grads = spec.reference(
            a,
            b,
            args[c_name] if isinstance(args[c_name], (int, float)) else c,
            reduction=reduction,
            grad_output=go_ref,
            need_grad=return_grad,
            **params,
        )
    else:
        K = _config._kernels
        x = V.kernel_ready(np.broadcast_to(a, shape), dt)
        t = V.kernel_ready(np.broadcast_to(b, shape), dt)
        w, wp = V.periodic_weight(c, shape, dt, c_name)
        # the kernel writes straight into the result buffers when they have the full shape
        g1, g2 = [_full_or_temp(o, shape, dt) for o in outs] if return_grad else (None, None)
        rows, scale = _gradient_scale(reduction, go, n)
        p1_name, p2_name = spec.kernel_args
        loss_rows = V.empty(shape, dt) if reduction == "none" else None
        total, bad = 0.0, False
        if n:
            total, bad = K.elementwise(
                K.ELEMENTWISE_OPS[spec.kernel],
                x,
                t,
                w,
                wp,
                None,
                0,
                params[p1_name] if p1_name else 0.0,
                params[p2_name] if p2_name else 0.0,
                g1,
                rows,
                scale,
                loss_rows,
                _config._state["threads"],
                g2,
            )
        if bad:
            raise ValueError(f"{c_name} has negative entries")
        loss = _reduced(reduction, total, loss_rows, n)
        grads = None
        if return_grad:
            second = {b_name: b.shape, c_name: c.shape}[spec.differentiable[1]]
            grads = (_sum_to(g1, a.shape), _sum_to(g2, second))
    if not return_grad:
        return _finish(reduction, dt, shape, loss, None, False)
    for out, g, gshape in zip(outs, grads, grad_shapes):
        if g is not out:
            np.copyto(out, np.reshape(g, gshape), casting="unsafe")
    return _finish(reduction, dt, shape, loss, tuple(outs), True)


def _full_or_temp(out, shape, dtype):
    """The gradient buffer the kernel writes: the result buffer itself when it has the
    broadcast shape, else a temporary that is summed into it afterwards."""
    return out if out.shape == tuple(shape) else V.empty(shape, dtype)


def _pair_grad_out(grad_out, return_grad, shapes, dtype, names):
    """The gradient buffers, one per differentiable argument: new ones, or the caller's tuple
    (each C-contiguous, of its argument's shape and the working dtype)."""
    if grad_out is None:
        return [V.empty(s, dtype) for s in shapes] if return_grad else None
    if not return_grad:
        raise ValueError("grad_out needs return_grad=True")
    k = len(names)
    if not isinstance(grad_out, (tuple, list)) or len(grad_out) != k:
        raise TypeError(
            f"grad_out must be a tuple of {k} arrays (the gradients of {', '.join(names)}), "
            f"got {type(grad_out).__name__}"
        )
    for buf, s, nm in zip(grad_out, shapes, names):
        if not (
            isinstance(buf, np.ndarray)
            and buf.shape == tuple(s)
            and buf.dtype == dtype
            and buf.flags.c_contiguous
            and buf.flags.writeable
        ):
            raise ValueError(
                f"grad_out for {nm} must be a writeable C-contiguous {dtype} array of shape "
                f"{tuple(s)}"
            )
    return list(grad_out)


def _embedding(name, args):
    """Losses on rows of D features, (N, D) or unbatched (D,): cosine_embedding_loss,
    triplet_margin_loss(_with_distance).  The feature arrays (the row's `differentiable`)
    broadcast together (torch: same number of dimensions, 1 or 2); a per-row target has their
    shape without the feature axis.  One fused pass per row writes every gradient."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    reduction, return_grad, grad_output, grad_out = _PAIR_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    feats = [V.as_float_array(args[n], n) for n in spec.differentiable]
    ndims = {f.ndim for f in feats}
    if len(ndims) != 1 or not ndims <= {1, 2}:
        raise ValueError(
            f"{name}: {', '.join(spec.differentiable)} must all be 1-d (D,) or all 2-d (N, D), "
            f"got shapes {', '.join(str(f.shape) for f in feats)}"
        )
    try:
        shape = np.broadcast_shapes(*(f.shape for f in feats))
    except ValueError:
        raise ValueError(
            f"{name}: shapes {', '.join(str(f.shape) for f in feats)} do not broadcast"
        ) from None
    dt = np.result_type(*feats)
    loss_shape = shape[:-1]
    target_names = [n for n in spec.arrays if n not in spec.differentiable]
    target = None
    if target_names:
        (t_name,) = target_names
        target = V.as_float_array(args[t_name], t_name)
        if target.shape != loss_shape:
            raise ValueError(
                f"{name}: {t_name} must have shape {loss_shape} (one per row of the inputs "
                f"{shape}), got {target.shape}"
            )
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    go = V.elementwise_grad_output(grad_output, reduction, loss_shape, dt)
    outs = _pair_grad_out(grad_out, return_grad, [f.shape for f in feats], dt, spec.differentiable)
    N, D = (int(np.prod(loss_shape)) if loss_shape else 1), shape[-1]
    # rows of no features have nothing to read: their (constant) losses from the reference
    if (
        _config.get_backend() == "reference"
        or (spec.kernel_if is not None and not spec.kernel_if(params))
        or (D == 0 and N)
    ):
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        feature = dict(zip(spec.differentiable, feats))
        arrays = [feature.get(n, target) for n in spec.arrays]
        loss, grads = spec.reference(
            *arrays, reduction=reduction, grad_output=go_ref, need_grad=return_grad, **params
        )
    else:
        K = _config._kernels
        full = [V.kernel_ready(np.broadcast_to(f, shape), dt) for f in feats]
        grads_full = (
            [_full_or_temp(o, shape, dt) for o in outs] + [None] if return_grad else [None] * 3
        )
        slots = dict(spec.kernel_constants)
        for slot, pname in zip(("p1", "p2", "p3", "flags"), spec.kernel_args):
            if pname is not None:
                slots[slot] = params[pname]
        rows, scale = _gradient_scale(reduction, go, N)
        loss_rows = V.empty(loss_shape, dt) if reduction == "none" else None
        total = 0.0
        if N:
            total = K.embedding(
                K.EMBEDDING_OPS[spec.kernel],
                full[0],
                full[1],
                full[2] if len(full) > 2 else None,
                None if target is None else V.kernel_ready(target, dt),
                N,
                D,
                float(slots.get("p1", 0.0)),
                float(slots.get("p2", 0.0)),
                float(slots.get("p3", 0.0)),
                int(bool(slots.get("flags", 0))),
                grads_full[0],
                grads_full[1],
                grads_full[2] if len(full) > 2 else None,
                rows,
                scale,
                loss_rows,
                _config._state["threads"],
            )
        loss = _reduced(reduction, total, loss_rows, N)
        grads = None
        if return_grad:
            grads = tuple(_sum_to(g, f.shape) for g, f in zip(grads_full, feats))
    if not return_grad:
        return _finish(reduction, dt, loss_shape, loss, None, False)
    for out, g in zip(outs, grads):
        if g is not out:
            np.copyto(out, g, casting="unsafe")
    return _finish(reduction, dt, loss_shape, loss, tuple(outs), True)


def _margin_target(spec, target, x):
    """The target of a margin-family loss: int64 class indices, one per row (target domain
    "class") or index lists of the input's shape ("multilabel"), else values of the input's
    shape and working dtype."""
    if spec.target_domain not in ("class", "multilabel"):
        return V.same_shape_target(target, x)
    t = target if type(target) is np.ndarray else V.as_array(target, "target")
    shape = x.shape[:-1] if spec.target_domain == "class" else x.shape
    if t.dtype.kind not in "iu":
        raise TypeError(f"{spec.name}: target must hold integer class indices, got {t.dtype}")
    if t.shape != shape:
        raise ValueError(f"{spec.name}: target must have shape {shape}, got {t.shape}")
    if t.dtype.kind == "u" and t.size and t.max() > np.iinfo(np.int64).max:
        raise IndexError(f"target value {t.max()} is out of range [0, {x.shape[-1]})")
    return V.kernel_ready(t, np.dtype(np.int64))


def _margin_rows(name, args):
    """The classification margin losses on rows of C classes, (N, C) or unbatched (C,):
    multi_margin_loss, multilabel_margin_loss, multilabel_soft_margin_loss.  One row kernel
    of the embedding list per loss; a class index out of range makes its sum NaN, and the
    reference's check then raises torch's IndexError."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    input, target, reduction, return_grad, grad_output, grad_out = _ELEMENTWISE_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    x = V.as_float_array(input, "input")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name}: input must be (N, C) or unbatched (C,), got shape {x.shape}")
    t = _margin_target(spec, target, x)
    loss_shape, C = x.shape[:-1], x.shape[-1]
    weight = V.class_weight(args["weight"], C, x.dtype) if spec.weight_names else None
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    go = V.elementwise_grad_output(grad_output, reduction, loss_shape, x.dtype)
    grad = V.grad_buffer(grad_out, x, return_grad)
    if grad is not None:
        V.check_no_overlap(grad, "grad_out", ("target", t), ("weight", weight))
    N = int(np.prod(loss_shape))
    # rows of no classes have nothing to read: their losses (0 / 0) from the reference
    if _config.get_backend() == "reference" or (C == 0 and N):
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        w = {} if weight is None else {"weight": weight.astype(np.float64)}
        loss, grads = spec.reference(
            x, t, reduction=reduction, grad_output=go_ref, need_grad=return_grad, **w, **params
        )
        if grad is not None:
            np.copyto(grad, grads, casting="unsafe")
        return _finish(reduction, x.dtype, loss_shape, loss, grad, return_grad)
    K = _config._kernels
    slots = {slot: params[p] for slot, p in zip(("p1", "p2"), spec.kernel_args) if p}
    rows, scale = _gradient_scale(reduction, go, N)
    loss_rows = V.empty(loss_shape, x.dtype) if reduction == "none" else None
    total = 0.0
    if N:
        index = spec.target_domain in ("class", "multilabel")
        total = K.embedding(
            K.EMBEDDING_OPS[spec.kernel],
            x,
            None,
            None,
            None if index else t,
            N,
            C,
            float(slots.get("p1", 0.0)),
            float(slots.get("p2", 0.0)),
            0.0,
            0,
            grad,
            None,
            None,
            rows,
            scale,
            loss_rows,
            _config._state["threads"],
            t if index else None,
            weight,
        )
        if total != total and index:  # NaN: a class index out of range, or NaN input
            NN._check_index(t, 0 if spec.target_domain == "class" else -1, C)
    loss = _reduced(reduction, total, loss_rows, N)
    return _finish(reduction, x.dtype, loss_shape, loss, grad, return_grad)


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


def margin_ranking_loss(
    input1: ArrayLike,
    input2: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairResult:
    """torch's F.margin_ranking_loss: max(0, margin - y (input1 - input2))."""
    return _pair("margin_ranking_loss", locals())


def gaussian_nll_loss(
    input: ArrayLike,
    target: ArrayLike,
    var: ArrayLike | float,
    *,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairResult:
    """torch's F.gaussian_nll_loss: (log v + (input - target)^2 / v) / 2, v = max(var, eps)."""
    return _pair("gaussian_nll_loss", locals())


def cosine_embedding_loss(
    input1: ArrayLike,
    input2: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 0.0,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairResult:
    """torch's F.cosine_embedding_loss: 1 - cos (y = 1), max(0, cos - margin) (y = -1)."""
    return _embedding("cosine_embedding_loss", locals())


def triplet_margin_loss(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TripletResult:
    """torch's F.triplet_margin_loss: max(0, margin + d(a, p) - d(a, n)), d the p-norm."""
    return _embedding("triplet_margin_loss", locals())


def triplet_margin_with_distance_loss(
    anchor: ArrayLike,
    positive: ArrayLike,
    negative: ArrayLike,
    *,
    distance_function: str | Callable | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TripletResult:
    """torch's F.triplet_margin_with_distance_loss (default distance: euclidean)."""
    return _embedding("triplet_margin_with_distance_loss", locals())


# ------------------------------------------------------------------ metrics
# error_rate / accuracy / entropy (registry family "metric"): one pass of a row op of
# src/kernels/row_stats-inl.h (fastloss._kernels.row_op), or the twin in reference/_metrics.py

__all__ += ["error_rate", "accuracy", "entropy", "ctc_loss", "linear_cross_entropy"]

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
    _rank_pass(x, N, C, S, t, ignore_index, ranks)
    return ranks.reshape(np.shape(target))


def multi_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    p: int = 1,
    margin: float = 1.0,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.multi_margin_loss: (1/C) sum_{i != y} w[y] max(0, margin - x_y + x_i)^p."""
    return _margin_rows("multi_margin_loss", locals())


def multilabel_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.multilabel_margin_loss: target rows list class indices up to the first -1."""
    return _margin_rows("multilabel_margin_loss", locals())


def multilabel_soft_margin_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.multilabel_soft_margin_loss: BCE with logits averaged over the classes."""
    return _margin_rows("multilabel_soft_margin_loss", locals())


# ------------------------------------------------------------------ box regression losses
# iou_loss ... focal_eiou_loss (registry family "box"): matched box pairs, (N, 4) or (4,), one
# fused pass of a box kernel of src/kernels/boxes-inl.h (fastloss._kernels.EMBEDDING_OPS), or
# the twin in reference/_boxes.py

__all__ += [
    "iou_loss",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "efficient_iou_loss",
    "focal_eiou_loss",
    "focal_l1_loss",
]

#: with return_grad=True ``(loss, grad_boxes1)``, and with grad_boxes2=True too
#: ``(loss, (grad_boxes1, grad_boxes2))``
BoxResult = Union[
    np.floating,
    np.ndarray,
    tuple[Union[np.floating, np.ndarray], np.ndarray],
    tuple[Union[np.floating, np.ndarray], tuple[np.ndarray, np.ndarray]],
]
BoxFormat = Literal["xyxy", "cxcywh"]
_BOX_ARGS = operator.itemgetter(
    "boxes1",
    "boxes2",
    "weight",
    "reduction",
    "return_grad",
    "grad_boxes2",
    "grad_output",
    "grad_out",
)


def _box_array(value, name, loss_name):
    b = V.as_float_array(value, name)
    if b.ndim not in (1, 2) or b.shape[-1] != 4:
        raise ValueError(f"{loss_name}: {name} must have shape (N, 4) or (4,), got {b.shape}")
    return b


def _check_boxes(b, name, fmt):
    """validate=True: every box finite with a positive width and height (x2 > x1, y2 > y1)."""
    flat = b.reshape(-1, 4)
    if fmt == "xyxy":
        w, h = flat[:, 2] - flat[:, 0], flat[:, 3] - flat[:, 1]
    else:
        w, h = flat[:, 2], flat[:, 3]
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(flat).all(axis=1) & (w > 0) & (h > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "x1 < x2 and y1 < y2" if fmt == "xyxy" else "w > 0 and h > 0"
        where = f"box {i}" if b.ndim == 2 else "the box"
        raise ValueError(
            f"{name}: {where} {flat[i].tolist()} is degenerate or not finite (validate=True "
            f"needs finite boxes with {what}; {int(bad.sum())} such box(es))"
        )


def _box_grad_out(grad_out, return_grad, grad2, arrays, dtype):
    """The gradient buffers: [boxes1's] or [boxes1's, boxes2's]; the caller's may be its own
    box array (in place: each block of boxes is read before its gradient is written), never
    a part of another array."""
    names = ("boxes1", "boxes2")
    if not grad2:
        if grad_out is not None and not return_grad:
            raise ValueError("grad_out is only used with return_grad=True")
        if not return_grad:
            return None
        g = V.grad_buffer(grad_out, arrays[0], True)
        outs = [g]
    else:
        outs = _pair_grad_out(grad_out, True, [a.shape for a in arrays[:2]], dtype, names)
    for k, out in enumerate(outs):
        for name, other in zip(names + ("weight",), arrays):
            same = other is not None and k < 2 and name == names[k]
            if same and out.__array_interface__["data"][0] == other.__array_interface__["data"][0]:
                continue
            V.check_no_overlap(out, "grad_out", (name, other))
    return outs


def _boxes(name, args):
    """The box losses: validation, the kernel's flags and slots, both backends."""
    spec = LOSSES[name]
    params = spec.check_params(args)
    b1, b2, weight, reduction, return_grad, grad2, grad_output, grad_out = _BOX_ARGS(args)
    V.check_reduction(reduction, spec.reductions)
    a = _box_array(b1, "boxes1", name)
    b = _box_array(b2, "boxes2", name)
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: boxes1 and boxes2 must have the same shape, got {a.shape} and {b.shape}"
        )
    dt = np.result_type(a.dtype, b.dtype)
    a, b = V.kernel_ready(a, dt), V.kernel_ready(b, dt)
    loss_shape = a.shape[:-1]
    N = loss_shape[0] if loss_shape else 1
    w = None
    if weight is not None:
        w = V.as_float_array(weight, "weight")
        try:
            w = V.kernel_ready(np.broadcast_to(w, loss_shape).reshape(-1), dt)
        except ValueError:
            raise ValueError(
                f"{name}: weight must broadcast to one value per box {loss_shape}, got "
                f"shape {w.shape}"
            ) from None
    fmt = params["fmt"]
    if params["validate"]:
        _check_boxes(a, "boxes1", fmt)
        _check_boxes(b, "boxes2", fmt)
    grad2 = bool(grad2)
    if grad2 and not return_grad:
        raise ValueError("grad_boxes2=True needs return_grad=True")
    if grad_output is not None and not return_grad:
        _raise_grad_output_unused()
    go = V.elementwise_grad_output(grad_output, reduction, loss_shape, dt)
    outs = _box_grad_out(grad_out, return_grad, grad2, (a, b, w), dt)

    if _config.get_backend() == "reference" or not N:
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        options = {k: v for k, v in params.items() if k != "validate"}
        loss, grads = spec.reference(
            a,
            b,
            reduction=reduction,
            grad_output=go_ref,
            need_grad=return_grad,
            weight=w,
            **options,
        )
        if return_grad:
            for out, g in zip(outs, grads):
                np.copyto(out, g, casting="unsafe")
    else:
        K = _config._kernels
        F = K.BOX_FLAGS
        flags = (F["cxcywh"] if fmt == "cxcywh" else 0) | (F["grad2"] if grad2 else 0)
        eps = params["eps"]
        p1, p3 = eps, eps
        if name == "complete_box_iou_loss":  # torchvision: its IoU and diagonal use 1e-7
            p1 = _BOXES.TORCHVISION_DIOU_EPS
            flags |= {"torchvision": 0, "mmdet": F["alpha_mmdet"], "yolo": F["alpha_yolo"]}[
                params["ciou_alpha"]
            ]
        gamma = params.get("gamma", 0.0)
        if not params.get("detach_weight", True):
            flags |= F["undetached"]
        rows, scale = _gradient_scale(reduction, go, N)
        loss_rows = V.empty(loss_shape, dt) if reduction == "none" else None
        total = K.embedding(
            K.EMBEDDING_OPS[spec.kernel],
            a,
            b,
            None,
            None,
            N,
            4,
            float(p1),
            float(gamma),
            float(p3),
            flags,
            outs[0] if return_grad else None,
            outs[1] if grad2 else None,
            None,
            rows,
            scale,
            loss_rows,
            _config._state["threads"],
            None,
            w,
        )
        loss = _reduced(reduction, total, loss_rows, N)
    if not return_grad:
        return _finish(reduction, dt, loss_shape, loss, None, False)
    return _finish(reduction, dt, loss_shape, loss, tuple(outs) if grad2 else outs[0], True)


def iou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """IoU loss of matched boxes, 1 - IoU with IoU = I / (U + eps) (torchvision's IoU)."""
    return _boxes("iou_loss", locals())


def generalized_box_iou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """torchvision.ops.generalized_box_iou_loss: 1 - IoU + (C - U) / (C + eps)."""
    return _boxes("generalized_box_iou_loss", locals())


def distance_box_iou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """torchvision.ops.distance_box_iou_loss: 1 - IoU + rho^2 / (cw^2 + ch^2 + eps)."""
    return _boxes("distance_box_iou_loss", locals())


def complete_box_iou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    ciou_alpha: Literal["torchvision", "mmdet", "yolo"] = "torchvision",
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """torchvision.ops.complete_box_iou_loss: the DIoU loss plus alpha v (alpha detached)."""
    return _boxes("complete_box_iou_loss", locals())


def efficient_iou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """EIoU loss (Zhang et al.): the DIoU loss plus the width and height differences."""
    return _boxes("efficient_iou_loss", locals())


def focal_eiou_loss(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    gamma: float = 0.5,
    detach_weight: bool = True,
    fmt: BoxFormat = "xyxy",
    weight: ArrayLike | None = None,
    validate: bool = False,
    return_grad: bool = False,
    grad_boxes2: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
) -> BoxResult:
    """Focal-EIoU loss (Zhang et al.): IoU^gamma * EIoU, the weight detached by default."""
    return _boxes("focal_eiou_loss", locals())


def focal_l1_loss(
    input: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 1.0,
    beta: float = 0.36787944117144233,
    reduction: Reduction = "mean",
    return_grad: bool = False,
    grad_output: GradOutput = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """Focal L1 loss (Zhang et al.) of x = |input - target|: -alpha x^2 (2 ln(beta x) - 1) / 4
    up to x = 1, then linear with the slope -alpha ln(beta) (defaults: alpha ln(beta) = -1)."""
    return _elementwise("focal_l1_loss", locals())


from ._ctc import ctc_loss  # noqa: E402 (imports LOSSES, as this module does)
from ._linear_ce import linear_cross_entropy  # noqa: E402 (imports LOSSES, as _ctc)
