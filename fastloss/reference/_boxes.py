"""Pure-NumPy float64 reference math of the bounding-box regression losses and Focal L1.

Same conventions as ``_math.py`` and ``_torch_nn.py``: plain vectorised float64 NumPy, written
for clarity, arguments ALREADY validated; every box loss takes ``(boxes1, boxes2)`` of shape
``(N, 4)`` or ``(4,)`` and returns ``(loss, grads)``, ``grads`` = ``(d/d boxes1, d/d boxes2)``
(or None unless ``need_grad``).

Formulas (torchvision.ops, pytorch/vision ``giou_loss.py``, ``diou_loss.py``, ``ciou_loss.py``,
``_utils.py``; ``docs/numerics.md``, "Box losses"): with ``I`` the intersection (0 unless
``min(x2) > max(x1)`` and likewise in y: a strict test), ``U = A1 + A2 - I`` the union and
``iou = I / (U + eps)``:

* ``iou_loss``: ``1 - iou``;
* ``generalized_box_iou_loss``: ``1 - (iou - (C - U) / (C + eps))``, C the enclosing area;
* ``distance_box_iou_loss``: ``1 - iou + rho^2 / (cw^2 + ch^2 + eps)``, rho the distance of
  the centres, cw / ch the enclosing box's sides;
* ``complete_box_iou_loss``: the DIoU loss with eps = 1e-7 (torchvision does not forward its
  eps there) plus ``alpha v``, ``v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2``, alpha a constant
  (no gradient): torchvision's ``v / (1 - iou + v + eps)``, mmdetection's
  ``(iou > 0.5) v / (1 - iou + v)`` or YOLO's ``v / (v - iou + (1 + eps))``;
* ``efficient_iou_loss`` (Zhang et al. 2022, arXiv 2101.08158): the DIoU loss plus
  ``(w1 - w2)^2 / (cw^2 + eps) + (h1 - h2)^2 / (ch^2 + eps)``;
* ``focal_eiou_loss``: ``iou^gamma * EIoU``, the weight a constant unless ``detach_weight`` is
  False; its gradient is then 0 where ``iou = 0`` (where iou's own gradient is 0).

The gradients are torch autograd's through those formulas: ``torch.max``/``torch.min`` split
a tie in halves, the strict intersection mask gives touching boxes no gradient through I.
``fmt="cxcywh"`` boxes are converted as torchvision's ``box_convert`` (``cx - 0.5 w``, ...).
``weight`` (per box) multiplies each box's loss; "mean" divides by the number of boxes and is
0 for no box (torchvision's ``0.0 * loss.sum()``).
"""

import math

import numpy as np

from ._math import _f64, _grad_scale

__all__ = [
    "BOX_LOSSES",
    "CIOU_ALPHAS",
    "box_loss",
    "focal_l1_loss",
    "iou_loss",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "efficient_iou_loss",
    "focal_eiou_loss",
]

#: the box losses, by public name -> formula key
BOX_LOSSES = {
    "iou_loss": "iou",
    "generalized_box_iou_loss": "giou",
    "distance_box_iou_loss": "diou",
    "complete_box_iou_loss": "ciou",
    "efficient_iou_loss": "eiou",
    "focal_eiou_loss": "focal_eiou",
}
#: the conventions of CIoU's alpha
CIOU_ALPHAS = ("torchvision", "mmdet", "yolo")
#: 1/e, Focal L1's default beta (alpha ln(beta) = -1 with alpha = 1)
INV_E = math.exp(-1.0)
#: torchvision's complete_box_iou_loss calls _diou_iou_loss without its eps: always 1e-7
TORCHVISION_DIOU_EPS = 1e-7


def _xyxy(b, fmt):
    """The boxes' (x1, y1, x2, y2) columns."""
    if fmt == "xyxy":
        return b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    cx, cy, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h


def _cxcywh_grad(g):
    """d/d(x1, y1, x2, y2) -> d/d(cx, cy, w, h)."""
    gx1, gy1, gx2, gy2 = g.T
    return np.stack([gx1 + gx2, gy1 + gy2, 0.5 * (gx2 - gx1), 0.5 * (gy2 - gy1)], axis=1)


