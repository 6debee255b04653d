"""Public loss functions.

Each function validates its arguments once (fastloss._validate), then runs either the
compiled kernels (fastloss._kernels, one fused pass) or the NumPy reference twin
(fastloss.reference._math), as selected by fastloss.set_backend / use_backend /
FASTLOSS_BACKEND.  Both backends see the same canonical arrays and return the same things.
"""
import numpy as np

from . import _config
from . import _validate as V
from .reference import _math as M

__all__ = ["cross_entropy", "nll_loss", "focal_loss", "log_softmax", "softmax", "logsumexp"]

_NAN = float("nan")


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
    raise IndexError(f"target {value} at position {tuple(int(i) for i in where)} is out of "
                     f"range [0, {p.C}) and is not ignore_index ({p.ignore_index})")


def _finish(reduction, dtype, loss_shape, loss, grad, return_grad):
    """Shape/dtype the results: NumPy scalar for mean/sum, array shaped like the loss for none."""
    if reduction == "none":
        loss = np.asarray(loss, dtype=dtype).reshape(loss_shape)
    else:
        loss = dtype.type(loss)
    return (loss, grad) if return_grad else loss


def _class_loss(kind, input, target, weight, ignore_index, reduction, return_grad, grad_output,
                grad_out, smoothing=0.0, gamma=0.0):
    """cross_entropy / focal_loss / nll_loss share validation, normaliser and both backends."""
    p = V.class_problem(input, target, weight, ignore_index, reduction,
                        allow_prob=(kind == "cross_entropy"))
    go = V.grad_output_for(grad_output, reduction, p.loss_shape)
    grad = V.grad_buffer(grad_out, p.x, return_grad)
    if grad is not None and p.target_prob is not None:
        V.check_no_overlap(grad, "grad_out", ("target", p.target_prob))
    N, C, S = p.N, p.C, p.S

    if _config.get_backend() == "reference":
        if p.target is not None:
            _reference_targets_check(p)
        x3 = p.x.reshape(N, C, S)
        t = p.target.reshape(N, S) if p.target is not None else p.target_prob.reshape(N, C, S)
        w = None if p.weight is None else p.weight.astype(np.float64)
        go_ref = go.reshape(N, S) if isinstance(go, np.ndarray) else go
        if kind == "cross_entropy":
            loss, g = M.cross_entropy(x3, t, w, p.ignore_index, smoothing, reduction, go_ref,
                                      return_grad)
        elif kind == "focal_loss":
            loss, g = M.focal_loss(x3, t, gamma, w, p.ignore_index, reduction, go_ref, return_grad)
        else:
            loss, g = M.nll_loss(x3, t, w, p.ignore_index, reduction, go_ref, return_grad)
        if grad is not None:
            np.copyto(grad, g.reshape(p.in_shape), casting="unsafe")
        return _finish(reduction, p.x.dtype, p.loss_shape, loss, grad, return_grad)

    K = _config._kernels
    loss_rows = V.empty(p.loss_shape, p.x.dtype) if reduction == "none" else None
    loss, bad = K.class_loss(K.CLASS_OPS[kind.removesuffix("_loss")], p.x, N, C, S, p.target, p.target_prob,
                             p.weight, p.ignore_index, smoothing, gamma,
                             K.REDUCTIONS[reduction], go, grad, loss_rows,
                             _config._state["threads"])
    if bad >= 0:
        _raise_bad_target(p, bad)
    return _finish(reduction, p.x.dtype, p.loss_shape, loss_rows if loss is None else loss, grad,
                   return_grad)


