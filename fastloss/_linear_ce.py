"""linear_cross_entropy: cross entropy of a linear projection without the N x V logits.

Design (docs/performance.md, "fused linear + cross entropy"): the rows are cut into chunks of
``B`` rows, and one ``(B, V)`` buffer is reused for every chunk (``V`` = the projection's
outputs, ``C * prod(out_features)``).  Per chunk:

1. ``logits = X_c @ W.T (+ bias)``: one BLAS GEMM into the buffer (``np.matmul(out=)``);
2. the fused cross-entropy kernel (``fastloss.cross_entropy``, ``reduction="none"``) writes
   the per-row losses and turns the logits into their gradient IN PLACE (``grad_out`` = the
   buffer), already scaled: the "mean" denominator (the total weight of the rows not ignored)
   is computed from the targets before the first chunk;
3. ``grad_input[c] = G @ W`` (GEMM into the output rows), ``grad_weight += G.T @ X_c``
   accumulated by BLAS itself (SciPy's ``?gemm`` with ``beta=1`` on the output, no
   ``V x H`` temporary; without SciPy, in vocabulary blocks through a small temporary) and
   ``grad_bias += G.sum(0)``.

Rows whose targets are all ``ignore_index`` are dropped before the projection (their loss
and gradients are 0).  Without ``return_grad`` (evaluation) step 3 is skipped: the forward
holds one chunk of logits at a time.  The reference backend runs the unfused float64 twin
(``fastloss/reference/_linear_ce.py``) on the same validated arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _config
from . import _validate as V
from ._losses import LOSSES

#: scipy.linalg.blas (?gemm with beta = 1: grad_weight accumulated in place), imported on
#: the first gradient call (importing SciPy costs about 0.1 s): None without SciPy, False until
#: then
_blas = False


def _scipy_blas():
    global _blas
    if _blas is False:
        try:
            from scipy.linalg import blas
        except ImportError:  # SciPy is optional
            blas = None
        _blas = blas
    return _blas


Reduction = Literal["none", "mean", "sum"]
LossResult = Union[np.floating, np.ndarray, tuple]
_I64 = np.dtype(np.int64)

#: default working-memory budget of the chunk buffer (bytes of (B, V) logits)
DEFAULT_MAX_MEMORY = 64 << 20
#: rows of grad_weight per temporary block on the NumPy-only accumulation path
_VOCAB_BLOCK = 2048


class _Problem:
    __slots__ = (
        "x",
        "w2",
        "b2",
        "target",
        "prob",
        "weight",
        "ignore_index",
        "N",
        "H",
        "C",
        "out",
        "D",
        "unbatched",
        "w_shape",
        "bias_shape",
        "loss_shape",
    )


def _problem(input, linear_weight, target, linear_bias, weight, ignore_index):
    """Validate the arrays into canonical 2-d ones: x (N, H), w2 (C*D, H), b2 (C*D,) or None,
    targets (N, D) int64 or probabilities (N, C, D)."""
    p = _Problem()
    x = V.as_float_array(input, "input")
    if x.ndim not in (1, 2):
        raise ValueError(
            f"input must have shape (N, in_features) or unbatched (in_features,), got shape "
            f"{x.shape}"
        )
    w = V.as_float_array(linear_weight, "linear_weight")
    if w.ndim < 2:
        raise ValueError(
            "linear_weight must have shape (C, in_features) or (C, d1, ..., dk, in_features), "
            f"got shape {w.shape}"
        )
    if w.dtype != x.dtype:
        raise TypeError(
            f"linear_weight must have input's working dtype {x.dtype} (as torch, no "
            f"promotion), got {w.dtype}"
        )
    H = x.shape[-1]
    if w.shape[-1] != H:
        raise ValueError(
            f"linear_weight's last dimension (in_features) must equal input's, {H}, got "
            f"shape {w.shape}"
        )
    C, out = w.shape[0], tuple(w.shape[1:-1])
    D = math.prod(out)
    p.unbatched = x.ndim == 1
    if p.unbatched and out:
        raise ValueError(
            f"a K-dimensional linear_weight (shape {w.shape}) needs batched input (N, {H}), "
            f"got unbatched input of shape {x.shape}"
        )
    x = x.reshape(-1, H)
    N = x.shape[0]
    if C == 0 and N:
        raise ValueError(f"linear_weight has 0 classes (shape {w.shape})")
    p.x, p.N, p.H, p.C, p.out, p.D = x, N, H, C, out, D
    p.w2 = w.reshape(C * D, H)
    p.w_shape = w.shape
    p.b2 = None
    p.bias_shape = None
    if linear_bias is not None:
        b = V.as_float_array(linear_bias, "linear_bias")
        if b.shape != (C, *out):
            raise ValueError(f"linear_bias must have shape {(C, *out)}, got {b.shape}")
        if b.dtype != x.dtype:
            raise TypeError(f"linear_bias must have input's working dtype {x.dtype}, got {b.dtype}")
        p.b2, p.bias_shape = b.reshape(C * D), b.shape
    p.weight = V.class_weight(weight, C, x.dtype)

    logits_shape = (C,) if p.unbatched else (N, C, *out)
    index_shape = () if p.unbatched else (N, *out)
    p.loss_shape = index_shape
    t = V.as_array(target, "target")
    if t.dtype.kind == "f":
        if t.shape != logits_shape:
            if t.shape == index_shape:
                raise TypeError(
                    f"target of shape {t.shape} has floating dtype {t.dtype}: class indices "
                    f"must be integers (probability targets have the logits' shape "
                    f"{logits_shape})"
                )
            raise ValueError(
                f"probability target must have the logits' shape {logits_shape}, got {t.shape}"
            )
        if ignore_index is not None:  # as torch
            raise ValueError(
                f"ignore_index={ignore_index!r} cannot be specified when target holds "
                "probabilities (leave it None)"
            )
        p.prob = V.kernel_ready(t, x.dtype).reshape(N, C, D)
        p.target = None
        p.ignore_index = -100
    elif t.dtype.kind in "iu":
        if t.shape != index_shape:
            raise ValueError(
                f"target must have shape {index_shape} (class indices) or {logits_shape} "
                f"(probabilities), got {t.shape}"
            )
        ii = -100 if ignore_index is None else V.as_int(ignore_index, "ignore_index")
        if t.dtype.kind == "u" and t.size and t.max() > np.iinfo(np.int64).max:
            raise IndexError(f"target value {t.max()} is out of range [0, {C})")
        t = V.kernel_ready(t, _I64).reshape(N, D)
        bad = (t != ii) & ((t < 0) | (t >= C))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = np.unravel_index(i, index_shape) if index_shape else ()
            raise IndexError(
                f"target {t.reshape(-1)[i]} at position {tuple(int(k) for k in where)} is out "
                f"of range [0, {C}) and is not ignore_index ({ii})"
            )
        p.target, p.prob, p.ignore_index = t, None, ii
    else:
        raise TypeError(
            f"target must be integer class indices or float probabilities, got dtype {t.dtype}"
        )
    return p


def _chunk_rows(chunk_rows, max_memory, N, V_out, itemsize):
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool):
            raise TypeError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
        b = V.as_int(chunk_rows, "chunk_rows")
        if b < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows!r}")
        return max(1, min(b, N))
    if max_memory is None:
        budget = DEFAULT_MAX_MEMORY
    else:
        if isinstance(max_memory, bool):
            raise TypeError(f"max_memory must be a number of bytes > 0, got {max_memory!r}")
        budget = V.as_real(max_memory, "max_memory")
        if not budget > 0:
            raise ValueError(f"max_memory must be > 0 (bytes), got {max_memory!r}")
    return max(1, min(N, int(budget // max(1, V_out * itemsize))))


def _grad_buffers(grad_out, p, return_grad):
    """(grad_input (N, H), grad_weight (C*D, H), grad_bias (C*D,) or None): new arrays, or
    the caller's grad_out tuple checked."""
    dt = p.x.dtype
    shapes = [(p.x.shape if not p.unbatched else (p.H,)), p.w_shape, p.bias_shape]
    names = ("grad_input", "grad_weight", "grad_bias")
    if grad_out is None:
        if not return_grad:
            return None
        bufs = [None if s is None else V.empty(s, dt) for s in shapes]
    else:
        if not return_grad:
            raise ValueError("grad_out is only used with return_grad=True")
        if not isinstance(grad_out, (tuple, list)) or len(grad_out) not in (2, 3):
            raise TypeError(
                "grad_out must be a tuple (grad_input, grad_weight[, grad_bias]) of arrays"
            )
        bufs = list(grad_out) + [None] * (3 - len(grad_out))
        for k, (buf, shape, name) in enumerate(zip(bufs, shapes, names)):
            if shape is None:
                if buf is not None:
                    raise ValueError(f"grad_out: {name} given without linear_bias")
                continue
            if type(buf) is not np.ndarray:
                raise TypeError(
                    f"grad_out: {name} must be a numpy.ndarray, got {type(buf).__name__}"
                )
            if buf.dtype != dt:
                raise TypeError(f"grad_out: {name} must have dtype {dt}, got {buf.dtype}")
            if buf.shape != tuple(shape):
                raise ValueError(f"grad_out: {name} must have shape {shape}, got {buf.shape}")
            if not (buf.flags.c_contiguous and buf.flags.aligned and buf.flags.writeable):
                raise ValueError(f"grad_out: {name} must be C-contiguous, aligned, writeable")
            others = [("input", p.x), ("linear_weight", p.w2)] + [
                (names[j], bufs[j]) for j in range(k) if bufs[j] is not None
            ]
            V.check_no_overlap(buf, f"grad_out: {name}", *others)
    gi, gw, gb = bufs
    return (
        gi.reshape(p.N, p.H),
        gw.reshape(p.C * p.D, p.H),
        None if gb is None else gb.reshape(-1),
        bufs,
    )


