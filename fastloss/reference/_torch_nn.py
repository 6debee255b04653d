"""Pure-NumPy float64 reference math ("oracle") for the rest of torch.nn's losses.

Same conventions as ``_math.py`` (read its docstring): plain vectorised float64 NumPy, written
for clarity; arguments are ALREADY validated (option values, dtypes); every loss returns
``(loss, grads)``:

* ``loss``: ``np.float64`` for ``"mean"`` / ``"sum"``, a float64 array shaped like the per-sample
  loss for ``"none"``.  ``"mean"`` divides by the number of per-sample losses (0 / 0 = NaN for an
  empty batch, ``"sum"`` is then 0).
* ``grads``: None unless ``need_grad``; else d(loss)/d(input) as an array shaped like ``x``, or
  for losses with several differentiable inputs a tuple in argument order
  (``margin_ranking_loss`` and ``cosine_embedding_loss``: ``(x1, x2)``; ``gaussian_nll_loss``:
  ``(input, var)``; the triplet losses: ``(anchor, positive, negative)``).  Inputs broadcast
  against each other with NumPy's rules (torch accepts the same); each gradient is summed back
  to its input's shape.
* ``grad_output``: None (1.0), a float for "mean"/"sum", or an array shaped like the per-sample
  loss for "none"; it scales the gradients only.

Per-sample shapes: elementwise losses (``poisson_nll_loss``, ``gaussian_nll_loss``,
``margin_ranking_loss``, ``hinge_embedding_loss``) keep the broadcast input shape; the row-wise
ones reduce the last axis: ``(N, C) -> (N,)`` and an unbatched ``(C,) -> ()``.

Where a subgradient must be chosen, torch's autograd choice is copied: ``clamp_min`` passes the
gradient where its argument equals the bound (margin_ranking, hinge_embedding, cosine_embedding,
triplet), the multi-class margin kernels use a strict ``z > 0`` (multi_margin,
multilabel_margin), ``torch.minimum`` (``swap=True``) splits a tie in halves, the p-norm's
gradient is 0 at zero entries (p < 1) and shared equally by the maxima (p = inf).

Deliberate departures from PyTorch (torch 2.13; the tests assert each as a documented value):

* ``poisson_nll_loss``: a target of 0 multiplies nothing, so ``x + eps = 0`` with
  ``log_input=False`` gives loss ``x`` and gradient 1 (torch: ``0 * log 0`` = NaN in both), and
  ``x = -inf`` with ``log_input=True`` gives 0 (torch NaN).
* ``multilabel_soft_margin_loss``: a term whose target coefficient is 0 contributes 0, so
  ``x = +-inf`` with an agreeing 0/1 target gives loss 0 (torch: ``0 * -inf`` = NaN).
* ``multi_margin_loss`` / ``multilabel_margin_loss``: a NaN margin term gives a NaN loss and NaN
  gradients (torch's kernels test ``z > 0`` and silently skip NaN: ``[[nan, 0, 0]]`` with target
  1 gives 1/3).  An empty batch with "mean" gives NaN (torch returns an uninitialised value such
  as 1.2e-306).
* ``gaussian_nll_loss``: a Python int ``var`` is taken like a float (torch 2.13 raises a
  TypeError from ``torch.any``); for a Python-number ``var`` the gradient w.r.t. that number is
  returned as a 0-d array (torch has none).

Not departures, but easy to get wrong (all as torch 2.13):

* ``gaussian_nll_loss`` clamps ``var`` at ``eps`` with a straight-through clamp (the ``var``
  gradient is taken at the clamped value and is not zeroed below ``eps``).  ``var`` may be
  input-shaped, one dimension short (then unsqueezed at the END, so ``(N,)`` against
  ``(N, N)`` is per row, not NumPy's per column), or have the input's ndim with exactly ONE
  mismatched dimension, of size 1; ``(1, 1)`` against ``(4, 3)``, ``(3,)`` against ``(4, 3)``
  and a 0-d array against a 2-d input raise "var is of incorrect size".
* ``pairwise_distance`` adds ``eps`` to the difference, not to the norm.
* ``cosine_embedding_loss`` adds torch's EPSILON, the float32 constant 1e-12f
  (9.999999960041972e-13), to both squared norms.
* ``cosine_distance`` (``1 - F.cosine_similarity``) divides each vector by ``max(||x||, eps)``
  with a straight-through clamp too, so below ``eps`` its gradient is not the derivative of
  its value.
* Targets other than +-1 are accepted where torch accepts them: margin_ranking uses ``y`` as a
  number, hinge_embedding gives a target that is neither 1 nor -1 BOTH terms, and
  cosine_embedding gives it loss 0.
* ``multilabel_margin_loss`` target entries after the first -1 are ignored but must still lie
  in [-1, C) (torch checks them all).
"""

