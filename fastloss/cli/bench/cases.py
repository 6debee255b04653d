"""The benchmark's case tables: what is timed for each kind of loss, against which memory floor
(``KINDS``, ``FLOORS``), one row per loss (``LOSSES``: input maker, keyword arguments, torch
and scikit-learn peers), and the inputs of a case (``shape_base``, ``case_inputs``).

``LOSSES`` has one row per row of the loss registry (``fastloss._losses``): a new loss is
benchmarked without an edit here; ``_EXTRAS`` adds peers and flags by name (and, for a new
kind of loss, a row to ``KINDS`` says which calls are timed and against which floor).  Only
rows whose name is in ``fastloss.__all__`` are benchmarked.
"""

from dataclasses import dataclass, field

import numpy as np

import fastloss

from ... import _losses
from ...reference._oracles import torchvision_box_loss, torchvision_sigmoid_focal_loss

__all__ = [
    "CLASS_SHAPES",
    "CLASS_QUICK",
    "FLAT_SHAPES",
    "FLAT_QUICK",
    "LINEAR_SHAPES",
    "LINEAR_QUICK",
    "METRIC_SHAPES",
    "METRIC_QUICK",
    "FLOORS",
    "GBDT_CASES",
    "GbdtCase",
    "Kind",
    "KINDS",
    "Loss",
    "LOSSES",
    "available_losses",
    "case_inputs",
    "call_args",
    "default_losses",
    "linear_gemms",
    "shape_base",
    "shape_str",
]

CLASS_SHAPES = ((65536, 1000), (1048576, 10), (2048, 32000), (32, 10))
CLASS_QUICK = ((8192, 1000), (131072, 10), (256, 32000), (32, 10))
FLAT_SHAPES = ((16777216,),)
EMB_SHAPES = ((131072, 128), (8192, 2048))
EMB_QUICK = ((16384, 128), (1024, 2048))
METRIC_SHAPES = ((1048576, 10), (16384, 1000))
METRIC_QUICK = ((131072, 10), (2048, 1000))
BOX_SHAPES = ((1048576, 4),)
BOX_QUICK = ((131072, 4),)
FLAT_QUICK = ((2097152,),)
# CTC: (T, N, C) logits and S = T / 5 labels per sample (the two cases)
CTC_SHAPES = ((400, 32, 64), (1000, 8, 5000))
CTC_QUICK = ((200, 16, 64), (250, 4, 5000))
# fused linear + cross entropy: (N, H, V) = rows, hidden size, vocabulary (issue 28's two
# language-model heads); quick: 1/8 of the rows
LINEAR_SHAPES = ((8192, 1024, 32000), (4096, 2048, 128256))
LINEAR_QUICK = ((1024, 1024, 32000), (512, 2048, 128256))

# floor name -> (label, bytes written per element of x: 0 for a pure read, 1 for a copy)
FLOORS = {
    "sum": ("x.sum()", 0),
    "copy": ("np.copy(x)", 1),
    "copyto": ("np.copyto(buf, x)", 1),
    # compute floors (writes None: the floor is the whole cost, not scaled by the bytes): the
    # BLAS GEMMs of fused linear + cross entropy alone, on the same row chunks and buffers
    "gemm_fwd": ("GEMM X_c @ W.T per chunk", None),
    "gemm": ("3 GEMMs per chunk (X_c @ W.T, G @ W, G.T @ X_c)", None),
}


@dataclass(frozen=True)
class Kind:
    """What is timed for a kind of loss and which memory floor each call is compared with."""

    modes: tuple  # ((mode, floor name), ...) in table order
    shapes: tuple  # default shapes
    quick_shapes: tuple  # --quick shapes (about 1/8 of the default sizes)
    target: str  # "index" (int64 class per sample), "same" (x's shape and dtype), "none"
    min_ndim: int  # shapes with fewer dimensions are refused for this kind
    peer_mode: str  # the mode the NumPy reference is timed in
    outputs: int = 1  # gradients written per element of x (2 for two differentiable inputs)


