"""Argument validation shared by the compiled and the reference backends.

Everything a user can pass goes through here once; the result is a canonical problem
(C-contiguous working-dtype arrays viewed as (N, C, S), int64 targets, ...) that both
backends consume.  Errors name the argument and the offending value or shape.
"""

import math
import operator

import numpy as np

_REDUCTIONS = ("none", "mean", "sum")
_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)


def kernel_ready(a, dtype):
    """`a` as a C-contiguous, aligned, native-order array of `dtype`: the layout the kernels
    read through plain typed pointers.  No copy when it already is one.  (`dtype` is one of
    NumPy's canonical native dtypes, so identity implies native byte order.)"""
    if a.dtype is dtype:
        f = a.flags
        if f.c_contiguous and f.aligned:
            return a
    return np.array(a, dtype=dtype, order="C", copy=True)


_HUGE_PAGE = 2 << 20
_ALIGNED_MIN = 4 << 20


def empty(shape, dtype):
    """A new C-contiguous array for a kernel's output.  From 4 MiB on, its data starts on a
    2 MiB boundary and the allocation is rounded up to whole 2 MiB blocks: NumPy asks Linux
    for transparent huge pages on large allocations, but malloc's block starts just past a
    page boundary, so the first and last partial 2 MiB of a plain np.empty stay 4 KiB pages,
    faulted one by one when the kernel writes them (on the benchmark VM, 42 MB of fresh
    gradient: 3.1 ms of faults plainly, 1.8 ms aligned).  Costs at most 2 MiB of extra
    memory (the last huge page); elsewhere it is just an aligned np.empty."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    if nbytes < _ALIGNED_MIN:
        return np.empty(shape, dtype=dtype)
    span = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
    raw = np.empty(span + _HUGE_PAGE, dtype=np.uint8)
    start = -raw.ctypes.data % _HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def working_dtype(dt, name):
    """float32/float64 stay; float16, integers and bool compute in float32."""
    if dt == _F32 or dt == _F64:
        return dt
    kind = dt.kind
    if kind == "f":
        if dt.itemsize > 8:
            raise TypeError(f"{name}: dtype {dt} is not supported (use float32 or float64)")
        return _F64 if dt.itemsize == 8 else _F32
    if kind in "iub":
        return _F32
    raise TypeError(f"{name} must be a real numeric array, got dtype {dt}")


def as_array(value, name):
    """`value` as a NumPy array (no copy for one); TypeError naming `name` when it cannot be
    one.  A torch tensor that requires grad is refused with the fix, not torch's error."""
    if type(value) is np.ndarray:
        return value
    if getattr(value, "requires_grad", False) and type(value).__module__.startswith("torch"):
        raise TypeError(
            f"{name} is a torch.Tensor that requires grad: the NumPy API does not "
            f"differentiate through torch; pass {name}.detach(), or call fastloss.torch.<loss> "
            "to get the gradient through autograd"
        )
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None


def as_float_array(value, name):
    """Array of the working dtype (no copy when already float32/float64, native, contiguous)."""
    if type(value) is not np.ndarray:
        value = as_array(value, name)
    dt = working_dtype(value.dtype, name)
    if value.dtype is not dt or not value.flags.c_contiguous or not value.flags.aligned:
        value = kernel_ready(value, dt)
    return value


def check_reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


def as_real(value, name):
    """float(value); TypeError naming the option when it is not a real number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None


def check_nonneg(value, name):
    v = as_real(value, name)
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_positive(value, name):
    v = as_real(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_unit_interval(value, name):
    v = as_real(value, name)
    if not 0 <= v <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def check_focal_alpha(value, name):
    """alpha of the sigmoid focal loss: in [0, 1], or negative to disable the alpha term."""
    v = as_real(value, name)
    if not (v <= 1 and math.isfinite(v)):
        raise ValueError(
            f"{name} must be in [0, 1] (or negative to disable the alpha term), got {value!r}"
        )
    return v


def as_flag(value, name):
    return bool(value)


def as_int(value, name):
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r}") from None
    if not -(2**63) <= v < 2**63:
        raise ValueError(f"{name} must fit in a 64-bit integer, got {value!r}")
    return v


def class_weight(weight, C, dtype, name="weight"):
    if weight is None:
        return None
    w = as_float_array(weight, name)
    if w.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},) (one value per class), got {w.shape}")
    return w if w.dtype == dtype else w.astype(dtype)


def sample_weight_for(sample_weight, loss_shape):
    """Per-sample weights as a float64 array of the loss's shape: finite and >= 0."""
    s = as_array(sample_weight, "sample_weight")
    if s.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be real numbers, got dtype {s.dtype}")
    try:
        s = np.broadcast_to(s.astype(_F64, copy=False), loss_shape)
    except ValueError:
        raise ValueError(
            f"sample_weight of shape {s.shape} does not broadcast to the per-sample loss "
            f"shape {loss_shape}"
        ) from None
    if s.size and not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("sample_weight must be finite and >= 0")
    return s


