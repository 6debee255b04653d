"""PyTorch autograd bridge: fastloss's fused CPU kernels as drop-in ``torch.nn.functional`` losses.

Every function here has the signature of its ``torch.nn.functional`` namesake (and
``torchvision.ops.sigmoid_focal_loss`` for :func:`sigmoid_focal_loss`), every module class the
constructor of its ``torch.nn`` namesake, so porting is a change of import::

    import torch
    import fastloss.torch as FL            # instead of: import torch.nn.functional as F

    model = torch.nn.Linear(20, 5)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    loss = FL.cross_entropy(model(x), y, label_smoothing=0.1)
    loss.backward()                         # no second pass: the gradient came with the loss

    criterion = FL.BCEWithLogitsLoss(pos_weight=torch.full((5,), 2.0))
    criterion(model(x), torch.rand(64, 5)).backward()

How it works: a call validates its arguments and runs fastloss's fused kernel before autograd
sees it, so loss and gradient come from ONE pass, the gradient written straight into a fresh
buffer that torch then owns (a NumPy allocation handed over with ``torch.from_numpy``: NumPy
asks for huge pages on large allocations, which makes a large gradient much cheaper to fault in
than ``torch.empty_like``'s).  The autograd node (one ``torch.autograd.Function`` per loss, in
``FUNCTIONS``) only carries that buffer: ``backward`` scales it by the upstream gradient, or
returns it as is when the upstream gradient is exactly 1 (the usual ``loss.backward()``);
nothing is recomputed.  When the input does not require grad (inference, ``torch.no_grad()``),
no gradient is computed and no node is made.

The usual call takes a fast path that hands the tensors' memory to the compiled kernel
directly: a contiguous float32/float64 CPU input; int64 class indices (or, for
``cross_entropy``, probabilities of the input's dtype and shape) and an optional class
``weight`` of the input's dtype for the class losses; a target of the input's dtype and shape
and no weights for the elementwise ones; plain int/float options; the compiled backend.
Every other call (other dtypes, non-contiguous or expanded tensors, the elementwise losses'
weights, the reference backend, and every call with a bad argument) goes through
``fastloss.<loss>`` on NumPy views, with its full validation: the results and the errors are
the same on both paths.

``softmax``, ``log_softmax`` and ``logsumexp`` have torch's signatures too; their forward is
``fastloss.softmax`` / ``log_softmax`` / ``logsumexp``, their backward torch ops on the saved
output (torch's own fused softmax backward kernels where torch has them), so they are twice
differentiable.

Differences from ``torch.nn.functional`` (all deliberate, all raise instead of guessing):

* CPU only: any tensor argument on another device (CUDA, ``meta``, ...) or with a non-strided
  layout raises ``TypeError``.  Non-tensor ``input``/``target`` raise ``TypeError``.
* Only the input is differentiated.  A ``target``, ``weight`` or ``pos_weight`` that requires
  grad raises ``ValueError`` (torch differentiates some of these for some losses and not for
  others; detach them, or use torch's implementation if you need those gradients).
* float32 and float64 are computed natively; float16 and bfloat16 inputs are computed in
  float32, and the loss and the gradient are cast back to the input's dtype.  Integer/complex
  inputs raise ``TypeError``.  Targets and weights are converted to the compute dtype.
* Double backward of the losses is not supported: ``backward`` raises ``RuntimeError`` when
  called with ``create_graph=True`` (e.g. ``torch.autograd.grad(..., create_graph=True)``).
* Not composable with ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``, ``jvp``, ...):
  a tensor argument transformed by one raises ``TypeError`` saying so (the kernels read the
  tensors' memory, which a batched or grad-tracking tensor does not expose).  Use
  ``torch.nn.functional`` inside transforms; outside them, ordinary autograd
  (``loss.backward()``, ``torch.autograd.grad``) works.
* ``target`` must have the input's shape for the elementwise losses (torch broadcasts with a
  warning; fastloss raises ``ValueError``).  Class-index targets may be any integer dtype.
* The per-element ``weight=`` of ``mse_loss``, ``l1_loss`` and ``huber_loss`` (torch 2.13)
  must have the input's shape, as torch requires; weighted "mean" divides by the sum of the
  weights for ``mse_loss`` / ``l1_loss`` and by the element count for ``huber_loss``, as torch
  does.  (The module classes take no weight, like torch's.)
* The deprecated ``size_average`` / ``reduce`` arguments are accepted (mapped to ``reduction``
  exactly like torch, with a ``UserWarning``).
* Bad shapes, out-of-range class indices, bad options raise fastloss's own ``ValueError`` /
  ``IndexError`` / ``TypeError`` (torch mostly raises ``RuntimeError``).
* Numerics are fastloss's (see docs/numerics.md): e.g. finite focal losses at saturated logits and
  ``binary_cross_entropy_with_logits`` exact at +-inf logits, where torch gives NaN.

Extra losses: :func:`focal_loss` (multi-class softmax focal loss) and :func:`sigmoid_focal_loss`
(torchvision's signature, default ``reduction="none"``), with modules :class:`FocalLoss` and
:class:`SigmoidFocalLoss`; the box regression losses with torchvision's signatures
(``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss``, and
``iou_loss``, ``efficient_iou_loss``, ``focal_eiou_loss``: ``(boxes1, boxes2,
reduction="none", eps=1e-7)`` then keyword-only options, both boxes differentiated) and
modules named after them (``GeneralizedBoxIoULoss``, ``DistanceBoxIoULoss``,
``CompleteBoxIoULoss``, ``IoULoss``, ``EfficientIoULoss``, ``FocalEIoULoss``: torchvision has
none); :func:`focal_l1_loss` / :class:`FocalL1Loss`.
"""

import inspect
import math
import operator
import warnings

import numpy as np
import torch

import fastloss as _fl
from fastloss import _config
from fastloss import _losses as _registry

_NATIVE = (torch.float32, torch.float64)
_UPCAST = (torch.float16, torch.bfloat16)
# the fast path's dtypes: torch dtype -> NumPy dtype
_NP_DTYPE = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_Tensor = torch.Tensor
_INT64 = torch.int64
_INT64_RANGE = (-(2**63), 2**63 - 1)
_grad_enabled = torch.is_grad_enabled
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)
_is_transformed = getattr(
    getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", lambda t: False
)
# the compiled kernels (None in a reference-only install) and the runtime state (threads,
# backend): read per call, set by fastloss.set_num_threads / set_backend / use_backend
_K = _config._kernels
_STATE = _config._state
_BACKEND_OVERRIDE = _config._override
_unwrap_if_dead = getattr(getattr(torch._C, "_functorch", None), "unwrap_if_dead", lambda t: t)
# autograd.Function.apply's C part (see _raw_apply)
_BASE_APPLY = getattr(torch._C, "_FunctionBase", object).__dict__.get("apply")


# ------------------------------------------------------------------ argument checks


