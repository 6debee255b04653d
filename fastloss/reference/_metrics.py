"""Pure-NumPy float64 reference math ("oracle") for the metrics: error rate / top-k accuracy and
entropy.

Same conventions as ``_math.py``: plain vectorised float64 NumPy, already-validated arguments,
``(value, grad)`` results with ``grad`` None unless ``need_grad``, and ``reduction`` in
``"none" | "mean" | "sum"``.

error_rate / accuracy
    ``x``: scores of shape ``(N, C)`` or ``(N, C, d1, ..., dk)`` (or unbatched ``(C,)``), logits or
    probabilities alike: only their order within a sample matters.  ``target``: class indices
    of shape ``(N, d1, ..., dk)``; ``weight``: per-sample weights of the target's shape.  One
    pass, no sort: with ``s`` a sample's scores and ``y`` its class,
    ``rank = #{j : s_j > s_y} + #{j != y : s_j == s_y, j counted by the tie policy}`` and the
    sample is a hit iff ``rank < top_k``.  Tie policies (``ties=``):

    * ``"argmax"`` (the default): ties go to the LOWEST class index (count ``j < y``), as
      ``np.argmax`` / ``torch.argmax``, so top-1 is ``sklearn.metrics.zero_one_loss(y,
      x.argmax(1))`` and the usual ``(logits.argmax(1) == y).mean()`` of torch code;
    * ``"sklearn"``: ties go to the HIGHEST class index (count ``j > y``), as
      ``sklearn.metrics.top_k_accuracy_score`` (its stable ascending argsort reversed);
    * ``"pessimistic"``: every other class tied with the target ranks above it.

    (``torch.topk`` follows none of them: its order among ties is unspecified.)  Samples whose
    target is ``ignore_index`` are left out (weight 0, not counted in the denominator).
    ``"none"`` gives per-sample ``w * miss`` (``w * hit`` for accuracy; 0 where ignored),
    ``"sum"`` their sum (sklearn's ``normalize=False``), ``"mean"`` that sum over the sum of
    the kept weights: NaN when nothing is kept.  ``top_k >= C`` makes every sample a hit.
    Departure: a sample whose scores contain a NaN is a miss under every policy (sklearn
    rejects NaN; argmax would pick the NaN's class).  Error rates have no gradient
    (``need_grad=True`` raises).

entropy
    Shannon entropy along ``axis`` (default -1, the class axis of ``(N, C)``; NOTE
    ``scipy.stats.entropy`` defaults to ``axis=0``), in nats or divided by ``log(base)``.

    * ``from_logits=True``: ``p = softmax(z)``, ``H = -sum p log p`` with ``log p = z - lse``;
      gradient w.r.t. the logits ``dH/dz_k = -p_k (log p_k + H)``.  ``-inf`` logits (masked
      classes) have ``p = 0``, contribute 0 and get gradient 0; a row with NaN, ``+inf`` or only
      ``-inf`` logits gives NaN (torch's ``Categorical`` rejects the all ``-inf`` row).
      Departure: torch's ``Categorical(logits=...).entropy()`` clamps ``-inf`` to
      ``finfo.min``, so any upstream gradient above 1 makes ``finfo.min * g = -inf`` and the
      whole row's gradient NaN; ours stays finite.  ``log p`` is ``z - m - log1p(sum of the
      other exp(z - m))``, so a dominant class keeps a tiny ``H`` to full precision.
    * ``from_logits=False``: ``x`` holds non-negative weights that are normalised along the
      axis first, ``q = x / S``, ``S = sum x`` (as ``scipy.stats.entropy`` and
      ``Categorical(probs=...)``); the gradient is that of this function w.r.t. ``x``:
      ``dH/dx_k = -(log q_k + H) / S``, which for rows already summing to 1 is
      ``-(log p_k + H) = g_k - sum_j p_j g_j`` with ``g = -(log p + 1)`` the gradient of
      ``-sum p log p`` taken without the normalisation.
      Departure: a class with ``x_k = 0`` is treated like a masked logit (contributes 0,
      gradient 0); the one-sided derivative there is ``+inf``, and torch's
      ``Categorical(probs=...)`` gives ``-log(finfo.eps) - H + 1`` over ``S`` (about 36) from
      its clamp of the probabilities at ``finfo.eps``.

    ``"none"`` returns ``H`` shaped like ``x`` without ``axis``; ``"mean"`` / ``"sum"`` reduce
    over all of them.
"""

import numpy as np

from ._math import _f64, _grad_scale, _reduce

__all__ = ["error_rate", "accuracy", "entropy", "TIE_POLICIES"]

TIE_POLICIES = ("argmax", "sklearn", "pessimistic")


