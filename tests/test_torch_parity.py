"""fastloss vs PyTorch (float64 autograd on the very same input values).

A seeded random sweep of option combinations for cross_entropy / nll_loss, and the softmax
focal loss against a torch composition of its formula at moderate logits.  float32 results
are compared with torch in float64 on the (exactly upcast) float32 inputs.
"""

import zlib

import numpy as np
import pytest

import fastloss

from _helpers import assert_close

torch = pytest.importorskip("torch")
F = torch.nn.functional

N_COMBOS = 300


pytestmark = pytest.mark.usefixtures("torch_single_thread")
FAMILIES = ["NC", "NC", "NCd", "NCdd", "C", "NC-wide", "NC-fortran", "NCd-strided"]


def _shape(rng, family):
    if family in ("NC", "NC-fortran"):
        return (int(rng.integers(1, 40)), int(rng.integers(2, 40)))
    if family == "NC-wide":
        return (int(rng.integers(1, 4)), int(rng.integers(300, 2000)))
    if family in ("NCd", "NCd-strided"):
        return (int(rng.integers(1, 5)), int(rng.integers(2, 13)), int(rng.integers(1, 21)))
    if family == "NCdd":
        return (
            int(rng.integers(1, 4)),
            int(rng.integers(2, 9)),
            int(rng.integers(1, 8)),
            int(rng.integers(1, 8)),
        )
    return (int(rng.integers(2, 40)),)  # unbatched


def make_combos():
    rng = np.random.default_rng(20240611)
    combos = []
    for i in range(N_COMBOS):
        fn = str(rng.choice(["cross_entropy"] * 4 + ["nll_loss"]))
        prob = fn == "cross_entropy" and rng.random() < 0.25
        c = {
            "i": i,
            "fn": fn,
            "family": str(rng.choice(FAMILIES)),
            "dtype": str(rng.choice(["float32", "float64"])),
            "reduction": str(rng.choice(["none", "mean", "sum"])),
            "weight": bool(rng.random() < 0.4),
            "ignore": None if prob else rng.choice([None, -100, "in-range"]),
            "smoothing": float(rng.choice([0.0, 0.0, 0.05, 0.3, 1.0]))
            if fn == "cross_entropy"
            else 0.0,
            "prob": prob,
            "grad_output": bool(rng.random() < 0.5),
            "extreme": str(rng.choice(["none", "none", "scale1e3", "offset1e4", "both"])),
            "seed": int(rng.integers(2**31)),
        }
        combos.append(c)
    return combos


def combo_id(c):
    return (
        f"{c['i']}-{c['fn']}-{c['family']}-{c['dtype']}-{c['reduction']}"
        f"{'-w' if c['weight'] else ''}{'-ign' + str(c['ignore']) if c['ignore'] else ''}"
        f"{'-ls' + str(c['smoothing']) if c['smoothing'] else ''}"
        f"{'-prob' if c['prob'] else ''}{'-go' if c['grad_output'] else ''}-{c['extreme']}"
    )


COMBOS = make_combos()


def build(c):
    rng = np.random.default_rng(c["seed"])
    dtype = np.dtype(c["dtype"])
    shape = _shape(rng, c["family"])
    C = shape[0] if len(shape) == 1 else shape[1]
    x = rng.standard_normal(shape)
    if c["extreme"] in ("scale1e3", "both"):
        x *= 1e3
    if c["extreme"] in ("offset1e4", "both"):
        x += 1e4 * rng.choice([-1.0, 1.0])
    if c["fn"] == "nll_loss" and c["extreme"] == "none":
        x = x - np.log(np.exp(x).sum(axis=0 if x.ndim == 1 else 1, keepdims=True))
    x = x.astype(dtype)
    if c["family"] == "NC-fortran":
        x = np.asfortranarray(x)
    elif c["family"] == "NCd-strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    lshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    kw = {"reduction": c["reduction"]}
    if c["weight"]:
        kw["weight"] = rng.integers(1, 25, size=C) / 8.0
    if c["smoothing"]:
        kw["label_smoothing"] = c["smoothing"]
    if c["prob"]:
        t = rng.random(shape) * (rng.random(shape) < 0.7)
        axis = 0 if len(shape) == 1 else 1
        t = (t / np.maximum(t.sum(axis=axis, keepdims=True), 1e-3)).astype(dtype)
    else:
        t = np.asarray(rng.integers(0, C, size=lshape))
        if c["ignore"] is not None:
            ign = -100 if c["ignore"] == -100 else int(rng.integers(0, C))
            kw["ignore_index"] = ign
            mask = np.asarray(rng.random(lshape) < 0.3)
            t = np.where(mask, ign, t)
            if np.all(t == ign):  # keep one sample so that "mean" is defined
                t.reshape(-1)[0] = (ign + 1) % C if ign >= 0 else 0
    go = None
    if c["grad_output"]:
        go = rng.uniform(0.5, 1.5, size=lshape) if c["reduction"] == "none" else 0.7
    return x, t, kw, go


