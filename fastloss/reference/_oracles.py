"""Oracles written in torch for the losses torch.nn.functional does not have.

Used by the tests and by ``fastloss bench`` as the peers of fastloss's functions; torch is
imported only when one is called.
"""

__all__ = ["torchvision_sigmoid_focal_loss", "torchvision_box_loss", "torch_focal_l1_loss"]


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss's formula written in torch (torchvision itself is not
    needed): the peer of fastloss.sigmoid_focal_loss in the benchmark and in the tests."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _upcast_non_float(t):
    import torch

    return t.float() if t.dtype not in (torch.float32, torch.float64) else t


def _inter_union(boxes1, boxes2):
    """torchvision.ops._utils._loss_inter_union: the strict-mask intersection and the union."""
    import torch

    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1, ykis1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xkis2, ykis2 = torch.min(x2, x2g), torch.min(y2, y2g)
    inter = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    inter[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def torchvision_box_loss(name, boxes1, boxes2, reduction="mean", eps=1e-7, gamma=0.5):
    """The box losses as torch autograd computes them through torchvision.ops' formulas
    (generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss: pytorch/vision
    giou_loss.py, diou_loss.py, ciou_loss.py, _utils.py), ``1 - IoU`` for iou_loss and the
    EIoU / Focal-EIoU formulas of Zhang et al. (weight detached, as the YOLO code): the
    benchmark's torch peers, written in torch ops (torchvision itself is not needed)."""
    import torch

    b1, b2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    inter, union = _inter_union(b1, b2)
    iou = inter / (union + (1e-7 if name == "complete_box_iou_loss" else eps))
    x1, y1, x2, y2 = b1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = b2.unbind(dim=-1)
    cw = torch.max(x2, x2g) - torch.min(x1, x1g)
    ch = torch.max(y2, y2g) - torch.min(y1, y1g)
    if name == "iou_loss":
        loss = 1 - iou
    elif name == "generalized_box_iou_loss":
        area_c = cw * ch
        loss = 1 - (iou - ((area_c - union) / (area_c + eps)))
    else:
        d_eps = 1e-7 if name == "complete_box_iou_loss" else eps
        diag = (cw**2) + (ch**2) + d_eps
        rho = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
        loss = 1 - iou + rho / diag
        w1, h1, w2, h2 = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
        if name == "complete_box_iou_loss":
            v = (4 / (torch.pi**2)) * torch.pow(torch.atan(w2 / h2) - torch.atan(w1 / h1), 2)
            with torch.no_grad():
                alpha = v / (1 - iou + v + eps)
            loss = loss + alpha * v
        elif name in ("efficient_iou_loss", "focal_eiou_loss"):
            loss = loss + (w1 - w2) ** 2 / (cw**2 + eps) + (h1 - h2) ** 2 / (ch**2 + eps)
            if name == "focal_eiou_loss":
                loss = iou.detach() ** gamma * loss
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def torch_focal_l1_loss(input, target, alpha=1.0, beta=0.36787944117144233, reduction="mean"):
    """Focal L1 (Zhang et al., arXiv 2101.08158) written in torch ops from the paper's formula,
    on x = |input - target|: -alpha x^2 (2 ln(beta x) - 1) / 4 for x <= 1, -alpha ln(beta) x
    + (2 alpha ln(beta) + alpha) / 4 above (0 at x = 0): the torch peer of
    fastloss.focal_l1_loss in the tests (torch has no Focal L1)."""
    import math

    import torch

    x = (input - target).abs()
    lnb = math.log(beta)
    safe = torch.where(x > 0, x, torch.ones_like(x))
    inner = -alpha * safe**2 * (2 * (torch.log(safe) + lnb) - 1) / 4
    inner = torch.where(x > 0, inner, torch.zeros_like(x))
    outer = -alpha * lnb * x + (2 * alpha * lnb + alpha) / 4
    loss = torch.where(x <= 1, inner, outer)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
