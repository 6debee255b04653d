"""Pure-NumPy float64 reference math ("oracle") for every fastloss loss.

The functions here receive arguments that have ALREADY been validated and put into canonical
form by the caller:

* class losses (``cross_entropy``, ``nll_loss``, ``focal_loss``) get ``x`` of shape ``(N, C, S)``
  (``S = 1`` for a plain ``(N, C)`` input, ``S = d1 * ... * dk`` otherwise), index targets of
  shape ``(N, S)`` and class weights of shape ``(C,)`` or None;
* elementwise losses get ``x`` and ``target`` of one common (possibly 0-d or empty) shape, and
  ``weight`` / ``pos_weight`` already broadcast to that shape (or None).

Everything is computed in float64 with plain, vectorised NumPy, written for clarity: this module
is the yardstick the fast kernels are tested against. Every loss returns ``(loss, grad)``:

* ``loss``: ``np.float64`` for ``"mean"`` / ``"sum"`` / ``"batchmean"``; a float64 array shaped
  like the per-sample loss for ``"none"``.
* ``grad``: float64 array shaped like ``x`` holding d(loss)/d(x) for the chosen reduction (for
  ``"none"``: the gradient of the sum of the per-sample losses), multiplied by ``grad_output``;
  or None when ``need_grad`` is False.
* ``grad_output``: None (means 1.0), a float for the reducing modes, or for ``"none"`` an array
  shaped like the per-sample loss. It scales the gradient only, never the loss.

Deliberate departures from PyTorch (most of them avoid a ``0 * inf = NaN``):

* ``cross_entropy`` with probability targets: a term whose coefficient ``w[c] * t'[c]`` is 0
  contributes 0 even where ``log p = -inf``.
* ``binary_cross_entropy_with_logits`` and ``sigmoid_focal_loss``: a term whose target
  coefficient is 0 contributes 0, so ``x = +-inf`` with an agreeing target gives loss 0, grad 0.
* ``kl_div``: an element whose target probability is 0 (``target == 0``, or ``exp(target) == 0``
  with ``log_target=True``) contributes 0 unless ``x`` is NaN, also where ``x = -inf`` (torch
  gives NaN there, and for ``log_target=True`` even for finite ``x``).
* ``cross_entropy`` / ``nll_loss`` / ``focal_loss``: ignored samples get loss 0 AND gradient 0
  even when their row of logits contains NaN (torch's log_softmax backward leaks NaN into the
  gradient of such a row).
* focal losses: values and gradients are finite at saturated logits for every ``gamma >= 0``.
* ``l1_loss`` (and ``smooth_l1_loss`` with ``beta=0``): the gradient is sign(x - t), NaN where
  x - t is NaN (torch's abs backward gives 0 there); sign(0) = 0 as in torch.
"""

import numpy as np

__all__ = [
    "log_softmax",
    "softmax",
    "logsumexp",
    "cross_entropy",
    "nll_loss",
    "focal_loss",
    "sigmoid_focal_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
    "soft_margin_loss",
]

# torch's binary_cross_entropy backward divides by max((1 - x) * x, EPSILON) where EPSILON is
# the *float32* constant 1e-12f promoted to double (9.999999960041972e-13), measured on torch
# 2.13: x = 0, t = 1 gives grad -1000000003995.8029, not -1e12.
BCE_EPSILON = float(np.float32(1e-12))
# torch clamps each log in binary_cross_entropy at -100.
BCE_LOG_CLAMP = -100.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _f64(a):
    """float64 view/copy of ``a`` (never modified in place afterwards)."""
    return np.asarray(a, dtype=np.float64)


def _reduce(per_sample, reduction, denominator):
    """Reduce the per-sample loss. ``denominator`` is used by "mean" / "batchmean" only."""
    if reduction == "none":
        return per_sample
    total = np.sum(per_sample, dtype=np.float64)
    if reduction == "sum":
        return np.float64(total)
    if reduction in ("mean", "batchmean"):
        return np.float64(total) / np.float64(denominator)  # 0 / 0 -> NaN (empty input)
    raise ValueError(f"unknown reduction {reduction!r}")