_LOSS_MODES = (("loss", "sum"), ("fwd+bwd", "copy"), ("grad_out", "copyto"))
KINDS = {
    # softmax-axis losses with class-index targets: (N, C) logits, (N,) int64 targets
    "class": Kind(_LOSS_MODES, CLASS_SHAPES, CLASS_QUICK, "index", 2, "fwd+bwd"),
    # elementwise losses: x and a target of the same shape, read both -> floor x1.5 (x2 read)
    "elementwise": Kind(_LOSS_MODES, FLAT_SHAPES, FLAT_QUICK, "same", 1, "fwd+bwd"),
    # two differentiable inputs among three arrays (margin_ranking_loss(x1, x2, y)): read
    # three, write two gradients
    "pair": Kind(_LOSS_MODES[:2], FLAT_SHAPES, FLAT_QUICK, "pair", 1, "fwd+bwd", outputs=2),
    # rows of D features (cosine_embedding_loss(x1, x2, y), triplet_margin_loss(a, p, n)):
    # read the arrays, write one gradient per feature array (Loss.outputs)
    "embedding": Kind(_LOSS_MODES[:2], EMB_SHAPES, EMB_QUICK, "pair", 2, "fwd+bwd"),
    # rows of C classes with a target of x's shape (multilabel_margin_loss(x, index lists),
    # multilabel_soft_margin_loss(x, labels)): read x and the target, write one gradient
    "rows": Kind(_LOSS_MODES, EMB_SHAPES, EMB_QUICK, "same", 2, "fwd+bwd"),
    # matched box pairs (N, 4) (generalized_box_iou_loss(boxes1, boxes2)): read both, write
    # boxes1's gradient
    "box": Kind(_LOSS_MODES[:2], BOX_SHAPES, BOX_QUICK, "pair", 2, "fwd+bwd"),
    # x -> array shaped like x (log_softmax, softmax): one read + one allocating write
    "softmax": Kind((("fwd", "copy"),), CLASS_SHAPES, CLASS_QUICK, "none", 1, "fwd"),
    # x -> one value per row (logsumexp): one read
    "rowreduce": Kind((("fwd", "sum"),), CLASS_SHAPES, CLASS_QUICK, "none", 1, "fwd"),
    # metrics on class scores and class-index targets (error_rate, accuracy): one read
    "metric": Kind((("loss", "sum"),), METRIC_SHAPES, METRIC_QUICK, "index", 2, "loss"),
    # CTC from logits, (T, N, C) with S = T / 5 labels per sample: reads x, writes the gradient
    "ctc": Kind(_LOSS_MODES[:2], CTC_SHAPES, CTC_QUICK, "pair", 3, "fwd+bwd"),
    # fused linear + cross entropy, (N, H, V): hidden states x (N, H), the head W (V, H),
    # class indices (N,); against the GEMM-only cost (compute floors)
    "linear": Kind(
        (("loss", "gemm_fwd"), ("fwd+bwd", "gemm")),
        LINEAR_SHAPES,
        LINEAR_QUICK,
        "pair",
        3,
        "fwd+bwd",
    ),
    # entropy of each row, and its gradient
    "entropy": Kind(
        (("fwd", "sum"), ("fwd+bwd", "copy"), ("grad_out", "copyto")),
        METRIC_SHAPES,
        METRIC_QUICK,
        "none",
        1,
        "fwd+bwd",
    ),
}


# ---- input makers: (rng, z, shape, dtype) -> (x, target); z is a cached float32 N(0,1) array
def _logits(rng, z, shape, dtype):
    return z.astype(dtype, copy=False)


def _binary_target(rng, shape, dtype):
    return (rng.random(shape, dtype=np.float32) < 0.5).astype(dtype)


def _make_logits_binary(rng, z, shape, dtype):
    return (2 * z).astype(dtype), _binary_target(rng, shape, dtype)