def _share_max(a, b):
    """torch.maximum's share of the gradient going to a: 1 (a > b), 1/2 (a == b), 0."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def _per_box(kind, b1, b2, eps, ciou_alpha, gamma, detach_weight, need_grad):
    """Per-box losses of (N, 4) xyxy float64 boxes and, with need_grad, d loss / d boxes."""
    x1, y1, x2, y2 = b1.T
    X1, Y1, X2, Y2 = b2.T
    w1, h1, w2, h2 = x2 - x1, y2 - y1, X2 - X1, Y2 - Y1
    xk1, yk1 = np.maximum(x1, X1), np.maximum(y1, Y1)
    xk2, yk2 = np.minimum(x2, X2), np.minimum(y2, Y2)
    mask = (yk2 > yk1) & (xk2 > xk1)
    ix, iy = xk2 - xk1, yk2 - yk1
    inter = np.where(mask, ix * iy, 0.0)
    union = w1 * h1 + w2 * h2 - inter
    e_iou = TORCHVISION_DIOU_EPS if kind == "ciou" else eps
    ue = union + e_iou
    iou = inter / ue
    cw = np.maximum(x2, X2) - np.minimum(x1, X1)
    ch = np.maximum(y2, Y2) - np.minimum(y1, Y1)
    zero = np.zeros_like(iou)
    g_iou, g_u, g_cw, g_ch = -np.ones_like(iou), zero, zero, zero
    g_dx, g_dy, g_w1, g_h1, g_w2, g_h2 = zero, zero, zero, zero, zero, zero
    loss = 1.0 - iou
    if kind == "giou":
        c = cw * ch
        ce = c + eps
        q = (c - union) / ce
        loss = 1.0 - (iou - q)
        g_c = (1.0 - q) / ce
        g_u = -1.0 / ce
        g_cw, g_ch = g_c * ch, g_c * cw
    elif kind != "iou":
        dx = (x2 + x1) / 2 - (X1 + X2) / 2
        dy = (y2 + y1) / 2 - (Y1 + Y2) / 2
        rho = dx**2 + dy**2
        d = cw**2 + ch**2 + e_iou
        loss = 1.0 - iou + rho / d
        g_d = -rho / d**2
        g_cw, g_ch = 2 * cw * g_d, 2 * ch * g_d
        g_dx, g_dy = 2 * dx / d, 2 * dy / d
        if kind == "ciou":
            t = np.arctan(w2 / h2) - np.arctan(w1 / h1)
            v = (4 / np.pi**2) * t**2
            if ciou_alpha == "mmdet":
                alpha = np.where(iou > 0.5, v / (1 - iou + v), 0.0)
            elif ciou_alpha == "yolo":
                alpha = v / (v - iou + (1 + eps))
            else:
                alpha = v / (1 - iou + v + eps)
            loss = loss + alpha * v
            gt = alpha * (4 / np.pi**2) * 2 * t
            r1, r2 = w1 / h1, w2 / h2
            gr1, gr2 = -gt / (1 + r1**2), gt / (1 + r2**2)
            g_w1, g_h1 = gr1 / h1, -gr1 * w1 / h1**2
            g_w2, g_h2 = gr2 / h2, -gr2 * w2 / h2**2
        elif kind in ("eiou", "focal_eiou"):
            dw, dh = w1 - w2, h1 - h2
            cw2, ch2 = cw**2 + eps, ch**2 + eps
            pw, ph = dw**2 / cw2, dh**2 / ch2
            loss = loss + pw + ph
            g_w1, g_w2 = 2 * dw / cw2, -2 * dw / cw2
            g_h1, g_h2 = 2 * dh / ch2, -2 * dh / ch2
            g_cw = g_cw - 2 * cw * pw / cw2
            g_ch = g_ch - 2 * ch * ph / ch2
            if kind == "focal_eiou":
                f = np.ones_like(iou) if gamma == 0 else iou**gamma
                e = loss
                loss = f * e
                g_iou = -f
                g_cw, g_ch, g_dx, g_dy = f * g_cw, f * g_ch, f * g_dx, f * g_dy
                g_w1, g_w2, g_h1, g_h2 = f * g_w1, f * g_w2, f * g_h1, f * g_h2
                if not detach_weight:
                    pos = iou > 0
                    safe = np.where(pos, iou, 1.0)
                    g_iou = g_iou + np.where(pos, e * gamma * safe ** (gamma - 1), 0.0)
    if not need_grad:
        return loss, None
    g_utot = g_u - g_iou * iou / ue
    g_i = g_iou / ue - g_utot
    g_ix, g_iy = np.where(mask, g_i * iy, 0.0), np.where(mask, g_i * ix, 0.0)
    g_w1, g_h1 = g_w1 + g_utot * h1, g_h1 + g_utot * w1
    g_w2, g_h2 = g_w2 + g_utot * h2, g_h2 + g_utot * w2
    sk1x, sk1y = _share_max(x1, X1), _share_max(y1, Y1)  # max(x1, X1): x1's share
    sk2x, sk2y = _share_max(X2, x2), _share_max(Y2, y2)  # min(x2, X2): x2's share
    sc1x, sc1y = _share_max(X1, x1), _share_max(Y1, y1)  # min(x1, X1): x1's share
    sc2x, sc2y = _share_max(x2, X2), _share_max(y2, Y2)  # max(x2, X2): x2's share
    hx, hy = 0.5 * g_dx, 0.5 * g_dy
    g1 = np.stack(
        [
            -g_w1 + hx - sk1x * g_ix - sc1x * g_cw,
            -g_h1 + hy - sk1y * g_iy - sc1y * g_ch,
            g_w1 + hx + sk2x * g_ix + sc2x * g_cw,
            g_h1 + hy + sk2y * g_iy + sc2y * g_ch,
        ],
        axis=1,
    )
    g2 = np.stack(
        [
            -g_w2 - hx - (1 - sk1x) * g_ix - (1 - sc1x) * g_cw,
            -g_h2 - hy - (1 - sk1y) * g_iy - (1 - sc1y) * g_ch,
            g_w2 - hx + (1 - sk2x) * g_ix + (1 - sc2x) * g_cw,
            g_h2 - hy + (1 - sk2y) * g_iy + (1 - sc2y) * g_ch,
        ],
        axis=1,
    )
    return loss, (g1, g2)


def box_loss(
    kind,
    boxes1,
    boxes2,
    *,
    reduction,
    grad_output=None,
    need_grad=False,
    weight=None,
    eps=1e-7,
    fmt="xyxy",
    ciou_alpha="torchvision",
    gamma=0.5,
    detach_weight=True,
    validate=False,
):
    """The box loss `kind` (a value of BOX_LOSSES) of boxes (N, 4) or (4,): (loss, grads)."""
    del validate  # checked by the caller, before either backend
    a, b = _f64(boxes1), _f64(boxes2)
    unbatched = a.ndim == 1
    a2, b2 = a.reshape(-1, 4), b.reshape(-1, 4)
    n = a2.shape[0]
    with np.errstate(all="ignore"):
        c1 = np.stack(_xyxy(a2, fmt), axis=1)
        c2 = np.stack(_xyxy(b2, fmt), axis=1)
        per, grads = _per_box(kind, c1, c2, eps, ciou_alpha, gamma, detach_weight, need_grad)
        w = None if weight is None else _f64(weight).reshape(-1)
        if w is not None:
            per = w * per
        if reduction == "none":
            loss = per.reshape(()) if unbatched else per
        elif reduction == "sum":
            loss = np.float64(np.sum(per))
        else:
            loss = np.float64(np.sum(per) / n) if n else np.float64(0.0)
        if not need_grad:
            return loss, None
        if reduction == "mean" and not n:
            scale = np.float64(0.0)
        else:
            scale = _f64(_grad_scale(reduction, n, grad_output))
        scale = np.broadcast_to(scale, (n,)) if np.ndim(scale) == 0 else scale.reshape(-1)
        if w is not None:
            scale = scale * w
        out = []
        for g in grads:
            g = g * scale[:, None]
            if fmt == "cxcywh":
                g = _cxcywh_grad(g)
            out.append(g.reshape(a.shape))
    return loss, tuple(out)


def focal_l1_loss(
    x, target, *, reduction, grad_output=None, need_grad=False, alpha=1.0, beta=INV_E
):
    """Focal L1 (Zhang et al., arXiv 2101.08158) of d = x - target, on z = |d|:
    -alpha z^2 (2 ln(beta z) - 1) / 4 for z <= 1, -alpha ln(beta) z + (2 alpha ln(beta) +
    alpha) / 4 for z > 1 (continuous, with a continuous derivative -alpha z ln(beta z), 0 at
    z = 0, then -alpha ln(beta))."""
    from ._math import _reduce

    x, t = _f64(x), _f64(target)
    d = x - t
    z = np.abs(d)
    lnb = np.log(beta)
    with np.errstate(all="ignore"):
        inner = z <= 1
        zi = np.where(inner, z, 1.0)
        lz = np.log(zi) + lnb
        per = np.where(
            inner,
            np.where(zi > 0, -alpha * zi**2 * (2 * lz - 1) / 4, 0.0),
            -alpha * lnb * z + (2 * alpha * lnb + alpha) / 4,
        )
        per = np.where(np.isnan(d), np.nan, per)
        loss = _reduce(per, reduction, per.size)
        if not need_grad:
            return loss, None
        gz = np.where(inner, np.where(zi > 0, -alpha * zi * lz, 0.0), -alpha * lnb)
        g = np.sign(d) * gz
        g = np.where(np.isnan(d), np.nan, g)
        return loss, g * _grad_scale(reduction, per.size, grad_output)


def _named(name):
    kind = BOX_LOSSES[name]

    def twin(boxes1, boxes2, *, reduction, grad_output=None, need_grad=False, **options):
        return box_loss(
            kind,
            boxes1,
            boxes2,
            reduction=reduction,
            grad_output=grad_output,
            need_grad=need_grad,
            **options,
        )

    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = f"The float64 reference of fastloss.{name}: box_loss({kind!r}, ...)."
    return twin


iou_loss = _named("iou_loss")
generalized_box_iou_loss = _named("generalized_box_iou_loss")
distance_box_iou_loss = _named("distance_box_iou_loss")
complete_box_iou_loss = _named("complete_box_iou_loss")
efficient_iou_loss = _named("efficient_iou_loss")
focal_eiou_loss = _named("focal_eiou_loss")
