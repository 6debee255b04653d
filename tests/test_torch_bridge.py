"""fastloss.torch: the PyTorch autograd bridge.

* gradcheck (float64) of every loss and its option variants, including reduction="none"
  (so the per-sample upstream gradient broadcast over the class axis is checked entry by entry);
* values and gradients equal torch.nn.functional's (or the torch composition of the formula for
  the focal losses) for every loss, option variant, reduction and dtype, with a non-trivial
  upstream gradient, and the same for every nn.Module class;
* training parity: the same seeded MLP trained with torch's loss and with the bridge gives the
  same loss curve;
* errors (non-CPU tensors, targets/weights requiring grad, bad shapes, double backward);
* exactly one kernel call per forward+backward, zero-copy input and gradient buffers, on the
  fast path (canonical tensors straight to the kernel) and the general one (fastloss.<loss>);
  which calls take which path, and that both give torch's results;
* softmax / log_softmax / logsumexp against torch (values, gradients, gradcheck and
  gradgradcheck in float64);
* a clear TypeError under torch.func transforms (grad, vmap, jacrev, jvp).
"""

import copy
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastloss  # noqa: E402
import fastloss.torch as FL  # noqa: E402
from fastloss._losses import LOSSES  # noqa: E402
from fastloss.reference._oracles import torchvision_sigmoid_focal_loss  # noqa: E402

from _helpers import registry, torch_peer  # noqa: E402

# torch's own warning for kl_div(reduction="mean") on the reference side
pytestmark = [
    pytest.mark.filterwarnings("ignore:reduction:UserWarning"),
    pytest.mark.usefixtures("torch_single_thread"),
]

REDUCTIONS = ("none", "mean", "sum")
DTYPES = (torch.float32, torch.float64)
# rtol per dtype; atol is ATOL * the largest |expected| entry
RTOL = {torch.float32: 2e-4, torch.float64: 1e-9}
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def assert_close(actual, expected, dtype, what=""):
    """|a - e| <= rtol |e| + atol max|e|, same shape; the dtype of `actual` is checked too."""
    assert isinstance(actual, torch.Tensor), what
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == dtype, (what, actual.dtype, dtype)
    a = actual.detach().double()
    e = expected.detach().double()
    assert torch.isfinite(e).all(), what
    scale = float(e.abs().max()) if e.numel() and float(e.abs().max()) > 0 else 1.0
    err = (a - e).abs()
    bound = RTOL[dtype] * e.abs() + ATOL[dtype] * scale
    if not bool((err <= bound).all()):
        worst = int(torch.argmax(err - bound))
        raise AssertionError(
            f"{what}: mismatch, worst flat index {worst}: "
            f"{a.reshape(-1)[worst].item()!r} vs {e.reshape(-1)[worst].item()!r}"
            f" (max abs err {err.max().item():.3e})"
        )


# ------------------------------------------------------------------ torch references


