"""The box regression losses (registry family "box": iou_loss, generalized_box_iou_loss,
distance_box_iou_loss, complete_box_iou_loss, efficient_iou_loss, focal_eiou_loss) and
focal_l1_loss.

The oracle is torch 2.13 autograd through torchvision's own formulas, transcribed below from
pytorch/vision ``torchvision/ops/giou_loss.py``, ``diou_loss.py``, ``ciou_loss.py`` and
``_utils.py`` (the torchvision wheel built for torch 2.13 is a CUDA build that does not import
beside the CPU torch); EIoU and Focal-EIoU against a torch reference written from the paper's
formula (Zhang et al., arXiv 2101.08158); the compiled kernels against the NumPy twins on
every SIMD path; finite differences away from ties."""

import math

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _config
from fastloss._losses import LOSSES, losses

from _helpers import assert_close

BOX = [s.name for s in losses("box")]
REDUCTIONS = ("none", "mean", "sum")
torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ the torch oracle
# torchvision.ops, transcribed (pytorch/vision main): _upcast_non_float and _loss_inter_union
# from _utils.py, generalized_box_iou_loss, _diou_iou_loss / distance_box_iou_loss,
# complete_box_iou_loss.


def _upcast_non_float(t):
    if t.dtype not in (torch.float32, torch.float64):
        return t.float()
    return t