class _WeightGrad:
    """grad_weight (V, H) += G.T @ X_c, chunk after chunk, without a V x H temporary."""

    def __init__(self, gw):
        self.gw = gw
        self.first = True
        self.gemm = None
        blas = _scipy_blas() if gw.size else None
        if blas is not None:
            self.gemm = blas.get_blas_funcs("gemm", dtype=gw.dtype)
        self.tmp = None

    def add(self, g, xc):
        gw = self.gw
        if self.first:  # the first chunk writes (no zero-fill pass)
            np.matmul(g.T, xc, out=gw)
            self.first = False
            return
        if self.gemm is not None:
            # gw (V, H) C-order is gw.T (H, V) Fortran-order: C := X_c^T G + C, beta = 1,
            # overwrite_c keeps it in place (checked: a copy would be written back)
            out = self.gemm(1.0, xc.T, g.T, beta=1.0, c=gw.T, trans_b=1, overwrite_c=1)
            if not np.shares_memory(out, gw):  # pragma: no cover - BLAS wrapper copied
                gw[...] = out.T
            return
        # NumPy only: vocabulary blocks through one (block, H) temporary
        V_out = gw.shape[0]
        blk = min(_VOCAB_BLOCK, V_out)
        if self.tmp is None:
            self.tmp = np.empty((blk, gw.shape[1]), gw.dtype)
        for v0 in range(0, V_out, blk):
            v1 = min(v0 + blk, V_out)
            t = self.tmp[: v1 - v0]
            np.matmul(g[:, v0:v1].T, xc, out=t)
            gw[v0:v1] += t

    def finish(self):
        if self.first:  # no chunk at all (every row ignored, or N = 0)
            self.gw[...] = 0