def cross_entropy(input, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean", return_grad=False, grad_output=None, grad_out=None):
    """Softmax cross entropy from logits, as torch.nn.functional.cross_entropy.

    input: (N, C), (N, C, d1, ..., dk) or unbatched (C,) logits.  target: class indices of
    shape (N, d1, ..., dk) (any integer dtype) or class probabilities shaped like input.
    return_grad=True returns (loss, d loss / d input) from one fused pass; grad_output scales
    the gradient; grad_out is a preallocated gradient buffer (may be `input` for in place).
    """
    smoothing = V.check_nonneg(label_smoothing, "label_smoothing")
    if smoothing > 1:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    return _class_loss("cross_entropy", input, target, weight, ignore_index, reduction,
                       return_grad, grad_output, grad_out, smoothing=smoothing)


def nll_loss(input, target, *, weight=None, ignore_index=-100, reduction="mean",
             return_grad=False, grad_output=None, grad_out=None):
    """Negative log-likelihood on log-probabilities, as torch.nn.functional.nll_loss."""
    return _class_loss("nll_loss", input, target, weight, ignore_index, reduction, return_grad,
                       grad_output, grad_out)


def focal_loss(input, target, *, gamma=2.0, weight=None, ignore_index=-100, reduction="mean",
               return_grad=False, grad_output=None, grad_out=None):
    """Multi-class softmax focal loss: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by the sum of w[y] over non-ignored samples, like cross_entropy, so
    gamma=0 reproduces cross_entropy.  Finite for every gamma >= 0 at saturated logits."""
    gamma = V.check_nonneg(gamma, "gamma")
    return _class_loss("focal_loss", input, target, weight, ignore_index, reduction,
                       return_grad, grad_output, grad_out, gamma=gamma)


def _softmax_family(op, x, axis):
    x, ax, outer, C, inner = V.axis_problem(x, axis)
    out_shape = x.shape[:ax] + x.shape[ax + 1:] if op == "logsumexp" else x.shape
    if _config.get_backend() == "reference":
        out = getattr(M, op)(x.reshape(outer, C, inner))
        return np.asarray(out, dtype=x.dtype).reshape(out_shape)
    out = V.empty(out_shape, x.dtype)
    if C == 0:
        out.fill(-np.inf)  # only reachable for logsumexp: the log of an empty sum
        return out
    if x.size:
        K = _config._kernels
        K.softmax(x, outer, C, inner, out, K.SOFTMAX_OPS[op], _config._state["threads"])
    return out


def log_softmax(x, axis=-1):
    """log(softmax(x)) along `axis`, max-shifted, one fused pass (no transposing copy)."""
    return _softmax_family("log_softmax", x, axis)


def softmax(x, axis=-1):
    """softmax(x) along `axis`, max-shifted, one fused pass."""
    return _softmax_family("softmax", x, axis)


def logsumexp(x, axis=-1):
    """log(sum(exp(x))) along `axis`, max-shifted; -inf for an all -inf (or empty) slice."""
    return _softmax_family("logsumexp", x, axis)


# ------------------------------------------------------------------ elementwise losses

def _elementwise(name, input, target, reduction, return_grad, grad_output, grad_out, *,
                 weight=None, pos_weight=None, p1=0.0, p2=0.0, reductions=V._REDUCTIONS):
    V.check_reduction(reduction, reductions)
    x = V.as_float_array(input, "input")
    t = V.same_shape_target(target, x)
    w, wp = V.periodic_weight(weight, x.shape, x.dtype, "weight")
    pw, pwp = V.periodic_weight(pos_weight, x.shape, x.dtype, "pos_weight")
    go = V.elementwise_grad_output(grad_output, reduction, x.shape, x.dtype)
    grad = V.grad_buffer(grad_out, x, return_grad)
    if grad is not None:
        V.check_no_overlap(grad, "grad_out", ("target", t), ("weight", w), ("pos_weight", pw))
    n = x.size
    if reduction == "batchmean":
        denom = x.shape[0] if x.ndim else 1
    else:
        denom = n
    op = "kl_div_log_target" if name == "kl_div" and p1 else name

    if _config.get_backend() == "reference":
        if name == "binary_cross_entropy" and n and not ((x >= 0) & (x <= 1)).all():
            _raise_bce_domain()
        def full(a):  # the periodic weight of the kernels, materialised (np.resize repeats)
            return None if a is None else np.resize(a.astype(np.float64), x.shape)
        go_ref = go if not isinstance(go, np.ndarray) else go.astype(np.float64)
        fn = getattr(M, name)
        if name == "binary_cross_entropy_with_logits":
            loss, g = fn(x, t, full(w), full(pw), reduction, go_ref, return_grad)
        elif name == "binary_cross_entropy":
            loss, g = fn(x, t, full(w), reduction, go_ref, return_grad)
        elif name == "sigmoid_focal_loss":
            loss, g = fn(x, t, p1, p2, reduction, go_ref, return_grad)
        elif name in ("smooth_l1_loss", "huber_loss"):
            loss, g = fn(x, t, p1, reduction, go_ref, return_grad)
        elif name == "kl_div":
            loss, g = fn(x, t, reduction, bool(p1), go_ref, return_grad)
        else:
            loss, g = fn(x, t, reduction, go_ref, return_grad)
        if grad is not None:
            np.copyto(grad, g, casting="unsafe")
    else:
        K = _config._kernels
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
            kernel = {"binary_cross_entropy_with_logits": "bce_logits",
                      "sigmoid_focal_loss": "sigmoid_focal", "binary_cross_entropy": "bce",
                      "mse_loss": "mse", "l1_loss": "l1", "smooth_l1_loss": "smooth_l1",
                      "huber_loss": "huber"}.get(op, op)  # kl_div, kl_div_log_target
            total, bad = K.elementwise(K.ELEMENTWISE_OPS[kernel], x, t, w, wp, pw, pwp, p1, p2, grad,
                                       rows, scale, loss_rows, _config._state["threads"])
        if bad:
            _raise_bce_domain()
        if reduction == "none":
            loss = loss_rows
        elif reduction == "sum":
            loss = total
        else:
            loss = total / denom if denom else _NAN
    return _finish(reduction, x.dtype, x.shape, loss, grad, return_grad)


def _raise_bce_domain():
    raise ValueError("binary_cross_entropy: every element of input must be a probability in "
                     "[0, 1] (found a value outside it, or NaN)")


def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, reduction="none",
                       return_grad=False, grad_output=None, grad_out=None):
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017) from logits, one fused pass.

    loss = alpha_t (1 - p_t)^gamma BCE-with-logits(input, target); alpha < 0 disables alpha_t.
    Soft targets in [0, 1] work.  Values and gradients stay finite for every gamma >= 0 at
    saturated logits."""
    gamma = V.check_nonneg(gamma, "gamma")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"alpha must be a real number, got {alpha!r}") from None
    return _elementwise("sigmoid_focal_loss", input, target, reduction, return_grad,
                        grad_output, grad_out, p1=alpha, p2=gamma)


def binary_cross_entropy(input, target, *, weight=None, reduction="mean", return_grad=False,
                         grad_output=None, grad_out=None):
    """torch's F.binary_cross_entropy on probabilities (each log clamped at -100 like torch)."""
    return _elementwise("binary_cross_entropy", input, target, reduction, return_grad,
                        grad_output, grad_out, weight=weight)


