"""NumPy float64 twins of the gradient-boosting objectives (``fastloss.gbdt``).

Each loss has its per-row value ``loss_<name>`` and its gradient and diagonal Hessian with
respect to the raw scores ``grad_hess_<name>``, written from the textbook formulas (the
focal Hessians as derived in docs/numerics.md), with no weights, clipping or scale:
``grad_hess`` applies those as the kernels do.  Scores are ``(n,)``, or ``(n, K)`` for the
softmax losses with class-index labels.  Used as the tests' oracle and by the reference
backend.
"""

import numpy as np

__all__ = ["LOSS_FUNCTIONS", "GRAD_HESS_FUNCTIONS", "grad_hess", "loss"]


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(z):
    d = z - z.max(axis=1, keepdims=True)
    return d - np.log(np.exp(d).sum(axis=1, keepdims=True))


def _alpha_t(y, alpha):
    if alpha is None or alpha < 0:
        return np.ones_like(y)
    return np.where(y == 1, alpha, 1.0 - alpha)


# ---- per-row losses
def loss_logloss(z, y, w_pos=1.0, w_neg=1.0):
    return -(w_pos * y * _log_sigmoid(z) + w_neg * (1 - y) * _log_sigmoid(-z))


def loss_focal(z, y, alpha=0.25, gamma=2.0):
    zt = np.where(y == 1, z, -z)
    q = _sigmoid(-zt)
    return -_alpha_t(y, alpha) * q**gamma * _log_sigmoid(zt)


def loss_softmax(Z, y):
    return -np.take_along_axis(_log_softmax(Z), y.astype(np.int64)[:, None], 1)[:, 0]


def loss_softmax_focal(Z, y, gamma=2.0):
    lp = np.take_along_axis(_log_softmax(Z), y.astype(np.int64)[:, None], 1)[:, 0]
    return -((-np.expm1(lp)) ** gamma) * lp


def loss_huber(z, y, delta=1.0):
    r = np.abs(z - y)
    return np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))


def loss_pseudo_huber(z, y, delta=1.0):
    r = z - y
    return delta * delta * (np.sqrt(1 + (r / delta) ** 2) - 1)


def loss_poisson(z, y):
    return np.exp(z) - y * z


def loss_gaussian(z, y, var=1.0):
    return 0.5 * (z - y) ** 2 / var


# ---- gradients and diagonal Hessians w.r.t. the raw scores
def grad_hess_logloss(z, y, w_pos=1.0, w_neg=1.0):
    p = _sigmoid(z)
    c = w_pos * y + w_neg * (1 - y)
    return c * p - w_pos * y, c * p * (1 - p)


def grad_hess_focal(z, y, alpha=0.25, gamma=2.0, bce_bound=False):
    """FL = -a_t q^gamma log p_t, p_t = sigmoid(z_t), z_t = s z, s = 2y - 1, q = 1 - p_t:
    dFL/dz = s a_t q^gamma (gamma p_t log p_t - q),
    d2FL/dz2 = a_t p_t q^gamma ((2 gamma + 1) q + gamma log p_t (q - gamma p_t))."""
    s = 2.0 * y - 1.0
    zt = s * z
    p, q, lp = _sigmoid(zt), _sigmoid(-zt), _log_sigmoid(zt)
    at = _alpha_t(y, alpha)
    f = q**gamma
    g = s * at * f * (gamma * p * lp - q)
    h = at * p * f * ((2 * gamma + 1) * q + gamma * lp * (q - gamma * p))
    if bce_bound:
        h = np.maximum(h, at * f * p * q)
    return g, h


def grad_hess_softmax(Z, y):
    p = _softmax(Z)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y.astype(np.int64)] = 1.0
    return p - onehot, p * (1 - p)