def torch_focal(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """-w[y] (1 - p_y)^gamma log p_y from torch ops; "mean" divides by the kept sum of w[y]."""
    unbatched = input.dim() == 1
    x = input.unsqueeze(0) if unbatched else input
    t = target.unsqueeze(0) if unbatched else target
    logp = F.log_softmax(x, dim=1)
    keep = t != ignore_index
    ts = torch.where(keep, t, torch.zeros_like(t))
    lpy = logp.gather(1, ts.unsqueeze(1)).squeeze(1)
    w = torch.ones(x.shape[1], dtype=x.dtype) if weight is None else weight
    wy = w[ts] * keep
    loss = -wy * (1 - lpy.exp()) ** gamma * lpy
    if reduction == "none":
        return loss.squeeze(0) if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wy.sum()


REF = {
    "cross_entropy": F.cross_entropy,
    "nll_loss": F.nll_loss,
    "focal_loss": torch_focal,
    "sigmoid_focal_loss": torchvision_sigmoid_focal_loss,
    "binary_cross_entropy": F.binary_cross_entropy,
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "mse_loss": F.mse_loss,
    "l1_loss": F.l1_loss,
    "smooth_l1_loss": F.smooth_l1_loss,
    "huber_loss": F.huber_loss,
    "kl_div": F.kl_div,
}
CLASS_LOSSES = ("cross_entropy", "nll_loss", "focal_loss")


# ------------------------------------------------------------------ cases


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _t(a):
    return torch.from_numpy(np.array(a, dtype=np.float64))  # 0-d stays 0-d


def make_case(name, variant, rng, gradcheck=False):
    """(input float64, target, kwargs) for `name` / `variant`; small shapes.  With gradcheck=True
    the points keep away from kinks (|d| not near 0, beta or delta)."""
    kw = {}
    if name in CLASS_LOSSES:
        shape = {"NCd": (3, 4, 5), "NCdd": (2, 3, 2, 3), "unbatched": (6,)}.get(variant, (7, 5))
        C = shape[0] if len(shape) == 1 else shape[1]
        loss_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
        x = _t(rng.standard_normal(shape) * 2)
        if name == "nll_loss":
            x = F.log_softmax(x, dim=-1 if len(shape) == 1 else 1)
        if "probs" in variant:
            target = F.softmax(_t(rng.standard_normal(shape)), dim=1)
        else:
            target = torch.from_numpy(rng.integers(0, C, size=loss_shape))
        if "ignore" in variant:
            ignore = 1 if "inrange" in variant else -100
            kw["ignore_index"] = ignore
            flat = target.reshape(-1)
            flat[::3] = ignore
        if "weight" in variant:
            kw["weight"] = _t(rng.uniform(0.2, 2.0, size=C))
        if "smooth" in variant:
            kw["label_smoothing"] = 0.15
        if "gamma" in variant:
            kw["gamma"] = float(variant.split("gamma")[1].split("+")[0])
        return x, target, kw
    shape = (4, 3, 5) if "3d" in variant else (6, 4)
    x = _t(rng.standard_normal(shape))
    if name == "sigmoid_focal_loss":
        soft = "soft" in variant
        target = _t(rng.uniform(0, 1, shape) if soft else rng.integers(0, 2, shape))
        if "noalpha" in variant:
            kw["alpha"] = -1.0
        if "gamma" in variant:
            kw["gamma"] = float(variant.split("gamma")[1].split("+")[0])
    elif name == "binary_cross_entropy":
        x = _t(rng.uniform(0.05, 0.95, shape))
        target = _t(rng.uniform(0, 1, shape))
        if "weight" in variant:
            kw["weight"] = _t(rng.uniform(0.2, 2.0, size=shape[-1]))
    elif name == "binary_cross_entropy_with_logits":
        x = x * 3
        target = _t(rng.uniform(0, 1, shape))
        if "weight" in variant:
            kw["weight"] = _t(rng.uniform(0.2, 2.0, size=shape))
        if "pos_weight" in variant:
            kw["pos_weight"] = _t(rng.uniform(0.5, 3.0, size=shape[-1]))
    elif name == "kl_div":
        x = F.log_softmax(x, dim=-1)
        p = F.softmax(_t(rng.standard_normal(shape)), dim=-1)
        if "log_target" in variant:
            kw["log_target"] = True
            target = p.log()
        else:
            if not gradcheck:
                p[0, 0] = 0.0  # 0 log 0 = 0
            target = p
    elif LOSSES[name].target_domain == "sign":  # labels -1 / +1
        x = x * 3
        target = _t(np.where(rng.random(shape) < 0.5, -1.0, 1.0))
    elif LOSSES[name].target_domain == "count":  # Poisson counts
        target = _t(rng.poisson(2.0, shape).astype(np.float64))
    else:
        # |d| in [0.15, 0.85] or [1.15, 2.5]: away from 0 and from beta/delta in {0.5?, 1, 2}
        mag = np.where(
            rng.random(shape) < 0.5, rng.uniform(0.15, 0.4, shape), rng.uniform(1.15, 1.85, shape)
        )
        sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
        target = x - _t(sign * mag)
        if name == "l1_loss" and not gradcheck:
            target[0, :2] = x[0, :2]  # exact ties: subgradient 0 like torch
        if name == "smooth_l1_loss" and "beta" in variant:
            kw["beta"] = float(variant.split("beta")[1])
        if name == "huber_loss" and "delta" in variant:
            kw["delta"] = float(variant.split("delta")[1].split("+")[0])
        if "weight" in variant:  # torch 2.13's per-element weight, the input's shape
            kw["weight"] = _t(rng.uniform(0.2, 2.0, size=shape))
    return x, target, kw


VARIANTS = {
    "cross_entropy": [
        "plain",
        "weight",
        "ignore",
        "ignore-inrange+weight",
        "smooth",
        "weight+ignore+smooth",
        "probs",
        "probs+weight+smooth",
        "NCd",
        "NCdd+weight+ignore+smooth",
        "unbatched",
        "unbatched+weight+smooth",
    ],
    "nll_loss": ["plain", "weight", "ignore+weight", "NCd+weight", "unbatched"],
    "focal_loss": ["plain", "gamma0.5+weight", "gamma0+ignore", "NCd+weight+ignore", "unbatched"],
    "sigmoid_focal_loss": ["plain", "noalpha", "soft+gamma0.5", "3d+gamma1.5"],
    "binary_cross_entropy": ["plain", "weight"],
    "binary_cross_entropy_with_logits": [
        "plain",
        "weight",
        "pos_weight",
        "weight+pos_weight",
        "3d",
    ],
    "mse_loss": ["plain", "3d", "weight", "3d+weight"],
    "l1_loss": ["plain", "weight"],
    "smooth_l1_loss": ["plain", "beta0.5", "beta2.0", "beta0"],
    "huber_loss": ["plain", "delta0.5", "delta2.0", "delta0.5+weight"],
    "kl_div": ["plain", "log_target", "3d"],
}
# every other registry row the bridge offers: its torch peer, plain and 3-d inputs drawn from
# its domains (make_case's last branches)
for _spec in registry("class", "elementwise"):
    if _spec.torch_module and _spec.name not in VARIANTS:
        VARIANTS[_spec.name] = ["plain", "3d"] if _spec.family == "elementwise" else ["plain"]
        REF[_spec.name] = torch_peer(_spec.name)
ALL_CASES = [(n, v) for n, vs in VARIANTS.items() for v in vs]


def _reductions(name):
    return REDUCTIONS + (("batchmean",) if name == "kl_div" else ())


# ------------------------------------------------------------------ gradcheck

GRADCHECK = [pytest.param(n, v, r, id=f"{n}-{v}-{r}") for n, v in ALL_CASES for r in _reductions(n)]


@pytest.mark.parametrize("name,variant,reduction", GRADCHECK)
def test_gradcheck(name, variant, reduction):
    x, target, kw = make_case(name, variant, _rng(name, variant, "gc"), gradcheck=True)
    fn = getattr(FL, name)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: fn(a, target, reduction=reduction, **kw), (x,), eps=1e-6, atol=1e-7, rtol=1e-5
    )


# ------------------------------------------------------------------ parity with torch