# --------------------------------------------------------------------------------------------
# error rate / top-k accuracy
# --------------------------------------------------------------------------------------------
def _hits(x, target, top_k, ties, weight, ignore_index):
    """(hit, w): boolean hit per sample and the weight per sample (0 where ignored), both of
    the target's shape."""
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}, got {ties!r}")
    top_k = int(top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    x = _f64(x)
    target = np.asarray(target, dtype=np.int64)
    out_shape = target.shape
    if x.ndim == 1:  # unbatched (C,) with a 0-d target
        x = x[None, :]
    num_classes = x.shape[1]
    spatial = int(np.prod(x.shape[2:]))
    s = x.reshape(x.shape[0], num_classes, spatial)  # (N, C, S)
    t = target.reshape(x.shape[0], spatial)  # (N, S)
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= num_classes))
    if np.any(bad):
        raise IndexError(f"target value {int(t[bad][0])} is out of range [0, {num_classes})")
    t_safe = np.where(keep, t, 0)
    s_y = np.take_along_axis(s, t_safe[:, None, :], axis=1)  # (N, 1, S)
    classes = np.arange(num_classes).reshape(1, num_classes, 1)
    y = t_safe[:, None, :]
    above = np.sum(s > s_y, axis=1)
    tied = (s == s_y) & (classes != y)
    if ties == "argmax":
        tied &= classes < y
    elif ties == "sklearn":
        tied &= classes > y
    rank = above + np.sum(tied, axis=1)
    hit = (rank < top_k) & ~np.any(np.isnan(s), axis=1)
    w = (
        np.ones(t.shape)
        if weight is None
        else np.broadcast_to(_f64(weight), out_shape).reshape(t.shape)
    )
    w = np.where(keep, w, 0.0)
    return hit.reshape(out_shape), w.reshape(out_shape)


def _count_metric(counted, w, reduction, need_grad):
    if need_grad:
        raise ValueError("error_rate / accuracy are piecewise constant: they have no gradient")
    per = np.where(counted, w, 0.0)
    with np.errstate(invalid="ignore"):  # nothing kept: "mean" is 0 / 0 = NaN
        return _reduce(per, reduction, np.sum(w)), None


def error_rate(
    x,
    target,
    *,
    reduction="mean",
    top_k=1,
    weight=None,
    ignore_index=-100,
    ties="argmax",
    grad_output=None,
    need_grad=False,
):
    """Top-k classification error rate (weighted, ignore_index aware); see the module docstring.
    "mean" equals sklearn's zero_one_loss / 1 - top_k_accuracy_score under the matching ties
    policy.  grad_output is accepted for a uniform signature and unused."""
    hit, w = _hits(x, target, top_k, ties, weight, ignore_index)
    return _count_metric(~hit, w, reduction, need_grad)


def accuracy(
    x,
    target,
    *,
    reduction="mean",
    top_k=1,
    weight=None,
    ignore_index=-100,
    ties="argmax",
    grad_output=None,
    need_grad=False,
):
    """Top-k accuracy, 1 - error_rate for "mean" (the hits counted directly, as sklearn's
    top_k_accuracy_score / accuracy_score)."""
    hit, w = _hits(x, target, top_k, ties, weight, ignore_index)
    return _count_metric(hit, w, reduction, need_grad)


# --------------------------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------------------------
def entropy(
    x,
    *,
    axis=-1,
    base=None,
    from_logits=True,
    reduction="none",
    grad_output=None,
    need_grad=False,
):
    """Shannon entropy along ``axis`` of softmax(x) (from_logits) or of x normalised to sum 1;
    see the module docstring for the gradient and the zero / -inf conventions.

    Probabilities are handled as the logits log(x): softmax(log x) = x / sum(x), so both paths
    share the precise form below, and dH/dx = (dH/dz) / x = -(log q + H) / S.
    """
    with np.errstate(all="ignore"):
        x = _f64(x)
        z = x if from_logits else np.log(x)  # x = 0 -> a masked (-inf) logit
        # shift by the max; log(sum exp) = log1p(sum of the other terms) keeps full precision
        # when one class dominates (H = 51 e^-50 stays exact instead of 2% low)
        m = np.max(z, axis=axis, keepdims=True, initial=-np.inf)
        shifted = z - m  # a max of +-inf or NaN makes the whole row NaN
        e = np.exp(shifted)
        first_max = np.zeros(z.shape, dtype=bool)
        if z.size:
            np.put_along_axis(first_max, np.argmax(z, axis=axis, keepdims=True), True, axis)
        rest = np.sum(np.where(first_max, 0.0, e), axis=axis, keepdims=True)
        q = e / (1.0 + rest)
        log_q = shifted - np.log1p(rest)
        present = e != 0.0  # masked or underflowed: q log q = 0
        h = -np.sum(np.where(present, q * log_q, 0.0), axis=axis, keepdims=True)  # nats
        nan_row = np.any(np.isnan(q), axis=axis, keepdims=True)
        h = np.where(nan_row, np.nan, h)
        ln_base = 1.0 if base is None else np.log(float(base))
        per = np.squeeze(h, axis=axis) / ln_base
        loss = _reduce(per, reduction, per.size)
        if not need_grad:
            return loss, None
        d = np.where(present, -q * (log_q + h), 0.0)  # dH/dz
        if not from_logits:
            d = np.where(present, d / x, 0.0)
        d = np.where(nan_row, np.nan, d) / ln_base
        scale = _f64(_grad_scale(reduction, per.size, grad_output))
        if scale.ndim:
            scale = np.expand_dims(scale, axis)
        return loss, d * scale
