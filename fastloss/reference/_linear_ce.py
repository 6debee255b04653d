"""Pure-NumPy float64 reference ("oracle") of the fused linear + cross-entropy loss.

Unfused on purpose: the whole ``(N, C, D)`` logits array is formed in float64, the
cross-entropy twin of ``_math.py`` gives the loss and its gradient ``G`` w.r.t. the logits,
and the chain rule through the projection gives the three gradients::

    logits[n, c, d] = sum_h x[n, h] w[c, d, h] + bias[c, d]
    d/dx = G W,   d/dw = G^T x,   d/dbias = sum_n G[n]

Arguments are canonical and already validated (``fastloss._linear_ce`` does that): ``x`` of
shape ``(N, H)``, ``w`` of shape ``(C, D, H)`` (``D`` = the product of torch's
``out_features``, 1 without them), ``target`` int64 ``(N, D)`` class indices or float
``(N, C, D)`` probabilities, ``bias`` ``(C, D)`` or None, ``weight`` ``(C,)`` or None.
"""

import numpy as np

from . import _math as M


def linear_cross_entropy(
    x,
    w,
    target,
    *,
    bias=None,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    reduction="mean",
    grad_output=None,
    need_grad=False,
):
    """(loss, (grad_x, grad_w, grad_bias or None)) in float64; loss (N, D) for "none"."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, H = x.shape
    C, D, _ = w.shape
    w2 = w.reshape(C * D, H)
    logits = x @ w2.T
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64).reshape(C * D)
    loss, g = M.cross_entropy(
        logits.reshape(N, C, D),
        target,
        reduction=reduction,
        grad_output=grad_output,
        need_grad=need_grad,
        weight=None if weight is None else np.asarray(weight, np.float64),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
    if not need_grad:
        return loss, None
    g2 = g.reshape(N, C * D)
    grad_bias = None if bias is None else g2.sum(axis=0).reshape(C, D)
    return loss, (g2 @ w2, (g2.T @ x).reshape(C, D, H), grad_bias)


def logits(x, w, bias=None):
    """The full float64 logits ``(N, C, D)`` (for the reference metrics)."""
    C, D, H = w.shape
    z = np.asarray(x, np.float64) @ np.asarray(w, np.float64).reshape(C * D, H).T
    if bias is not None:
        z = z + np.asarray(bias, np.float64).reshape(C * D)
    return z.reshape(x.shape[0], C, D)