def _make_probs_binary(rng, z, shape, dtype):
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    return np.clip(p, 1e-6, 1 - 1e-6).astype(dtype), _binary_target(rng, shape, dtype)


def _make_logits_sign(rng, z, shape, dtype):
    return (2 * z).astype(dtype), 2 * _binary_target(rng, shape, dtype) - 1


def _make_counts(rng, z, shape, dtype):
    return (0.5 * z).astype(dtype), rng.poisson(2.0, shape).astype(dtype)


def _make_ranking(rng, z, shape, dtype):
    x2 = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return z.astype(dtype, copy=False), (x2, 2 * _binary_target(rng, shape, dtype) - 1)


def _make_gaussian(rng, z, shape, dtype):
    t = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return z.astype(dtype, copy=False), (t, rng.uniform(0.5, 2.0, shape).astype(dtype))


def _make_cosine(rng, z, shape, dtype):
    x2 = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return z.astype(dtype, copy=False), (x2, 2 * _binary_target(rng, shape[:1], dtype) - 1)


def _make_triplet(rng, z, shape, dtype):
    p = (z + 0.5 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
    return z.astype(dtype, copy=False), (
        p,
        rng.standard_normal(shape, dtype=np.float32).astype(dtype),
    )


def _make_multilabel(rng, z, shape, dtype):
    """Index lists of up to 4 classes per row (duplicates possible), ended by -1."""
    t = np.full(shape, -1, dtype=np.int64)
    k = min(4, shape[-1])
    t[..., :k] = rng.integers(0, shape[-1], size=shape[:-1] + (k,))
    t[..., k - 1 : k][rng.random(shape[:-1] + (1,)) < 0.25] = -1  # some rows list fewer
    return z.astype(dtype, copy=False), t


def _make_regression(rng, z, shape, dtype):
    return z.astype(dtype, copy=False), rng.standard_normal(shape, dtype=np.float32).astype(dtype)


def _make_boxes(rng, z, shape, dtype):
    """Matched xyxy boxes: corners ~ 10 N(0, 1), sides 1 + 3 |N(0, 1)|, the target a jittered
    copy (most pairs overlap, some do not)."""
    z = z.astype(np.float64)
    xy, wh = 10 * z[:, :2], 1 + 3 * np.abs(z[:, 2:])
    b1 = np.concatenate([xy, xy + wh], axis=1)
    b2 = b1 + rng.normal(0.0, 1.0, shape)
    b2[:, 2:] = np.maximum(b2[:, 2:], b2[:, :2] + 0.1)
    return b1.astype(dtype), (b2.astype(dtype),)


def _torch_box(name):
    return lambda torch, F, x, t: torchvision_box_loss(name, x, t[0], "mean")


def _make_kl(rng, z, shape, dtype):
    x = np.log(rng.uniform(0.01, 1.0, shape)).astype(dtype)
    return x, rng.uniform(0.0, 1.0, shape).astype(dtype)


def _make_ctc(rng, z, shape, dtype):
    """(T, N, C) logits; per sample S = T / 5 labels (no blank), every frame used."""
    T, N, C = shape
    S = max(1, T // 5)
    targets = rng.integers(1, C, size=(N, S), dtype=np.int64)
    lengths = np.full(N, T, np.int64), np.full(N, S, np.int64)
    return z.astype(dtype, copy=False), (targets, *lengths)


def _ctc_probe(args, rows):
    """The arguments of about `rows` of the N samples (the reference's cost estimate)."""
    x, targets, il, tl = args
    k = max(1, min(x.shape[1], rows * x.shape[1] // x.shape[0]))
    return (x[:, :k], targets[:k], il[:k], tl[:k]), x.shape[1] / k


def _make_linear(rng, z, shape, dtype):
    """Hidden states x ~ N(0, 1) (N, H), a head W ~ N(0, 1/H) (V, H) (logits ~ N(0, 1)) and
    class indices (N,); drawn here, z is not made for this kind (it would be N x H x V)."""
    N, H, V = shape
    x = rng.standard_normal((N, H), dtype=np.float32).astype(dtype)
    w = (rng.standard_normal((V, H), dtype=np.float32) / np.float32(np.sqrt(H))).astype(dtype)
    return x, (w, rng.integers(0, V, size=N, dtype=np.int64))


def _linear_probe(args, rows):
    """About `rows` rows with the whole head (the reference's cost estimate)."""
    x, w, y = args
    k = max(1, min(x.shape[0], rows))
    return (x[:k], w, y[:k]), x.shape[0] / k


def linear_gemms(x, w, grad):
    """The compute floor of fused linear + cross entropy: the GEMMs alone, on fastloss's row
    chunks (its default chunk_rows) and the same preallocated buffers: X_c @ W.T into the
    (B, V) buffer, and with `grad` G @ W into grad_input's rows and grad_weight += G.T @ X_c
    (BLAS beta = 1 through SciPy when installed; the buffer stands in for G)."""
    from ..._linear_ce import _chunk_rows, _WeightGrad

    N, H = x.shape
    V = w.shape[0]
    B = _chunk_rows(None, None, N, V, x.dtype.itemsize)
    buf = np.empty((B, V), x.dtype)
    gi = np.empty_like(x) if grad else None
    acc = _WeightGrad(np.empty_like(w)) if grad else None
    for start in range(0, N, B):
        stop = min(start + B, N)
        xc, z = x[start:stop], buf[: stop - start]
        np.matmul(xc, w.T, out=z)
        if grad:
            np.matmul(z, w, out=gi[start:stop])
            acc.add(z, xc)
    return buf[0, 0]


def _make_logprobs(rng, z, shape, dtype):
    return (-np.abs(z)).astype(dtype), None


# ---- torch formulas: (torch, F, x, t) -> tensor (a scalar for the losses)
def _torch_focal(torch, F, x, t, gamma=2.0):
    logp = F.log_softmax(x, dim=1)
    logpt = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    return (-((1 - logpt.exp()) ** gamma) * logpt).mean()


def _torch_sigmoid_focal(torch, F, x, t, alpha=0.25, gamma=2.0):
    return torchvision_sigmoid_focal_loss(x, t, alpha, gamma, reduction="mean")


def _torch_linear_ce(torch, F, x, t):
    """torch's chunked F.linear_cross_entropy (LinearCrossEntropyOptions() defaults), the
    head's gradient computed too when grad is enabled (a new leaf per call)."""
    w = t[0].detach().requires_grad_(torch.is_grad_enabled())
    return F.linear_cross_entropy(x, w, t[1], options=torch.nn.LinearCrossEntropyOptions())


def _torch_linear_then_ce(torch, F, x, t):
    """The unfused way: the whole (N, V) logits, then F.cross_entropy."""
    w = t[0].detach().requires_grad_(torch.is_grad_enabled())
    return F.cross_entropy(F.linear(x, w), t[1])


def _torch_entropy(torch, F, x, t):
    # summed: the backward of torch's fwd+bwd needs a scalar (d sum H / dx is fastloss's
    # reduction="none" gradient)
    return torch.distributions.Categorical(logits=x).entropy().sum()


# ---- library peers of the metrics: (label, (x, t) -> value)
def _sklearn_top1_error(x, t):
    from sklearn.metrics import top_k_accuracy_score

    return 1.0 - top_k_accuracy_score(t, x, k=1, labels=np.arange(x.shape[1]))


def _scipy_entropy(x, t):
    from scipy.special import softmax
    from scipy.stats import entropy

    return entropy(softmax(x, axis=-1), axis=-1)


_TOP1_ERROR = ("sklearn.metrics.top_k_accuracy_score", _sklearn_top1_error)
_NUMPY_ARGMAX = (("numpy (x.argmax(1) != t).mean()", lambda x, t: np.mean(x.argmax(1) != t)),)


@dataclass(frozen=True)
class Loss:
    name: str
    kind: str
    make: object = _logits  # (rng, z, shape, dtype) -> x, or (x, target)
    kwargs: dict = field(default_factory=dict)
    torch: object = None  # (torch, F, x, t) -> tensor
    sklearn: object = None  # (sklearn._loss.loss module, shape) -> loss object
    default: bool = False  # benchmarked when no --loss is given
    # the metrics: a scikit-learn / SciPy function computing the same, (label, (x, t) -> value),
    # timed in the kind's first mode (column "vs sklearn"), and other peers timed alike and
    # reported in the notes, ((label, (x, t) -> value), ...)
    library: tuple = None
    others: tuple = ()
    scaling: bool = False  # compute-bound: its 1 -> N thread scaling is measured
    outputs: int = 0  # gradients written per element of x (0: the kind's)
    # (args, rows) -> (args of a part of the case, cost factor of the whole): the NumPy
    # reference's cost estimate (None: the first `rows` rows of every argument)
    probe: object = None
    # further torch formulas ((label, (torch, F, x, t) -> tensor), ...), timed like `torch`
    # (forward, and fwd+bwd in the peer mode) and reported in the notes
    torch_others: tuple = ()
    # measure the peak NumPy memory (tracemalloc) of one fwd+bwd call, reported in the notes
    memory: bool = False


# input makers by the registry row's (input domain, target domain)
_MAKERS = {
    ("logits", "class"): _logits,
    ("logits", "class_or_prob"): _logits,
    ("logprob", "class"): _make_logprobs,
    ("logits", "none"): _logits,
    ("logits", "binary"): _make_logits_binary,
    ("logits", "sign"): _make_logits_sign,
    ("prob", "binary"): _make_probs_binary,
    ("real", "real"): _make_regression,
    ("real", "count"): _make_counts,
    ("real", "sign"): _make_logits_sign,
    ("logprob", "prob"): _make_kl,
}

# what the benchmark adds to a registry row, by name: a kind other than the family's, a
# torch formula other than F.<torch_name>(x, t), a scikit-learn peer, keyword arguments,
# default=False (not timed unless asked for), scaling=True (compute-bound: thread scaling)
_EXTRAS = {
    "cross_entropy": dict(
        sklearn=lambda sk, shape: sk.HalfMultinomialLoss(n_classes=shape[1]), scaling=True
    ),
    "focal_loss": dict(kwargs={"gamma": 2.0}, torch=_torch_focal, scaling=True),
    "nll_loss": dict(default=False),
    "log_softmax": dict(torch=lambda torch, F, x, t: F.log_softmax(x, dim=-1)),
    "softmax": dict(torch=lambda torch, F, x, t: F.softmax(x, dim=-1)),
    "logsumexp": dict(kind="rowreduce", torch=lambda torch, F, x, t: torch.logsumexp(x, dim=-1)),
    "sigmoid_focal_loss": dict(
        kwargs={"alpha": 0.25, "gamma": 2.0, "reduction": "mean"},
        torch=_torch_sigmoid_focal,
        scaling=True,
    ),
    "binary_cross_entropy_with_logits": dict(sklearn=lambda sk, shape: sk.HalfBinomialLoss()),
    "mse_loss": dict(sklearn=lambda sk, shape: sk.HalfSquaredError()),
    "l1_loss": dict(sklearn=lambda sk, shape: sk.AbsoluteError()),
    "smooth_l1_loss": dict(kwargs={"beta": 1.0}),
    "huber_loss": dict(kwargs={"delta": 1.0}, sklearn=lambda sk, shape: sk.HuberLoss(delta=1.0)),
    "margin_ranking_loss": dict(make=_make_ranking),
    "gaussian_nll_loss": dict(make=_make_gaussian),
    "cosine_embedding_loss": dict(make=_make_cosine),
    "triplet_margin_loss": dict(make=_make_triplet, outputs=3),
    "triplet_margin_with_distance_loss": dict(make=_make_triplet, outputs=3, default=False),
    "multilabel_margin_loss": dict(kind="rows", make=_make_multilabel),
    "multilabel_soft_margin_loss": dict(kind="rows"),
    "kl_div": dict(
        kwargs={"reduction": "batchmean"},
        torch=lambda torch, F, x, t: F.kl_div(x, t, reduction="batchmean"),
    ),
    # the box losses: "mean" as the torch peer (torchvision's formulas, reference/_oracles.py)
    **{
        name: dict(
            kind="box", make=_make_boxes, kwargs={"reduction": "mean"}, torch=_torch_box(name)
        )
        for name, spec in _losses.LOSSES.items()
        if spec.family == "box"
    },
    # the metrics: timed only when asked for (--loss)
    "error_rate": dict(
        kind="metric",
        torch=lambda torch, F, x, t: (x.argmax(1) != t).double().mean(),
        library=_TOP1_ERROR,
        others=_NUMPY_ARGMAX,
    ),
    "accuracy": dict(
        kind="metric",
        torch=lambda torch, F, x, t: (x.argmax(1) == t).double().mean(),
        library=_TOP1_ERROR,
        others=_NUMPY_ARGMAX,
    ),
    "entropy": dict(
        kind="entropy", torch=_torch_entropy, library=("scipy.stats.entropy", _scipy_entropy)
    ),
    # torch's CTC on logits: log_softmax, then F.ctc_loss (its backward through both)
    "ctc_loss": dict(
        make=_make_ctc,
        kwargs={"from_logits": True},
        torch=lambda torch, F, x, t: F.ctc_loss(x.log_softmax(2), *t),
        probe=_ctc_probe,
        scaling=True,
    ),
    # timed only when asked for (--loss): the default shapes take minutes per call on 2 cores
    "linear_cross_entropy": dict(
        make=_make_linear,
        torch=_torch_linear_ce,
        torch_others=(("torch unfused F.cross_entropy(F.linear(x, W))", _torch_linear_then_ce),),
        probe=_linear_probe,
        memory=True,
        default=False,
    ),
}


def _row(spec):
    """The benchmark row of a registry row (fastloss._losses.LOSSES)."""
    extra = dict(_EXTRAS.get(spec.name, {}))
    kind = extra.pop(
        "kind",
        {
            "class": "class",
            "elementwise": "elementwise",
            "pair": "pair",
            "embedding": "embedding",
            "margin": "class",  # multi_margin_loss: (N, C) scores, (N,) class indices
            "axis": "softmax",
            "metric": "metric",
            "ctc": "ctc",
            "box": "box",
            "linear": "linear",
        }[spec.family],
    )
    if "torch" not in extra and spec.torch_name and "." not in spec.torch_name:
        extra["torch"] = (
            lambda fn: lambda torch, F, x, t: getattr(F, fn)(x, *call_args(x, t)[1:])
        )(spec.torch_name)
    extra.setdefault("default", spec.family not in ("axis", "metric"))
    make = extra.pop("make", None) or _MAKERS[spec.input_domain, spec.target_domain]
    return Loss(spec.name, kind, make, **extra)


LOSSES = {spec.name: _row(spec) for spec in _losses.LOSSES.values()}


def available_losses():
    """Names of the LOSSES rows that this fastloss exports (in table order)."""
    exported = set(getattr(fastloss, "__all__", ()))
    return [name for name in LOSSES if name in exported and hasattr(fastloss, name)]


def default_losses():
    return [name for name in available_losses() if LOSSES[name].default]


def shape_base(rng, shape, kind=None):
    """The draws every case of one shape is made from: z ~ N(0, 1) (float32) and, for shapes
    with a class axis, class indices.  Nothing for the linear kind (its maker draws its
    arrays: z of shape (N, H, V) would not fit in memory)."""
    if kind == "linear":
        return None, None
    z = rng.standard_normal(shape, dtype=np.float32)
    idx = (
        rng.integers(0, shape[1], size=(shape[0],) + shape[2:], dtype=np.int64)
        if len(shape) >= 2
        else None
    )
    return z, idx


def case_inputs(name, shape, dtype, base, rng):
    """(x, target) of one case, made from the shape's shared N(0, 1) draw and class indices."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    z, idx = base
    dt = np.dtype(dtype)
    made = row.make(rng, z, shape, dt)
    if kind.target == "index":
        x, target = (made[0] if isinstance(made, tuple) else made), idx
    elif kind.target in ("same", "pair"):  # pair: target is a tuple of the other two arrays
        x, target = made
    else:
        x, target = (made[0] if isinstance(made, tuple) else made), None
    return np.ascontiguousarray(x, dtype=dt), target


def call_args(x, target):
    """A case's positional arguments: x, then its target, or its other arrays (pair kind)."""
    if target is None:
        return (x,)
    return (x, *target) if isinstance(target, tuple) else (x, target)


def shape_str(shape):
    return "x".join(str(n) for n in shape)


# --------------------------------------------------------------------------------------------
# the gradient-boosting section (fastloss bench --gbdt): fastloss.gbdt.grad_hess into
# preallocated buffers, against the custom objective a user writes in NumPy (these functions,
# XGBoost's conventions: softmax Hessian factor 2, Hessians floored at 1e-16) and against the
# memory floor of the call (read scores and labels, write gradient and Hessian)
# --------------------------------------------------------------------------------------------
def numpy_softmax_objective(predt, labels):
    """XGBoost's demo custom softmax objective, vectorised: (n, K) margins -> (grad, hess)."""
    p = np.exp(predt - predt.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(len(labels)), labels.astype(np.int64)] -= 1.0
    hess = np.maximum(2.0 * p * (1.0 - p), 1e-16)
    return grad, hess


def numpy_logloss_objective(predt, labels):
    p = 1.0 / (1.0 + np.exp(-predt))
    return p - labels, np.maximum(p * (1.0 - p), 1e-16)


def numpy_focal_objective(predt, labels, alpha=0.25, gamma=2.0):
    """The binary focal objective of the imbalanced-learning posts: p_t, the chain rule through
    the sigmoid written out, the (possibly negative) Hessian floored at 1e-16."""
    p = 1.0 / (1.0 + np.exp(-predt))
    s = 2.0 * labels - 1.0
    pt = np.where(labels == 1, p, 1.0 - p)
    q = 1.0 - pt
    at = np.where(labels == 1, alpha, 1.0 - alpha)
    lpt = np.log(np.maximum(pt, 1e-38))
    grad = at * s * q**gamma * (gamma * pt * lpt - q)
    hess = at * pt * q**gamma * ((2 * gamma + 1) * q + gamma * lpt * (q - gamma * pt))
    return grad, np.maximum(hess, 1e-16)


@dataclass(frozen=True)
class GbdtCase:
    loss: str
    shape: tuple
    quick_shape: tuple
    numpy: object  # (scores, labels) -> (grad, hess): the NumPy objective a user would write
    params: dict = field(default_factory=dict)  # fastloss.gbdt options matching it


def gbdt_inputs(case, shape, dtype, rng):
    """Scores ~ 2 N(0, 1) and labels (class indices, or 0/1 with 30 % positives)."""
    x = (2.0 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
    if len(shape) == 2:
        y = rng.integers(0, shape[1], size=shape[0]).astype(dtype)
    else:
        y = (rng.random(shape[0], dtype=np.float32) < 0.3).astype(dtype)
    return x, y


GBDT_CASES = (
    GbdtCase(
        "softmax", (1048576, 10), (131072, 10), numpy_softmax_objective, {"hessian_factor": 2.0}
    ),
    GbdtCase("logloss", (10485760,), (1310720,), numpy_logloss_objective),
    GbdtCase("focal", (10485760,), (1310720,), numpy_focal_objective),
)