def _run(fn, x, target, kw, reduction, upstream, dtype):
    """loss and d(<upstream, loss>)/dx, with x a fresh leaf of `dtype`."""
    xl = x.detach().to(dtype).requires_grad_(True)
    t = target.to(dtype) if target.dtype.is_floating_point else target
    kw = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    loss = fn(xl, t, reduction=reduction, **kw)
    loss.backward(upstream.to(loss.dtype))
    return loss, xl.grad


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,variant", [pytest.param(n, v, id=f"{n}-{v}") for n, v in ALL_CASES])
def test_matches_torch(name, variant, dtype):
    rng = _rng(name, variant, "parity")
    x, target, kw = make_case(name, variant, rng)
    if dtype == torch.float32:  # inputs exactly representable in both dtypes
        x = x.float().double()
        target = target.float().double() if target.dtype.is_floating_point else target
        kw = {k: (v.float().double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    for reduction in _reductions(name):
        ref_loss = REF[name](x, target, reduction=reduction, **kw)
        upstream = (
            _t(rng.standard_normal(ref_loss.shape))
            if reduction == "none"
            else torch.tensor(-1.7, dtype=torch.float64)
        )
        exp_loss, exp_grad = _run(REF[name], x, target, kw, reduction, upstream, torch.float64)
        loss, grad = _run(getattr(FL, name), x, target, kw, reduction, upstream, dtype)
        assert_close(loss, exp_loss, dtype, f"{name} {reduction} loss")
        assert_close(grad, exp_grad, dtype, f"{name} {reduction} grad")


@pytest.mark.parametrize(
    "name,variant",
    [
        ("cross_entropy", "weight+ignore+smooth"),
        ("cross_entropy", "NCd"),
        ("binary_cross_entropy_with_logits", "pos_weight"),
        ("mse_loss", "plain"),
        ("kl_div", "plain"),
    ],
)
def test_plain_backward_returns_saved_buffer(name, variant):
    """loss.backward() (upstream 1): the gradient is fastloss's grad_out buffer itself."""
    x, target, kw = make_case(name, variant, _rng(name, variant, "unit"))
    x.requires_grad_(True)
    loss = getattr(FL, name)(x, target, **kw)
    saved_ptr = loss.grad_fn.saved_tensors[0].data_ptr()  # no reference kept
    loss.backward()
    assert x.grad.data_ptr() == saved_ptr
    xr = x.detach().clone().requires_grad_(True)
    REF[name](xr, target, **kw).backward()
    assert_close(x.grad, xr.grad, torch.float64, name)


def test_noncontiguous_and_expanded_upstream():
    rng = _rng("noncontig")
    x = _t(rng.standard_normal((5, 8))).t()  # (8, 5), not contiguous
    target = torch.from_numpy(rng.integers(0, 5, size=8))
    xa = x.clone().requires_grad_(True)
    xb = x.detach().t().contiguous().t().requires_grad_(True)  # non-contiguous leaf
    assert not xb.is_contiguous()
    la = F.cross_entropy(xa, target, reduction="none")
    lb = FL.cross_entropy(xb, target, reduction="none")
    la.sum().backward()  # upstream is an expanded (stride 0) tensor
    lb.sum().backward()
    assert_close(lb, la, torch.float64, "loss")
    assert_close(xb.grad, xa.grad, torch.float64, "grad")


def test_retain_graph_repeated_backward():
    rng = _rng("retain")
    x = _t(rng.standard_normal((6, 4))).requires_grad_(True)
    target = torch.from_numpy(rng.integers(0, 4, size=6))
    loss = FL.cross_entropy(x, target)
    loss.backward(retain_graph=True)
    g1 = x.grad.clone()
    loss.backward(retain_graph=True)
    loss.backward()
    assert_close(x.grad, 3 * g1, torch.float64, "accumulated grad")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize(
    "name,variant",
    [
        ("cross_entropy", "weight+smooth"),
        ("cross_entropy", "probs"),
        ("binary_cross_entropy_with_logits", "weight+pos_weight"),
        ("sigmoid_focal_loss", "plain"),
        ("huber_loss", "plain"),
    ],
)
def test_half_precision_computed_in_float32(name, variant, dtype):
    x, target, kw = make_case(name, variant, _rng(name, variant, "half"))
    xh = x.to(dtype)
    th = target.to(dtype) if target.dtype.is_floating_point else target
    kwh = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    for reduction in REDUCTIONS:
        leaf = xh.clone().requires_grad_(True)
        loss = getattr(FL, name)(leaf, th, reduction=reduction, **kwh)
        up = torch.ones_like(loss) * 0.5
        loss.backward(up)
        assert loss.dtype == dtype and leaf.grad.dtype == dtype
        # the same values computed in float32 from the half-precision inputs
        kw32 = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in kwh.items()}
        x32 = xh.float().requires_grad_(True)
        t32 = th.float() if th.dtype.is_floating_point else th
        l32 = getattr(FL, name)(x32, t32, reduction=reduction, **kw32)
        l32.backward(up.float())
        assert torch.equal(loss, l32.to(dtype))
        assert torch.equal(leaf.grad, x32.grad.to(dtype))


# ------------------------------------------------------------------ modules

MODULES = [
    (
        "CrossEntropyLoss",
        "cross_entropy",
        "weight+ignore+smooth",
        lambda kw: dict(
            weight=kw["weight"],
            ignore_index=kw["ignore_index"],
            label_smoothing=kw["label_smoothing"],
        ),
    ),
    (
        "NLLLoss",
        "nll_loss",
        "ignore+weight",
        lambda kw: dict(weight=kw["weight"], ignore_index=kw["ignore_index"]),
    ),
    ("BCELoss", "binary_cross_entropy", "weight", lambda kw: dict(weight=kw["weight"])),
    (
        "BCEWithLogitsLoss",
        "binary_cross_entropy_with_logits",
        "weight+pos_weight",
        lambda kw: dict(weight=kw["weight"], pos_weight=kw["pos_weight"]),
    ),
    ("MSELoss", "mse_loss", "plain", lambda kw: {}),
    ("L1Loss", "l1_loss", "plain", lambda kw: {}),
    ("SmoothL1Loss", "smooth_l1_loss", "beta0.5", lambda kw: dict(beta=kw["beta"])),
    ("HuberLoss", "huber_loss", "delta2.0", lambda kw: dict(delta=kw["delta"])),
    ("KLDivLoss", "kl_div", "log_target", lambda kw: dict(log_target=kw["log_target"])),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("cls,name,variant,ctor", MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_torch_nn(cls, name, variant, ctor, reduction):
    rng = _rng(cls, "module")
    x, target, kw = make_case(name, variant, rng)
    args = ctor(kw)
    ours = getattr(FL, cls)(reduction=reduction, **args)
    theirs = getattr(torch.nn, cls)(reduction=reduction, **args)
    for buf in ("weight", "pos_weight"):
        if buf in args:
            assert buf in dict(ours.named_buffers())
            assert buf in ours.state_dict()
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    la, lb = theirs(xa, target), ours(xb, target)
    up = (
        _t(rng.standard_normal(la.shape))
        if reduction == "none"
        else torch.tensor(2.5, dtype=torch.float64)
    )
    la.backward(up)
    lb.backward(up)
    assert_close(lb, la, torch.float64, f"{cls} loss")
    assert_close(xb.grad, xa.grad, torch.float64, f"{cls} grad")


def test_module_to_dtype_casts_buffers():
    w = torch.tensor([1.0, 2.0, 0.5])
    m = FL.CrossEntropyLoss(weight=w).double()
    assert m.weight.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 1])
    assert_close(m(x, y), F.cross_entropy(x, y, weight=w.double()), torch.float64, "loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_modules(reduction):
    rng = _rng("focal-modules")
    x, target, kw = make_case("focal_loss", "NCd+weight+ignore", rng)
    m = FL.FocalLoss(gamma=1.5, weight=kw["weight"], ignore_index=-100, reduction=reduction)
    assert_close(
        m(x, target),
        torch_focal(x, target, 1.5, kw["weight"], -100, reduction),
        torch.float64,
        "FocalLoss",
    )
    x, target, _ = make_case("sigmoid_focal_loss", "soft", rng)
    m = FL.SigmoidFocalLoss(alpha=0.4, gamma=1.0, reduction=reduction)
    assert_close(
        m(x, target),
        torchvision_sigmoid_focal_loss(x, target, 0.4, 1.0, reduction),
        torch.float64,
        "SigmoidFocalLoss",
    )
    assert FL.SigmoidFocalLoss().reduction == "none"  # torchvision's default


def test_legacy_size_average_reduce():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    for sa, rd, red in [
        (None, False, "none"),
        (False, None, "sum"),
        (True, True, "mean"),
        (False, False, "none"),
    ]:
        with pytest.warns(UserWarning, match="deprecated"):
            got = FL.cross_entropy(x, y, size_average=sa, reduce=rd)
        assert_close(got, F.cross_entropy(x, y, reduction=red), torch.float64, red)
        with pytest.warns(UserWarning, match="deprecated"):
            m = FL.MSELoss(size_average=sa, reduce=rd)
        assert m.reduction == red


def test_positional_arguments_like_torch():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 1])
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_close(
            FL.cross_entropy(x, y, w, None, 1, None, "sum", 0.1),
            F.cross_entropy(x, y, w, None, 1, None, "sum", 0.1),
            torch.float64,
            "ce",
        )
        t = torch.rand(5, 3, dtype=torch.float64)
        assert_close(
            FL.binary_cross_entropy_with_logits(x, t, w, None, None, "sum", w),
            F.binary_cross_entropy_with_logits(x, t, w, None, None, "sum", w),
            torch.float64,
            "bcel",
        )
        assert_close(
            FL.huber_loss(x, t, "sum", 0.3), F.huber_loss(x, t, "sum", 0.3), torch.float64, "huber"
        )