import inspect
import math

import numpy as np

from ._math import _f64, _grad_scale, _reduce, _sigmoid, _softplus

__all__ = [
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "multilabel_soft_margin_loss",
    "multilabel_margin_loss",
    "multi_margin_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    "pairwise_distance",
    "cosine_distance",
]

# torch's cosine_embedding_loss adds EPSILON to both squared norms, and (as in its BCE) it is
# the float32 constant 1e-12f promoted to double, 9.999999960041972e-13: measured on torch
# 2.13, a zero x1 row's gradient -x2 / sqrt(EPSILON * |x2|^2) differs by 2e-9 with 1e-12.
COSINE_EMBEDDING_EPSILON = float(np.float32(1e-12))
# defaults of torch.pairwise_distance and F.cosine_similarity
PAIRWISE_EPS = 1e-6
COSINE_SIMILARITY_EPS = 1e-8


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _unbroadcast(g, shape):
    """Sum ``g`` (a broadcast result) back to ``shape``: the adjoint of NumPy broadcasting."""
    shape = tuple(shape)
    g = np.asarray(g, dtype=np.float64)
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.asarray(g)


def _finish(per, d_pers, shapes, reduction, grad_output, need_grad):
    """Reduce ``per`` and turn the derivatives of the per-sample loss into the gradients.

    d_pers: one array per differentiable input, d per[...] / d input, laid out like ``per``
    followed by any trailing (row) axes; shapes: the inputs' shapes to sum the gradients to.
    Returns (loss, tuple of gradients) or (loss, None).
    """
    loss = _reduce(per, reduction, per.size)
    if not need_grad:
        return loss, None
    scale = _f64(_grad_scale(reduction, per.size, grad_output))
    grads = []
    for d_per, shape in zip(d_pers, shapes):
        s = scale.reshape(scale.shape + (1,) * (d_per.ndim - scale.ndim))
        grads.append(_unbroadcast(d_per * s, shape))
    return loss, tuple(grads)


def _hinge_step(z):
    """Derivative of max(z, 0) as torch's margin kernels take it: 1 where z > 0 (strict), 0
    where z <= 0, NaN where z is NaN (torch skips NaN; we propagate it)."""
    return np.where(np.isnan(z), np.nan, (z > 0).astype(np.float64))