def grad_hess_softmax_focal(Z, y, gamma=2.0, bce_bound=False):
    """FL = -(1 - p_y)^gamma log p_y; A(p) = gamma p (1-p)^(gamma-1) log p - (1-p)^gamma,
    g_j = (d_jy - p_j) A(p_y), h_jj = -p_j (1 - p_j) A(p_y) + (d_jy - p_j)^2 p_y A'(p_y),
    A'(p) = gamma (1-p)^(gamma-2) (log p (1 - gamma p) + 2 (1 - p))."""
    p = _softmax(Z)
    idx = y.astype(np.int64)
    rows = np.arange(len(idx))
    lp = _log_softmax(Z)[rows, idx]
    py = p[rows, idx]
    q = -np.expm1(lp)
    onehot = np.zeros_like(p)
    onehot[rows, idx] = 1.0
    d = onehot - p
    with np.errstate(divide="ignore", invalid="ignore"):
        A = gamma * py * q ** (gamma - 1) * lp - q**gamma
        A = np.where(q == 0, 0.0, A) if gamma > 0 else A
        dA = gamma * q ** (gamma - 2) * (lp * (1 - gamma * py) + 2 * q)
        curv = np.where(q[:, None] == 0, 0.0, d * d * (py * dA)[:, None])
    g = d * A[:, None]
    h = -p * (1 - p) * A[:, None] + curv
    if bce_bound:
        h = np.maximum(h, (q**gamma)[:, None] * p * (1 - p))
    return g, h


def grad_hess_huber(z, y, delta=1.0):
    r = z - y
    inside = np.abs(r) <= delta
    return np.where(inside, r, delta * np.sign(r)), inside.astype(np.float64)


def grad_hess_pseudo_huber(z, y, delta=1.0):
    r = z - y
    u = 1 + (r / delta) ** 2
    return r / np.sqrt(u), u**-1.5


def grad_hess_poisson(z, y):
    e = np.exp(z)
    return e - y, e


def grad_hess_gaussian(z, y, var=1.0):
    return (z - y) / var, np.full_like(z, 1.0 / var)


LOSS_FUNCTIONS = {
    "logloss": loss_logloss,
    "focal": loss_focal,
    "softmax": loss_softmax,
    "softmax_focal": loss_softmax_focal,
    "huber": loss_huber,
    "pseudo_huber": loss_pseudo_huber,
    "poisson": loss_poisson,
    "gaussian": loss_gaussian,
}
GRAD_HESS_FUNCTIONS = {
    "logloss": grad_hess_logloss,
    "focal": grad_hess_focal,
    "softmax": grad_hess_softmax,
    "softmax_focal": grad_hess_softmax_focal,
    "huber": grad_hess_huber,
    "pseudo_huber": grad_hess_pseudo_huber,
    "poisson": grad_hess_poisson,
    "gaussian": grad_hess_gaussian,
}


def loss(name, scores, labels, **params):
    """Per-row loss values (float64) of loss `name`."""
    return LOSS_FUNCTIONS[name](
        np.asarray(scores, np.float64), np.asarray(labels, np.float64), **params
    )


def grad_hess(
    name,
    scores,
    labels,
    *,
    sample_weight=None,
    class_weight=None,
    hessian_factor=1.0,
    min_hessian=None,
    bce_bound=False,
    scale=1.0,
    **params,
):
    """(grad, hess) in float64 as the kernels compute them: the loss's g and h, h raised to
    the focal-weighted cross-entropy Hessian (bce_bound, focal losses), g and h times the
    sample weight (and the label's class weight), h times hessian_factor (softmax losses),
    h = max(h, min_hessian), then both times scale."""
    z = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.float64)
    if name in ("focal", "softmax_focal"):
        params["bce_bound"] = bce_bound
    g, h = GRAD_HESS_FUNCTIONS[name](z, y, **params)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if class_weight is not None:
        w = w * np.asarray(class_weight, np.float64)[y.astype(np.int64)]
    if g.ndim == 2:
        w = w[:, None]
    g, h = g * w, h * w
    if name in ("softmax", "softmax_focal"):
        h = h * hessian_factor
    if min_hessian is not None:
        h = np.maximum(h, min_hessian)
    return g * scale, h * scale