# ------------------------------------------------------------------ training parity


def _train(loss_fn, model, X, y, steps=300, lr=0.1):
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), model


def _mlp(n_out, seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(20, 32), torch.nn.Tanh(), torch.nn.Linear(32, n_out)
    ).double()


@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.1, "weight": "w"}], ids=["plain", "weight+smoothing"]
)
def test_training_parity_cross_entropy(options):
    g = torch.Generator().manual_seed(1)
    X = torch.randn(256, 20, generator=g, dtype=torch.float64)
    teacher = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = (X @ teacher + 0.5 * torch.randn(256, 5, generator=g, dtype=torch.float64)).argmax(1)
    kw = dict(options)
    if "weight" in kw:
        kw["weight"] = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.8], dtype=torch.float64)
    model = _mlp(5, 0)
    ref, m_ref = _train(lambda out, t: F.cross_entropy(out, t, **kw), model, X, y)
    got, m_got = _train(lambda out, t: FL.cross_entropy(out, t, **kw), model, X, y)
    assert ref[-1] < 0.6 * ref[0]  # it actually learned something
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=0)
    for (k, a), (_, b) in zip(m_got.state_dict().items(), m_ref.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=k)


def test_training_parity_bce_with_logits():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(256, 20, generator=g, dtype=torch.float64)
    y = (X[:, :3].sum(1) + 0.3 * torch.randn(256, generator=g, dtype=torch.float64)) > 0
    y = y.to(torch.float64).unsqueeze(1)
    pw = torch.tensor([1.7], dtype=torch.float64)
    model = _mlp(1, 3)
    ref, m_ref = _train(torch.nn.BCEWithLogitsLoss(pos_weight=pw), model, X, y)
    got, m_got = _train(FL.BCEWithLogitsLoss(pos_weight=pw), model, X, y)
    assert ref[-1] < 0.6 * ref[0]
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=0)


# ------------------------------------------------------------------ errors


def _meta(t):
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


@pytest.mark.parametrize("arg", ["input", "target", "weight"])
def test_non_cpu_tensor_raises_type_error(arg):
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    w = torch.ones(3)
    args = {"input": x, "target": y, "weight": w}
    args[arg] = _meta(args[arg])
    with pytest.raises(TypeError, match="device meta"):
        FL.cross_entropy(args["input"], args["target"], weight=args["weight"])
    with pytest.raises(TypeError, match="CPU"):
        FL.binary_cross_entropy_with_logits(x, _meta(x.detach()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_raises_type_error():
    x = torch.randn(4, 3, device="cuda")
    with pytest.raises(TypeError, match="CPU"):
        FL.mse_loss(x, x.clone())


def test_non_tensor_and_integer_input_raise_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        FL.mse_loss(np.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        FL.cross_entropy(torch.zeros(2, 3), [0, 1])
    with pytest.raises(TypeError, match="floating"):
        FL.cross_entropy(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="layout"):
        FL.mse_loss(torch.zeros(3, 3).to_sparse(), torch.zeros(3, 3))


@pytest.mark.parametrize(
    "fn,make",
    [
        ("mse_loss", lambda: dict(target=torch.rand(4, 3, requires_grad=True))),
        ("kl_div", lambda: dict(target=torch.rand(4, 3, requires_grad=True))),
        ("sigmoid_focal_loss", lambda: dict(target=torch.rand(4, 3, requires_grad=True))),
        (
            "cross_entropy",
            lambda: dict(target=torch.softmax(torch.randn(4, 3), 1).requires_grad_()),
        ),
        (
            "cross_entropy",
            lambda: dict(
                target=torch.tensor([0, 1, 2, 0]), weight=torch.ones(3, requires_grad=True)
            ),
        ),
        (
            "binary_cross_entropy",
            lambda: dict(target=torch.rand(4, 3), weight=torch.ones(3, requires_grad=True)),
        ),
        (
            "binary_cross_entropy_with_logits",
            lambda: dict(target=torch.rand(4, 3), pos_weight=torch.ones(3, requires_grad=True)),
        ),
    ],
)
def test_target_or_weight_requiring_grad_raises_value_error(fn, make):
    kw = make()
    target = kw.pop("target")
    culprit = next(iter(kw)) if kw else "target"
    x = torch.rand(4, 3, requires_grad=True)
    with pytest.raises(ValueError, match=f"{culprit} requires grad"):
        getattr(FL, fn)(x, target, **kw)


BAD = [
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.zeros(5, np.int64)), {}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.array([0, 1, 3, 0])), {}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.array([0, 1, -1, 0])), {}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.array([0, 1, 2, 0])), {"weight": np.ones(4)}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.zeros((4, 2))), {}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.array([0, 1, 2, 0])), {"reduction": "avg"}),
    ("cross_entropy", lambda: (np.zeros((4, 3)), np.array([0, 1, 2, 0])), {"label_smoothing": 1.5}),
    ("nll_loss", lambda: (np.zeros((4, 3)), np.zeros((4, 3))), {}),
    ("nll_loss", lambda: (np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64)), {}),
    ("focal_loss", lambda: (np.zeros((4, 3)), np.array([0, 1, 2, 0])), {"gamma": -1.0}),
    ("focal_loss", lambda: (np.zeros((4, 3)), np.array([0, 1, 2, 7])), {}),
    ("mse_loss", lambda: (np.zeros((4, 3)), np.zeros((4, 1))), {}),
    ("l1_loss", lambda: (np.zeros((4, 3)), np.zeros(3)), {}),
    ("binary_cross_entropy", lambda: (np.full((4, 3), 1.5), np.zeros((4, 3))), {}),
    (
        "binary_cross_entropy",
        lambda: (np.full((4, 3), 0.5), np.zeros((4, 3))),
        {"weight": np.ones(2)},
    ),
    (
        "binary_cross_entropy_with_logits",
        lambda: (np.zeros((4, 3)), np.zeros((4, 3))),
        {"pos_weight": np.ones(4)},
    ),
    ("smooth_l1_loss", lambda: (np.zeros(3), np.zeros(3)), {"beta": -1.0}),
    ("huber_loss", lambda: (np.zeros(3), np.zeros(3)), {"delta": 0.0}),
    ("kl_div", lambda: (np.zeros((4, 3)), np.zeros((4, 3))), {"reduction": "batchsum"}),
    ("sigmoid_focal_loss", lambda: (np.zeros((4, 3)), np.zeros((3, 4))), {}),
]