# --------------------------------------------------------------------------------------------
# elementwise losses
# --------------------------------------------------------------------------------------------
def poisson_nll_loss(
    x,
    target,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    log_input=True,
    full=False,
    eps=1e-8,
):
    """torch.nn.functional.poisson_nll_loss.

    log_input=True:  l = exp(x) - t x,            dl/dx = exp(x) - t
    log_input=False: l = x - t log(x + eps),      dl/dx = 1 - t / (x + eps)
    full=True adds the Stirling term t log t - t + log(2 pi t) / 2 where t > 1 only (no input
    gradient).  A term t * (...) with t == 0 is 0 (torch: NaN where (...) is infinite).
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        if log_input:
            ex = np.exp(x)
            per = ex - np.where(t == 0.0, 0.0, t * x)
            d_per = ex - t if need_grad else None
        else:
            xe = x + float(eps)
            per = x - np.where(t == 0.0, 0.0, t * np.log(xe))
            d_per = 1.0 - np.where(t == 0.0, 0.0, t / xe) if need_grad else None
        if full:
            big = t > 1.0
            tb = np.where(big, t, 2.0)  # any value > 1: the masked lanes are never used
            stirling = tb * np.log(tb) - tb + 0.5 * np.log(2.0 * math.pi * tb)
            per = per + np.where(big, stirling, 0.0)
        if need_grad:
            d_per = np.broadcast_to(d_per, per.shape)
        return _single(_finish(per, [d_per], [x.shape], reduction, grad_output, need_grad))


def _single(result):
    loss, grads = result
    return loss, (None if grads is None else grads[0])


def _gaussian_var(input_shape, var):
    """torch's gaussian_nll_loss rules for var's shape.  Returns (var array broadcastable to
    the input, its original shape).  A Python number (int or float, not an ndarray) applies to
    every element; an array must be input-shaped, one dimension short (unsqueezed at the end),
    or have the input's ndim with exactly one mismatched dimension, of size 1."""
    if not isinstance(var, np.ndarray) and isinstance(var, (int, float)):
        return np.float64(var), ()
    v = _f64(var)
    shape = tuple(input_shape)
    if v.shape == shape:
        return v, v.shape
    if v.shape == shape[:-1]:
        return v[..., None], v.shape
    if v.ndim == len(shape) and sum(b for a, b in zip(shape, v.shape) if a != b) == 1:
        return v, v.shape
    raise ValueError(f"var is of incorrect size: var shape {v.shape} for input shape {shape}")