def _grad_scale(reduction, denominator, grad_output):
    """Factor d(loss)/d(per_sample loss) times grad_output: scalar, or array for "none"."""
    if reduction == "none":
        if grad_output is None:
            return np.float64(1.0)
        return _f64(grad_output)
    go = np.float64(1.0) if grad_output is None else np.float64(grad_output)
    if reduction == "sum":
        return go
    return go / np.float64(denominator)  # "mean" / "batchmean"


def _softplus(z):
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow; exact 0 / 1 at -inf / +inf."""
    e = np.exp(-np.abs(z))  # in (0, 1]
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax_parts(x):
    """For x (N, C, S): row max m (N,1,S), shifted x - m, exp(shifted), their sum s (N,1,S).

    A row holding NaN, +inf, or only -inf entries yields NaN everywhere (as torch's softmax).
    """
    m = np.max(x, axis=1, keepdims=True, initial=-np.inf)
    shifted = x - m
    e = np.exp(shifted)
    s = np.sum(e, axis=1, keepdims=True)
    return m, shifted, e, s


def _onehot(target_safe, num_classes):
    """Boolean (N, C, S) array, True at [i, target[i, s], s]."""
    classes = np.arange(num_classes).reshape(1, num_classes, 1)
    return classes == target_safe[:, None, :]


def _p_minus_onehot(ex, s, onehot):
    """p - onehot for p = ex / s, with the target entry written as -q, q = 1 - p_y computed as
    (sum of ex over the other classes) / s, so it keeps full relative precision when p_y -> 1.
    Returns (p_minus_onehot (N, C, S), q (N, S)); s has shape (N, 1, S).
    """
    q = np.sum(np.where(onehot, 0.0, ex), axis=1, keepdims=True) / s
    return np.where(onehot, -q, ex / s), q[:, 0, :]


def _log_p_target(shifted, s, q, target_safe):
    """log p_y, (N, S): log1p(-q) where q = 1 - p_y < 1/2 (exact as p_y -> 1), else the plain
    (x_y - m) - log(s) (exact as p_y -> 0). s has shape (N, 1, S)."""
    direct = _gather(shifted, target_safe) - np.log(s[:, 0, :])
    return np.where(q < 0.5, np.log1p(-q), direct)


def _gather(a, target_safe):
    """a[i, target[i, s], s] for a of shape (N, C, S) -> (N, S)."""
    return np.take_along_axis(a, target_safe[:, None, :], axis=1)[:, 0, :]


def _index_target_setup(x, target, weight, ignore_index):
    """Common bookkeeping of index-target class losses.

    Returns (target_safe, keep, w, w_y): ignored positions are replaced by class 0 in
    target_safe, keep marks non-ignored samples, w is the (C,) weight vector, and w_y is
    w[target] with 0 at ignored samples.
    """
    num_classes = x.shape[1]
    target = np.asarray(target, dtype=np.int64)
    keep = target != ignore_index
    target_safe = np.where(keep, target, 0)
    w = np.ones(num_classes) if weight is None else _f64(weight)
    w_y = np.where(keep, w[target_safe], 0.0)
    return target_safe, keep, w, w_y


def _finish_index_loss(parts, keep, w_y, reduction, grad_output, need_grad):
    """Reduce an index-target class loss; "mean" divides by sum of w[y] over kept samples.

    parts: list of (per, d_per) terms whose sum is the loss: per (N, S) per-sample values
    (already 0 at ignored samples), d_per (N, C, S) their gradients (None if not need_grad).
    Each term is reduced and scaled on its own (as torch adds the reduced nll and
    label-smoothing terms), which only matters when the "mean" denominator is 0: then torch's
    0/0 = NaN of the nll term wins over the inf of the smoothing term, in loss and gradient.
    The gradient of an ignored sample is 0 (so all-ignored "mean" gives a zero gradient while
    the loss is 0 / 0 = NaN, as torch).
    """
    denominator = np.sum(w_y)
    if reduction == "none":
        loss = sum(per for per, _ in parts)
    else:
        loss = sum(_reduce(per, reduction, denominator) for per, _ in parts)
    if not need_grad:
        return loss, None
    scale = _grad_scale(reduction, denominator, grad_output)
    if np.ndim(scale) == 2:
        scale = scale[:, None, :]
    grad = sum(d_per * scale for _, d_per in parts)
    return loss, np.where(keep[:, None, :], grad, 0.0)


# --------------------------------------------------------------------------------------------
# softmax family on (N, C, S), over axis 1
# --------------------------------------------------------------------------------------------
def log_softmax(x):
    """log_softmax over axis 1 of x (N, C, S), max-shifted. All -inf / +inf rows give NaN."""
    with np.errstate(all="ignore"):
        x = _f64(x)
        _, shifted, _, s = _softmax_parts(x)
        return shifted - np.log(s)


def softmax(x):
    """softmax over axis 1 of x (N, C, S), max-shifted. All -inf / +inf rows give NaN."""
    with np.errstate(all="ignore"):
        x = _f64(x)
        _, _, e, s = _softmax_parts(x)
        return e / s


def logsumexp(x):
    """log(sum(exp(x))) over axis 1 of x (N, C, S) -> (N, S), like torch.logsumexp.

    The shift is the row max, replaced by 0 when that max is +-inf (torch's rule), so an
    all -inf row gives -inf, a row with +inf gives +inf, a row with NaN gives NaN.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        m = np.max(x, axis=1, keepdims=True, initial=-np.inf)
        m = np.where(np.isinf(m), 0.0, m)
        return (np.log(np.sum(np.exp(x - m), axis=1, keepdims=True)) + m)[:, 0, :]


# --------------------------------------------------------------------------------------------
# class losses, x: (N, C, S)
# --------------------------------------------------------------------------------------------
def cross_entropy(
    x,
    target,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
):
    """torch.nn.functional.cross_entropy on canonical (N, C, S) logits.

    target: int (N, S) class indices, or float (N, C, S) class probabilities.
    Index targets: l_i = (1-e) w[y_i] (-log p_iy) + (e/C) sum_c w[c] (-log p_ic), 0 where
    ignored; "mean" divides by sum of w[y_i] over kept samples. -log p_y is taken as
    -log1p(-q) with q = 1 - p_y from the other classes' sum (exact as p_y -> 1), and the
    target entry of the gradient's (p - onehot) as -q. Gradient per sample:
    (1-e) w[y] (p_j - [j == y]) + (e/C) (W p_j - w[j]), W = sum_c w[c].
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        num_classes = x.shape[1]
        e = float(label_smoothing)
        _, shifted, ex, s = _softmax_parts(x)
        logp = shifted - np.log(s)  # (N, C, S)
        p = ex / s

        target_arr = np.asarray(target)
        if target_arr.ndim == 3 and np.issubdtype(target_arr.dtype, np.floating):
            return _cross_entropy_probs(
                x, logp, p, _f64(target_arr), weight, e, reduction, grad_output, need_grad
            )

        target_safe, keep, w, w_y = _index_target_setup(x, target_arr, weight, ignore_index)
        w_c = w.reshape(1, num_classes, 1)
        p_minus_onehot, q = _p_minus_onehot(ex, s, _onehot(target_safe, num_classes))
        nll = -_log_p_target(shifted, s, q, target_safe)  # -log p_y, (N, S)
        nll_term = np.where(keep, (1.0 - e) * w_y * nll, 0.0)
        d_nll = None
        if need_grad:
            d_nll = ((1.0 - e) * w_y)[:, None, :] * p_minus_onehot
        parts = [(nll_term, d_nll)]
        if e != 0.0:
            # (when e == 0 the smoothing term is not evaluated at all: -inf logits would give
            # 0 * inf)
            smooth = -np.sum(w_c * logp, axis=1)  # sum_c w[c] * (-log p_c), (N, S)
            smooth_term = np.where(keep, (e / num_classes) * smooth, 0.0)
            d_smooth = None
            if need_grad:
                d_smooth = (e / num_classes) * (np.sum(w) * p - w_c)
            parts.append((smooth_term, d_smooth))
        return _finish_index_loss(parts, keep, w_y, reduction, grad_output, need_grad)


def _cross_entropy_probs(x, logp, p, t, weight, e, reduction, grad_output, need_grad):
    """cross_entropy with probability targets t (N, C, S); "mean" divides by N * S."""
    n, num_classes, s = x.shape
    if e != 0.0:
        t = t * (1.0 - e) + e / num_classes
    w_c = (np.ones(num_classes) if weight is None else _f64(weight)).reshape(1, num_classes, 1)
    coef = w_c * t  # w[c] * t'[i, c, s]
    # a term with coefficient 0 contributes 0 even where log p = -inf (torch: NaN)
    per = -np.sum(np.where(coef == 0.0, 0.0, coef * logp), axis=1)  # (N, S)
    denominator = n * s
    loss = _reduce(per, reduction, denominator)
    if not need_grad:
        return loss, None
    total = np.sum(coef, axis=1, keepdims=True)  # T_i = sum_c w[c] t'_ic
    d_per = total * p - coef
    scale = _grad_scale(reduction, denominator, grad_output)
    if np.ndim(scale) == 2:
        scale = scale[:, None, :]
    return loss, d_per * scale


def nll_loss(
    x, target, *, reduction, grad_output=None, need_grad=False, weight=None, ignore_index=-100
):
    """torch.nn.functional.nll_loss on canonical (N, C, S) log-probabilities.

    l_i = -w[y_i] x[i, y_i] (0 where ignored); "mean" divides by sum of w[y_i] over kept
    samples. The gradient is nonzero only at the target entry of kept samples (as torch: a
    zero total weight gives NaN there and 0 elsewhere; all ignored gives an all-zero gradient).
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        target_safe, keep, _, w_y = _index_target_setup(x, target, weight, ignore_index)
        per = np.where(keep, -w_y * _gather(x, target_safe), 0.0)
        denominator = np.sum(w_y)
        loss = _reduce(per, reduction, denominator)
        if not need_grad:
            return loss, None
        scale = _grad_scale(reduction, denominator, grad_output)
        at_target = _onehot(target_safe, x.shape[1]) & keep[:, None, :]
        grad = np.where(at_target, (-w_y * scale)[:, None, :], 0.0)
        return loss, grad


def focal_loss(
    x,
    target,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    weight=None,
    ignore_index=-100,
    gamma=2.0,
):
    """Multi-class softmax focal loss: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by sum of w[y] over non-ignored samples (gamma = 0 is cross_entropy).
    q = 1 - p_y is computed as (sum of exp over the other classes) / (sum over all), free of
    cancellation, and log p_y as log1p(-q) where q < 1/2, so saturated logits stay exact
    (also the target entry of p - onehot is written as -q).
    Gradient: d l / d x_j = w q^gamma (1 - gamma * p_y * log(p_y) / q) (p_j - [j == y]) with
    p_y log(p_y) / q -> -1 as q -> 0 and -> 0 as p_y -> 0.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        gamma = float(gamma)
        num_classes = x.shape[1]
        target_safe, keep, _, w_y = _index_target_setup(x, target, weight, ignore_index)
        onehot = _onehot(target_safe, num_classes)

        _, shifted, ex, s = _softmax_parts(x)
        p_minus_onehot, q = _p_minus_onehot(ex, s, onehot)  # q = 1 - p_y, (N, S)
        log_p_y = _log_p_target(shifted, s, q, target_safe)
        p_y = _gather(ex, target_safe) / s[:, 0, :]
        modulating = q**gamma  # 0 ** 0 == 1
        per = np.where(keep, w_y * modulating * (-log_p_y), 0.0)

        d_per = None
        if need_grad:
            p_log_p = np.where(p_y == 0.0, 0.0, p_y * log_p_y)
            ratio = np.where(q == 0.0, -1.0, p_log_p / q)  # p_y log(p_y) / q
            factor = w_y * modulating * (1.0 - gamma * ratio)  # (N, S)
            d_per = factor[:, None, :] * p_minus_onehot
        return _finish_index_loss([(per, d_per)], keep, w_y, reduction, grad_output, need_grad)


# --------------------------------------------------------------------------------------------
# elementwise losses: x and target share one shape
# --------------------------------------------------------------------------------------------
def _finish_elementwise(per, d_per, reduction, grad_output, need_grad, denominator=None):
    if denominator is None:
        denominator = per.size
    loss = _reduce(per, reduction, denominator)
    if not need_grad:
        return loss, None
    return loss, d_per * _grad_scale(reduction, denominator, grad_output)


def sigmoid_focal_loss(
    x, target, *, reduction, grad_output=None, need_grad=False, alpha=0.25, gamma=2.0
):
    """torchvision.ops.sigmoid_focal_loss (soft targets in [0, 1] allowed).

    ce = t softplus(-x) + (1 - t) softplus(x) (a term with coefficient 0 contributes 0),
    u = 1 - p_t = t sigmoid(-x) + (1 - t) sigmoid(x), loss = a_t ce u^gamma.
    d loss / dx = a_t [ (p - t) u^gamma + gamma ce u^gamma (p (1 - p) / u) (1 - 2t) ],
    the second term taken as 0 where p (1 - p) == 0 (its limit), so u^(gamma-1) never appears.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        alpha = float(alpha)
        gamma = float(gamma)
        p = _sigmoid(x)
        one_minus_p = _sigmoid(-x)
        ce = np.where(t == 0.0, 0.0, t * _softplus(-x)) + np.where(
            t == 1.0, 0.0, (1.0 - t) * _softplus(x)
        )
        u = t * one_minus_p + (1.0 - t) * p
        modulating = u**gamma
        per = ce * modulating
        alpha_t = None
        if alpha >= 0:
            alpha_t = alpha * t + (1.0 - alpha) * (1.0 - t)
            per = alpha_t * per

        d_per = None
        if need_grad:
            d_ce = (1.0 - t) * p - t * one_minus_p  # = p - t
            pq = p * one_minus_p
            second = np.where(pq == 0.0, 0.0, gamma * ce * modulating * (pq / u) * (1.0 - 2.0 * t))
            d_per = d_ce * modulating + second
            if alpha_t is not None:
                d_per = alpha_t * d_per
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad)


def binary_cross_entropy(x, target, *, reduction, grad_output=None, need_grad=False, weight=None):
    """torch.nn.functional.binary_cross_entropy on probabilities x.

    l = w [ (t - 1) max(log1p(-x), -100) - t max(log(x), -100) ]  (torch uses log1p(-x))
    grad = w (x - t) / max((1 - x) x, EPSILON), EPSILON = float32(1e-12) as in torch.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        log_x = np.maximum(np.log(x), BCE_LOG_CLAMP)
        log_1mx = np.maximum(np.log1p(-x), BCE_LOG_CLAMP)
        per = (t - 1.0) * log_1mx - t * log_x
        if weight is not None:
            per = _f64(weight) * per
        d_per = None
        if need_grad:
            d_per = (x - t) / np.maximum((1.0 - x) * x, BCE_EPSILON)
            if weight is not None:
                d_per = _f64(weight) * d_per
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad)


def binary_cross_entropy_with_logits(
    x, target, *, reduction, grad_output=None, need_grad=False, weight=None, pos_weight=None
):
    """l = w [ pos_weight t softplus(-x) + (1 - t) softplus(x) ]; a term whose coefficient is 0
    contributes 0, so x = +-inf with an agreeing target gives loss 0 (torch: NaN).  x = NaN
    gives NaN (like torch) even when both coefficients are 0 (pos_weight = 0, t = 1).
    grad = w [ (1 - t) sigmoid(x) - pos_weight t sigmoid(-x) ].
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        pos_coef = t if pos_weight is None else _f64(pos_weight) * t
        neg_coef = 1.0 - t
        per = np.where(pos_coef == 0.0, 0.0, pos_coef * _softplus(-x)) + np.where(
            neg_coef == 0.0, 0.0, neg_coef * _softplus(x)
        )
        per = np.where(np.isnan(x), x, per)
        if weight is not None:
            per = _f64(weight) * per
        d_per = None
        if need_grad:
            d_per = neg_coef * _sigmoid(x) - pos_coef * _sigmoid(-x)
            if weight is not None:
                d_per = _f64(weight) * d_per
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad)