def _run_chunks(p, reduction, go, grads, ls, B, metrics):
    """The compiled path.  Returns (per-row losses (N, D) float64, metrics dict or None)."""
    from ._api import cross_entropy  # the fused kernel, one chunk at a time

    N, H, C, D = p.N, p.H, p.C, p.D
    dt = p.x.dtype
    V_out = C * D
    rows_loss = np.zeros((N, D), np.float64)
    if p.target is not None:
        keep_row = (p.target != p.ignore_index).any(axis=1)
        kept = None if keep_row.all() else np.flatnonzero(keep_row)
    else:
        kept = None
    n_rows = N if kept is None else kept.size
    B = max(1, min(B, n_rows))
    need_grad = grads is not None
    gi = gw = gb = None
    if need_grad:
        gi, gw, gb, _ = grads
        acc = _WeightGrad(gw)
        if kept is not None and kept.size < N:
            gi[~keep_row] = 0
        if gb is not None:
            gb[...] = 0
    buf = np.empty((B, V_out), dt) if n_rows else None
    gather = kept is not None and n_rows > 0
    xbuf = np.empty((B, H), dt) if gather else None
    gbuf = np.empty((B, H), dt) if gather and need_grad else None
    cls_shape = (C, *p.out)
    options = {"weight": p.weight, "label_smoothing": ls}
    if p.target is not None:
        options["ignore_index"] = p.ignore_index
    hits = {name: 0.0 for name in metrics} if metrics else None
    counted = 0.0
    per_row_go = isinstance(go, np.ndarray)
    for start in range(0, n_rows, B):
        stop = min(start + B, n_rows)
        b = stop - start
        if kept is None:
            rows = slice(start, stop)
            xc = p.x[rows]
        else:
            rows = kept[start:stop]
            xc = np.take(p.x, rows, axis=0, out=xbuf[:b])
        logits = buf[:b]
        np.matmul(xc, p.w2.T, out=logits)
        if p.b2 is not None:
            logits += p.b2
        z = logits.reshape((b, *cls_shape))
        if p.target is not None:
            tc = p.target[rows].reshape((b, *p.out))
        else:
            tc = p.prob[rows].reshape((b, *cls_shape))
        kw = dict(options)
        if need_grad:
            g_c = go[rows].reshape((b, *p.out)) if per_row_go else go
            kw.update(return_grad=True, grad_output=g_c, grad_out=z)
        if metrics:
            kw["return_metrics"] = list(metrics)
        res = cross_entropy(z, tc, reduction="none", **kw)
        loss_c = res[0] if (need_grad or metrics) else res
        rows_loss[rows] = np.reshape(loss_c, (b, D))
        if metrics:
            values = res[-1]
            if p.target is not None:
                n_c = float(np.count_nonzero(p.target[rows] != p.ignore_index))
            else:
                n_c = float(b * D)
            if n_c:
                counted += n_c
                for name in metrics:
                    hits[name] += float(values[name]) * n_c
        if need_grad:
            if kept is None:
                np.matmul(logits, p.w2, out=gi[rows])
            else:
                np.matmul(logits, p.w2, out=gbuf[:b])
                gi[rows] = gbuf[:b]
            acc.add(logits, xc)
            if gb is not None:
                gb += logits.sum(axis=0)
    if need_grad:
        acc.finish()
    out = None
    if metrics:
        out = {n: np.float64(h / counted if counted else np.nan) for n, h in hits.items()}
    return rows_loss, out


