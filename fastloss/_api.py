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


def _finish(p, loss, grad, return_grad):
    """Shape/dtype the results: NumPy scalar for mean/sum, array shaped like the loss for none."""
    dt = p.x.dtype.type
    if p.reduction == "none":
        loss = np.asarray(loss, dtype=p.x.dtype).reshape(p.loss_shape)
    else:
        loss = dt(loss)
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
        return _finish(p, loss, grad, return_grad)

    K = _config._kernels
    nt = _config._state["threads"]
    is_f64 = p.x.dtype == np.float64
    if p.target is not None:
        norm, bad = K.check_targets(p.target, C, p.ignore_index, p.weight, is_f64, nt)
        if bad >= 0:
            _raise_bad_target(p, bad)
    else:
        norm = float(N * S)
    rows = None
    if reduction == "mean":
        scale = go / norm if norm != 0 else _NAN
    elif isinstance(go, np.ndarray):
        rows, scale = go, 1.0
    else:
        scale = go
    loss_rows = np.empty(p.loss_shape, dtype=p.x.dtype) if reduction == "none" else None
    weight_sum = float(C) if p.weight is None else float(p.weight.sum(dtype=np.float64))
    total = K.cross_entropy(p.x, N, C, S, p.target, p.target_prob, p.weight, weight_sum,
                            p.ignore_index, smoothing, kind == "focal_loss", gamma, grad, rows,
                            scale, loss_rows, nt, kind == "nll_loss")
    if reduction == "none":
        loss = loss_rows
    elif reduction == "mean":
        loss = total / norm if norm != 0 else _NAN
    else:
        loss = total
    return _finish(p, loss, grad, return_grad)


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
    out = np.empty(out_shape, dtype=x.dtype)
    if C == 0:
        out.fill(-np.inf)  # only reachable for logsumexp: the log of an empty sum
        return out
    if x.size:
        K = _config._kernels
        code = {"log_softmax": K.LOG_SOFTMAX, "softmax": K.SOFTMAX, "logsumexp": K.LOGSUMEXP}[op]
        K.softmax(x, outer, C, inner, out, code, _config._state["threads"])
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