@pytest.mark.parametrize("requires_grad", [True, False], ids=["grad", "nograd"])
@pytest.mark.parametrize("name,make,kw", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise_like_fastloss(name, make, kw, requires_grad):
    x_np, t_np = make()
    with pytest.raises(Exception) as direct:
        getattr(fastloss, name)(x_np, t_np, **kw)
    expected = type(direct.value)
    assert expected in (ValueError, IndexError, TypeError)
    x = torch.from_numpy(x_np).requires_grad_(requires_grad)
    tkw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with pytest.raises(expected) as bridged:
        getattr(FL, name)(x, torch.from_numpy(t_np), **tkw)
    assert type(bridged.value) is expected
    assert str(bridged.value) == str(direct.value)


def test_double_backward_raises():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = FL.cross_entropy(x, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)
    loss = FL.mse_loss(x, torch.zeros(4, 3, dtype=torch.float64))
    (g,) = torch.autograd.grad(loss, x)  # first order still fine
    assert_close(g, 2 * x.detach() / 12, torch.float64, "mse grad")


@pytest.mark.parametrize("fn", ["mse_loss", "l1_loss", "huber_loss"])
def test_elementwise_weight_must_have_the_input_shape(fn):
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="weight must have the input's shape"):
        getattr(FL, fn)(x, x.clone(), weight=torch.ones(3))
    with pytest.raises(ValueError):  # torch refuses it too
        getattr(F, fn)(x, x.clone(), weight=torch.ones(3))


# ------------------------------------------------------------------ one fused call

# the argument positions of the compiled entry points (fastloss/_kernels.pyx)
KERNEL_ARGS = {
    "class_loss": {"x": 1, "target": 5, "grad": 13},
    "elementwise": {"x": 1, "target": 2, "grad": 9},
}


@pytest.fixture
def kernel_calls(monkeypatch):
    """Record every call of the compiled entry points (both the bridge's fast path and
    fastloss's public API reach the kernels through these module attributes), on the
    compiled backend."""
    K = fastloss._config._kernels
    if K is None:
        pytest.skip("compiled kernels not available")
    log = []
    for entry, where in KERNEL_ARGS.items():
        original = getattr(K, entry)

        def counting(*args, _original=original, _where=where):
            log.append({arg: args[i] for arg, i in _where.items()})
            return _original(*args)

        monkeypatch.setattr(K, entry, counting)
    with fastloss.use_backend("compiled"):
        yield log