def _metric_names(value):
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    return names


def _reference(p, reduction, go, grads, ls, metrics):
    """The reference backend: the unfused float64 twin on the whole problem."""
    from ._api import cross_entropy
    from .reference import _linear_ce as R

    spec = LOSSES["linear_cross_entropy"]
    w3 = p.w2.reshape(p.C, p.D, p.H)
    b3 = None if p.b2 is None else p.b2.reshape(p.C, p.D)
    t = p.target if p.target is not None else p.prob
    go_ref = go.reshape(p.N, p.D) if isinstance(go, np.ndarray) else go
    loss, g = spec.reference(
        p.x,
        w3,
        t,
        bias=b3,
        weight=p.weight,
        ignore_index=p.ignore_index,
        label_smoothing=ls,
        reduction=reduction,
        grad_output=go_ref,
        need_grad=grads is not None,
    )
    if grads is not None:
        gi, gw, gb, _ = grads
        np.copyto(gi, g[0], casting="unsafe")
        np.copyto(gw, g[1].reshape(gw.shape), casting="unsafe")
        if gb is not None:
            np.copyto(gb, g[2].reshape(-1), casting="unsafe")
    values = None
    if metrics:
        z = R.logits(p.x, w3, b3).reshape((p.N, p.C, *p.out))
        tm = p.target.reshape((p.N, *p.out))
        _, values = cross_entropy(z, tm, ignore_index=p.ignore_index, return_metrics=metrics)
    return loss, values


