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
* The per-element ``weight=`` that ``mse_loss``, ``l1_loss`` and ``huber_loss`` accept in
  recent torch is kept in the signature for positional compatibility but raises
  ``NotImplementedError`` (fastloss has no fused weighted form of these losses).
* The deprecated ``size_average`` / ``reduce`` arguments are accepted (mapped to ``reduction``
  exactly like torch, with a ``UserWarning``).
* Bad shapes, out-of-range class indices, bad options raise fastloss's own ``ValueError`` /
  ``IndexError`` / ``TypeError`` (torch mostly raises ``RuntimeError``).
* Numerics are fastloss's (see docs/API.md): e.g. finite focal losses at saturated logits and
  ``binary_cross_entropy_with_logits`` exact at +-inf logits, where torch gives NaN.

Extra losses: :func:`focal_loss` (multi-class softmax focal loss) and :func:`sigmoid_focal_loss`
(torchvision's signature, default ``reduction="none"``), with modules :class:`FocalLoss` and
:class:`SigmoidFocalLoss`.
"""
import warnings

import numpy as np
import torch

import fastloss as _fl

__all__ = [
    "cross_entropy", "nll_loss", "focal_loss", "sigmoid_focal_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "kl_div",
    "CrossEntropyLoss", "NLLLoss", "FocalLoss", "SigmoidFocalLoss", "BCELoss", "BCEWithLogitsLoss",
    "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss",
]

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
    warnings.warn(f"fastloss.torch.{name}: size_average and reduce are deprecated, please use "
                  f"reduction={legacy!r} instead.", UserWarning, stacklevel=3)
    return legacy


def _check_tensor(t, arg, name, optional=False):
    """CPU, strided, not requiring grad (except `input`)."""
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastloss.torch.{name}: {arg} must be a torch.Tensor, "
                        f"got {type(t).__name__}")
    if t.device.type != "cpu":
        raise TypeError(f"fastloss.torch.{name}: {arg} is on device {t.device}; fastloss runs on "
                        f"CPU tensors only (use torch.nn.functional.{name} on other devices, or "
                        f"move the tensors with .cpu())")
    if t.layout != torch.strided:
        raise TypeError(f"fastloss.torch.{name}: {arg} has layout {t.layout}; only dense "
                        f"(torch.strided) tensors are supported")
    if arg != "input" and t.requires_grad:
        raise ValueError(f"fastloss.torch.{name}: {arg} requires grad, but fastloss.torch only "
                         f"differentiates with respect to input; detach {arg} (or use "
                         f"torch.nn.functional.{name} if you need d(loss)/d({arg}))")


def _check_args(name, input, target, **optional):
    _check_tensor(input, "input", name)
    if not input.dtype.is_floating_point:
        raise TypeError(f"fastloss.torch.{name}: input must be a floating tensor (float32, "
                        f"float64, float16 or bfloat16), got {input.dtype}")
    _check_tensor(target, "target", name)
    for arg, t in optional.items():
        _check_tensor(t, arg, name, optional=True)


def _compute_dtype(dtype):
    if dtype in _NATIVE:
        return dtype
    if dtype in _UPCAST:
        return torch.float32
    raise TypeError(f"input dtype {dtype} is not supported (use float32 or float64; float16 "
                    f"and bfloat16 are computed in float32)")


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
            raise RuntimeError("fastloss.torch: double backward is not supported (backward was "
                               "called with create_graph=True); use torch.nn.functional for "
                               "higher-order gradients")
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


class CrossEntropyFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options, weight):
        return _fused_forward(ctx, "cross_entropy", True, input, target, options, weight=weight)


class NLLLossFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options, weight):
        return _fused_forward(ctx, "nll_loss", True, input, target, options, weight=weight)


class FocalLossFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options, weight):
        return _fused_forward(ctx, "focal_loss", True, input, target, options, weight=weight)


class SigmoidFocalLossFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options):
        return _fused_forward(ctx, "sigmoid_focal_loss", False, input, target, options)


class BCEFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options, weight):
        return _fused_forward(ctx, "binary_cross_entropy", False, input, target, options,
                              weight=weight)


class BCEWithLogitsFunction(_FusedLossFunction):
    @staticmethod
    def forward(ctx, input, target, options, weight, pos_weight):
        return _fused_forward(ctx, "binary_cross_entropy_with_logits", False, input, target,
                              options, weight=weight, pos_weight=pos_weight)


def _plain_function(loss_name, class_name):
    """autograd.Function for an elementwise loss with no weight tensors."""
    def forward(ctx, input, target, options):
        return _fused_forward(ctx, loss_name, False, input, target, options)
    return type(class_name, (_FusedLossFunction,), {"forward": staticmethod(forward)})


MSELossFunction = _plain_function("mse_loss", "MSELossFunction")
L1LossFunction = _plain_function("l1_loss", "L1LossFunction")
SmoothL1LossFunction = _plain_function("smooth_l1_loss", "SmoothL1LossFunction")
HuberLossFunction = _plain_function("huber_loss", "HuberLossFunction")
KLDivFunction = _plain_function("kl_div", "KLDivFunction")


def _run(function, input, target, options, *weights):
    """Through autograd only when a gradient is wanted (Function.forward's needs_input_grad
    ignores torch.no_grad(), so grad mode is checked here); otherwise a plain forward-only
    fastloss call, no gradient computed."""
    if input.requires_grad and torch.is_grad_enabled():
        return function.apply(input, target, options, *weights)
    return function.forward(None, input, target, options, *weights)


def _opts(**kw):
    """Options as a hashable tuple (a non-tensor argument of Function.apply)."""
    return tuple(kw.items())


def _no_weight(weight, name):
    if weight is not None:
        raise NotImplementedError(f"fastloss.torch.{name}: weight= is not supported (fastloss has "
                                  f"no fused weighted {name}); use torch.nn.functional.{name}")


# ------------------------------------------------------------------ functional API

def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy on fastloss's fused kernel (index or probability
    targets, class weights, ignore_index, label smoothing; (N, C), (N, C, d1..dk) or (C,))."""
    _check_args("cross_entropy", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "cross_entropy")
    options = _opts(ignore_index=ignore_index, reduction=reduction,
                    label_smoothing=label_smoothing)
    return _run(CrossEntropyFunction, input, target, options, weight)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """torch.nn.functional.nll_loss (input holds log-probabilities)."""
    _check_args("nll_loss", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "nll_loss")
    options = _opts(ignore_index=ignore_index, reduction=reduction)
    return _run(NLLLossFunction, input, target, options, weight)


def focal_loss(input, target, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
    """Multi-class softmax focal loss from logits: per sample -w[y] (1 - p_y)^gamma log p_y.

    "mean" divides by the sum of w[y] over non-ignored samples like cross_entropy, so gamma=0
    is cross_entropy.  Finite values and gradients at saturated logits for every gamma >= 0."""
    _check_args("focal_loss", input, target, weight=weight)
    options = _opts(gamma=gamma, ignore_index=ignore_index, reduction=reduction)
    return _run(FocalLossFunction, input, target, options, weight)


def sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss (Lin et al. 2017) from logits; alpha < 0 disables
    the alpha term.  Note torchvision's default reduction="none"."""
    _check_args("sigmoid_focal_loss", inputs, targets)
    options = _opts(alpha=alpha, gamma=gamma, reduction=reduction)
    return _run(SigmoidFocalLossFunction, inputs, targets, options)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """torch.nn.functional.binary_cross_entropy on probabilities (logs clamped at -100)."""
    _check_args("binary_cross_entropy", input, target, weight=weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, "binary_cross_entropy")
    return _run(BCEFunction, input, target, _opts(reduction=reduction), weight)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """torch.nn.functional.binary_cross_entropy_with_logits (weight and pos_weight broadcast
    to the input's shape)."""
    name = "binary_cross_entropy_with_logits"
    _check_args(name, input, target, weight=weight, pos_weight=pos_weight)
    reduction = _legacy_reduction(size_average, reduce, reduction, name)
    return _run(BCEWithLogitsFunction, input, target, _opts(reduction=reduction), weight,
                pos_weight)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.mse_loss (weight= not supported)."""
    _check_args("mse_loss", input, target)
    _no_weight(weight, "mse_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction, "mse_loss")
    return _run(MSELossFunction, input, target, _opts(reduction=reduction))


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """torch.nn.functional.l1_loss (subgradient 0 at 0; weight= not supported)."""
    _check_args("l1_loss", input, target)
    _no_weight(weight, "l1_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction, "l1_loss")
    return _run(L1LossFunction, input, target, _opts(reduction=reduction))


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """torch.nn.functional.smooth_l1_loss (beta=0 is l1_loss)."""
    _check_args("smooth_l1_loss", input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction, "smooth_l1_loss")
    return _run(SmoothL1LossFunction, input, target, _opts(beta=beta, reduction=reduction))


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """torch.nn.functional.huber_loss (weight= not supported)."""
    _check_args("huber_loss", input, target)
    _no_weight(weight, "huber_loss")
    return _run(HuberLossFunction, input, target, _opts(delta=delta, reduction=reduction))


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """torch.nn.functional.kl_div (input: log-probabilities; reduction may be "batchmean")."""
    _check_args("kl_div", input, target)
    reduction = _legacy_reduction(size_average, reduce, reduction, "kl_div")
    options = _opts(reduction=reduction, log_target=bool(log_target))
    return _run(KLDivFunction, input, target, options)


# ------------------------------------------------------------------ nn.Module classes

class _Loss(torch.nn.Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = _legacy_reduction(size_average, reduce, reduction, type(self).__name__)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """torch.nn.CrossEntropyLoss on fastloss.torch.cross_entropy."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """torch.nn.NLLLoss on fastloss.torch.nll_loss."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction)


class FocalLoss(_WeightedLoss):
    """Multi-class softmax focal loss module (fastloss.torch.focal_loss)."""

    def __init__(self, gamma=2.0, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight, None, None, reduction)
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return focal_loss(input, target, gamma=self.gamma, weight=self.weight,
                          ignore_index=self.ignore_index, reduction=self.reduction)


class SigmoidFocalLoss(_Loss):
    """torchvision's sigmoid_focal_loss as a module (default reduction="none" like it)."""

    def __init__(self, alpha=0.25, gamma=2.0, reduction="none"):
        super().__init__(None, None, reduction)
        self.alpha = alpha
        self.gamma = gamma

    def forward(self, inputs, targets):
        return sigmoid_focal_loss(inputs, targets, alpha=self.alpha, gamma=self.gamma,
                                  reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """torch.nn.BCELoss on fastloss.torch.binary_cross_entropy."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)

    def forward(self, input, target):
        return binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """torch.nn.BCEWithLogitsLoss on fastloss.torch.binary_cross_entropy_with_logits."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean",
                 pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                pos_weight=self.pos_weight,
                                                reduction=self.reduction)


class MSELoss(_Loss):
    """torch.nn.MSELoss on fastloss.torch.mse_loss."""

    def forward(self, input, target):
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """torch.nn.L1Loss on fastloss.torch.l1_loss."""

    def forward(self, input, target):
        return l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """torch.nn.SmoothL1Loss on fastloss.torch.smooth_l1_loss."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", beta=1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """torch.nn.HuberLoss on fastloss.torch.huber_loss."""

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(None, None, reduction)
        self.delta = delta

    def forward(self, input, target):
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(_Loss):
    """torch.nn.KLDivLoss on fastloss.torch.kl_div."""

    def __init__(self, size_average=None, reduce=None, reduction="mean", log_target=False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
