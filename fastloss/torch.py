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

How it works: each loss is a ``torch.autograd.Function``.  ``forward`` hands the CPU tensors to
fastloss as zero-copy NumPy views (a contiguous copy is made only for non-contiguous input) and,
when the input requires grad, calls fastloss with ``return_grad=True`` and ``grad_out=`` the NumPy
view of a fresh ``torch.empty_like(input)``: loss and gradient come from ONE fused pass and the
gradient already lives in a torch tensor.  ``backward`` only scales that saved gradient by the
upstream gradient (returned as is when the upstream gradient is exactly 1, the usual
``loss.backward()``); nothing is recomputed.  When the input does not require grad (inference,
``torch.no_grad()``), no gradient is computed at all.

Differences from ``torch.nn.functional`` (all deliberate, all raise instead of guessing):

* CPU only: any tensor argument on another device (CUDA, ``meta``, ...) or with a non-strided
  layout raises ``TypeError``.  Non-tensor ``input``/``target`` raise ``TypeError``.
* Only the input is differentiated.  A ``target``, ``weight`` or ``pos_weight`` that requires
  grad raises ``ValueError`` (torch differentiates some of these for some losses and not for
  others; detach them, or use torch's implementation if you need those gradients).
* float32 and float64 are computed natively; float16 and bfloat16 inputs are computed in
  float32, and the loss and the gradient are cast back to the input's dtype.  Integer/complex
  inputs raise ``TypeError``.  Targets and weights are converted to the compute dtype.
* Double backward is not supported: ``backward`` raises ``RuntimeError`` when called with
  ``create_graph=True`` (e.g. ``torch.autograd.grad(..., create_graph=True)``).
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
:class:`SigmoidFocalLoss`.
"""

import inspect
import warnings

import numpy as np
import torch

import fastloss as _fl
from fastloss import _losses as _registry

_NATIVE = (torch.float32, torch.float64)
_UPCAST = (torch.float16, torch.bfloat16)


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


def _check_args(name, input, target, **optional):
    _check_tensor(input, "input", name)
    if not input.dtype.is_floating_point:
        raise TypeError(
            f"fastloss.torch.{name}: input must be a floating tensor (float32, "
            f"float64, float16 or bfloat16), got {input.dtype}"
        )
    _check_tensor(target, "target", name)
    for arg, t in optional.items():
        _check_tensor(t, arg, name, optional=True)


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


# ------------------------------------------------------------------ autograd Functions


def _fused_forward(ctx, loss_name, class_axis, input, target, options, **weights):
    """Shared forward: one fastloss call, the gradient written into a torch-owned buffer."""
    in_dtype = input.dtype
    cdtype = _compute_dtype(in_dtype)
    x, x_np = _numpy_input(input, cdtype)
    kwargs = dict(options)
    for arg, w in weights.items():
        kwargs[arg] = _numpy_other(w, cdtype)
    t_np = _numpy_other(target, cdtype)
    fn = getattr(_fl, loss_name)  # looked up per call (tests may monkeypatch fastloss.<name>)
    if ctx is None or not ctx.needs_input_grad[0]:  # ctx None: called without autograd
        loss = fn(x_np, t_np, **kwargs)
    else:
        ctx.in_dtype = in_dtype
        ctx.reduction = kwargs.get("reduction")
        ctx.class_axis = class_axis and input.dim() >= 2
        grad = torch.empty_like(x, memory_format=torch.contiguous_format)
        loss, g_np = fn(x_np, t_np, return_grad=True, grad_out=grad.numpy(), **kwargs)
        if grad.numel() and g_np.ctypes.data != grad.data_ptr():  # fastloss fills grad_out
            raise RuntimeError(f"fastloss.{loss_name} did not return the grad_out buffer")
        ctx.save_for_backward(grad)
    out = torch.from_numpy(np.array(loss, dtype=x_np.dtype))
    return out if out.dtype == in_dtype else out.to(in_dtype)


class _FusedLossFunction(torch.autograd.Function):
    """Base: backward scales the gradient saved by the fused forward; never recomputes it."""

    @staticmethod
    def backward(ctx, grad_output):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "fastloss.torch: double backward is not supported (backward was "
                "called with create_graph=True); use torch.nn.functional for "
                "higher-order gradients"
            )
        nones = (None,) * (len(ctx.needs_input_grad) - 1)  # target, options, weights
        if not ctx.needs_input_grad[0]:
            return (None,) + nones
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            go = grad_output.unsqueeze(1) if ctx.class_axis else grad_output
            grad = grad * go
        elif grad_output.item() != 1.0:  # a 0-d upstream gradient; 1 is the plain .backward()
            grad = grad * grad_output
        if grad.dtype != ctx.in_dtype:
            grad = grad.to(ctx.in_dtype)
        return (grad,) + nones


def _make_function(spec):
    """The autograd.Function of a registry row: forward(ctx, input, target, options, *weights)
    with the row's weight tensors in declaration order."""
    weight_names = spec.weight_names
    class_axis = spec.family == "class"

    def forward(ctx, input, target, options, *weights):
        return _fused_forward(
            ctx, spec.name, class_axis, input, target, options, **dict(zip(weight_names, weights))
        )

    name = f"{spec.torch_module}Function"
    doc = f"autograd.Function of fastloss.torch.{spec.name} (gradient from the fused forward)."
    return type(
        name,
        (_FusedLossFunction,),
        {"forward": staticmethod(forward), "__doc__": doc, "__module__": __name__},
    )


#: loss name -> its autograd.Function, one per registry row that has a torch module
FUNCTIONS = {
    spec.name: _make_function(spec)
    for spec in _registry.losses("class", "elementwise")
    if spec.torch_module
}
globals().update({f.__name__: f for f in FUNCTIONS.values()})


def _run(name, input, target, options, *weights):
    """Through autograd only when a gradient is wanted (Function.forward's needs_input_grad
    ignores torch.no_grad(), so grad mode is checked here); otherwise a plain forward-only
    fastloss call, no gradient computed."""
    function = FUNCTIONS[name]
    if input.requires_grad and torch.is_grad_enabled():
        return function.apply(input, target, options, *weights)
    return function.forward(None, input, target, options, *weights)


def _opts(**kw):
    """Options as a hashable tuple (a non-tensor argument of Function.apply)."""
    return tuple(kw.items())


def _same_shape_weight(weight, input, name):
    """torch's weighted mse/l1/huber require a weight of the input's exact shape."""
    if weight is not None and weight.shape != input.shape:
        raise ValueError(
            f"fastloss.torch.{name}: weight must have the input's shape {tuple(input.shape)} "
            f"(as torch requires), got {tuple(weight.shape)}"
        )


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
    _check_args("cross_entropy", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "cross_entropy")
    options = _opts(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    return _run("cross_entropy", input, target, options, weight)


def nll_loss(
    input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"
):
    """torch.nn.functional.nll_loss (input holds log-probabilities)."""
    _check_args("nll_loss", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "nll_loss")
    options = _opts(ignore_index=ignore_index, reduction=reduction)
    return _run("nll_loss", input, target, options, weight)


def focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """Multi-class softmax focal loss from logits: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by the sum of w[y] over non-ignored samples like cross_entropy, so gamma=0
    is cross_entropy.  Finite values and gradients at saturated logits for every gamma >= 0."""
    _check_args("focal_loss", input, target, weight=weight)
    options = _opts(gamma=gamma, ignore_index=ignore_index, reduction=reduction)
    return _run("focal_loss", input, target, options, weight)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017) from logits; alpha < 0 disables
    the alpha term.  Note torchvision's default reduction="none"."""
    _check_args("sigmoid_focal_loss", inputs, targets)
    options = _opts(alpha=alpha, gamma=gamma, reduction=reduction)
    return _run("sigmoid_focal_loss", inputs, targets, options)


def binary_cross_entropy(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean"
):
    """torch.nn.functional.binary_cross_entropy on probabilities (logs clamped at -100)."""
    _check_args("binary_cross_entropy", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "binary_cross_entropy")
    return _run("binary_cross_entropy", input, target, _opts(reduction=reduction), weight)


def binary_cross_entropy_with_logits(
    input, target, weight=None, size_average=None, reduce=None, reduction="mean", pos_weight=None
):
    """torch.nn.functional.binary_cross_entropy_with_logits (weight and pos_weight broadcast
    to the input's shape)."""
    name = "binary_cross_entropy_with_logits"
    _check_args(name, input, target, weight=weight, pos_weight=pos_weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, name)
    return _run(name, input, target, _opts(reduction=reduction), weight, pos_weight)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.mse_loss (weight: the input's shape; weighted mean = sum / sum(w))."""
    _check_args("mse_loss", input, target, weight=weight)
    _same_shape_weight(weight, input, "mse_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction, "mse_loss")
    return _run("mse_loss", input, target, _opts(reduction=reduction), weight)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.l1_loss (subgradient 0 at 0; weight: the input's shape, weighted
    mean = sum / sum(w))."""
    _check_args("l1_loss", input, target, weight=weight)
    _same_shape_weight(weight, input, "l1_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction, "l1_loss")
    return _run("l1_loss", input, target, _opts(reduction=reduction), weight)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """torch.nn.functional.smooth_l1_loss (beta=0 is l1_loss)."""
    _check_args("smooth_l1_loss", input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction, "smooth_l1_loss")
    return _run("smooth_l1_loss", input, target, _opts(beta=beta, reduction=reduction))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """torch.nn.functional.huber_loss (weight: the input's shape; weighted mean = sum / N)."""
    _check_args("huber_loss", input, target, weight=weight)
    _same_shape_weight(weight, input, "huber_loss")
    return _run("huber_loss", input, target, _opts(delta=delta, reduction=reduction), weight)


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div (input: log-probabilities; reduction may be "batchmean")."""
    _check_args("kl_div", input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction, "kl_div")
    options = _opts(reduction=reduction, log_target=bool(log_target))
    return _run("kl_div", input, target, options)


# ------------------------------------------------------------------ nn.Module classes


class _Loss(torch.nn.Module):
    """Base of the generated modules: options are attributes, weight tensors buffers."""

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _make_module(spec, functional):
    """torch.nn.<spec.torch_module>: its constructor takes the functional's arguments after
    (input, target) that the loss uses (torch's module constructors list them in the same
    order), maps the deprecated size_average / reduce to `reduction`, keeps the weight tensors
    as buffers and the options as attributes; forward(input, target) calls the functional."""
    module = spec.torch_module
    used = set(spec.param_names) | set(spec.weight_names) | {"reduction", "size_average", "reduce"}
    fn_params = list(inspect.signature(functional).parameters.values())
    input_name, target_name = fn_params[0].name, fn_params[1].name
    init_params = [p for p in fn_params[2:] if p.name in used]
    peer_class = getattr(torch.nn, module, None)
    if peer_class is not None:  # torch's module takes fewer (MSELoss: no weight): mirror it
        peer_names = set(inspect.signature(peer_class.__init__).parameters)
        init_params = [p for p in init_params if p.name in peer_names]
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

    def forward(self, input, target):
        return functional(input, target, **{name: getattr(self, name) for name in option_names})

    forward.__signature__ = inspect.Signature(
        [
            self_param,
            inspect.Parameter(input_name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter(target_name, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ]
    )
    peer = f"Drop-in torch.nn.{module}" if spec.torch_name == spec.name else "Module"
    doc = (
        f"{peer} on fastloss's fused kernel: forward({input_name}, {target_name}) is "
        f"fastloss.torch.{spec.name}({input_name}, {target_name}, **options)."
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
    signature = inspect.Signature(params)

    def functional(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        v = bound.arguments
        weights = {w: v[w] for w in spec.weight_names}
        _check_args(spec.name, v["input"], v["target"], **weights)
        red = v["reduction"]
        if legacy:
            red = _legacy_reduction(v["size_average"], v["reduce"], red, spec.name)
        options = _opts(**{p: v[p] for p in spec.param_names}, reduction=red)
        return _run(spec.name, v["input"], v["target"], options, *weights.values())

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

__all__ = list(FUNCTIONALS) + [m.__name__ for m in MODULES.values()]