def _weighted(per, d_per, weight, mean_over_weights):
    """torch 2.13's weighted regression losses: w * loss, w * grad; "mean" divides by sum(w)
    (mse_loss, l1_loss) or by the element count (huber_loss).  Returns (per, d_per, denom)."""
    if weight is None:
        return per, d_per, None
    w = _f64(weight)
    d_per = None if d_per is None else w * d_per
    return w * per, d_per, (np.sum(w) if mean_over_weights else None)


def mse_loss(x, target, *, reduction, grad_output=None, need_grad=False, weight=None):
    """w (x - t)^2; grad 2 w (x - t); weighted "mean" divides by sum(w), as torch."""
    with np.errstate(all="ignore"):
        diff = _f64(x) - _f64(target)
        d_per = 2.0 * diff if need_grad else None
        per, d_per, denom = _weighted(diff * diff, d_per, weight, True)
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad, denom)


def l1_loss(x, target, *, reduction, grad_output=None, need_grad=False, weight=None):
    """w |x - t|; grad w sign(x - t) with sign(0) = 0 (as torch); weighted "mean" divides by
    sum(w), as torch."""
    with np.errstate(all="ignore"):
        diff = _f64(x) - _f64(target)
        d_per = np.sign(diff) if need_grad else None
        per, d_per, denom = _weighted(np.abs(diff), d_per, weight, True)
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad, denom)


