"""ctc_loss: validation into one canonical problem, then the CTC kernel or the NumPy twin.

The canonical problem is ``x`` of shape ``(T, N, C)`` (C-contiguous working dtype), every
sample's labels concatenated into one int64 array with their start offsets, and int64
``input_lengths`` / ``target_lengths`` of shape ``(N,)``.  Both backends get exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _config
from . import _validate as V
from ._losses import LOSSES

Reduction = Literal["none", "mean", "sum"]
LossResult = Union[np.floating, np.ndarray, tuple]
_I64 = np.dtype(np.int64)


def _lengths(value, name, N, unbatched):
    """int64 (N,) lengths from an array, a sequence or (unbatched) an int."""
    a = V.as_array(value, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if unbatched and a.shape in ((), (1,)):
        a = a.reshape(1)
    if a.shape != (N,):
        want = "a scalar or shape (1,)" if unbatched else f"shape ({N},) (one per sample)"
        raise ValueError(f"{name} must have {want}, got shape {a.shape}")
    return V.kernel_ready(a, _I64)


def _problem(log_probs, targets, input_lengths, target_lengths, blank):
    """(x (T, N, C), labels, offsets, input_lengths, target_lengths, unbatched, C)."""
    x = V.as_float_array(log_probs, "log_probs")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"log_probs must have shape (T, N, C) or unbatched (T, C), got shape {x.shape}"
        )
    unbatched = x.ndim == 2
    if unbatched:
        x = x.reshape(x.shape[0], 1, x.shape[1])
    T, N, C = x.shape
    if x.size == 0:
        raise ValueError(f"log_probs must not be empty (as torch), got shape {x.shape}")
    if not 0 <= blank < C:
        raise ValueError(f"blank must be a class index in [0, {C}), got {blank}")
    il = _lengths(input_lengths, "input_lengths", N, unbatched)
    tl = _lengths(target_lengths, "target_lengths", N, unbatched)
    if il.size and (il.min() < 0 or il.max() > T):
        bad = il[(il < 0) | (il > T)][0]
        raise ValueError(f"input_lengths must be in [0, T={T}], got {bad}")
    if tl.size and tl.min() < 0:
        raise ValueError(f"target_lengths must be >= 0, got {tl.min()}")
    t = V.as_array(targets, "targets")
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices, got dtype {t.dtype}")
    total = int(tl.sum())
    if t.ndim == 1 and not unbatched:  # concatenated
        if t.shape[0] != total:
            raise ValueError(
                f"targets (1-D: every sample's labels concatenated) must have length "
                f"sum(target_lengths) = {total}, got {t.shape[0]}"
            )
        labels = V.kernel_ready(t, _I64)
    else:
        if unbatched:
            if t.ndim != 1:
                raise ValueError(f"targets of unbatched log_probs must be 1-D, got {t.shape}")
            t = t.reshape(1, -1)
        if t.ndim != 2 or t.shape[0] != N:
            raise ValueError(
                f"targets must have shape (N={N}, S) (padded) or (sum(target_lengths),) "
                f"(concatenated), got shape {t.shape}"
            )
        if tl.size and tl.max() > t.shape[1]:
            raise ValueError(
                f"target_lengths must be at most targets.shape[1] = {t.shape[1]}, got {tl.max()}"
            )
        S = t.shape[1]
        keep = np.arange(S) < tl[:, None]  # the labels of each row, without the padding
        labels = V.kernel_ready(t[keep], _I64)
    offsets = np.zeros(N, _I64)  # where each sample's labels start in `labels`
    np.cumsum(tl[:-1], out=offsets[1:])
    if labels.size:
        bad = (labels < 0) | (labels >= C)
        if bad.any():
            raise IndexError(f"targets must be class indices in [0, {C}), got {labels[bad][0]}")
        if (labels == blank).any():
            raise ValueError(
                f"targets must not contain the blank index {blank} (within target_lengths)"
            )
    return x, labels, offsets, il, tl, unbatched, C


def _ctc(args):
    spec = LOSSES["ctc_loss"]
    params = spec.check_params(args)
    reduction, return_grad = args["reduction"], args["return_grad"]
    grad_output, grad_out = args["grad_output"], args["grad_out"]
    V.check_reduction(reduction, spec.reductions)
    blank = params["blank"]
    x, labels, offsets, il, tl, unbatched, C = _problem(
        args["log_probs"], args["targets"], args["input_lengths"], args["target_lengths"], blank
    )
    T, N, _ = x.shape
    loss_shape = () if unbatched else (N,)
    if grad_output is not None and not return_grad:
        raise ValueError("grad_output is only used with return_grad=True")
    go = V.grad_output_for(grad_output, reduction, loss_shape)
    # the gradient has the caller's shape: (T, C) for unbatched input
    grad = V.grad_buffer(grad_out, x.reshape(T, C) if unbatched else x, return_grad)
    if grad is not None and unbatched:
        grad = grad.reshape(x.shape)
    zero_inf, from_logits = params["zero_infinity"], params["from_logits"]
    if params["accumulate"] == "float32" and x.dtype == np.float64:
        raise ValueError('accumulate="float32" needs float32 log_probs (got float64)')
    if _config.get_backend() == "reference":
        loss, g = spec.reference(
            x,
            labels,
            offsets,
            il,
            tl,
            blank=blank,
            reduction=reduction,
            zero_infinity=zero_inf,
            from_logits=from_logits,
            grad_output=np.reshape(go, (N,)) if isinstance(go, np.ndarray) else go,
            need_grad=return_grad,
        )
        if grad is not None:
            np.copyto(grad, g, casting="unsafe")
    else:
        nll = np.empty(N, np.float64)
        scale = None
        if grad is not None:
            scale = np.broadcast_to(np.asarray(go, np.float64).reshape(-1), (N,))
            if reduction == "mean":
                scale = scale / (np.maximum(tl, 1) * N)
            scale = V.kernel_ready(np.asarray(scale), np.dtype(np.float64))
        K = _config._kernels
        K.ctc(
            x,
            labels,
            offsets,
            tl,
            il,
            blank,
            from_logits,
            zero_inf,
            params["accumulate"] == "float64",
            nll,
            grad,
            scale,
            _config._state["threads"],
        )
        if zero_inf:
            nll[nll == np.inf] = 0.0
        if reduction == "none":
            loss = nll
        elif reduction == "sum":
            loss = nll.sum()
        else:
            loss = np.mean(nll / np.maximum(tl, 1))
    if grad is not None and unbatched:
        grad = grad.reshape(x.shape[0], C)
    if reduction == "none":
        loss = np.asarray(loss, x.dtype).reshape(loss_shape)
    else:
        loss = x.dtype.type(loss)
    return (loss, grad) if return_grad else loss


def ctc_loss(
    log_probs: ArrayLike,
    targets: ArrayLike,
    input_lengths: ArrayLike | Sequence[int] | int,
    target_lengths: ArrayLike | Sequence[int] | int,
    *,
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
    from_logits: bool = False,
    accumulate: Literal["float32", "float64"] | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike | float | None = None,
    grad_out: np.ndarray | None = None,
) -> LossResult:
    """torch's F.ctc_loss on (T, N, C) log-probabilities, or on logits with from_logits=True
    (the log-softmax fused, the gradient w.r.t. the logits)."""
    return _ctc(locals())