def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, grad_output=None,
                                     grad_out=None):
    """torch's F.binary_cross_entropy_with_logits; pos_weight broadcasts along the last axis.

    Exact at +-inf logits: loss 0 and gradient 0 where the target agrees (torch gives NaN)."""
    return _elementwise("binary_cross_entropy_with_logits", input, target, reduction,
                        return_grad, grad_output, grad_out, weight=weight, pos_weight=pos_weight)


def mse_loss(input, target, *, reduction="mean", return_grad=False, grad_output=None,
             grad_out=None):
    """Mean squared error, torch's F.mse_loss."""
    return _elementwise("mse_loss", input, target, reduction, return_grad, grad_output, grad_out)


def l1_loss(input, target, *, reduction="mean", return_grad=False, grad_output=None,
            grad_out=None):
    """Absolute error, torch's F.l1_loss (subgradient 0 at 0)."""
    return _elementwise("l1_loss", input, target, reduction, return_grad, grad_output, grad_out)


def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean", return_grad=False,
                   grad_output=None, grad_out=None):
    """torch's F.smooth_l1_loss: 0.5 d^2 / beta where |d| < beta, else |d| - beta/2 (beta=0: L1)."""
    beta = V.check_nonneg(beta, "beta")
    return _elementwise("smooth_l1_loss", input, target, reduction, return_grad, grad_output,
                        grad_out, p1=beta)


def huber_loss(input, target, *, delta=1.0, reduction="mean", return_grad=False,
               grad_output=None, grad_out=None):
    """torch's F.huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - delta/2)."""
    delta = V.check_nonneg(delta, "delta")
    if delta == 0:
        raise ValueError("delta must be > 0, got 0")
    return _elementwise("huber_loss", input, target, reduction, return_grad, grad_output,
                        grad_out, p1=delta)


def kl_div(input, target, *, reduction="mean", log_target=False, return_grad=False,
           grad_output=None, grad_out=None):
    """torch's F.kl_div: input is log-probabilities; 0 log 0 = 0; reduction may be "batchmean"."""
    return _elementwise("kl_div", input, target, reduction, return_grad, grad_output, grad_out,
                        p1=1.0 if log_target else 0.0,
                        reductions=("none", "mean", "sum", "batchmean"))


__all__ += ["sigmoid_focal_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
            "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div"]