def smooth_l1_loss(x, target, *, reduction, grad_output=None, need_grad=False, beta=1.0):
    """z = |x - t|: 0.5 z^2 / beta if z < beta else z - 0.5 beta; beta == 0 is l1_loss.
    grad: clip((x - t) / beta, -1, 1)."""
    beta = float(beta)
    if beta == 0.0:
        return l1_loss(x, target, reduction=reduction, grad_output=grad_output, need_grad=need_grad)
    with np.errstate(all="ignore"):
        diff = _f64(x) - _f64(target)
        z = np.abs(diff)
        per = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
        d_per = np.clip(diff / beta, -1.0, 1.0) if need_grad else None
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad)


def huber_loss(x, target, *, reduction, grad_output=None, need_grad=False, delta=1.0, weight=None):
    """z = |x - t|: 0.5 z^2 if z < delta else delta (z - 0.5 delta); grad clip(x - t, +-delta);
    times w; weighted "mean" divides by the element count (torch's huber_loss, unlike its
    mse_loss and l1_loss)."""
    delta = float(delta)
    with np.errstate(all="ignore"):
        diff = _f64(x) - _f64(target)
        z = np.abs(diff)
        per = np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
        d_per = np.clip(diff, -delta, delta) if need_grad else None
        per, d_per, denom = _weighted(per, d_per, weight, False)
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad, denom)