def _legacy_reduction(size_average, reduce, reduction, name):
    """torch's mapping of the deprecated size_average/reduce pair to `reduction`."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    legacy = "none" if not reduce else ("mean" if size_average else "sum")
    warnings.warn(
        f"fastloss.torch.{name}: size_average and reduce are deprecated, please use "
        f"reduction={legacy!r} instead.",
        UserWarning,
        stacklevel=3,
    )
    return legacy


def _check_tensor(t, arg, name, optional=False):
    """CPU, strided, not requiring grad (except `input`)."""
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"fastloss.torch.{name}: {arg} must be a torch.Tensor, got {type(t).__name__}"
        )
    if t.device.type != "cpu":
        raise TypeError(
            f"fastloss.torch.{name}: {arg} is on device {t.device}; fastloss runs on "
            f"CPU tensors only (use torch.nn.functional.{name} on other devices, or "
            f"move the tensors with .cpu())"
        )
    if t.layout != torch.strided:
        raise TypeError(
            f"fastloss.torch.{name}: {arg} has layout {t.layout}; only dense "
            f"(torch.strided) tensors are supported"
        )
    if arg != "input" and t.requires_grad:
        raise ValueError(
            f"fastloss.torch.{name}: {arg} requires grad, but fastloss.torch only "
            f"differentiates with respect to input; detach {arg} (or use "
            f"torch.nn.functional.{name} if you need d(loss)/d({arg}))"
        )


def _check_input(name, input):
    _check_tensor(input, "input", name)
    if not input.dtype.is_floating_point:
        raise TypeError(
            f"fastloss.torch.{name}: input must be a floating tensor (float32, "
            f"float64, float16 or bfloat16), got {input.dtype}"
        )


def _check_args(name, input, target, **optional):
    _check_input(name, input)
    _check_tensor(target, "target", name)
    for arg, t in optional.items():
        _check_tensor(t, arg, name, optional=True)


_NOT_COMPOSABLE = (
    "fastloss.torch functions are not composable with torch.func transforms (vmap, grad, "
    "jacrev, jvp, ...): their kernels read the tensors' memory, which a batched or "
    "grad-tracking tensor does not expose, and their autograd nodes are not torch.func "
    "rules.  Inside a transform use the torch.nn.functional (or torch) equivalent of {name}; "
    "outside one, fastloss.torch.{name} works with ordinary autograd (loss.backward(), "
    "torch.autograd.grad)."
)


def _check_composable(name, tensors):
    """TypeError inside a torch.func transform (vmap, grad, jacrev, ...) for a tensor argument
    the transform wrapped (its memory is not the values the transform sees), or for an input
    that requires grad (the node would bypass the transform)."""
    if not _transforms_active():
        return
    for arg, t in tensors.items():
        if isinstance(t, _Tensor) and _is_transformed(t):
            raise TypeError(
                f"fastloss.torch.{name}: {arg} is a tensor transformed by torch.func; "
                + _NOT_COMPOSABLE.format(name=name)
            )
    if tensors["input"].requires_grad and _grad_enabled():
        raise TypeError(
            f"fastloss.torch.{name}: called inside a torch.func transform with an input that "
            "requires grad; " + _NOT_COMPOSABLE.format(name=name)
        )


def _plain(t):
    """A tensor that escaped a finished torch.func transform as the tensor it wraps (what
    torch.autograd.Function.apply does with one); anything else as is."""
    return _unwrap_if_dead(t) if isinstance(t, _Tensor) and _is_transformed(t) else t


def _compute_dtype(dtype):
    if dtype in _NATIVE:
        return dtype
    if dtype in _UPCAST:
        return torch.float32
    raise TypeError(
        f"input dtype {dtype} is not supported (use float32 or float64; float16 "
        f"and bfloat16 are computed in float32)"
    )


def _numpy_input(x, cdtype):
    """(contiguous compute-dtype tensor, its NumPy view); no copy when x already is one."""
    x = x.detach()
    if x.dtype != cdtype:
        x = x.to(cdtype)
    x = x.resolve_neg().resolve_conj().contiguous()
    return x, x.numpy()


def _numpy_other(t, cdtype):
    """Target / weight as NumPy: float tensors NumPy cannot hold (bfloat16) or of another float
    dtype are converted to the compute dtype; integers pass through untouched (fastloss validates
    and converts them)."""
    if t is None:
        return None
    t = t.detach()
    if t.dtype.is_floating_point and t.dtype != cdtype:
        t = t.to(cdtype)
    return t.resolve_neg().resolve_conj().numpy()


def _new_grad(shape, dtype, numel):
    """A fresh gradient buffer, allocated by NumPy: NumPy asks Linux for transparent huge
    pages on large allocations, torch.empty does not, and faulting in 4 KiB pages made a
    large gradient cost 3x more (docs/performance.md, torch bridge overhead)."""
    return np.empty(shape, dtype)


# ------------------------------------------------------------------ autograd Functions

# how backward applies the upstream gradient g to the saved gradient buffer
_SCALAR, _SAME_SHAPE, _PER_ROW = 0, 1, 2  # g 0-d; g shaped like the buffer; g lacks the class axis


class _FusedLossFunction(torch.autograd.Function):
    """Base of the per-loss Functions: the node that carries a fused call's gradient.

    ``forward(ctx, input, result)`` runs after the kernel did: ``result`` is ``(loss, gradient
    buffer, mode, dtype)`` (mode: how the upstream gradient broadcasts; dtype: the input's, to
    cast the gradient to, or None); it saves the buffer and returns the loss.  ``backward``
    scales the buffer by the upstream gradient (returns it as is when that is exactly 1)."""

    @staticmethod
    def forward(ctx, input, result):
        loss, grad, ctx.mode, ctx.grad_dtype = result
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if _grad_enabled():
            raise RuntimeError(
                "fastloss.torch: double backward is not supported (backward was "
                "called with create_graph=True); use torch.nn.functional for "
                "higher-order gradients"
            )
        (grad,) = ctx.saved_tensors
        mode = ctx.mode
        if mode == _SCALAR:
            if grad_output.item() != 1.0:  # 1: the plain loss.backward()
                grad = grad * grad_output
        elif mode == _SAME_SHAPE:
            grad = grad * grad_output
        else:
            grad = grad * grad_output.unsqueeze(1)
        if ctx.grad_dtype is not None:
            grad = grad.to(ctx.grad_dtype)
        return grad, None


def _make_function(spec):
    """The autograd.Function of a registry row (named after its module, so that the loss's
    grad_fn reads e.g. ``CrossEntropyLossFunctionBackward``)."""
    name = f"{spec.torch_module}Function"
    doc = f"autograd.Function of fastloss.torch.{spec.name} (gradient from the fused forward)."
    return type(name, (_FusedLossFunction,), {"__doc__": doc, "__module__": __name__})


def _raw_apply(function):
    """``function.apply`` without ``torch.autograd.Function.apply``'s Python prologue (binding
    default arguments for a ``setup_context``, which these Functions do not define; dispatching
    to torch.func, which the bridge refuses before; unwrapping dead torch.func wrappers, which
    the general path does itself); what that saves: docs/performance.md, torch bridge
    overhead."""
    if _BASE_APPLY is None:  # another torch layout: the public apply
        return function.apply
    return _BASE_APPLY.__get__(None, function)


#: loss name -> its autograd.Function, one per registry row that has a torch module
FUNCTIONS = {
    spec.name: _make_function(spec)
    for spec in _registry.losses("class", "elementwise")
    if spec.torch_module
}
globals().update({f.__name__: f for f in FUNCTIONS.values()})


class _Plan:
    """What a call needs from its registry row, resolved once: the Function, the kernel op,
    the scalar options' validators and kernel slots."""

    __slots__ = (
        "spec",
        "name",
        "apply",
        "fast",
        "op",
        "op_switched",
        "checks",
        "slot1",
        "slot2",
        "switch",
        "reductions",
        "class_axis",
    )