def gaussian_nll_loss(
    x, target, var, *, reduction, grad_output=None, need_grad=False, full=False, eps=1e-6
):
    """torch.nn.functional.gaussian_nll_loss: l = (log v + (x - t)^2 / v) / 2 [+ log(2 pi) / 2]
    with v = max(var, eps) (torch's straight-through clamp).

    dl/dx = (x - t) / v;  dl/dvar = (1 / v - (x - t)^2 / v^2) / 2, also where var < eps.
    Gradients: (d/d input, d/d var), the latter shaped like var (0-d for a Python number).
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        v, var_shape = _gaussian_var(x.shape, var)
        if np.any(v < 0):
            raise ValueError("var has negative entry/entries")
        v = np.maximum(v, float(eps))  # NaN stays NaN, as torch's clamp_
        diff = x - t
        per = 0.5 * (np.log(v) + diff * diff / v)
        if full:
            per = per + 0.5 * math.log(2.0 * math.pi)
        per = np.broadcast_to(per, np.broadcast_shapes(x.shape, t.shape, np.shape(v)))
        d_pers = None
        if need_grad:
            d_x = np.broadcast_to(diff / v, per.shape)
            d_v = np.broadcast_to(0.5 * (1.0 / v - diff * diff / (v * v)), per.shape)
            d_pers = [d_x, d_v]
        loss, grads = _finish(
            np.asarray(per), d_pers, [x.shape, np.shape(v)], reduction, grad_output, need_grad
        )
        if grads is None:
            return loss, None
        return loss, (grads[0], grads[1].reshape(var_shape))  # undo the unsqueeze


def margin_ranking_loss(
    x1, x2, target, *, reduction, grad_output=None, need_grad=False, margin=0.0
):
    """torch.nn.functional.margin_ranking_loss: l = max(0, -y (x1 - x2) + margin), y used as a
    number (0 gives max(0, margin)).  dl/dx1 = -y, dl/dx2 = y where the argument is >= 0
    (torch's clamp_min passes the gradient at equality), else 0."""
    with np.errstate(all="ignore"):
        x1 = _f64(x1)
        x2 = _f64(x2)
        y = _f64(target)
        arg = -y * (x1 - x2) + float(margin)
        per = np.maximum(arg, 0.0)
        d_pers = None
        if need_grad:
            d1 = np.where(arg >= 0.0, -y, 0.0)
            d_pers = [d1, -d1]
        return _finish(per, d_pers, [x1.shape, x2.shape], reduction, grad_output, need_grad)


def hinge_embedding_loss(x, target, *, reduction, grad_output=None, need_grad=False, margin=1.0):
    """torch.nn.functional.hinge_embedding_loss:
    l = [y != 1] max(0, margin - x) + [y != -1] x, so a target that is neither 1 nor -1 gets
    both terms.  dl/dx = -[y != 1][margin - x >= 0] + [y != -1]."""
    with np.errstate(all="ignore"):
        x = _f64(x)
        y = _f64(target)
        not_pos = y != 1.0
        not_neg = y != -1.0
        gap = float(margin) - x
        per = np.where(not_pos, np.maximum(gap, 0.0), 0.0) + np.where(not_neg, x, 0.0)
        d_per = None
        if need_grad:
            d_per = np.where(not_pos & (gap >= 0.0), -1.0, 0.0) + np.where(not_neg, 1.0, 0.0)
            d_per = np.broadcast_to(d_per, per.shape)
        return _single(_finish(per, [d_per], [x.shape], reduction, grad_output, need_grad))


# --------------------------------------------------------------------------------------------
# row-wise losses: classes / features on the last axis
# --------------------------------------------------------------------------------------------
def multilabel_soft_margin_loss(
    x, target, *, reduction, grad_output=None, need_grad=False, weight=None
):
    """torch.nn.functional.multilabel_soft_margin_loss on x (N, C) or (C,):
    l_n = (1/C) sum_c w_c [t softplus(-x) + (1 - t) softplus(x)]  (= BCE-with-logits averaged
    over the class axis; soft targets allowed); a term with coefficient 0 contributes 0.
    dl_n/dx_c = w_c ((1 - t) sigmoid(x) - t sigmoid(-x)) / C."""
    with np.errstate(all="ignore"):
        x = _f64(x)
        t = _f64(target)
        num_classes = x.shape[-1]
        elem = np.where(t == 0.0, 0.0, t * _softplus(-x)) + np.where(
            t == 1.0, 0.0, (1.0 - t) * _softplus(x)
        )
        if weight is not None:
            elem = _f64(weight) * elem
        per = np.sum(elem, axis=-1) / num_classes
        d_per = None
        if need_grad:
            d_per = (1.0 - t) * _sigmoid(x) - t * _sigmoid(-x)
            if weight is not None:
                d_per = _f64(weight) * d_per
            d_per = np.broadcast_to(d_per / num_classes, elem.shape)
        return _single(_finish(per, [d_per], [x.shape], reduction, grad_output, need_grad))


def _check_index(target, low, high, name="target"):
    if target.size and (target.min() < low or target.max() >= high):
        bad = target[(target < low) | (target >= high)].reshape(-1)[0]
        raise IndexError(f"{name} value {int(bad)} is out of range [{low}, {high})")


def multilabel_margin_loss(x, target, *, reduction, grad_output=None, need_grad=False):
    """torch.nn.functional.multilabel_margin_loss on x (N, C) or (C,), int target of x's shape.

    Each row's target lists class indices up to its first -1 (entries after it are ignored but
    must still lie in [-1, C), as torch checks).  For every listed slot j (a class listed twice
    counts twice) and every class i that is not listed: l += max(0, 1 - x_j + x_i); l /= C.
    Gradient (strict z > 0, as torch): -1/C on x_j and +1/C on x_i per active pair.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        target = np.asarray(target, dtype=np.int64)
        num_classes = x.shape[-1]
        _check_index(target, -1, num_classes)
        x2 = x.reshape(-1, num_classes)
        t2 = target.reshape(-1, num_classes)
        rows = np.arange(x2.shape[0])
        listed = np.cumsum(t2 == -1, axis=1) == 0  # slots before the first -1
        is_target = np.zeros(x2.shape, dtype=bool)
        is_target[np.repeat(rows, num_classes)[listed.reshape(-1)], t2[listed]] = True

        per = np.zeros(x2.shape[0])
        grad = np.zeros(x2.shape) if need_grad else None
        for k in range(num_classes):  # one target slot of every row at a time
            slot = listed[:, k]
            j = np.where(slot, t2[:, k], 0)
            x_j = x2[rows, j]
            z = 1.0 - x_j[:, None] + x2  # (rows, classes i)
            pair = slot[:, None] & ~is_target
            per += np.sum(np.where(pair, np.maximum(z, 0.0), 0.0), axis=1)
            if need_grad:
                h = np.where(pair, _hinge_step(z), 0.0)
                grad += h
                np.add.at(grad, (rows, j), -np.sum(h, axis=1))
        per = (per / num_classes).reshape(x.shape[:-1])
        d_per = None if grad is None else (grad / num_classes).reshape(x.shape)
        return _single(_finish(per, [d_per], [x.shape], reduction, grad_output, need_grad))


def multi_margin_loss(
    x,
    target,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    p=1,
    margin=1.0,
    weight=None,
):
    """torch.nn.functional.multi_margin_loss on x (N, C) or (C,), target (N,) or ():
    l_n = (1/C) sum_{i != y} w[y] max(0, margin - x_y + x_i)^p, p in {1, 2} (w[y] outside the
    power, as torch's kernel; "mean" is the plain mean over rows, not weighted).
    Gradient (strict z > 0): g_i = w[y] (1 or 2 z) / C for i != y, g_y = -sum_i g_i."""
    with np.errstate(all="ignore"):
        x = _f64(x)
        target = np.asarray(target, dtype=np.int64)
        num_classes = x.shape[-1]
        _check_index(target, 0, num_classes)
        x2 = x.reshape(-1, num_classes)
        y = target.reshape(-1)
        rows = np.arange(x2.shape[0])
        w_y = np.ones(y.shape) if weight is None else _f64(weight)[y]
        z = float(margin) - x2[rows, y][:, None] + x2
        other = np.arange(num_classes)[None, :] != y[:, None]
        hinge = np.maximum(z, 0.0)
        term = hinge if p == 1 else hinge * hinge
        per = w_y * np.sum(np.where(other, term, 0.0), axis=1) / num_classes
        d_per = None
        if need_grad:
            slope = _hinge_step(z) if p == 1 else 2.0 * z * _hinge_step(z)
            g = np.where(other, w_y[:, None] * slope / num_classes, 0.0)
            g[rows, y] = -np.sum(g, axis=1)
            d_per = g.reshape(x.shape)
        per = per.reshape(x.shape[:-1])
        return _single(_finish(per, [d_per], [x.shape], reduction, grad_output, need_grad))


def cosine_embedding_loss(
    x1, x2, target, *, reduction, grad_output=None, need_grad=False, margin=0.0
):
    """torch.nn.functional.cosine_embedding_loss on x1, x2 (N, D) with y (N,), or (D,), ():
    cos = <x1, x2> / sqrt((|x1|^2 + e) (|x2|^2 + e)), e = float32(1e-12) (torch's EPSILON),
    l = [y == 1] (1 - cos) + [y == -1] max(0, cos - margin); other targets give 0.
    dcos/dx1 = x2 / D - cos x1 / A with A = |x1|^2 + e, D = sqrt(A B); likewise for x2."""
    with np.errstate(all="ignore"):
        x1 = _f64(x1)
        x2 = _f64(x2)
        y = _f64(target)
        dot = np.sum(x1 * x2, axis=-1)
        sq1 = np.sum(x1 * x1, axis=-1) + COSINE_EMBEDDING_EPSILON
        sq2 = np.sum(x2 * x2, axis=-1) + COSINE_EMBEDDING_EPSILON
        denom = np.sqrt(sq1 * sq2)
        cos = dot / denom
        pos = y == 1.0
        neg = y == -1.0
        per = np.where(pos, 1.0 - cos, 0.0) + np.where(
            neg, np.maximum(cos - float(margin), 0.0), 0.0
        )
        d_pers = None
        if need_grad:
            d_cos = np.where(pos, -1.0, 0.0) + np.where(
                neg & (cos - float(margin) >= 0.0), 1.0, 0.0
            )
            d_cos = d_cos[..., None]
            d1 = d_cos * (x2 / denom[..., None] - (cos / sq1)[..., None] * x1)
            d2 = d_cos * (x1 / denom[..., None] - (cos / sq2)[..., None] * x2)
            d_pers = [d1, d2]
        return _finish(
            np.asarray(per), d_pers, [x1.shape, x2.shape], reduction, grad_output, need_grad
        )


# --------------------------------------------------------------------------------------------
# distances (the protocol of triplet_margin_with_distance_loss's distance_function)
# --------------------------------------------------------------------------------------------
def pairwise_distance(x1, x2, *, p=2.0, eps=PAIRWISE_EPS, need_grad=False):
    """torch.pairwise_distance over the last axis: d = || x1 - x2 + eps ||_p (eps is added to
    the difference).  Returns d, or with need_grad (d, (dd/dx1, dd/dx2)), the gradients per row
    and shaped like the broadcast inputs.

    dd/dv: p = 2: v / d; p = 1: sign(v); p = inf: sign(v) / #maxima at the maxima of |v|, else
    0; p = 0 (the count of nonzeros): 0; other p: sign(v) (|v| / d)^(p - 1), 0 where v = 0.
    All 0 where d = 0, as torch's norm backward.
    """
    with np.errstate(all="ignore"):
        v = _f64(x1) - _f64(x2) + float(eps)
        a = np.abs(v)
        p = float(p)
        if p == math.inf:
            d = np.max(a, axis=-1, initial=0.0)
        elif p == 0.0:
            d = np.sum(v != 0.0, axis=-1).astype(np.float64)
        elif p == 1.0:
            d = np.sum(a, axis=-1)
        elif p == 2.0:
            d = np.sqrt(np.sum(v * v, axis=-1))
        else:
            d = np.sum(a**p, axis=-1) ** (1.0 / p)
        if not need_grad:
            return d
        dd = d[..., None]
        if p == math.inf:
            at_max = a == dd
            g = np.where(at_max, np.sign(v) / np.sum(at_max, axis=-1, keepdims=True), 0.0)
        elif p == 0.0:
            g = np.zeros_like(v)
        elif p == 1.0:
            g = np.sign(v)
        elif p == 2.0:
            g = v / dd
        else:
            g = np.where(a == 0.0, 0.0, np.sign(v) * (a / dd) ** (p - 1.0))
        g = np.where(dd == 0.0, 0.0, g)
        return d, (g, -g)


def cosine_distance(x1, x2, *, eps=COSINE_SIMILARITY_EPS, need_grad=False):
    """1 - torch.nn.functional.cosine_similarity(x1, x2, dim=-1, eps): each vector is divided
    by n = max(||x||, eps) first, cos = sum (x1 / n1) (x2 / n2).  The clamp is torch's
    straight-through one: dn/dx = x / ||x|| even where ||x|| < eps (0 at x = 0), so
    dcos/dx1 = x2 / (n1 n2) - cos x1 / (n1 ||x1||).  Returns d, or (d, (dd/dx1, dd/dx2))."""
    with np.errstate(all="ignore"):
        x1 = _f64(x1)
        x2 = _f64(x2)
        norm1 = np.sqrt(np.sum(x1 * x1, axis=-1, keepdims=True))
        norm2 = np.sqrt(np.sum(x2 * x2, axis=-1, keepdims=True))
        n1 = np.maximum(norm1, float(eps))
        n2 = np.maximum(norm2, float(eps))
        u1 = x1 / n1
        u2 = x2 / n2
        cos = np.sum(u1 * u2, axis=-1)
        d = 1.0 - cos
        if not need_grad:
            return d
        c = cos[..., None]
        dir1 = np.where(norm1 == 0.0, 0.0, x1 / norm1)
        dir2 = np.where(norm2 == 0.0, 0.0, x2 / norm2)
        dcos1 = u2 / n1 - c * dir1 / n1
        dcos2 = u1 / n2 - c * dir2 / n2
        return d, (-dcos1, -dcos2)


def _named_distance(distance_function):
    if distance_function is None or distance_function == "euclidean":
        return pairwise_distance
    if distance_function == "cosine":
        return cosine_distance
    if callable(distance_function):
        return distance_function
    raise ValueError(
        "distance_function must be None, 'euclidean', 'cosine' or a callable, "
        f"got {distance_function!r}"
    )


def _accepts_need_grad(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return True
    return any(p.name == "need_grad" or p.kind is p.VAR_KEYWORD for p in params)


def _triplet(distance, anchor, positive, negative, margin, swap, reduction, grad_output, need_grad):
    """l = max(0, margin + d(a, p) - d_neg), d_neg = d(a, n), or min(d(a, n), d(p, n)) with
    swap (a tie sends half the gradient each way, as torch.minimum)."""
    with np.errstate(all="ignore"):
        a = _f64(anchor)
        p = _f64(positive)
        n = _f64(negative)
        shapes = [a.shape, p.shape, n.shape]
        if need_grad and not _accepts_need_grad(distance):
            raise TypeError(
                "distance_function: gradients need a callable accepting need_grad=True and "
                "returning (d, (grad_x1, grad_x2)); got one without a need_grad parameter"
            )

        def dist(u, w):
            if need_grad:
                d, g = distance(u, w, need_grad=True)
                return _f64(d), (_f64(g[0]), _f64(g[1]))
            return _f64(distance(u, w)), None

        d_ap, g_ap = dist(a, p)
        d_an, g_an = dist(a, n)
        if swap:
            d_pn, g_pn = dist(p, n)
            d_neg = np.minimum(d_an, d_pn)
            share = np.where(d_an < d_pn, 1.0, np.where(d_an == d_pn, 0.5, 0.0))
        else:
            d_neg = d_an
            share = np.ones(np.shape(d_an))
        arg = float(margin) + d_ap - d_neg
        per = np.asarray(np.maximum(arg, 0.0))
        if not need_grad:
            return _finish(per, None, shapes, reduction, grad_output, False)
        c = np.where(arg >= 0.0, 1.0, 0.0)[..., None]
        s = share[..., None]
        d_a = c * g_ap[0] - c * s * g_an[0]
        d_p = c * g_ap[1]
        d_n = -c * s * g_an[1]
        if swap:
            d_p = d_p - c * (1.0 - s) * g_pn[0]
            d_n = d_n - c * (1.0 - s) * g_pn[1]
        return _finish(per, [d_a, d_p, d_n], shapes, reduction, grad_output, True)


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
):
    """torch.nn.functional.triplet_margin_loss on (N, D) or (D,) inputs:
    l = max(0, margin + d(a, p) - d(a, n)), d = pairwise_distance(., ., p, eps) (eps added to
    the difference); swap uses min(d(a, n), d(p, n)).  Gradients (anchor, positive, negative).
    """

    def distance(u, w, need_grad=False):
        return pairwise_distance(u, w, p=p, eps=eps, need_grad=need_grad)

    return _triplet(
        distance, anchor, positive, negative, margin, swap, reduction, grad_output, need_grad
    )


def triplet_margin_with_distance_loss(
    anchor,
    positive,
    negative,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    distance_function=None,
    margin=1.0,
    swap=False,
):
    """torch.nn.functional.triplet_margin_with_distance_loss.

    distance_function: None or "euclidean" (torch's default, pairwise_distance with p=2,
    eps=1e-6), "cosine" (1 - F.cosine_similarity, see cosine_distance), or a NumPy callable
    ``f(x1, x2) -> d`` over the last axis; for gradients it is called as
    ``f(x1, x2, need_grad=True)`` and must return ``(d, (dd/dx1, dd/dx2))`` per row, shaped like
    the broadcast inputs (as ``pairwise_distance`` and ``cosine_distance`` here do).
    """
    distance = _named_distance(distance_function)
    return _triplet(
        distance, anchor, positive, negative, margin, swap, reduction, grad_output, need_grad
    )