def kl_div(x, target, *, reduction, grad_output=None, need_grad=False, log_target=False):
    """torch.nn.functional.kl_div, x = log-probabilities.

    log_target=False: t (log t - x), 0 where t == 0; grad -t.
    log_target=True:  exp(t) (t - x), 0 where exp(t) == 0; grad -exp(t).
    A zero-probability target contributes 0 unless x is NaN (torch gives NaN where x = -inf,
    and with log_target=True wherever t = -inf).
    "batchmean" divides the sum by x.shape[0] (1 for a 0-d x); "mean" by the element count.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        if log_target:
            prob = np.exp(t)
            per = prob * (t - x)
        else:
            prob = t
            per = t * (np.log(t) - x)
        per = np.where((prob == 0.0) & ~np.isnan(x), 0.0, per)
        d_per = -prob if need_grad else None
        if reduction == "batchmean":
            denominator = x.shape[0] if x.ndim > 0 else 1
        else:
            denominator = x.size
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad, denominator)


def soft_margin_loss(x, target, *, reduction, grad_output=None, need_grad=False):
    """torch.nn.functional.soft_margin_loss: log(1 + exp(-y x)) for targets y (+-1), written as
    softplus(-y x), finite where torch's literal form overflows (-y x > 88 in float32);
    grad -y sigmoid(-y x)."""
    with np.errstate(all="ignore"):
        y = _f64(target)
        v = y * _f64(x)
        per = _softplus(-v)
        d_per = -y * _sigmoid(-v) if need_grad else None
        return _finish_elementwise(per, d_per, reduction, grad_output, need_grad)