def _make_plan(spec):
    p = _Plan()
    p.spec, p.name = spec, spec.name
    p.class_axis = spec.family == "class"
    function = FUNCTIONS.get(spec.name) or _make_function(spec)
    p.apply = _raw_apply(function)
    table = None if _K is None else (_K.CLASS_OPS if p.class_axis else _K.ELEMENTWISE_OPS)
    p.op = None if table is None else table[spec.kernel]
    p.op_switched = None
    if table is not None and spec.kernel_switch:
        p.op_switched = table[spec.kernel_switch[1]]
    names = spec.param_names
    p.checks = tuple((prm.name, prm.check) for prm in spec.params)
    p.slot1, p.slot2 = (None if a is None else names.index(a) for a in spec.kernel_args)
    p.switch = names.index(spec.kernel_switch[0]) if spec.kernel_switch else None
    p.reductions = spec.reductions
    # the fast path knows every option's place: a kernel slot, the kernel switch, or (class
    # losses) ignore_index; a row with another kind of option always takes the general path
    placed = {p.slot1, p.slot2, p.switch}
    if p.class_axis:  # and the class losses' ignore_index, their only weight the class weight
        placed.add(names.index("ignore_index") if "ignore_index" in names else -1)
    p.fast = (
        table is not None
        and set(range(len(names))) <= placed
        and (not p.class_axis or spec.weight_names in ((), ("weight",)))
    )
    return p


def _run_general(plan, input, target, options, weights):
    """Any call: full validation (fastloss's errors), NumPy views (copies only where the
    dtype or the layout needs one), one ``fastloss.<loss>`` call (looked up per call: tests
    may monkeypatch it) with ``grad_out=`` the gradient buffer when the input requires grad."""
    name = plan.name
    _check_args(name, input, target, **weights)
    _check_composable(name, {"input": input, "target": target, **weights})
    input, target = _plain(input), _plain(target)
    weights = {arg: _plain(w) for arg, w in weights.items()}
    in_dtype = input.dtype
    cdtype = _compute_dtype(in_dtype)
    x, x_np = _numpy_input(input, cdtype)
    kwargs = dict(options)
    for arg, w in weights.items():
        kwargs[arg] = _numpy_other(w, cdtype)
    t_np = _numpy_other(target, cdtype)
    fn = getattr(_fl, name)
    if not (input.requires_grad and _grad_enabled()):
        loss = fn(x_np, t_np, **kwargs)
        out = torch.from_numpy(np.asarray(loss, dtype=x_np.dtype))
        return out if out.dtype == in_dtype else out.to(in_dtype)
    g_np = _new_grad(x_np.shape, x_np.dtype, x_np.size)
    loss, g_ret = fn(x_np, t_np, return_grad=True, grad_out=g_np, **kwargs)
    if g_ret is not g_np:  # fastloss returns the grad_out buffer it filled
        raise RuntimeError(f"fastloss.{name} did not return the grad_out buffer")
    out = torch.from_numpy(np.asarray(loss, dtype=x_np.dtype))
    if out.dtype != in_dtype:
        out = out.to(in_dtype)
    if kwargs["reduction"] != "none":
        mode = _SCALAR
    else:
        mode = _PER_ROW if plan.class_axis and input.dim() >= 2 else _SAME_SHAPE
    grad_dtype = None if cdtype == in_dtype else in_dtype
    return plan.apply(input, (out, torch.from_numpy(g_np), mode, grad_dtype))


def _view(t, dtype):
    """The NumPy view of a tensor the fast path may hand to a kernel as is (contiguous,
    aligned, of `dtype`, on the CPU, strided, not requiring grad: ``numpy()`` refuses the
    last three, as it refuses a negative bit or a dead torch.func wrapper), or None."""
    try:
        if t.dtype is not dtype or not t.is_contiguous() or t.data_ptr() % t.element_size():
            return None
        return t.numpy()
    except (AttributeError, RuntimeError, TypeError):
        return None


def _fast_input(plan, input):
    """(NumPy dtype, NumPy view) of a fast-path input (as _view, float32/float64, requiring
    grad or not), or None."""
    if not plan.fast or _transforms_active():
        return None
    try:
        dt = _NP_DTYPE.get(input.dtype)
        if (
            dt is None
            or not input.is_contiguous()
            or input.data_ptr() % dt.itemsize
            or (_BACKEND_OVERRIDE.get() or _STATE["backend"]) != "compiled"
        ):
            return None
        if not input.requires_grad:
            return dt, input.numpy()
        # force=True detaches inside (a third cheaper than .detach().numpy()), but would also
        # copy from another device: that is refused first
        if not input.is_cpu:  # (numpy() refuses other layouts even with force=True)
            return None
        return dt, input.numpy(force=True)
    except (AttributeError, RuntimeError, TypeError):
        return None


def _class_loss(plan, input, target, weight, ignore_index, reduction, smoothing, gamma):
    """A class loss on the fast path (the loss tensor), or None: then the general path runs
    and raises where an argument is bad.  ``smoothing`` / ``gamma``: the kernel's two scalar
    slots (0.0 where the loss has none)."""
    fast = _fast_input(plan, input)
    if fast is None or type(reduction) is not str or type(ignore_index) is not int:
        return None
    dt, x_np = fast
    shape = x_np.shape
    ndim = len(shape)
    if ndim == 2:
        N, C = shape
        S = 1
        loss_shape = (N,)
    elif ndim == 1:
        N, C, S = 1, shape[0], 1
        loss_shape = ()
    elif ndim > 2:
        N, C = shape[0], shape[1]
        S = math.prod(shape[2:])
        loss_shape = (N,) + shape[2:]
    else:
        return None
    red = _REDUCTIONS.get(reduction)
    lo, hi = _INT64_RANGE
    if red is None or C == 0 or not lo <= ignore_index <= hi:
        return None
    tp_np = w_np = None
    t_np = _view(target, _INT64)
    if t_np is not None:
        if t_np.shape != loss_shape:
            return None
    elif plan.spec.target_domain == "class_or_prob" and ignore_index < 0:
        tp_np = _view(target, input.dtype)
        if tp_np is None or tp_np.shape != shape:
            return None
    else:
        return None
    if weight is not None:
        w_np = _view(weight, input.dtype)
        if w_np is None or w_np.shape != (C,):
            return None
    checks = plan.checks
    try:
        if plan.slot1 is not None:
            name, check = checks[plan.slot1]
            smoothing = check(smoothing, name)
        if plan.slot2 is not None:
            name, check = checks[plan.slot2]
            gamma = check(gamma, name)
    except Exception:
        return None
    g_np = None
    if input.requires_grad and _grad_enabled():
        g_np = _new_grad(shape, dt, x_np.size)
    rows = np.empty(loss_shape, dt) if red == _NONE else None
    loss, bad = _K.class_loss(
        plan.op,
        x_np,
        N,
        C,
        S,
        t_np,
        tp_np,
        w_np,
        ignore_index,
        smoothing,
        gamma,
        red,
        1.0,
        g_np,
        rows,
        _STATE["threads"],
    )
    if bad >= 0:  # a class index out of range: the general path raises fastloss's IndexError
        return None
    if rows is None:
        out = torch.from_numpy(np.array(loss, dt))
        mode = _SCALAR
    else:
        out = torch.from_numpy(rows)
        mode = _PER_ROW if ndim >= 2 else _SAME_SHAPE
    if g_np is None:
        return out
    return plan.apply(input, (out, torch.from_numpy(g_np), mode, None))