def _loss_inter_union(boxes1, boxes2):
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def tv_generalized_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    intsctk, unionk = _loss_inter_union(boxes1, boxes2)
    iouk = intsctk / (unionk + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return _reduce(1 - miouk, reduction)


def _diou_iou_loss(boxes1, boxes2, eps=1e-7):
    intsct, union = _loss_inter_union(boxes1, boxes2)
    iou = intsct / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    diagonal_distance_squared = ((xc2 - xc1) ** 2) + ((yc2 - yc1) ** 2) + eps
    x_p = (x2 + x1) / 2
    y_p = (y2 + y1) / 2
    x_g = (x1g + x2g) / 2
    y_g = (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    loss = 1 - iou + (centers_distance_squared / diagonal_distance_squared)
    return loss, iou


def tv_distance_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    loss, _ = _diou_iou_loss(boxes1, boxes2, eps)
    return _reduce(loss, reduction)


def tv_complete_box_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7, alpha_mode="tv"):
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    diou_loss, iou = _diou_iou_loss(boxes1, boxes2)  # torchvision: eps not forwarded
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    w_pred = x2 - x1
    h_pred = y2 - y1
    w_gt = x2g - x1g
    h_gt = y2g - y1g
    v = (4 / (torch.pi**2)) * torch.pow((torch.atan(w_gt / h_gt) - torch.atan(w_pred / h_pred)), 2)
    with torch.no_grad():
        if alpha_mode == "mmdet":  # mmdetection >= 2.16 (PR 5835)
            alpha = (iou > 0.5).to(v.dtype) * v / (1 - iou + v)
        elif alpha_mode == "yolo":  # ultralytics bbox_iou
            alpha = v / (v - iou + (1 + eps))
        else:
            alpha = v / (1 - iou + v + eps)
    loss = diou_loss + alpha * v
    return _reduce(loss, reduction)


def tv_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    """1 - IoU with torchvision's intersection and eps (torchvision has no IoU loss)."""
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    intsct, union = _loss_inter_union(boxes1, boxes2)
    return _reduce(1 - intsct / (union + eps), reduction)


# EIoU and Focal-EIoU from the paper's formula (Zhang et al.: L_EIoU = 1 - IoU + rho^2 / c^2 +
# rho^2(w, w_gt) / C_w^2 + rho^2(h, h_gt) / C_h^2, L_Focal-EIoU = IoU^gamma L_EIoU), eps where
# the YOLO implementations put it, the IoU^gamma weight detached as they do (or not).
def paper_efficient_iou_loss(boxes1, boxes2, reduction="none", eps=1e-7):
    return _reduce(_paper_eiou(boxes1, boxes2, eps)[0], reduction)


def _paper_eiou(boxes1, boxes2, eps):
    boxes1, boxes2 = _upcast_non_float(boxes1), _upcast_non_float(boxes2)
    inter, union = _loss_inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    cw = torch.max(x2, x2g) - torch.min(x1, x1g)
    ch = torch.max(y2, y2g) - torch.min(y1, y1g)
    rho2 = ((x1g + x2g - x1 - x2) ** 2 + (y1g + y2g - y1 - y2) ** 2) / 4
    rho_w2 = ((x2g - x1g) - (x2 - x1)) ** 2
    rho_h2 = ((y2g - y1g) - (y2 - y1)) ** 2
    eiou = 1 - iou + rho2 / (cw**2 + ch**2 + eps) + rho_w2 / (cw**2 + eps) + rho_h2 / (ch**2 + eps)
    return eiou, iou


def paper_focal_eiou_loss(boxes1, boxes2, reduction="none", eps=1e-7, gamma=0.5, detach=True):
    eiou, iou = _paper_eiou(boxes1, boxes2, eps)
    weight = iou.detach() ** gamma if detach else iou**gamma
    return _reduce(weight * eiou, reduction)


ORACLES = {
    "iou_loss": tv_iou_loss,
    "generalized_box_iou_loss": tv_generalized_box_iou_loss,
    "distance_box_iou_loss": tv_distance_box_iou_loss,
    "complete_box_iou_loss": tv_complete_box_iou_loss,
    "efficient_iou_loss": paper_efficient_iou_loss,
    "focal_eiou_loss": paper_focal_eiou_loss,
}


def oracle(name, b1, b2, reduction="none", eps=1e-7, fmt="xyxy", weight=None, **opts):
    """(loss, grad1, grad2) of torch autograd through the oracle, in the boxes' dtype
    (float64 unless both are float32, as torch computes them)."""
    dt = np.result_type(np.asarray(b1).dtype, np.asarray(b2).dtype, np.float32)
    t1 = torch.tensor(np.asarray(b1, dtype=dt), requires_grad=True)
    t2 = torch.tensor(np.asarray(b2, dtype=dt), requires_grad=True)
    c1, c2 = t1, t2
    if fmt == "cxcywh":  # torchvision's _box_cxcywh_to_xyxy
        c1, c2 = [
            torch.stack(
                [
                    t[..., 0] - 0.5 * t[..., 2],
                    t[..., 1] - 0.5 * t[..., 3],
                    t[..., 0] + 0.5 * t[..., 2],
                    t[..., 1] + 0.5 * t[..., 3],
                ],
                dim=-1,
            )
            for t in (t1, t2)
        ]
    kw = {}
    if name == "complete_box_iou_loss":
        kw["alpha_mode"] = {"torchvision": "tv", "mmdet": "mmdet", "yolo": "yolo"}[
            opts.get("ciou_alpha", "torchvision")
        ]
    if name == "focal_eiou_loss":
        kw["gamma"] = opts.get("gamma", 0.5)
        kw["detach"] = opts.get("detach_weight", True)
    per = ORACLES[name](c1, c2, "none", eps, **kw)
    if weight is not None:
        per = per * torch.tensor(np.asarray(weight, dtype=dt))
    loss = _reduce(per, reduction)
    if loss.requires_grad:
        g1, g2 = torch.autograd.grad(loss.sum(), (t1, t2), allow_unused=True)
    else:
        g1, g2 = torch.zeros_like(t1), torch.zeros_like(t2)
    g1, g2 = g1.numpy(), g2.numpy()
    if name == "focal_eiou_loss" and not kw["detach"]:
        # fastloss's one departure: where IoU = 0 (torch's pow backward: NaN) the weight's
        # term is 0, so the gradient is the detached one there
        iou = _loss_inter_union(c1.detach(), c2.detach())[0].numpy() == 0
        if iou.any():
            detached = oracle(
                name, b1, b2, reduction, eps, fmt, weight, **dict(opts, detach_weight=True)
            )
            zero = iou.reshape(iou.shape + (1,))
            g1, g2 = np.where(zero, detached[1], g1), np.where(zero, detached[2], g2)
    return loss.detach().numpy(), g1, g2


# ------------------------------------------------------------------ the boxes


def random_boxes(n, seed=0, scale=10.0):
    """Two sets of valid xyxy boxes, partly overlapping, partly not."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, scale, (n, 2))
    wh = rng.uniform(0.1, scale / 2, (n, 2))
    b1 = np.concatenate([xy, xy + wh], axis=1)
    jitter = rng.normal(0, scale / 4, (n, 4))
    b2 = b1 + jitter
    b2[:, 2:] = np.maximum(b2[:, 2:], b2[:, :2] + 0.05)
    return b1, b2


def adversarial_boxes():
    """Pairs on the ties and edges: identical, shared edges, touching, nested, disjoint,
    zero-area, degenerate, huge coordinates (pred == target exactly in several)."""
    p = [
        ([0, 0, 2, 2], [0, 0, 2, 2]),  # identical
        ([1, 1, 3, 4], [1, 1, 3, 4]),
        ([0, 0, 2, 2], [0, 0, 3, 3]),  # shared x1, y1
        ([0, 0, 2, 2], [1, 0, 2, 3]),  # shared y1, x2
        ([0, 0, 2, 2], [2, 0, 4, 2]),  # touching along x
        ([0, 0, 2, 2], [2, 2, 4, 4]),  # touching at a corner
        ([0, 0, 4, 4], [1, 1, 2, 3]),  # nested
        ([1, 1, 2, 3], [0, 0, 4, 4]),  # nested, other way
        ([0, 0, 1, 1], [5, 5, 7, 9]),  # disjoint
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # zero boxes (GIoU loss 1, pytorch/vision 7746)
        ([0, 0, 0, 2], [0, 0, 1, 2]),  # zero width
        ([1, 1, 1, 1], [0, 0, 2, 2]),  # a point inside
        ([2, 2, 0, 0], [0, 0, 2, 2]),  # inverted (x2 < x1)
        ([1e6, 2e6, 1e6 + 30, 2e6 + 10], [1e6 + 5, 2e6 + 1, 1e6 + 40, 2e6 + 12]),  # huge
        ([-1e5, -1e5, 1e5, 1e5], [-1e5, -1e5, 1e5, 1e5]),  # huge identical
        ([0.0, 0.0, 1e-3, 1e-3], [5e-4, 5e-4, 2e-3, 1.5e-3]),  # tiny
    ]
    b1 = np.array([a for a, _ in p], dtype=np.float64)
    b2 = np.array([b for _, b in p], dtype=np.float64)
    return b1, b2


def _cases(name):
    spec = LOSSES[name]
    return [{}] + [dict(e) for e in spec.examples if "fmt" not in e]


def _call(name, b1, b2, **kw):
    return getattr(fastloss, name)(b1, b2, return_grad=True, grad_boxes2=True, **kw)


def _check_against(name, got, exp, dtype, msg, rtol=None, atol=None):
    loss, (g1, g2) = got
    el, e1, e2 = exp
    assert_close(loss, el, dtype, rtol=rtol, atol=atol, err_msg=f"{msg} loss")
    assert_close(g1, e1, dtype, rtol=rtol, atol=atol, err_msg=f"{msg} grad boxes1")
    assert_close(g2, e2, dtype, rtol=rtol, atol=atol, err_msg=f"{msg} grad boxes2")


# ------------------------------------------------------------------ against torch


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", BOX)
def test_random_boxes_match_torch(name, dtype, backend):
    if backend == "compiled" and _config._kernels is None:
        pytest.skip("compiled kernels not available")
    b1, b2 = random_boxes(301, seed=len(name))
    b1, b2 = b1.astype(dtype), b2.astype(dtype)
    with fastloss.use_backend(backend):
        for opts in _cases(name):
            for reduction in REDUCTIONS:
                got = _call(name, b1, b2, reduction=reduction, **opts)
                exp = oracle(name, b1, b2, reduction, **opts)
                _check_against(name, got, exp, dtype, f"{opts} {reduction}")
                assert got[0].dtype == dtype and got[1][0].dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", BOX)
def test_adversarial_boxes_and_ties_match_torch(simd, name, dtype):
    """Ties (pred == target: torch.max/min split the gradient in halves), touching boxes
    (no gradient through the strict intersection mask), zero-area and inverted boxes (NaN
    where torchvision gives NaN), huge coordinates: values and both gradients, per box."""
    b1, b2 = adversarial_boxes()
    b1, b2 = b1.astype(dtype), b2.astype(dtype)
    for opts in _cases(name):
        for reduction in REDUCTIONS:
            got = _call(name, b1, b2, reduction=reduction, **opts)
            exp = oracle(name, b1, b2, reduction, **opts)
            _check_against(name, got, exp, dtype, f"{opts} {reduction}")


@pytest.mark.parametrize("name", BOX)
def test_identical_boxes_split_the_gradient_like_torch(name):
    """pred == target: every max/min is a tie; the halves must match torch's.  The IoU's
    gradient there is eps / (U + eps)^2 from two terms of about 1 / U that cancel, so its
    rounding is amplified by U / eps (1e7 here): 2e-9 relative on the FMA-less paths."""
    b = np.array([[1.0, 2.0, 4.0, 3.0], [0.5, 0.5, 1.5, 2.5]])
    got = _call(name, b, b.copy(), reduction="sum")
    exp = oracle(name, b, b, "sum")
    _check_against(name, got, exp, np.float64, "identical", rtol=1e-7)


@pytest.mark.parametrize("name", BOX)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_matches_reference_on_every_simd_path(simd, name, dtype):
    fn, ref = getattr(fastloss, name), getattr(REF, name)
    for n in (0, 1, 3, 17, 130):
        b1, b2 = random_boxes(n, seed=n)
        b1, b2 = b1.astype(dtype), b2.astype(dtype)
        w = np.linspace(0.5, 2.0, n).astype(dtype)
        for opts in [dict(e) for e in LOSSES[name].examples] + [{}, {"weight": w}]:
            for reduction in REDUCTIONS:
                go = np.random.default_rng(1).random(n) if reduction == "none" else 0.75
                kw = dict(reduction=reduction, grad_output=go, **opts)
                got, exp = _call(name, b1, b2, **kw), ref(b1, b2, **kw, return_grad=True)
                msg = f"n={n} {opts} {reduction}"
                assert_close(got[0], exp[0], dtype, err_msg=msg)
                assert_close(got[1][0], exp[1], dtype, err_msg=msg)
                _, g1 = fn(b1, b2, return_grad=True, **kw)
                assert_close(g1, exp[1], dtype, err_msg=msg)


@pytest.mark.parametrize("name", BOX)
def test_cxcywh_matches_torch_through_box_convert(name):
    b1, b2 = random_boxes(40, seed=3)
    c1 = np.concatenate([(b1[:, :2] + b1[:, 2:]) / 2, b1[:, 2:] - b1[:, :2]], axis=1)
    c2 = np.concatenate([(b2[:, :2] + b2[:, 2:]) / 2, b2[:, 2:] - b2[:, :2]], axis=1)
    for reduction in REDUCTIONS:
        got = _call(name, c1, c2, reduction=reduction, fmt="cxcywh")
        exp = oracle(name, c1, c2, reduction, fmt="cxcywh")
        _check_against(name, got, exp, np.float64, f"cxcywh {reduction}")


@pytest.mark.parametrize("name", BOX)
def test_weight_and_eps_match_torch(name):
    b1, b2 = random_boxes(25, seed=4)
    w = np.random.default_rng(0).uniform(0, 3, 25)
    for reduction in REDUCTIONS:
        for eps in (0.0, 1e-7, 0.5):
            got = _call(name, b1, b2, reduction=reduction, weight=w, eps=eps)
            exp = oracle(name, b1, b2, reduction, eps=eps, weight=w)
            _check_against(name, got, exp, np.float64, f"eps={eps} {reduction}")


# ------------------------------------------------------------------ finite differences


@pytest.mark.parametrize("name", BOX)
def test_gradients_match_finite_differences(name):
    """Away from ties (distinct coordinates, overlapping boxes), both gradients."""
    rng = np.random.default_rng(7)
    b1, b2 = random_boxes(6, seed=8)
    b2 = b2 + rng.uniform(0.01, 0.02, b2.shape)  # no coordinate equal to the other box's
    fn = getattr(fastloss, name)
    for opts in _cases(name) + [{"fmt": "cxcywh"}]:
        _, (g1, g2) = fn(b1, b2, reduction="sum", return_grad=True, grad_boxes2=True, **opts)
        h = 1e-6
        for which, g in ((0, g1), (1, g2)):
            num = np.empty_like(g)
            for i in np.ndindex(g.shape):
                args_p, args_m = [b1.copy(), b2.copy()], [b1.copy(), b2.copy()]
                args_p[which][i] += h
                args_m[which][i] -= h
                fp = fn(*args_p, reduction="sum", **opts)
                fm = fn(*args_m, reduction="sum", **opts)
                num[i] = (fp - fm) / (2 * h)
            if name == "complete_box_iou_loss":  # alpha is a constant only in the gradient
                continue
            if (
                name == "focal_eiou_loss"
                and opts.get("detach_weight", True)
                and opts.get("gamma", 0.5)
            ):
                continue  # the detached weight: not the derivative of the value
            np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6, err_msg=f"{opts} {which}")


def test_ciou_and_detached_focal_gradients_are_their_formulas_with_constant_weights():
    """Finite differences of the loss with alpha (CIoU) and IoU^gamma (Focal-EIoU) frozen at
    the point: exactly the gradient returned."""
    b1, b2 = random_boxes(5, seed=9)
    h = 1e-6
    a1 = REF.complete_box_iou_loss  # for alpha
    del a1
    # CIoU: loss - alpha v with alpha frozen = DIoU + alpha0 v
    t1, t2 = torch.tensor(b1), torch.tensor(b2)
    _, iou = _diou_iou_loss(t1, t2)
    w1, h1 = b1[:, 2] - b1[:, 0], b1[:, 3] - b1[:, 1]
    w2, h2 = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]
    v0 = 4 / math.pi**2 * (np.arctan(w2 / h2) - np.arctan(w1 / h1)) ** 2
    alpha0 = v0 / (1 - iou.numpy() + v0 + 1e-7)

    def frozen(b):
        w, hh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        v = 4 / math.pi**2 * (np.arctan(w2 / h2) - np.arctan(w / hh)) ** 2
        return float(np.sum(fastloss.distance_box_iou_loss(b, b2) + alpha0 * v))

    _, g = fastloss.complete_box_iou_loss(b1, b2, reduction="sum", return_grad=True)
    num = np.empty_like(g)
    for i in np.ndindex(g.shape):
        bp, bm = b1.copy(), b1.copy()
        bp[i] += h
        bm[i] -= h
        num[i] = (frozen(bp) - frozen(bm)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ edge cases


def test_torchvision_degenerate_values():
    z = np.zeros(4)
    assert fastloss.generalized_box_iou_loss(z, z) == 1.0  # pytorch/vision issue 7746
    assert fastloss.iou_loss(z, z) == 1.0
    assert np.isnan(fastloss.complete_box_iou_loss(z, z))  # atan(0/0), as torchvision
    _, g = fastloss.generalized_box_iou_loss(z, z, return_grad=True)
    assert np.isfinite(g).all()


@pytest.mark.parametrize("name", BOX)
def test_unbatched_empty_and_dtypes(name):
    fn = getattr(fastloss, name)
    b1, b2 = random_boxes(3, seed=1)
    loss, g = fn(b1[0], b2[0], return_grad=True)
    assert loss.shape == () and g.shape == (4,)
    assert_close(loss, fn(b1, b2)[0], np.float64)
    assert_close(g, fn(b1, b2, reduction="sum", return_grad=True)[1][0], np.float64)
    e = np.zeros((0, 4))
    assert fn(e, e, reduction="mean") == 0.0  # torchvision: 0.0 * loss.sum()
    assert fn(e, e, reduction="sum") == 0.0
    loss, (g1, g2) = fn(e, e, reduction="mean", return_grad=True, grad_boxes2=True)
    assert loss == 0.0 and g1.shape == g2.shape == (0, 4)
    assert fn(e, e).shape == (0,)
    # float16 and integers compute in float32 (torchvision's _upcast_non_float)
    half = fn(b1.astype(np.float16), b2.astype(np.float16))
    assert half.dtype == np.float32
    assert_close(
        half,
        fn(b1.astype(np.float16).astype(np.float32), b2.astype(np.float16).astype(np.float32)),
        np.float32,
    )
    ints = fn(np.array([[0, 0, 4, 4]]), np.array([[1, 1, 5, 6]]))
    assert ints.dtype == np.float32
    assert_close(ints, fn(np.array([[0.0, 0, 4, 4]]), np.array([[1.0, 1, 5, 6]])), np.float32)
    # mixed float32/float64 compute in float64
    assert fn(b1.astype(np.float32), b2).dtype == np.float64


def test_validate_rejects_degenerate_boxes_clearly():
    good = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 3.0]])
    fastloss.generalized_box_iou_loss(good, good, validate=True)
    for bad_box in ([1.0, 0.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0], [0.0, 0.0, np.nan, 1.0]):
        bad = good.copy()
        bad[1] = bad_box
        with pytest.raises(ValueError, match=r"boxes2: box 1 .*degenerate"):
            fastloss.distance_box_iou_loss(good, bad, validate=True)
        with pytest.raises(ValueError, match=r"boxes1: box 1"):
            fastloss.iou_loss(bad, good, validate=True)
        fastloss.iou_loss(bad, good)  # without validate: computed as torchvision
    with pytest.raises(ValueError, match="w > 0 and h > 0"):
        fastloss.iou_loss(np.array([0.0, 0.0, 0.0, 1.0]), good[0], fmt="cxcywh", validate=True)


def test_errors_name_the_argument():
    b = np.zeros((3, 4))
    with pytest.raises(ValueError, match="boxes1 must have shape"):
        fastloss.generalized_box_iou_loss(np.zeros((3, 5)), b)
    with pytest.raises(ValueError, match="same shape"):
        fastloss.generalized_box_iou_loss(b, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="fmt"):
        fastloss.iou_loss(b, b, fmt="xywh")
    with pytest.raises(ValueError, match="ciou_alpha"):
        fastloss.complete_box_iou_loss(b, b, ciou_alpha="v5")
    with pytest.raises(ValueError, match="reduction"):
        fastloss.iou_loss(b, b, reduction="batchmean")
    with pytest.raises(ValueError, match="eps"):
        fastloss.iou_loss(b, b, eps=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        fastloss.focal_eiou_loss(b, b, gamma=-1.0)
    with pytest.raises(ValueError, match="grad_boxes2"):
        fastloss.iou_loss(b, b, grad_boxes2=True)
    with pytest.raises(ValueError, match="weight"):
        fastloss.iou_loss(b, b, weight=np.ones(2))
    with pytest.raises(TypeError, match="boxes2"):
        fastloss.iou_loss(b, np.array([["a"] * 4] * 3))
    with pytest.raises(ValueError, match="grad_output"):
        fastloss.iou_loss(b, b, grad_output=1.0)


def test_grad_out_buffers_and_in_place():
    b1, b2 = random_boxes(33, seed=5)
    _, (e1, e2) = fastloss.complete_box_iou_loss(
        b1, b2, reduction="mean", return_grad=True, grad_boxes2=True
    )
    o1, o2 = np.empty_like(b1), np.empty_like(b2)
    _, (g1, g2) = fastloss.complete_box_iou_loss(
        b1, b2, reduction="mean", return_grad=True, grad_boxes2=True, grad_out=(o1, o2)
    )
    assert g1 is o1 and g2 is o2
    np.testing.assert_array_equal(o1, e1)
    np.testing.assert_array_equal(o2, e2)
    c1, c2 = b1.copy(), b2.copy()  # in place: each box's gradient over the box itself
    fastloss.complete_box_iou_loss(
        c1, c2, reduction="mean", return_grad=True, grad_boxes2=True, grad_out=(c1, c2)
    )
    np.testing.assert_array_equal(c1, e1)
    np.testing.assert_array_equal(c2, e2)
    with pytest.raises(ValueError, match="must not share memory"):
        fastloss.iou_loss(b1, b2, return_grad=True, grad_out=b2)


def test_focal_eiou_undetached_is_finite_at_zero_iou_and_torch_elsewhere():
    b1 = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    b2 = np.array([[3.0, 3.0, 4.0, 5.0], [2.0, 0.0, 3.0, 2.0], [0.5, 0.3, 2.5, 2.2]])
    loss, (g1, g2) = _call("focal_eiou_loss", b1, b2, detach_weight=False, reduction="none")
    assert np.isfinite(g1).all() and np.isfinite(g2).all()
    t1 = torch.tensor(b1, requires_grad=True)
    paper_focal_eiou_loss(t1, torch.tensor(b2), "sum", detach=False).backward()
    assert np.isnan(t1.grad[:2].numpy()).any()  # torch's pow backward at IoU = 0
    exp = oracle("focal_eiou_loss", b1, b2, detach_weight=False)
    assert_close(loss, exp[0], np.float64)
    assert_close(g1[2], exp[1][2], np.float64)
    assert_close(g2[2], exp[2][2], np.float64)
    # where IoU = 0 the weight's term is 0: the gradient is IoU^gamma (= 0) times EIoU's
    np.testing.assert_array_equal(g1[:2], 0.0)


def test_threads_give_bit_identical_results(restore_threads):
    b1, b2 = random_boxes(200_003, seed=2)
    out = []
    for n in (1, 2):
        fastloss.set_num_threads(n)
        out.append(
            fastloss.complete_box_iou_loss(
                b1, b2, reduction="mean", return_grad=True, grad_boxes2=True
            )
        )
    assert out[0][0] == out[1][0]
    np.testing.assert_array_equal(out[0][1][0], out[1][1][0])
    np.testing.assert_array_equal(out[0][1][1], out[1][1][1])


# ------------------------------------------------------------------ the torch bridge


@pytest.mark.parametrize("name", BOX)
def test_torch_bridge_matches_the_oracle(name):
    import fastloss.torch as FL

    b1, b2 = random_boxes(20, seed=11)
    for reduction in REDUCTIONS:
        t1 = torch.tensor(b1, requires_grad=True)
        t2 = torch.tensor(b2, requires_grad=True)
        loss = getattr(FL, name)(t1, t2, reduction=reduction)
        upstream = torch.rand(loss.shape, dtype=loss.dtype)
        (loss * upstream).sum().backward()
        r1 = torch.tensor(b1, requires_grad=True)
        r2 = torch.tensor(b2, requires_grad=True)
        exp = ORACLES[name](r1, r2, reduction)
        (exp * upstream).sum().backward()
        torch.testing.assert_close(loss, exp)
        torch.testing.assert_close(t1.grad, r1.grad)
        torch.testing.assert_close(t2.grad, r2.grad)
    module = FL.MODULES[name](reduction="sum")
    torch.testing.assert_close(
        module(torch.tensor(b1), torch.tensor(b2)),
        ORACLES[name](torch.tensor(b1), torch.tensor(b2), "sum"),
    )


def test_torch_bridge_float32_and_one_differentiable_input():
    import fastloss.torch as FL

    b1, b2 = random_boxes(10, seed=12)
    t1 = torch.tensor(b1, dtype=torch.float32, requires_grad=True)
    t2 = torch.tensor(b2, dtype=torch.float32)
    loss = FL.generalized_box_iou_loss(t1, t2, reduction="mean")
    loss.backward()
    r1 = torch.tensor(b1, dtype=torch.float32, requires_grad=True)
    tv_generalized_box_iou_loss(r1, t2, "mean").backward()
    assert loss.dtype == torch.float32
    torch.testing.assert_close(t1.grad, r1.grad, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ focal_l1_loss


def _paper_focal_l1(x, alpha, beta):
    """The Focal L1 of Zhang et al. from its formula: L = -a x^2 (2 ln(b x) - 1) / 4 on
    (0, 1], -a ln(b) x + C above, C = (2 a ln b + a) / 4; L(0) = 0."""
    x = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = -alpha * x**2 * (2 * np.log(beta * x) - 1) / 4
    c = (2 * alpha * np.log(beta) + alpha) / 4
    return np.where(x == 0, 0.0, np.where(x <= 1, inner, -alpha * np.log(beta) * x + c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_focal_l1_matches_the_paper_formula(simd, dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1.5, 501), [0.0, 1.0, -1.0, 1e-30, 3.0]]).astype(dtype)
    t = np.zeros_like(x)
    for alpha, beta in ((1.0, math.exp(-1)), (-1 / math.log(0.1), 0.1), (0.5, 0.2)):
        loss = fastloss.focal_l1_loss(x, t, alpha=alpha, beta=beta, reduction="none")
        assert_close(loss, _paper_focal_l1(x.astype(np.float64), alpha, beta), dtype)
        # its gradient: -a |d| ln(b |d|) sign(d) on |d| <= 1, -a ln(b) sign(d) above
        _, g = fastloss.focal_l1_loss(
            x, t, alpha=alpha, beta=beta, reduction="sum", return_grad=True
        )
        z = np.abs(x.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            gz = np.where(
                z == 0, 0.0, np.where(z <= 1, -alpha * z * np.log(beta * z), -alpha * np.log(beta))
            )
        assert_close(g, np.sign(x) * gz, dtype)


def test_focal_l1_is_continuous_with_its_slope_at_one():
    a, b = 0.7, 0.25
    x = np.array([1 - 1e-9, 1.0, 1 + 1e-9])
    loss = fastloss.focal_l1_loss(x, np.zeros(3), alpha=a, beta=b, reduction="none")
    assert np.ptp(loss) < 1e-8
    _, g = fastloss.focal_l1_loss(
        x, np.zeros(3), alpha=a, beta=b, reduction="sum", return_grad=True
    )
    np.testing.assert_allclose(g, -a * math.log(b), rtol=1e-7)
    # the defaults tie alpha ln(beta) = -1: gradient 1 from |d| = 1 on, like l1_loss
    _, g = fastloss.focal_l1_loss(
        np.array([1.0, 5.0, -2.0]), np.zeros(3), reduction="sum", return_grad=True
    )
    np.testing.assert_allclose(g, [1.0, 1.0, -1.0], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_ciou_aspect_term_over_many_orders_of_magnitude(simd, dtype):
    """CIoU - DIoU = alpha v, v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2: the kernels' vector
    atan of a ratio (every range of its reduction, and w/h from 1e-6 to 1e6) against
    NumPy's arctan on the same (rounded) sides."""
    rng = np.random.default_rng(3)
    n = 2000
    w1, h1, w2, h2 = (10.0 ** rng.uniform(-3, 3, n) for _ in range(4))
    b1 = np.stack([np.zeros(n), np.zeros(n), w1, h1], axis=1).astype(dtype)
    b2 = np.stack([np.zeros(n), np.zeros(n), w2, h2], axis=1).astype(dtype)
    got = fastloss.complete_box_iou_loss(b1, b2) - fastloss.distance_box_iou_loss(b1, b2)
    c1, c2 = b1.astype(np.float64), b2.astype(np.float64)
    t = np.arctan(c2[:, 2] / c2[:, 3]) - np.arctan(c1[:, 2] / c1[:, 3])
    v = 4 / np.pi**2 * t**2
    inter = np.minimum(c1[:, 2], c2[:, 2]) * np.minimum(c1[:, 3], c2[:, 3])
    iou = inter / (c1[:, 2] * c1[:, 3] + c2[:, 2] * c2[:, 3] - inter + 1e-7)
    exp = v / (1 - iou + v + 1e-7) * v
    # float32: the atan's 3 ulp and the float32 difference of the two losses (values <= 1)
    np.testing.assert_allclose(
        got,
        exp,
        rtol=1e-9 if dtype == np.float64 else 0,
        atol=1e-15 if dtype == np.float64 else 3e-7,
    )