def torch_loss_and_grad(fn, x, t, kw, go):
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    tt = torch.from_numpy(np.asarray(t, dtype=np.float64 if t.dtype.kind == "f" else np.int64))
    tkw = dict(kw)
    if "weight" in tkw:
        tkw["weight"] = torch.from_numpy(np.asarray(tkw["weight"], dtype=np.float64))
    loss = getattr(F, fn)(xt, tt, **tkw)
    if go is None:
        upstream = torch.ones_like(loss)
    else:
        upstream = torch.as_tensor(np.asarray(go, dtype=np.float64)).reshape(loss.shape)
    loss.backward(upstream)
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("c", COMBOS, ids=combo_id)
def test_matches_torch(compiled, c):
    x, t, kw, go = build(c)
    exp_loss, exp_grad = torch_loss_and_grad(c["fn"], x, t, kw, go)
    f = getattr(fastloss, c["fn"])
    loss, grad = f(x, t, return_grad=True, grad_output=go, **kw)
    assert_close(loss, exp_loss, x.dtype, err_msg="loss")
    assert_close(grad, exp_grad, x.dtype, err_msg="grad")
    assert_close(f(x, t, **kw), exp_loss, x.dtype, err_msg="loss without grad")


def torch_focal(x, t, gamma, weight, ignore_index, reduction, go):
    """-w[y] (1 - p_y)^gamma log p_y composed from torch ops; "mean" / sum of w[y] kept."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    xb = xt[None] if xt.ndim == 1 else xt
    tb = torch.from_numpy(
        np.asarray(t, dtype=np.int64).reshape((-1,) + np.shape(t)[1:] if np.ndim(t) else (1,))
    )
    keep = tb != ignore_index
    ts = torch.where(keep, tb, torch.zeros_like(tb))
    logp = F.log_softmax(xb, dim=1)
    logp_y = logp.gather(1, ts.unsqueeze(1)).squeeze(1)
    p_y = logp_y.exp()
    w = (
        torch.ones(xb.shape[1], dtype=torch.float64)
        if weight is None
        else torch.from_numpy(np.asarray(weight, dtype=np.float64))
    )
    w_y = w[ts] * keep
    per = -w_y * (1 - p_y) ** gamma * logp_y
    if reduction == "mean":
        loss = per.sum() / w_y.sum()
    elif reduction == "sum":
        loss = per.sum()
    else:
        loss = per if xt.ndim > 1 else per[0]
    upstream = (
        torch.ones_like(loss)
        if go is None
        else torch.as_tensor(np.asarray(go, dtype=np.float64)).reshape(loss.shape)
    )
    loss.backward(upstream)
    return loss.detach().numpy(), xt.grad.numpy()


FOCAL = [
    (g, fam, dt, red, w, ign)
    for g in (0.0, 0.5, 1.0, 2.0, 3.5)
    for fam, dt, red, w, ign in [
        ("NC", "float64", "mean", True, -100),
        ("NCd", "float32", "none", False, 1),
        ("NCdd", "float64", "sum", True, 2),
        ("C", "float64", "none", False, -100),
        ("NC", "float32", "mean", False, 0),
        ("NC-wide", "float64", "none", True, -100),
        ("NCd-strided", "float64", "mean", True, -100),
        ("NC-fortran", "float32", "sum", True, 3),
    ]
]


@pytest.mark.parametrize("gamma,family,dtype,reduction,weighted,ignore", FOCAL)
def test_focal_matches_torch_composition(
    compiled, gamma, family, dtype, reduction, weighted, ignore
):
    c = {
        "fn": "focal_loss",
        "family": family,
        "dtype": dtype,
        "reduction": reduction,
        "weight": weighted,
        "ignore": ignore,
        "smoothing": 0.0,
        "prob": False,
        "grad_output": True,
        "extreme": "none",
        "seed": zlib.crc32(repr((gamma, family, dtype, reduction)).encode()),
    }
    x, t, kw, go = build(c)
    kw.pop("reduction")
    exp_loss, exp_grad = torch_focal(
        x, t, gamma, kw.get("weight"), kw.get("ignore_index", -100), reduction, go
    )
    loss, grad = fastloss.focal_loss(
        x, t, gamma=gamma, reduction=reduction, return_grad=True, grad_output=go, **kw
    )
    assert_close(loss, exp_loss, x.dtype, err_msg="loss")
    assert_close(grad, exp_grad, x.dtype, err_msg="grad")