def _elementwise_loss(plan, input, target, reduction, params):
    """An elementwise loss without weights on the fast path (the loss tensor), or None.
    ``params``: the row's scalar options in declaration order."""
    fast = _fast_input(plan, input)
    if fast is None or type(reduction) is not str or reduction not in plan.reductions:
        return None
    dt, x_np = fast
    shape = x_np.shape
    n = x_np.size
    t_np = _view(target, input.dtype)
    if n == 0 or t_np is None or t_np.shape != shape:
        return None
    p1 = p2 = 0.0
    op = plan.op
    if params:
        try:
            values = [
                v if check is None else check(v, name)
                for (name, check), v in zip(plan.checks, params)
            ]
        except Exception:
            return None
        if plan.slot1 is not None:
            p1 = values[plan.slot1]
        if plan.slot2 is not None:
            p2 = values[plan.slot2]
        if plan.switch is not None and values[plan.switch]:
            op = plan.op_switched
    scale = 1.0
    denom = 0
    if reduction == "mean":
        denom = n
    elif reduction == "batchmean":
        denom = shape[0] if shape else 1
    if denom:
        scale = 1.0 / denom
    g_np = None
    if input.requires_grad and _grad_enabled():
        g_np = _new_grad(shape, dt, n)
    rows = np.empty(shape, dt) if reduction == "none" else None
    total, bad = _K.elementwise(
        op,
        x_np,
        t_np,
        None,
        0,
        None,
        0,
        p1,
        p2,
        g_np,
        None,
        scale,
        rows,
        _STATE["threads"],
    )
    if bad:  # outside the input's domain: the general path raises fastloss's ValueError
        return None
    if rows is None:
        out = torch.from_numpy(np.array(total / denom if denom else total, dt))
        mode = _SCALAR
    else:
        out = torch.from_numpy(rows)
        mode = _SAME_SHAPE
    if g_np is None:
        return out
    return plan.apply(input, (out, torch.from_numpy(g_np), mode, None))


def _same_shape_weight(weight, input, target, name):
    """torch's weighted mse/l1/huber require a weight of the input's exact shape."""
    if weight is None:
        return
    _check_args(name, input, target, weight=weight)
    if weight.shape != input.shape:
        raise ValueError(
            f"fastloss.torch.{name}: weight must have the input's shape {tuple(input.shape)} "
            f"(as torch requires), got {tuple(weight.shape)}"
        )


#: loss name -> what its calls need from its registry row
_PLANS = {name: _make_plan(_registry.LOSSES[name]) for name in FUNCTIONS}
_REDUCTIONS = {} if _K is None else dict(_K.REDUCTIONS)
_NONE = _REDUCTIONS.get("none")


# ------------------------------------------------------------------ functional API


def cross_entropy(
    input,
    target,
    weight=None,
    size_average=None,
    ignore_index=-100,
    reduce=None,
    reduction="mean",
    label_smoothing=0.0,
):
    """torch.nn.functional.cross_entropy on fastloss's fused kernel (index or probability
    targets, class weights, ignore_index, label smoothing; (N, C), (N, C, d1..dk) or (C,))."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "cross_entropy")
    plan = _PLANS["cross_entropy"]
    out = _class_loss(plan, input, target, weight, ignore_index, reduction, label_smoothing, 0.0)
    if out is None:
        options = dict(
            ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
        )
        out = _run_general(plan, input, target, options, {"weight": weight})
    return out


def nll_loss(
    input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"
):
    """torch.nn.functional.nll_loss (input holds log-probabilities)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "nll_loss")
    plan = _PLANS["nll_loss"]
    out = _class_loss(plan, input, target, weight, ignore_index, reduction, 0.0, 0.0)
    if out is None:
        options = dict(ignore_index=ignore_index, reduction=reduction)
        out = _run_general(plan, input, target, options, {"weight": weight})
    return out


def focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """Multi-class softmax focal loss from logits: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by the sum of w[y] over non-ignored samples like cross_entropy, so gamma=0
    is cross_entropy.  Finite values and gradients at saturated logits for every gamma >= 0."""
    plan = _PLANS["focal_loss"]
    out = _class_loss(plan, input, target, weight, ignore_index, reduction, 0.0, gamma)
    if out is None:
        options = dict(gamma=gamma, ignore_index=ignore_index, reduction=reduction)
        out = _run_general(plan, input, target, options, {"weight": weight})
    return out


def _run_elementwise(plan, input, target, reduction, params, weights):
    """An elementwise loss: the fast path when no weight is given, else the general one."""
    for w in weights.values():
        if w is not None:
            break
    else:
        out = _elementwise_loss(plan, input, target, reduction, params)
        if out is not None:
            return out
    return _general_elementwise(plan, input, target, reduction, params, weights)