def grad_output_for(grad_output, reduction, loss_shape):
    """Scalar float for mean/sum; float64 contiguous array shaped like the loss for "none"."""
    if grad_output is None:
        return 1.0
    g = as_array(grad_output, "grad_output")
    if g.dtype.kind not in "fiub":
        raise TypeError(f"grad_output must be real numbers, got dtype {g.dtype}")
    if reduction != "none":
        if g.size != 1:
            raise ValueError(
                f"grad_output must be a scalar for reduction={reduction!r}, got shape {g.shape}"
            )
        return float(g.reshape(()))
    try:
        g = np.broadcast_to(g, loss_shape)
    except ValueError:
        raise ValueError(
            f"grad_output of shape {np.shape(grad_output)} does not broadcast to "
            f"the loss shape {loss_shape}"
        ) from None
    return kernel_ready(g, _F64)


def grad_buffer(grad_out, x, return_grad):
    """The array the gradient is written into: a new one, or the caller's `grad_out`.

    `grad_out` may be the input itself (in-place gradient, opt-in); any other overlap with
    the input is refused."""
    if grad_out is None:
        return empty(x.shape, x.dtype) if return_grad else None
    if not return_grad:
        raise ValueError("grad_out is only used with return_grad=True")
    if type(grad_out) is not np.ndarray:
        raise TypeError(f"grad_out must be a numpy.ndarray, got {type(grad_out).__name__}")
    if grad_out.dtype != x.dtype:
        raise TypeError(
            f"grad_out must have dtype {x.dtype} (the working dtype of input), got {grad_out.dtype}"
        )
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out must have the input's shape {x.shape}, got {grad_out.shape}")
    if not grad_out.flags.c_contiguous or not grad_out.flags.aligned:
        raise ValueError("grad_out must be C-contiguous and aligned")
    if not grad_out.flags.writeable:
        raise ValueError("grad_out is read-only")
    # same dtype, shape and C order: equal start addresses mean the very same memory
    if (
        np.may_share_memory(grad_out, x)
        and grad_out.__array_interface__["data"][0] != x.__array_interface__["data"][0]
    ):
        raise ValueError("grad_out overlaps input without being the input itself")
    return grad_out


def check_no_overlap(buf, name, *others):
    for other_name, other in others:
        if isinstance(other, np.ndarray) and np.may_share_memory(buf, other):
            raise ValueError(f"{name} must not share memory with {other_name}")


class ClassProblem:
    """A validated class-axis loss call, input viewed as (N, C, S)."""

    __slots__ = (
        "x",
        "N",
        "C",
        "S",
        "in_shape",
        "loss_shape",
        "target",
        "target_prob",
        "weight",
        "ignore_index",
        "reduction",
    )


def class_axis(axis, ndim):
    """The class axis as a non-negative int: None is torch's layout (axis 1, or 0 for an
    unbatched 1-d input)."""
    if axis is None:
        return 1 if ndim > 1 else 0
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int or None, got {axis!r}") from None
    if not -ndim <= ax < ndim:
        raise ValueError(f"axis {axis} is out of bounds for input with {ndim} dimensions")
    return ax % ndim


def class_problem(input, target, weight, ignore_index, reduction, allow_prob, axis=None):
    """The class loss viewed as (N, C, S) around the class axis: N the product of the
    dimensions before it, S of those after it (no transposing copy: a C-contiguous input is
    that layout already)."""
    check_reduction(reduction)
    x = as_float_array(input, "input")
    shape = x.shape
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (classes), got a 0-d array")
    ax = class_axis(axis, x.ndim)
    N = S = 1
    for d in shape[:ax]:
        N *= d
    for d in shape[ax + 1 :]:
        S *= d
    C = shape[ax]
    loss_shape = shape[:ax] + shape[ax + 1 :]
    p = ClassProblem()
    p.x = x
    p.N, p.C, p.S = N, C, S
    p.in_shape = shape
    p.loss_shape = loss_shape
    p.reduction = reduction
    p.ignore_index = as_int(ignore_index, "ignore_index")
    p.target = p.target_prob = None

    t = target if type(target) is np.ndarray else as_array(target, "target")
    kind = t.dtype.kind
    if kind == "f":
        if not allow_prob:
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
        if p.ignore_index >= 0:  # torch refuses it too
            raise ValueError(
                f"ignore_index={p.ignore_index} is not supported with probability targets "
                "(float target): there is no class index to ignore; leave ignore_index at its "
                "default -100"
            )
        if t.shape != shape:
            if t.shape == loss_shape:
                raise TypeError(
                    f"target of shape {t.shape} has floating dtype {t.dtype}: class "
                    f"indices must be integers (probability targets must have the "
                    f"input's shape {shape})"
                )
            raise ValueError(
                f"probability target must have the input's shape {shape}, got {t.shape}"
            )
        p.target_prob = kernel_ready(t, x.dtype)
    elif kind in "iu":
        if t.shape != loss_shape:
            raise ValueError(
                f"target must have shape {loss_shape} (input shape {shape} without "
                f"the class axis {ax}), got {t.shape}"
            )
        if kind == "u" and t.dtype.itemsize == 8 and t.size and t.max() > np.iinfo(np.int64).max:
            raise IndexError(f"target value {t.max()} is out of range [0, {C})")
        p.target = kernel_ready(t, _I64)
    else:
        raise TypeError(
            f"target must be integer class indices or float probabilities, got dtype {t.dtype}"
        )
    if C == 0 and N * S > 0:
        raise ValueError(f"input has 0 classes (shape {shape})")
    p.weight = class_weight(weight, C, x.dtype)
    return p