def _linear_ce(args):
    spec = LOSSES["linear_cross_entropy"]
    reduction, return_grad = args["reduction"], args["return_grad"]
    grad_output, grad_out = args["grad_output"], args["grad_out"]
    V.check_reduction(reduction, spec.reductions)
    ls = V.check_unit_interval(args["label_smoothing"], "label_smoothing")
    p = _problem(
        args["input"],
        args["linear_weight"],
        args["target"],
        args["linear_bias"],
        args["weight"],
        args["ignore_index"],
    )
    if grad_output is not None and not return_grad:
        raise ValueError("grad_output is only used with return_grad=True")
    metrics = _metric_names(args["return_metrics"])
    if metrics is not None:
        if p.target is None:
            raise ValueError("return_metrics needs class-index targets (not probabilities)")
        # the names checked by cross_entropy's own parser, on a tiny problem
        from ._api import _metric_names as check_names

        check_names(metrics, _CheckTarget())
    B = _chunk_rows(args["chunk_rows"], args["max_memory"], p.N, p.C * p.D, p.x.dtype.itemsize)
    go = V.grad_output_for(grad_output, reduction, p.loss_shape)
    if isinstance(go, np.ndarray):
        go = go.reshape(p.N, p.D)
    grads = _grad_buffers(grad_out, p, return_grad)

    # the "mean" denominator, known before the first chunk: Σ w[y] over the targets not
    # ignored (their count without weight), N * D with probability targets
    if reduction == "mean":
        if p.target is None:
            denom = float(p.N * p.D)
        else:
            keep = p.target != p.ignore_index
            if p.weight is None:
                denom = float(np.count_nonzero(keep))
            else:
                w64 = p.weight.astype(np.float64)
                denom = float(w64[p.target[keep]].sum())
        scale = go / denom if denom else 0.0
    else:
        denom, scale = None, go

    if _config.get_backend() == "reference":
        loss, values = _reference(p, reduction, go, grads, ls, metrics)
        if reduction != "none":
            loss = float(loss)
    else:
        rows, values = _run_chunks(p, reduction, scale, grads, ls, B, metrics)
        if reduction == "none":
            loss = rows
        else:
            total = float(rows.sum())
            loss = total if denom is None else (total / denom if denom else math.nan)
    dt = p.x.dtype
    if reduction == "none":
        loss = np.asarray(loss, dt).reshape(p.loss_shape)
    else:
        loss = dt.type(loss)
    if grads is not None:
        gi, gw, gb, bufs = grads
        result = (loss, tuple(bufs))
    else:
        result = (loss,)
    if metrics is not None:
        result = (*result, values)
    return result if len(result) > 1 else result[0]


class _CheckTarget:
    """A stand-in problem for _api._metric_names (it only looks at `target`)."""

    __slots__ = ("target",)

    def __init__(self):
        self.target = True


def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    return_grad: bool = False,
    grad_output: ArrayLike | float | None = None,
    grad_out: tuple | None = None,
    return_metrics: str | Sequence[str] | None = None,
    chunk_rows: int | None = None,
    max_memory: float | None = None,
) -> LossResult:
    """torch's F.linear_cross_entropy: cross_entropy(input @ linear_weight.T + linear_bias,
    target) in row chunks, without the (N, C) logits; return_grad=True gives the gradients
    w.r.t. input, linear_weight and linear_bias."""
    return _linear_ce(locals())