def _general_elementwise(plan, input, target, reduction, params, weights):
    options = dict(zip(plan.spec.param_names, params), reduction=reduction)
    return _run_general(plan, input, target, options, weights)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017) from logits; alpha < 0 disables
    the alpha term.  Note torchvision's default reduction="none"."""
    params = (alpha, gamma)
    plan = _PLANS["sigmoid_focal_loss"]
    out = _elementwise_loss(plan, inputs, targets, reduction, params)
    return (
        _general_elementwise(plan, inputs, targets, reduction, params, {}) if out is None else out
    )


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean"
):
    """torch.nn.functional.binary_cross_entropy on probabilities (logs clamped at -100)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "binary_cross_entropy")
    plan = _PLANS["binary_cross_entropy"]
    out = None if weight is not None else _elementwise_loss(plan, input, target, reduction, ())
    if out is None:
        out = _general_elementwise(plan, input, target, reduction, (), {"weight": weight})
    return out


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    """torch.nn.functional.binary_cross_entropy_with_logits (weight and pos_weight broadcast
    to the input's shape)."""
    name = "binary_cross_entropy_with_logits"
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, name)
    plan = _PLANS[name]
    out = None
    if weight is None and pos_weight is None:
        out = _elementwise_loss(plan, input, target, reduction, ())
    if out is None:
        weights = {"weight": weight, "pos_weight": pos_weight}
        out = _general_elementwise(plan, input, target, reduction, (), weights)
    return out


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.mse_loss (weight: the input's shape; weighted mean = sum / sum(w))."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "mse_loss")
    plan = _PLANS["mse_loss"]
    if weight is None:
        out = _elementwise_loss(plan, input, target, reduction, ())
        if out is not None:
            return out
    _same_shape_weight(weight, input, target, "mse_loss")
    return _general_elementwise(plan, input, target, reduction, (), {"weight": weight})


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.l1_loss (subgradient 0 at 0; weight: the input's shape, weighted
    mean = sum / sum(w))."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "l1_loss")
    plan = _PLANS["l1_loss"]
    if weight is None:
        out = _elementwise_loss(plan, input, target, reduction, ())
        if out is not None:
            return out
    _same_shape_weight(weight, input, target, "l1_loss")
    return _general_elementwise(plan, input, target, reduction, (), {"weight": weight})


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """torch.nn.functional.smooth_l1_loss (beta=0 is l1_loss)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "smooth_l1_loss")
    plan = _PLANS["smooth_l1_loss"]
    out = _elementwise_loss(plan, input, target, reduction, (beta,))
    return _general_elementwise(plan, input, target, reduction, (beta,), {}) if out is None else out


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """torch.nn.functional.huber_loss (weight: the input's shape; weighted mean = sum / N)."""
    plan = _PLANS["huber_loss"]
    if weight is None:
        out = _elementwise_loss(plan, input, target, reduction, (delta,))
        if out is not None:
            return out
    _same_shape_weight(weight, input, target, "huber_loss")
    return _general_elementwise(plan, input, target, reduction, (delta,), {"weight": weight})


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div (input: log-probabilities; reduction may be "batchmean")."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "kl_div")
    params = (bool(log_target),)
    plan = _PLANS["kl_div"]
    out = _elementwise_loss(plan, input, target, reduction, params)
    return _general_elementwise(plan, input, target, reduction, params, {}) if out is None else out


# ------------------------------------------------------------------ nn.Module classes


class _Loss(torch.nn.Module):
    """Base of the generated modules: options are attributes, weight tensors buffers."""

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _make_module(spec, functional):
    """torch.nn.<spec.torch_module>: its constructor takes the functional's arguments after
    the arrays (the row's `arrays`: (input, target), or three) that the loss uses (torch's
    module constructors list them in the same order; keyword-only where torch's are), maps
    the deprecated size_average / reduce to `reduction`, keeps the weight tensors as buffers
    and the options as attributes; forward(*arrays) calls the functional."""
    module = spec.torch_module
    used = set(spec.param_names) | set(spec.weight_names) | {"reduction", "size_average", "reduce"}
    fn_params = list(inspect.signature(functional).parameters.values())
    n_arrays = len(spec.arrays)
    array_names = [p.name for p in fn_params[:n_arrays]]
    init_params = [p for p in fn_params[n_arrays:] if p.name in used]
    peer_class = getattr(torch.nn, module, None)
    if peer_class is not None:  # torch's module takes fewer (MSELoss: no weight): mirror it
        peer = inspect.signature(peer_class.__init__).parameters
        init_params = [
            p.replace(kind=peer[p.name].kind) if peer[p.name].kind is p.KEYWORD_ONLY else p
            for p in init_params
            if p.name in peer
        ]
        init_params.sort(key=lambda p: p.kind is p.KEYWORD_ONLY)  # keyword-only ones last
    option_names = [p.name for p in init_params if p.name not in ("size_average", "reduce")]
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    init_signature = inspect.Signature([self_param] + init_params)

    def __init__(self, *args, **kwargs):
        bound = init_signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"]
        torch.nn.Module.__init__(self)
        if "size_average" in values:
            values["reduction"] = _legacy_reduction(
                values.pop("size_average"), values.pop("reduce"), values["reduction"], module
            )
        for name, value in values.items():
            if name in spec.weight_names:
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    __init__.__signature__ = init_signature

    if peer_class is not None:  # torch's names (PoissonNLLLoss.forward(log_input, target))
        array_names = list(inspect.signature(peer_class.forward).parameters)[1:]
    forward_signature = inspect.Signature(
        [self_param]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in array_names]
    )

    def forward(self, *arrays, **named):
        if named:  # keywords by forward's names
            arrays = forward_signature.bind(self, *arrays, **named).args[1:]
        return functional(*arrays, **{name: getattr(self, name) for name in option_names})

    forward.__signature__ = forward_signature
    peer = f"Drop-in torch.nn.{module}" if spec.torch_name == spec.name else "Module"
    shown = ", ".join(array_names)
    doc = (
        f"{peer} on fastloss's fused kernel: forward({shown}) is "
        f"fastloss.torch.{spec.name}({shown}, **options)."
    )
    return type(
        module,
        (_Loss,),
        {"__init__": __init__, "forward": forward, "__doc__": doc, "__module__": __name__},
    )


def _make_functional(spec):
    """The functional of a registry row that has no hand-written one above.  With a torch
    peer of the same name, torch's usual layout: (input, target, <weights>, size_average,
    reduce, reduction, <params>), the deprecated pair mapped to `reduction`; without one:
    (input, target, <weights>, <params>, reduction=<row default>)."""
    P = inspect.Parameter
    legacy = spec.torch_name == spec.name

    def arg(name, default=P.empty):
        return P(name, P.POSITIONAL_OR_KEYWORD, default=default)

    params = [arg("input"), arg("target")] + [arg(w, None) for w in spec.weight_names]
    options = [arg(p.name, p.default) for p in spec.params]
    reduction = [arg("reduction", spec.default_reduction)]
    if legacy:
        params += [arg("size_average", None), arg("reduce", None)] + reduction + options
    else:
        params += options + reduction
    peer = getattr(torch.nn.functional, spec.name, None) if legacy else None
    if peer is not None:  # torch's own order and keyword-only markers (poisson_nll_loss: eps
        ours = {q.name: q for q in params}  # between size_average and reduce)
        params = [
            ours[q.name].replace(kind=q.kind)
            for q in inspect.signature(peer).parameters.values()
            if q.name in ours
        ]
    signature = inspect.Signature(params)
    plan = _PLANS.get(spec.name) or _make_plan(spec)
    names = [p.name for p in params]
    defaults = {p.name: p.default for p in params if p.default is not P.empty}
    # the keyword names a call with k positional arguments may still pass, for k = 0..n
    later = [frozenset(names[k:]) for k in range(len(names) + 1)]
    n_max = len(names)
    param_names, weight_names = spec.param_names, spec.weight_names
    class_weight_only = weight_names == ("weight",)

    def functional(*args, **kwargs):
        n = len(args)
        if 2 <= n <= n_max and kwargs.keys() <= later[n]:  # the usual call: bound by hand
            v = dict(defaults)
            v.update(zip(names, args))
            v.update(kwargs)
        else:  # anything else (and the TypeError of a bad call) by inspect
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            v = bound.arguments
        red = v["reduction"]
        if legacy and (v["size_average"] is not None or v["reduce"] is not None):
            red = _legacy_reduction(v["size_average"], v["reduce"], red, spec.name)
        values = tuple(v[p] for p in param_names)
        weights = {w: v[w] for w in weight_names}
        input, target = v["input"], v["target"]
        if not plan.class_axis:
            return _run_elementwise(plan, input, target, red, values, weights)
        out = None
        if class_weight_only:
            slot1 = 0.0 if plan.slot1 is None else values[plan.slot1]
            slot2 = 0.0 if plan.slot2 is None else values[plan.slot2]
            ignore = v["ignore_index"]
            out = _class_loss(plan, input, target, v["weight"], ignore, red, slot1, slot2)
        if out is None:
            options = dict(zip(param_names, values), reduction=red)
            out = _run_general(plan, input, target, options, weights)
        return out

    functional.__signature__ = signature
    functional.__name__ = functional.__qualname__ = spec.name
    peer = f"torch.nn.functional.{spec.name}" if legacy else f"fastloss.{spec.name}"
    functional.__doc__ = f"{peer} on fastloss's fused kernel (gradient from the same pass)."
    return functional


#: loss name -> its functional (hand-written above to mirror torch's signature, or generated)
FUNCTIONALS = {
    name: globals().get(name) or _make_functional(_registry.LOSSES[name]) for name in FUNCTIONS
}
globals().update(FUNCTIONALS)
#: loss name -> its nn.Module class
MODULES = {name: _make_module(_registry.LOSSES[name], fn) for name, fn in FUNCTIONALS.items()}
globals().update({m.__name__: m for m in MODULES.values()})


# ------------------------------------------------------------------ two differentiable inputs


class _MultiInputLossFunction(torch.autograd.Function):
    """The node of a loss with several differentiable inputs (the pair and embedding
    families: margin_ranking_loss, gaussian_nll_loss, cosine_embedding_loss, the triplet
    losses), and of the margin family's single input (with its class weight).

    forward(ctx, result, *inputs) runs after the NumPy call: ``result`` = (loss, gradients or
    None, dtypes, rerun).  "mean"/"sum": the gradients came from the fused pass and backward
    scales them; "none": ``rerun(grad_output)`` computes them in backward, with the upstream
    gradient inside the pass (an input broadcast against the others sums it per element)."""

    @staticmethod
    def forward(ctx, result, *inputs):
        loss, grads, ctx.dtypes, ctx.rerun = result
        if grads is not None:
            ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        if _grad_enabled():
            raise RuntimeError(
                "fastloss.torch: double backward is not supported (backward was called with "
                "create_graph=True); use torch.nn.functional for higher-order gradients"
            )
        if ctx.rerun is not None:
            grads = ctx.rerun(grad_output.detach().numpy())
        else:
            grads = ctx.saved_tensors
            if grad_output.item() != 1.0:  # 1: the plain loss.backward()
                grads = [g * grad_output for g in grads]
        return (None,) + tuple(g if d is None else g.to(d) for g, d in zip(grads, ctx.dtypes))


def _run_multi(name, names, diff, values, options, weights=None, call=None):
    """Checks, the fused NumPy call (every gradient from one pass) and the autograd node over
    the differentiable tensors; `names`/`values`: the array arguments in order, `diff` the
    differentiable ones among them (a number where an array may be one, e.g. var, is not
    differentiated; with one, the margin losses, the call returns a single gradient);
    `weights`: optional weight tensors passed as keywords (never differentiated).  Integer
    tensors that are not differentiated (class indices) are passed as they are."""
    by_name = dict(zip(names, values))
    tensors = {k: t for k, t in by_name.items() if isinstance(t, torch.Tensor)}
    weights = weights or {}
    for arg, w in weights.items():
        _check_tensor(w, arg, name, optional=True)
    first = by_name[diff[0]]
    _check_composable(name, {"input": first, **tensors, **weights})
    for arg, t in by_name.items():
        if arg not in tensors:
            if arg in diff and not isinstance(t, (int, float)) or arg == diff[0]:
                _check_tensor(t, arg, name)  # the TypeError naming it
            continue
        _check_tensor(t, "input" if arg in diff else arg, name)
        if arg in diff and not t.dtype.is_floating_point:
            raise TypeError(
                f"fastloss.torch.{name}: {arg} must be a floating tensor, got {t.dtype}"
            )
    dtype = first.dtype
    for d in diff[1:]:
        if isinstance(by_name[d], torch.Tensor):
            dtype = torch.promote_types(dtype, by_name[d].dtype)
    cdtype = _compute_dtype(dtype)
    arrays = [
        t
        if not isinstance(t, torch.Tensor)
        else _numpy_other(t, cdtype)
        if arg not in diff and not t.dtype.is_floating_point
        else _numpy_input(t, cdtype)[1]
        for arg, t in zip(names, values)
    ]
    options = dict(options, **{arg: _numpy_other(w, cdtype) for arg, w in weights.items()})
    fn = call or getattr(_fl, name)
    single = len(diff) == 1
    diffs = [by_name[d] for d in diff]
    need = any(isinstance(t, torch.Tensor) and t.requires_grad for t in diffs)
    if not need:
        return torch.from_numpy(np.asarray(fn(*arrays, **options))).to(dtype)
    # a number where an array may be (var) is not a tensor: its slot gets a dummy leaf
    nodes = [t if isinstance(t, torch.Tensor) else torch.zeros((), dtype=cdtype) for t in diffs]
    dtypes = tuple(None if t.dtype == cdtype else t.dtype for t in nodes)
    if options["reduction"] == "none":
        loss = torch.from_numpy(np.asarray(fn(*arrays, **options)))

        def rerun(upstream):
            _, gs = fn(*arrays, return_grad=True, grad_output=upstream, **options)
            return [torch.from_numpy(np.asarray(g)) for g in ((gs,) if single else gs)]

        result = (loss, None, dtypes, rerun)
    else:
        loss, gs = fn(*arrays, return_grad=True, **options)
        grads = [torch.from_numpy(np.asarray(g)) for g in ((gs,) if single else gs)]
        result = (torch.from_numpy(np.asarray(loss)), grads, dtypes, None)
    out = _MultiInputLossFunction.apply(result, *nodes)
    return out if out.dtype == dtype else out.to(dtype)


def margin_ranking_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    """torch.nn.functional.margin_ranking_loss on fastloss's fused kernel (both gradients
    from the same pass)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "margin_ranking_loss")
    return _run_multi(
        "margin_ranking_loss",
        ("input1", "input2", "target"),
        ("input1", "input2"),
        (input1, input2, target),
        {"margin": margin, "reduction": reduction},
    )


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """torch.nn.functional.gaussian_nll_loss on fastloss's fused kernel (gradients of input
    and var from the same pass; var a tensor or a number, torch's shape rules)."""
    return _run_multi(
        "gaussian_nll_loss",
        ("input", "target", "var"),
        ("input", "var"),
        (input, target, var),
        {"full": full, "eps": eps, "reduction": reduction},
    )


def cosine_embedding_loss(
    input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"
):
    """torch.nn.functional.cosine_embedding_loss on fastloss's fused row kernel (both
    gradients from the same pass)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "cosine_embedding_loss")
    return _run_multi(
        "cosine_embedding_loss",
        ("input1", "input2", "target"),
        ("input1", "input2"),
        (input1, input2, target),
        {"margin": margin, "reduction": reduction},
    )


_TRIPLET = ("anchor", "positive", "negative")


def triplet_margin_loss(
    anchor,
    positive,
    negative,
    margin=1.0,
    p=2.0,
    eps=1e-6,
    swap=False,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    """torch.nn.functional.triplet_margin_loss on fastloss's fused row kernel (the three
    gradients from the same pass)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "triplet_margin_loss")
    options = {"margin": margin, "p": p, "eps": eps, "swap": swap, "reduction": reduction}
    return _run_multi(
        "triplet_margin_loss", _TRIPLET, _TRIPLET, (anchor, positive, negative), options
    )