def axis_problem(x, axis, name="x"):
    """x viewed as (outer, C, inner) around `axis`, without a transposing copy.  A 0-d x is
    one slice of one element (axis 0 or -1), as torch and scipy treat it."""
    x = as_float_array(x, name)
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an int, got {axis!r}") from None
    ndim = max(x.ndim, 1)
    if not -ndim <= ax < ndim:
        raise ValueError(f"axis {axis} is out of bounds for {name} with {x.ndim} dimensions")
    if x.ndim == 0:
        return x, 0, 1, 1, 1
    ax %= x.ndim
    outer = 1
    for d in x.shape[:ax]:
        outer *= d
    inner = 1
    for d in x.shape[ax + 1 :]:
        inner *= d
    return x, ax, outer, x.shape[ax], inner


def same_shape_target(target, x, name="target"):
    t = target if type(target) is np.ndarray else as_array(target, name)
    if t.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    if t.shape != x.shape:
        raise ValueError(f"{name} must have the input's shape {x.shape}, got {t.shape}")
    return kernel_ready(t, x.dtype)


def periodic_weight(weight, shape, dtype, name):
    """(array, period) such that the weight of flat element i is array[i % period].

    A weight broadcast over leading axes only (e.g. shape (C,) or (1, C) against (N, C)) is
    used as is; any other broadcast is materialised to the full shape (period = size)."""
    if weight is None:
        return None, 0
    w = as_float_array(weight, name)
    try:
        full = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(f"{name} of shape {w.shape} does not broadcast to the input shape {shape}")
    core = w.shape
    while core and core[0] == 1:
        core = core[1:]
    if core == tuple(shape[len(shape) - len(core) :]):
        w = w.reshape(-1) if w.dtype == dtype else w.astype(dtype).reshape(-1)
    else:
        w = kernel_ready(np.broadcast_to(w, shape), dtype).reshape(-1)
    return w, max(1, w.size)


def elementwise_grad_output(grad_output, reduction, shape, dtype):
    """Scalar for reducing modes; working-dtype contiguous array of the input's shape for none."""
    go = grad_output_for(grad_output, reduction, shape)
    if isinstance(go, np.ndarray) and go.dtype != dtype:
        go = go.astype(dtype)
    return go


def same_ndim_target(value, shape, name):
    """margin_ranking_loss's target: torch requires the inputs and the target to have the same
    number of dimensions (then broadcasts them)."""
    t = as_float_array(value, name)
    if t.ndim != len(shape):
        raise ValueError(
            f"{name} must have as many dimensions as input1 and input2 ({len(shape)}), got "
            f"shape {t.shape}"
        )
    return t


def gaussian_var(value, shape, name):
    """gaussian_nll_loss's var by torch's rules: a Python number applies to every element; an
    array is input-shaped, one dimension short (unsqueezed at the end), or of the input's
    ndim with exactly one mismatched dimension, of size 1.  Entries must be >= 0 (checked by
    the kernels as they read them; here for the reference backend)."""
    if (
        not isinstance(value, np.ndarray)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return np.asarray(float(value))
    v = as_float_array(value, name)
    shape = tuple(shape)
    if v.shape == shape or (
        v.ndim == len(shape) and sum(b for a, b in zip(shape, v.shape) if a != b) == 1
    ):
        return v
    if v.shape == shape[:-1]:
        return v[..., None]
    raise ValueError(f"{name} is of incorrect size: shape {v.shape} for input shape {shape}")


def distance_function(value, name):
    """triplet_margin_with_distance_loss's distance: None / "euclidean" (torch's
    pairwise_distance), "cosine" (1 - cosine similarity) or a callable on NumPy arrays."""
    if value is None or (isinstance(value, str) and value in ("euclidean", "cosine")):
        return value
    if callable(value):
        return value
    raise ValueError(f"{name} must be None, 'euclidean', 'cosine' or a callable, got {value!r}")