@pytest.fixture
def api_calls(monkeypatch):
    """Count fastloss.<name> calls made by the bridge; record their arguments."""
    log = []

    def install(name):
        original = getattr(fastloss, name)

        def counting(*args, **kwargs):
            log.append((args, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(fastloss, name, counting)

    return log, install


CALL_CASES = [pytest.param(n, VARIANTS[n][-1], id=n) for n in VARIANTS]


@pytest.mark.parametrize("name,variant", CALL_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_kernel_call_per_forward_backward(kernel_calls, name, variant, reduction):
    """One fused kernel pass per forward + backward, on the input's memory, the gradient
    written straight into the buffer autograd saves; backward runs no kernel."""
    x, target, kw = make_case(name, variant, _rng(name, "calls"))
    x.requires_grad_(True)
    loss = getattr(FL, name)(x, target, reduction=reduction, **kw)
    assert len(kernel_calls) == 1
    call = kernel_calls[0]
    assert call["x"].ctypes.data == x.data_ptr()  # input passed zero-copy
    (saved,) = loss.grad_fn.saved_tensors
    assert call["grad"].ctypes.data == saved.data_ptr()  # gradient in the saved buffer
    loss.backward(torch.full_like(loss, 0.75))
    loss2 = getattr(FL, name)(x, target, reduction=reduction, **kw)
    loss2.backward(torch.full_like(loss2, 0.25))
    assert len(kernel_calls) == 2
    # and the result is right: 0.75 + 0.25 of the gradient of the plain loss
    xr = x.detach().clone().requires_grad_(True)
    lr = REF[name](xr, target, reduction=reduction, **kw)
    lr.backward(torch.ones_like(lr))
    assert_close(x.grad, xr.grad, torch.float64, "grad")


@pytest.mark.parametrize("name,variant", CALL_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_general_path_one_fastloss_call(api_calls, name, variant, reduction):
    """The general path (here: the reference backend, which the fast path never takes) makes
    one fastloss.<name> call with return_grad=True, the input zero-copy and grad_out the
    buffer autograd saves."""
    log, install = api_calls
    install(name)
    x, target, kw = make_case(name, variant, _rng(name, "calls"))
    x.requires_grad_(True)
    with fastloss.use_backend("reference"):
        loss = getattr(FL, name)(x, target, reduction=reduction, **kw)
        assert len(log) == 1
        args, kwargs = log[0]
        assert kwargs["return_grad"] is True
        assert args[0].ctypes.data == x.data_ptr()
        (saved,) = loss.grad_fn.saved_tensors
        assert kwargs["grad_out"].ctypes.data == saved.data_ptr()
        loss.backward(torch.full_like(loss, 0.5))
    assert len(log) == 1
    xr = x.detach().clone().requires_grad_(True)
    lr = REF[name](xr, target, reduction=reduction, **kw)
    lr.backward(torch.full_like(lr, 0.5))
    assert_close(loss, lr, torch.float64, "loss")
    assert_close(x.grad, xr.grad, torch.float64, "grad")


@pytest.mark.parametrize("name", ["cross_entropy", "sigmoid_focal_loss", "kl_div"])
def test_no_gradient_computed_without_requires_grad(kernel_calls, name):
    x, target, kw = make_case(name, VARIANTS[name][0], _rng(name, "nograd"))
    loss = getattr(FL, name)(x, target, **kw)
    assert not loss.requires_grad and loss.grad_fn is None
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        loss_ng = getattr(FL, name)(xg, target, **kw)
    assert not loss_ng.requires_grad
    assert len(kernel_calls) == 2
    assert all(call["grad"] is None for call in kernel_calls)
    assert_close(loss, REF[name](x, target, **kw), torch.float64, "loss")
    assert_close(loss_ng, REF[name](x, target, **kw), torch.float64, "loss no_grad")


# ------------------------------------------------------------------ fast and general paths


def _fastloss_api_refused(monkeypatch, name):
    """Make fastloss.<name> raise: a call that still works took the fast path."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"fastloss.{name} called: the fast path was not taken")

    monkeypatch.setattr(fastloss, name, refuse)


FAST = [
    ("cross_entropy", "weight+ignore+smooth"),
    ("cross_entropy", "probs"),
    ("cross_entropy", "NCdd+weight+ignore+smooth"),
    ("cross_entropy", "unbatched"),
    ("nll_loss", "ignore+weight"),
    ("focal_loss", "gamma0.5+weight"),
    ("sigmoid_focal_loss", "soft+gamma0.5"),
    ("binary_cross_entropy", "plain"),
    ("binary_cross_entropy_with_logits", "3d"),
    ("mse_loss", "plain"),
    ("l1_loss", "plain"),
    ("smooth_l1_loss", "beta0"),
    ("huber_loss", "delta0.5"),
    ("kl_div", "log_target"),
    ("soft_margin_loss", "plain"),
]


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,variant", FAST, ids=[f"{n}-{v}" for n, v in FAST])
def test_fast_path_taken_for_canonical_tensors(monkeypatch, name, variant, dtype):
    """Contiguous float32/float64 CPU tensors (int64 class indices, no elementwise weights)
    never go through fastloss's public API, and give torch's values and gradients."""
    _fastloss_api_refused(monkeypatch, name)
    x, target, kw = make_case(name, variant, _rng(name, variant, "fast"))
    x = x.to(dtype)
    target = target.to(dtype) if target.dtype.is_floating_point else target
    kw = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    for reduction in _reductions(name):
        xa = x.clone().requires_grad_(True)
        xb = x.clone().requires_grad_(True)
        la = REF[name](xa, target, reduction=reduction, **kw)
        lb = getattr(FL, name)(xb, target, reduction=reduction, **kw)
        up = torch.rand(la.shape, dtype=dtype) if reduction == "none" else torch.tensor(1.0)
        la.backward(up.to(la.dtype))
        lb.backward(up.to(lb.dtype))
        assert_close(lb, la.detach(), dtype, f"{name} {reduction} loss")
        assert_close(xb.grad, xa.grad, dtype, f"{name} {reduction} grad")


def _noncontiguous(t):
    """The same values, every other element of a twice-as-wide tensor (non-contiguous)."""
    out = torch.stack([t, torch.zeros_like(t)], dim=-1)[..., 0]
    assert torch.equal(out, t) and (t.dim() == 0 or not out.is_contiguous())
    return out


GENERAL = {
    "non-contiguous input": lambda x, t: (_noncontiguous(x), t),
    "non-contiguous target": lambda x, t: (x, _noncontiguous(t)),
    "int32 class indices": lambda x, t: None if t.dtype.is_floating_point else (x, t.int()),
    "float32 target": lambda x, t: (x, t.float()) if t.dtype.is_floating_point else None,
}
GENERAL_CASES = [
    ("cross_entropy", "weight+ignore+smooth"),
    ("cross_entropy", "probs+weight+smooth"),
    ("focal_loss", "gamma0+ignore"),
    ("nll_loss", "NCd+weight"),
    ("binary_cross_entropy_with_logits", "weight+pos_weight"),
    ("mse_loss", "3d+weight"),
    ("huber_loss", "delta2.0"),
    ("smooth_l1_loss", "beta2.0"),
]


GENERAL_PARAMS = [
    pytest.param(n, v, how, id=f"{n}-{v}-{how}")
    for n, v in GENERAL_CASES
    for how in GENERAL
    if GENERAL[how](*make_case(n, v, _rng(n, v, "general"))[:2]) is not None
]


@pytest.mark.parametrize("name,variant,how", GENERAL_PARAMS)
def test_general_path_matches_torch(api_calls, name, variant, how):
    """Calls the fast path leaves to fastloss's public API (other layouts and dtypes) give
    torch's results too, through one fastloss.<name> call each."""
    x, target, kw = make_case(name, variant, _rng(name, variant, "general"))
    x2, t2 = GENERAL[how](x, target)
    # the values fastloss sees, in the dtypes torch takes
    t_ref = t2.double() if t2.dtype.is_floating_point else t2.long()
    log, install = api_calls
    install(name)
    for i, reduction in enumerate(REDUCTIONS):
        xa = x.clone().requires_grad_(True)
        la = REF[name](xa, t_ref, reduction=reduction, **kw)
        xb = x2.detach().clone() if how != "non-contiguous input" else x2.detach()
        xb.requires_grad_(True)
        lb = getattr(FL, name)(xb, t2, reduction=reduction, **kw)
        assert len(log) == i + 1
        up = _t(_rng(name, how, reduction).standard_normal(la.shape))
        la.backward(up)
        lb.backward(up)
        assert_close(lb, la.detach(), torch.float64, f"{how} {reduction} loss")
        assert_close(xb.grad, xa.grad, torch.float64, f"{how} {reduction} grad")


@pytest.mark.usefixtures("compiled")
def test_integer_options_take_the_fast_path(monkeypatch):
    x = torch.randn(6, 4, dtype=torch.float64)
    t = torch.randn(6, 4, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (6,))
    cases = [
        (FL.huber_loss, F.huber_loss, (x, t), {"delta": 2}),
        (FL.smooth_l1_loss, F.smooth_l1_loss, (x, t), {"beta": 0}),
        (FL.cross_entropy, F.cross_entropy, (x, y), {"label_smoothing": 1}),
    ]
    for name in ("huber_loss", "smooth_l1_loss", "cross_entropy"):
        _fastloss_api_refused(monkeypatch, name)
    for ours, theirs, (a, b), kw in cases:
        xa = a.clone().requires_grad_(True)
        xb = a.clone().requires_grad_(True)
        theirs(xa, b, **kw).backward()
        ours(xb, b, **kw).backward()
        assert_close(xb.grad, xa.grad, torch.float64, ours.__name__)


def test_misaligned_input_takes_the_general_path():
    """A tensor whose data is not aligned to its element size (torch.frombuffer at an odd
    offset) is copied by the general path, never handed to the kernels as is."""
    rng = _rng("misaligned")
    values = rng.standard_normal(12).astype(np.float32)
    buf = bytearray(1) + bytearray(values.tobytes())
    x = torch.frombuffer(buf, dtype=torch.float32, offset=1, count=12).reshape(4, 3)
    assert x.data_ptr() % 4
    x.requires_grad_(True)
    t = torch.tensor([0, 2, 1, 1])
    xr = torch.from_numpy(values.reshape(4, 3).copy()).requires_grad_(True)
    FL.cross_entropy(x, t).backward()
    F.cross_entropy(xr, t).backward()
    assert_close(x.grad, xr.grad, torch.float32, "grad")


def test_large_gradient_buffer():
    """A 4 MiB gradient: the buffer the kernel filled becomes x.grad, with the right values."""
    x = torch.randn(1 << 20, requires_grad=True)
    t = torch.randn(1 << 20)
    loss = FL.mse_loss(x, t)
    saved_ptr = loss.grad_fn.saved_tensors[0].data_ptr()
    loss.backward()
    assert x.grad.data_ptr() == saved_ptr
    torch.testing.assert_close(x.grad, 2 * (x.detach() - t) / x.numel(), rtol=1e-5, atol=1e-12)


def test_out_of_range_target_on_the_fast_path_raises_fastlosss_error():
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(IndexError) as bridged:
        FL.cross_entropy(x, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(IndexError) as direct:
        fastloss.cross_entropy(x.detach().numpy(), np.array([0, 1, 3, 0]))
    assert str(bridged.value) == str(direct.value)
    with pytest.raises(ValueError, match="probability"):  # outside [0, 1]: bce's domain
        FL.binary_cross_entropy(torch.full((3,), 1.5, requires_grad=True), torch.zeros(3))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch_and_all_ignored(reduction):
    x = torch.zeros(0, 5, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(0, dtype=torch.int64)
    loss = FL.cross_entropy(x, t, reduction=reduction)
    expected = F.cross_entropy(x.detach(), t, reduction=reduction)
    assert loss.shape == expected.shape
    assert torch.equal(loss.isnan(), expected.isnan())
    loss.sum().backward()
    assert x.grad.shape == x.shape
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.full((3,), -100)
    loss = FL.cross_entropy(x, t, reduction=reduction)
    expected = F.cross_entropy(x.detach(), t, reduction=reduction)
    assert torch.equal(loss.isnan(), expected.isnan())  # mean: NaN like torch
    assert torch.equal(loss.nan_to_num(), expected.nan_to_num())
    loss.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# ------------------------------------------------------------------ softmax family

AXIS_FNS = {
    "softmax": (FL.softmax, F.softmax),
    "log_softmax": (FL.log_softmax, F.log_softmax),
    "logsumexp": (FL.logsumexp, torch.logsumexp),
    "logsumexp-keepdim": (
        lambda x, dim: FL.logsumexp(x, dim, keepdim=True),
        lambda x, dim: torch.logsumexp(x, dim, keepdim=True),
    ),
}
# (shape, dims): 0-d, 1-d, 2-d, 3-d (every axis, negative ones too)
AXIS_SHAPES = [((), (0, -1)), ((7,), (0,)), ((5, 6), (0, 1, -1)), ((3, 4, 5), (0, 1, 2, -2))]
AXIS_CASES = [
    pytest.param(fn, shape, dim, id=f"{fn}-{'x'.join(map(str, shape)) or '0d'}-dim{dim}")
    for fn in AXIS_FNS
    for shape, dims in AXIS_SHAPES
    for dim in dims
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("fn,shape,dim", AXIS_CASES)
def test_softmax_family_matches_torch(fn, shape, dim, dtype):
    ours, theirs = AXIS_FNS[fn]
    rng = _rng(fn, shape, dim)
    x = _t(rng.standard_normal(shape) * 3).to(dtype)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya, yb = theirs(xa, dim), ours(xb, dim)
    up = _t(rng.standard_normal(ya.shape)).to(dtype)
    ya.backward(up)
    yb.backward(up)
    assert_close(yb, ya.detach(), dtype, f"{fn} value")
    assert_close(xb.grad, xa.grad, dtype, f"{fn} grad")
    with torch.no_grad():
        assert yb.grad_fn is not None and ours(xb, dim).grad_fn is None


@pytest.mark.parametrize("fused", [True, False], ids=["fused-backward", "formula-backward"])
@pytest.mark.parametrize("fn,shape,dim", AXIS_CASES)
def test_softmax_family_gradcheck_and_double_backward(monkeypatch, fn, shape, dim, fused):
    """The backward is torch ops on the saved output (torch's fused softmax backward kernels,
    or the formulas where torch lacks them), so it is differentiable again: gradcheck and
    gradgradcheck against finite differences, and an expanded (stride 0) upstream."""
    if not fused:
        monkeypatch.setattr(FL, "_SOFTMAX_BACKWARD", None)
        monkeypatch.setattr(FL, "_LOG_SOFTMAX_BACKWARD", None)
    ours, theirs = AXIS_FNS[fn]
    x = _t(_rng(fn, shape, dim, "gc").standard_normal(shape)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: ours(a, dim), (x,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(lambda a: ours(a, dim), (x,), eps=1e-6, atol=1e-7)
    w = _t(_rng(fn, shape, dim, "w").standard_normal(theirs(x, dim).shape))
    for reduce in (lambda y: y.sum(), lambda y: (y * w).sum()):  # expanded, then plain upstream
        xa = x.detach().clone().requires_grad_(True)
        xb = x.detach().clone().requires_grad_(True)
        reduce(theirs(xa, dim)).backward()
        reduce(ours(xb, dim)).backward()
        # (the gradient of softmax(x).sum() is 0 up to rounding: an absolute tolerance)
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-9, atol=1e-12)


def test_softmax_family_noncontiguous_half_and_dtype():
    rng = _rng("axis-misc")
    x = _t(rng.standard_normal((6, 5))).t()  # (5, 6), not contiguous
    for ours, theirs in [(FL.softmax, F.softmax), (FL.log_softmax, F.log_softmax)]:
        assert_close(ours(x, 1), theirs(x, 1), torch.float64, "non-contiguous")
        # dtype= casts the input first, as torch does; the gradient comes back in float32
        x32 = x.float().requires_grad_(True)
        x32t = x.float().requires_grad_(True)
        y, yt = ours(x32, 0, dtype=torch.float64), theirs(x32t, 0, dtype=torch.float64)
        assert y.dtype == torch.float64
        y.backward(torch.ones_like(y).cumsum(0))
        yt.backward(torch.ones_like(yt).cumsum(0))
        assert_close(x32.grad, x32t.grad, torch.float32, "dtype= grad")
        # float16 / bfloat16: computed in float32, the result cast back
        for half in (torch.float16, torch.bfloat16):
            xh = x.to(half)
            assert torch.equal(ours(xh, 1), ours(xh.float(), 1).to(half))
    assert torch.equal(FL.logsumexp(torch.full((2, 3), -np.inf), 1), torch.full((2,), -np.inf))


@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_softmax_implicit_dim_like_torch(ndim):
    x = _t(_rng("implicit", ndim).standard_normal((2,) * ndim))
    for ours, theirs in [(FL.softmax, F.softmax), (FL.log_softmax, F.log_softmax)]:
        with pytest.warns(UserWarning, match="Implicit dimension choice"):
            expected = theirs(x)
        with pytest.warns(UserWarning, match="Implicit dimension choice") as record:
            got = ours(x)
        assert record[0].filename == __file__  # points at the caller, as torch's does
        assert_close(got, expected, torch.float64, "implicit dim")


def test_softmax_family_errors():
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        FL.softmax(np.zeros((3, 4)), 1)
    with pytest.raises(TypeError, match="floating"):
        FL.log_softmax(torch.zeros(3, 4, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="device meta"):
        FL.softmax(torch.empty(3, 4, device="meta"), 1)
    with pytest.raises(TypeError, match="dim must be an int"):
        FL.logsumexp(x, (0, 1))
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        FL.softmax(x, 2)
    with pytest.raises(IndexError, match="dim -3 is out of range"):
        FL.logsumexp(x, -3)


# ------------------------------------------------------------------ torch.func transforms

TRANSFORMS = {
    "grad": lambda f, x: torch.func.grad(f)(x),
    "vmap": lambda f, x: torch.func.vmap(f)(x),
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
    "jvp": lambda f, x: torch.func.jvp(f, (x,), (torch.ones_like(x),)),
    "vmap(grad)": lambda f, x: torch.func.vmap(torch.func.grad(f))(x),
}
UNDER_TRANSFORM = {
    "cross_entropy": lambda a: FL.cross_entropy(a, torch.tensor([0, 2, 1])[: a.shape[0]]),
    "mse_loss": lambda a: FL.mse_loss(a, torch.zeros(a.shape)),
    "binary_cross_entropy_with_logits": lambda a: FL.binary_cross_entropy_with_logits(
        a, torch.full(a.shape, 0.5), pos_weight=torch.full(a.shape[-1:], 2.0)
    ),
    "soft_margin_loss": lambda a: FL.soft_margin_loss(a, torch.ones(a.shape)),
    "softmax": lambda a: FL.softmax(a, -1).sum(),
    "logsumexp": lambda a: FL.logsumexp(a, -1).sum(),
}


# torch.func.jvp's first call scripts a helper with the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("name", list(UNDER_TRANSFORM))
def test_torch_func_transforms_raise_a_clear_error(name, transform):
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="not composable with torch.func transforms") as err:
        TRANSFORMS[transform](UNDER_TRANSFORM[name], x)
    assert f"fastloss.torch.{name}:" in str(err.value)
    assert "torch.autograd.grad" in str(err.value)  # what to use instead
    # and afterwards, outside any transform, ordinary autograd works as before
    xl = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(UNDER_TRANSFORM[name](xl), xl)
    assert g.shape == x.shape and torch.isfinite(g).all()


def test_torch_func_transform_of_other_tensors():
    """Inside a transform, a call on plain tensors that need no gradient is an ordinary
    forward (the transform does not reach it); one that would record a gradient raises."""
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    out = torch.func.vmap(lambda a: FL.mse_loss(x, t) + a)(torch.zeros(5, dtype=torch.float64))
    assert_close(
        out, F.mse_loss(x, t) + torch.zeros(5, dtype=torch.float64), torch.float64, "vmap constant"
    )
    xl = x.clone().requires_grad_(True)
    with pytest.raises(TypeError, match="requires grad; fastloss.torch functions are not"):
        torch.func.vmap(lambda a: FL.mse_loss(xl, t) + a)(torch.zeros(5, dtype=torch.float64))