def triplet_margin_with_distance_loss(
    anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False, reduction="mean"
):
    """torch.nn.functional.triplet_margin_with_distance_loss: the default (euclidean) distance
    on fastloss's fused row kernel, "cosine" on fastloss's reference; a callable computes on
    tensors, so it runs torch's own function."""
    if callable(distance_function):
        return torch.nn.functional.triplet_margin_with_distance_loss(
            anchor,
            positive,
            negative,
            distance_function=distance_function,
            margin=margin,
            swap=swap,
            reduction=reduction,
        )
    options = {
        "distance_function": distance_function,
        "margin": margin,
        "swap": swap,
        "reduction": reduction,
    }
    return _run_multi(
        "triplet_margin_with_distance_loss",
        _TRIPLET,
        _TRIPLET,
        (anchor, positive, negative),
        options,
    )


def _margin_rows(name, input, target, options, weight=None):
    """A classification margin loss (one differentiable input, a target, maybe a class
    weight) through the multi-input node."""
    weights = {} if weight is None else {"weight": weight}
    return _run_multi(name, ("input", "target"), ("input",), (input, target), options, weights)


def multi_margin_loss(
    input,
    target,
    p=1,
    margin=1.0,
    weight=None,
    size_average=None,
    reduce=None,
    reduction="mean",
):
    """torch.nn.functional.multi_margin_loss on fastloss's fused row kernel."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "multi_margin_loss")
    options = {"p": p, "margin": margin, "reduction": reduction}
    return _margin_rows("multi_margin_loss", input, target, options, weight)


def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """torch.nn.functional.multilabel_margin_loss on fastloss's fused row kernel."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, "multilabel_margin_loss")
    return _margin_rows("multilabel_margin_loss", input, target, {"reduction": reduction})


def multilabel_soft_margin_loss(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean"
):
    """torch.nn.functional.multilabel_soft_margin_loss on fastloss's fused row kernel."""
    name = "multilabel_soft_margin_loss"
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction, name)
    return _margin_rows(name, input, target, {"reduction": reduction}, weight)


_CTC_ARRAYS = ("log_probs", "targets", "input_lengths", "target_lengths")


def ctc_loss(
    log_probs,
    targets,
    input_lengths,
    target_lengths,
    blank=0,
    reduction="mean",
    zero_infinity=False,
    *,
    from_logits=False,
    accumulate=None,
):
    """torch.nn.functional.ctc_loss on fastloss's fused CTC kernel.  The gradient it passes
    back is the true d(loss)/d(log_probs), -occupancy, where torch's is exp(log_probs) -
    occupancy; through log_softmax both give the same gradient of the logits.  Keyword-only
    extras: from_logits=True takes logits (no log_softmax needed, the gradient is w.r.t.
    them), accumulate="float64" runs the recursion in double for float32 input."""
    options = {
        "blank": blank,
        "reduction": reduction,
        "zero_infinity": zero_infinity,
        "from_logits": from_logits,
        "accumulate": accumulate,
    }
    values = (log_probs, targets, input_lengths, target_lengths)
    return _run_multi("ctc_loss", _CTC_ARRAYS, ("log_probs",), values, options)


# the losses with several differentiable inputs (pair and embedding families) and the margin
# losses (one input, through the same node)
FUNCTIONALS.update(
    margin_ranking_loss=margin_ranking_loss,
    gaussian_nll_loss=gaussian_nll_loss,
    cosine_embedding_loss=cosine_embedding_loss,
    triplet_margin_loss=triplet_margin_loss,
    triplet_margin_with_distance_loss=triplet_margin_with_distance_loss,
    multi_margin_loss=multi_margin_loss,
    multilabel_margin_loss=multilabel_margin_loss,
    multilabel_soft_margin_loss=multilabel_soft_margin_loss,
    ctc_loss=ctc_loss,
)


# ------------------------------------------------------------------ box regression losses
# torchvision.ops' generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss and
# fastloss's iou_loss, efficient_iou_loss, focal_eiou_loss: torchvision's signature
# (boxes1, boxes2, reduction="none", eps=1e-7), fastloss's options keyword-only after it; both
# gradients from the fused pass.  torchvision has no Module classes for them: the modules are
# named after the functions (GeneralizedBoxIoULoss, ...; the registry's torch_module).


def _box_call(name):
    """fastloss.<name> with the gradients of both boxes (the multi-input node's contract)."""
    fn = getattr(_fl, name)

    def call(boxes1, boxes2, return_grad=False, **options):
        if return_grad:
            return fn(boxes1, boxes2, return_grad=True, grad_boxes2=True, **options)
        return fn(boxes1, boxes2, **options)

    return call


def _box_functional(spec):
    """The functional of a box row: integer and half-precision boxes are computed in float32
    (torchvision's _upcast_non_float; the loss is float32 too)."""
    name = spec.name
    call = _box_call(name)
    P = inspect.Parameter
    extra = [p for p in spec.params if p.name not in ("eps", "fmt", "validate")]
    signature = inspect.Signature(
        [
            P("boxes1", P.POSITIONAL_OR_KEYWORD),
            P("boxes2", P.POSITIONAL_OR_KEYWORD),
            P("reduction", P.POSITIONAL_OR_KEYWORD, default=spec.default_reduction),
            P("eps", P.POSITIONAL_OR_KEYWORD, default=1e-7),
        ]
        + [P(p.name, P.KEYWORD_ONLY, default=p.default) for p in extra]
        + [
            P("fmt", P.KEYWORD_ONLY, default="xyxy"),
            P("weight", P.KEYWORD_ONLY, default=None),
            P("validate", P.KEYWORD_ONLY, default=False),
        ]
    )

    def functional(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        v = dict(bound.arguments)
        boxes = []
        for arg in ("boxes1", "boxes2"):
            t = v.pop(arg)
            if isinstance(t, torch.Tensor) and t.dtype not in _NATIVE:
                t = t.float()
            boxes.append(t)
        weight = v.pop("weight")
        weights = {} if weight is None else {"weight": weight}
        diff = ("boxes1", "boxes2")
        return _run_multi(name, diff, diff, tuple(boxes), v, weights, call)

    functional.__signature__ = signature
    functional.__name__ = functional.__qualname__ = name
    peer = spec.torch_name or f"fastloss.{name}"
    functional.__doc__ = (
        f"{peer} on fastloss's fused box kernel (the gradients of both boxes from the same "
        "pass); options after eps are keyword-only."
    )
    return functional


FUNCTIONALS.update(
    (spec.name, _box_functional(spec)) for spec in _registry.losses("box") if spec.torch_module
)
MODULES.update(
    (name, _make_module(_registry.LOSSES[name], FUNCTIONALS[name]))
    for name in FUNCTIONALS
    if name not in MODULES
)
globals().update(FUNCTIONALS)
globals().update({m.__name__: m for m in MODULES.values()})


# ------------------------------------------------------------------ softmax family


# torch's fused backward kernels of softmax and log_softmax (differentiable again, like the
# formulas they compute); the formulas in torch ops where a torch build lacks them
_SOFTMAX_BACKWARD = getattr(torch, "_softmax_backward_data", None)
_LOG_SOFTMAX_BACKWARD = getattr(torch, "_log_softmax_backward_data", None)


class SoftmaxFunction(torch.autograd.Function):
    """softmax along ``dim``; ``forward(ctx, input, (output, dim))`` attaches the output
    fastloss computed.  Backward from the saved output s: s * (g - sum(g * s)), itself
    differentiable (double backward works)."""

    @staticmethod
    def forward(ctx, input, result):
        out, ctx.dim = result
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        if _SOFTMAX_BACKWARD is not None:
            return _SOFTMAX_BACKWARD(grad_output, s, ctx.dim, s.dtype), None
        gs = grad_output * s
        return gs - s * gs.sum(ctx.dim, keepdim=True), None


class LogSoftmaxFunction(torch.autograd.Function):
    """log_softmax along ``dim``.  Backward from the saved output y: g - exp(y) * sum(g),
    itself differentiable."""

    @staticmethod
    def forward(ctx, input, result):
        out, ctx.dim = result
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        if _LOG_SOFTMAX_BACKWARD is not None:
            return _LOG_SOFTMAX_BACKWARD(grad_output, y, ctx.dim, y.dtype), None
        return grad_output - y.exp() * grad_output.sum(ctx.dim, keepdim=True), None


class LogsumexpFunction(torch.autograd.Function):
    """logsumexp along ``dim``.  Backward: g * exp(x - lse) (= g * softmax(x)), g and lse
    broadcast back over ``dim``."""

    @staticmethod
    def forward(ctx, input, result):
        out, ctx.dim, ctx.keepdim = result
        ctx.save_for_backward(input, out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        x, lse = ctx.saved_tensors
        if not ctx.keepdim and x.dim() > 0:
            grad_output = grad_output.unsqueeze(ctx.dim)
            lse = lse.unsqueeze(ctx.dim)
        return grad_output * (x - lse).exp(), None


def _implicit_softmax_dim(name, ndim, stacklevel):
    """torch's choice for dim=None (deprecated there too, with this warning)."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
        "dim=X as an argument.",
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _run_axis(name, function, input, dim, keepdim=False):
    """fastloss.<name> along `dim` on a NumPy view of `input` (float16/bfloat16 computed in
    float32 and cast back), attached to autograd when the input requires grad."""
    _check_input(name, input)
    _check_composable(name, {"input": input})
    input = _plain(input)
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"fastloss.torch.{name}: dim must be an int, got {dim!r}") from None
    if not -max(input.dim(), 1) <= dim < max(input.dim(), 1):
        raise IndexError(
            f"fastloss.torch.{name}: dim {dim} is out of range for a tensor with "
            f"{input.dim()} dimensions"
        )
    in_dtype = input.dtype
    _, x_np = _numpy_input(input, _compute_dtype(in_dtype))
    if name == "logsumexp":
        out = _fl.logsumexp(x_np, axis=dim, keepdims=bool(keepdim))
    else:
        out = getattr(_fl, name)(x_np, axis=dim)
    out = torch.from_numpy(out)
    if out.dtype != in_dtype:
        out = out.to(in_dtype)
    if not (input.requires_grad and _grad_enabled()):
        return out
    dim = dim % input.dim() if input.dim() else 0
    result = (out, dim, bool(keepdim)) if name == "logsumexp" else (out, dim)
    return _raw_apply(function)(input, result)


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """torch.nn.functional.softmax on fastloss.softmax (max-shifted, one pass); ``dtype``
    casts the input first, as torch does; backward in torch ops (twice differentiable)."""
    _check_input("softmax", input)
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        dim = _implicit_softmax_dim("softmax", input.dim(), _stacklevel)
    return _run_axis("softmax", SoftmaxFunction, input, dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """torch.nn.functional.log_softmax on fastloss.log_softmax; ``dtype`` casts the input
    first, as torch does; backward in torch ops (twice differentiable)."""
    _check_input("log_softmax", input)
    if dtype is not None:
        input = input.to(dtype)
    if dim is None:
        dim = _implicit_softmax_dim("log_softmax", input.dim(), _stacklevel)
    return _run_axis("log_softmax", LogSoftmaxFunction, input, dim)


def logsumexp(input, dim, keepdim=False):
    """torch.logsumexp over one dimension ``dim`` (an int) on fastloss.logsumexp; -inf for an
    all -inf slice, like torch."""
    return _run_axis("logsumexp", LogsumexpFunction, input, dim, keepdim)


__all__ = (
    list(FUNCTIONALS)
    + [m.__name__ for m in MODULES.values()]
    + ["softmax", "log_softmax", "logsumexp"]
)


# ------------------------------------------------------------------ fused linear + cross entropy


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=None,
    label_smoothing=0.0,
    options=None,
):
    """torch.nn.functional.linear_cross_entropy on fastloss.linear_cross_entropy: row chunks,
    never the (N, C) logits.  The gradients w.r.t. input, linear_weight and linear_bias come
    from the forward's chunks (backward only scales them by the upstream gradient); with
    reduction="none" backward runs the chunks again with the upstream gradient folded in.
    ``options`` (torch.nn.LinearCrossEntropyOptions): only its batch_chunk_size is read (the
    rows per chunk; None: fastloss's 64 MiB budget of logits)."""
    name = "linear_cross_entropy"
    chunk_rows = None
    if options is not None:
        peer = getattr(torch.nn, "LinearCrossEntropyOptions", None)
        if peer is not None and not isinstance(options, peer):
            raise TypeError(
                f"fastloss.torch.{name}: options must be a torch.nn.LinearCrossEntropyOptions "
                f"or None, got {type(options).__name__}"
            )
        chunk_rows = getattr(options, "batch_chunk_size", None)
    diff = {"input": input, "linear_weight": linear_weight, "linear_bias": linear_bias}
    for arg, t in diff.items():
        if t is None and arg == "linear_bias":
            continue
        _check_tensor(t.detach() if isinstance(t, _Tensor) else t, arg, name)
        if not t.dtype.is_floating_point:
            raise TypeError(
                f"fastloss.torch.{name}: {arg} must be a floating tensor, got {t.dtype}"
            )
    _check_tensor(target, "target", name)
    _check_tensor(weight, "weight", name, optional=True)
    _check_composable(name, {**diff, "target": target, "weight": weight})
    dtype = input.dtype
    nodes = [t for t in diff.values() if t is not None]
    arrays = [_numpy_input(t, _compute_dtype(t.dtype))[1] for t in nodes]
    cdtype = _compute_dtype(dtype)
    kw = {
        "weight": _numpy_other(weight, cdtype),
        "reduction": reduction,
        "ignore_index": ignore_index,
        "label_smoothing": label_smoothing,
        "chunk_rows": chunk_rows,
    }
    x, w = arrays[0], arrays[1]
    b = arrays[2] if linear_bias is not None else None
    y = _numpy_other(target, cdtype)

    def call(**extra):
        return _fl.linear_cross_entropy(x, w, y, linear_bias=b, **kw, **extra)

    def tensors(grads):
        return [torch.from_numpy(g) for g in grads if g is not None]

    if not (_grad_enabled() and any(t.requires_grad for t in nodes)):
        return torch.from_numpy(np.asarray(call())).to(dtype)
    dtypes = tuple(None if t.dtype == _compute_dtype(t.dtype) else t.dtype for t in nodes)
    if reduction == "none":
        loss = torch.from_numpy(np.asarray(call()))

        def rerun(upstream):
            return tensors(call(return_grad=True, grad_output=upstream)[1])

        result = (loss, None, dtypes, rerun)
    else:
        loss, grads = call(return_grad=True)
        result = (torch.from_numpy(np.asarray(loss)), tensors(grads), dtypes, None)
    out = _MultiInputLossFunction.apply(result, *nodes)
    return out if out.dtype == dtype else out.to(dtype)


class LinearCrossEntropyLoss(torch.nn.Module):
    """Drop-in torch.nn.LinearCrossEntropyLoss (the same constructor; it owns the
    torch.nn.Linear head) whose forward(input, target) is fastloss.torch.linear_cross_entropy
    with the head's weight and bias."""

    def __init__(
        self,
        in_features,
        num_classes,
        *,
        out_features=(),
        bias=False,
        device=None,
        dtype=None,
        reduction="mean",
        weight=None,
        ignore_index=None,
        label_smoothing=0.0,
        options=None,
    ):
        super().__init__()
        if weight is not None and tuple(weight.shape) != (num_classes,):
            raise ValueError(
                f"LinearCrossEntropyLoss: weight must have shape ({num_classes},), got "
                f"{tuple(weight.shape)}"
            )
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"LinearCrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.num_classes = num_classes
        self.out_features = tuple(out_features)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.linear = torch.nn.Linear(
            in_features,
            math.prod(self.out_features, start=num_classes),
            bias=bias,
            device=device,
            dtype=dtype,
        )

    def forward(self, input, target):
        w = self.linear.weight.reshape(
            (self.num_classes, *self.out_features, self.linear.in_features)
        )
        b = self.linear.bias
        if b is not None:
            b = b.reshape((self.num_classes, *self.out_features))
        return linear_cross_entropy(
            input,
            w,
            target,
            linear_bias=b,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            options=self.options,
        )

    def extra_repr(self):
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"out_features={self.out_features}, bias={self.linear.bias is not None}, "
            f"reduction={self.reduction!r}"
        )


FUNCTIONALS["linear_cross_entropy"] = linear_cross_entropy
MODULES["linear_cross_entropy"] = LinearCrossEntropyLoss
__all__ += ["linear_cross_entropy", "LinearCrossEntropyLoss"]
