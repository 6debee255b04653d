"""The docstrings of the public functions, generated at import (``help(fastloss.<name>)``).

Each docstring is assembled from three sources, so that no fact is written twice:

* the function's signature (``inspect.signature``): which parameters it has, in which order,
  and every default;
* its registry row (``fastloss._losses.LOSSES``): the allowed reductions, the input and
  target domains, the shape of each weight and how ``"mean"`` divides with it, the range of
  each option (read from its validator), the torch peer and the ``fastloss.torch`` Module;
* the prose below: a summary line, the formula, notes on departures from torch (those listed
  in ``fastloss/reference/_math.py``), an example that is a doctest, and one description per
  parameter name (per family or per function where the meaning differs).

A parameter with no description renders as ``(undocumented)``; ``missing_descriptions``
lists such parameters and ``tests/test_docs.py`` fails on any.  ``attach(globals())`` is
called once at the end of ``fastloss/__init__.py``: string building only, no imports beyond
the standard library modules NumPy already loads.
"""

from __future__ import annotations

import inspect

from . import _losses
from . import _validate as V

__all__ = ["attach", "docstring", "twin_docstring", "missing_descriptions", "WIDTH"]

#: the longest docstring line: ``help()`` indents by 4, so it fits an 80-column terminal
WIDTH = 76
_UNDOCUMENTED = "(undocumented)"


def _wrap(text, indent="", first=None):
    """Greedy word wrap at WIDTH (textwrap's regular expressions cost more at import); the
    first line starts with `first` (default: `indent`).  Memoised: the shared paragraphs
    recur in every loss."""
    key = (text, indent, first)
    if key not in _WRAPPED:
        _WRAPPED[key] = _wrap_words(text, indent, first)
    return list(_WRAPPED[key])


_WRAPPED: dict = {}


def _wrap_words(text, indent, first):
    words = text.split()
    if not words:
        return []
    start = indent if first is None else first
    line = start + " ".join(words)
    if len(line) <= WIDTH:
        return [line]
    lines = []
    current = [start + words[0]]
    n = len(current[0])
    for word in words[1:]:
        if n + 1 + len(word) > WIDTH:
            lines.append(" ".join(current))
            current = [indent + word]
            n = len(current[0])
        else:
            current.append(word)
            n += 1 + len(word)
    lines.append(" ".join(current))
    return lines


def _block(text, indent="    "):
    """A preformatted block (formula, example): dedented, then indented by `indent`."""
    return [indent + line if line.strip() else "" for line in inspect.cleandoc(text).split("\n")]


# ----------------------------------------------------------------- facts from the registry

# the domain of input / target, by registry value
_INPUT_DOMAIN = {
    "logits": "Logits: any real values (-inf masks a class out).",
    "logprob": "Log-probabilities, e.g. log_softmax's output.",
    "prob": "Probabilities in [0, 1] (e.g. sigmoid's output); a value outside "
    "[0, 1] or NaN raises ValueError.",
    "real": "Predictions: any real values.",
}
_INPUT_DOMAIN_ELEMENTWISE = {"logits": "Logits: any real values."}
_TARGET_DOMAIN = {
    "binary": "Labels in [0, 1]: 0/1, or soft labels.",
    "sign": "Labels -1 or +1.",
    "prob": "Probabilities.",
    "real": "Targets: any real values.",
    "count": "Counts (non-negative; any real values are accepted, as torch).",
}
# the range each option validator enforces, shown after the option's type
_RANGE = {
    V.check_nonneg: ">= 0",
    V.check_positive: "> 0",
    V.check_unit_interval: "in [0, 1]",
    V.check_focal_alpha: "<= 1",
}
_DTYPES = "float32 and float64 are kept; float16, integer and bool input compute in float32."


def _quote(value):
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _choices(values):
    return "{" + ", ".join(_quote(v) for v in values) + "}"


class _Fn:
    """What the generator knows about one public function."""

    def __init__(self, name, func):
        self.name = name
        self.func = func
        self.spec = _losses.LOSSES.get(name)
        if self.spec is not None:
            self.family = self.spec.family
        elif name == "evaluate":
            self.family = "evaluate"
        else:
            self.family = "config"
        self.params = inspect.signature(func).parameters
        row_params = self.spec.params if self.spec else ()
        self.row_params = {p.name: p for p in row_params}
        self.row_weights = {w.name: w for w in (self.spec.weights if self.spec else ())}

    @property
    def class_or_prob(self):
        return self.spec is not None and self.spec.target_domain == "class_or_prob"


# the registry families fastloss.evaluate takes (fastloss._evaluate._SPECS)
_EVAL_FAMILIES = ("class", "elementwise", "margin")


def _rows_taking(option):
    """(loss names, their defaults) of the registry rows that take `option`."""
    names, defaults = [], []
    for spec in _losses.losses(*_EVAL_FAMILIES):
        for p in spec.params:
            if p.name == option:
                names.append(spec.name)
                defaults.append(p.default)
        if option in spec.weight_names:
            names.append(spec.name)
    return names, defaults


# ----------------------------------------------------------------- parameter descriptions
# Each entry: name -> (type, text); either may be a function of the _Fn.  Looked up by
# function, then by family, then in _COMMON.


def _weight_type(fn):
    w = fn.row_weights.get("weight")
    return "array_like, shape (C,)" if w.broadcast == "class" else "array_like"


def _weight_text(fn):
    if fn.row_weights["weight"].broadcast == "class":
        return "Per-class weights w[c] (None: all 1), see the formula."
    if fn.spec.weighted_mean == "weight_sum":
        mean = '"mean" then divides by the sum of the weights broadcast to input (as torch 2.13).'
    else:
        mean = '"mean" still divides by the number of elements (as torch).'
    return f"Weights w broadcastable to input's shape, multiplying each term (None: 1); {mean}"


def _reduction_text(fn):
    spec = fn.spec
    each = "per-sample" if spec.family in ("class", "margin") else "elementwise"
    parts = [f'"none": the {each} losses; "sum": their sum;']
    if spec.family == "class":
        mean = (
            '"mean": their sum divided by Σ w[y_i] over the samples whose target is not '
            "ignore_index (their number without weight)"
        )
        if fn.class_or_prob:
            mean += "; with probability targets, by the number of samples"
        parts.append(mean + ".")
    elif spec.family == "margin":
        parts.append('"mean": their mean over the rows (not weighted, as torch).')
    elif "weight" in spec.weight_names and spec.weighted_mean == "weight_sum":
        parts.append('"mean": their sum divided by Σ w (the element count without weight).')
    else:
        parts.append('"mean": their mean over all elements.')
    if "batchmean" in spec.reductions:
        parts.append('"batchmean": their sum divided by input.shape[0] (the true KL divergence).')
    return " ".join(parts)


def _class_input_text(fn):
    return f"{_INPUT_DOMAIN[fn.spec.input_domain]} C classes; {_DTYPES}"


def _class_target_type(fn):
    return "array_like, shape (N, d1, ..., dk)" + (" or input's" if fn.class_or_prob else "")


def _class_target_text(fn):
    text = (
        "Class indices (any integer dtype), in [0, C) or equal to ignore_index; the shape is "
        "input's without the class axis (() for an unbatched (C,) input)."
    )
    if fn.class_or_prob:
        text += " Or class probabilities t (floating dtype) of input's shape."
    return text


def _evaluate_option(name, meaning):
    def describe(fn):
        names, defaults = _rows_taking(name)
        text = f"{meaning} Option of {', '.join(names)}"
        distinct = sorted(set(map(repr, defaults)))
        if len(distinct) == 1:
            text += f"; None: the loss's default, {distinct[0]}"
        elif distinct:
            text += (
                "; None: the loss's default ("
                + ", ".join(f"{n} {d!r}" for n, d in zip(names, defaults))
                + ")"
            )
        return text + "; giving it to another loss raises EvalOptionError."

    return describe


def _evaluate_reduction(fn):
    extra = {
        r: [s.name for s in _losses.losses(*_EVAL_FAMILIES) if r in s.reductions]
        for s in _losses.losses(*_EVAL_FAMILIES)
        for r in s.reductions
        if r not in ("none", "mean", "sum")
    }
    text = 'Which reduction is reported as "value": "mean" or "sum"'
    for r, names in extra.items():
        text += f', or "{r}" for {", ".join(names)}'
    return text + " (every one of them is reported under its own key too)."


# the three gradient options, shared by every loss (the API contract, docs/API.md)
_RETURN_GRAD = "Also return the gradient (see Returns), from the same fused pass."
_GRAD_OUTPUT = (
    "Upstream gradient scaling grad, never the loss (needs return_grad=True): a scalar "
    'for "mean"/"sum", an array broadcastable to the loss for "none".'
)
_GRAD_OUT = (
    "Buffer the gradient is written into and returned (input's shape and working dtype, "
    "C-contiguous); input itself computes it in place (needs return_grad=True)."
)
_BACKEND_NAME = (
    "str",
    '"compiled" (the fused kernels) or "reference" (the NumPy twins of fastloss.reference).',
)

_COMMON = {
    "return_grad": ("bool", _RETURN_GRAD),
    "grad_output": ("float or array_like", _GRAD_OUTPUT),
    "grad_out": ("ndarray", _GRAD_OUT),
    "reduction": (lambda fn: _choices(fn.spec.reductions), _reduction_text),
    "ignore_index": (
        "int",
        lambda fn: (
            "A target value whose samples are skipped: loss 0, gradient 0, and left "
            'out of the "mean" denominator.'
            + (
                " Class-index targets only: a nonnegative value with probability targets raises "
                "ValueError, as torch."
                if fn.class_or_prob
                else ""
            )
        ),
    ),
    "label_smoothing": (
        "float",
        "ε in the formula: the target becomes (1 - ε) onehot(y) + ε / C.",
    ),
    "beta": ("float", "β: where the loss turns from quadratic to linear; 0 gives l1_loss."),
    "delta": ("float", "δ: where the loss turns from quadratic to linear."),
    "log_target": ("bool", "True: target holds log-probabilities log t instead of t."),
    "log_input": ("bool", "True: input holds log rates log λ; False: the rates λ."),
    "full": ("bool", "True: add the Stirling approximation of log(t!) where t > 1."),
    "eps": ("float", "Added to the rate inside the log (log_input=False only)."),
    "margin": ("float", "The margin of the hinge."),
    "alpha": (
        "float",
        "α: the weight of the positive terms (1 - α for the negative ones); a negative "
        "value disables the alpha term (α_t = 1), as torchvision's alpha=-1.",
    ),
    "pos_weight": (
        "array_like",
        "Weights of the positive term, broadcastable to input's shape: typically (C,), one "
        "per column of the last axis (multi-label: C labels per sample). None: 1.",
    ),
    "sample_weight": (
        "array_like, shape (N, d1, ..., dk)",
        "Per-sample weights s_i, finite and >= 0, broadcastable to the per-sample loss "
        "(None means all 1). Each sample's loss "
        'and gradient are multiplied by s_i, and "mean" divides by Σ s_i w[y_i] over the '
        "samples not ignored (by Σ s_i with probability targets), so s = 1 is the "
        "unweighted loss; if every s_i w[y_i] is 0 the mean is NaN and the gradient 0. "
        "Still one fused pass.",
    ),
}

_MARGIN_TARGET = {
    "class": (
        "array_like, shape (N,) or ()",
        "The class index y of each row (any integer dtype), in [0, C) (IndexError otherwise).",
    ),
    "multilabel": (
        "array_like, input's shape",
        "Integer class indices per row, ended by the first -1 (a row starting with -1 lists "
        "none; a class listed twice counts twice); every entry, also after the -1, in "
        "[-1, C) (IndexError otherwise, as torch).",
    ),
    "binary": (
        "array_like, input's shape",
        "0/1 labels per class (soft labels in [0, 1] work too). Exactly input's shape.",
    ),
}

_BY_FAMILY = {
    "class": {
        "input": ("array_like, shape (N, C), (N, C, d1, ..., dk) or (C,)", _class_input_text),
        "target": (_class_target_type, _class_target_text),
        "weight": (_weight_type, _weight_text),
        "return_metrics": (
            "str or sequence of str",
            '"error_rate", "accuracy" and/or "top<k>" (top-k accuracy, e.g. "top5"): also '
            "return a dict of these metrics of the same call, from the chunks the loss reads "
            "(no second pass over memory). Ties go to the lower class index (np.argmax); a "
            "row holding NaN is a miss; over the samples not ignored, weighted by "
            "sample_weight when given. The dict comes last: (loss, metrics) or (loss, grad, "
            "metrics). Class-index targets only.",
        ),
        "axis": (
            "int or None",
            "The class axis of input. None means torch's layout (axis 1, or 0 for an "
            "unbatched (C,) input); -1 reads a channel-last (N, d1, ..., dk, C) input in place, "
            "without a transposing copy. Index targets and the per-sample loss have "
            "input's shape without this axis; probability targets have input's shape.",
        ),
    },
    "elementwise": {
        "input": (
            "array_like, any shape",
            lambda fn: (
                (
                    _INPUT_DOMAIN_ELEMENTWISE.get(fn.spec.input_domain)
                    or _INPUT_DOMAIN[fn.spec.input_domain]
                )
                + " "
                + _DTYPES
            ),
        ),
        "target": (
            "array_like, input's shape",
            lambda fn: (
                _TARGET_DOMAIN[fn.spec.target_domain] + " Exactly input's shape (no broadcasting)."
            ),
        ),
        "weight": (_weight_type, _weight_text),
    },
    "embedding": {
        "input1": ("array_like, shape (N, D) or (D,)", "First embeddings. " + _DTYPES),
        "input2": ("array_like, shape (N, D) or (D,)", "Second embeddings (input1's ndim)."),
        "anchor": ("array_like, shape (N, D) or (D,)", "Anchor embeddings. " + _DTYPES),
        "positive": ("array_like, shape (N, D) or (D,)", "Embeddings of the same class."),
        "negative": ("array_like, shape (N, D) or (D,)", "Embeddings of another class."),
        "target": ("array_like, shape (N,) or ()", "Labels: 1 similar, -1 dissimilar."),
        "grad_out": (
            "tuple of ndarrays",
            "Preallocated gradient buffers, one per differentiable argument, each "
            "C-contiguous, of its argument's shape and the working dtype (needs "
            "return_grad=True).",
        ),
        "p": ("float", "The norm's order (torch's pairwise_distance)."),
        "eps": ("float", "Added to the difference inside the norm, as torch."),
        "swap": ("bool", "Use min(d(a, n), d(p, n)) as the negative distance."),
        "distance_function": (
            "str, callable or None",
            'None or "euclidean" (pairwise_distance, p = 2), "cosine" (1 - cosine '
            "similarity), or f(x1, x2) -> per-row distances on NumPy arrays (with "
            "need_grad=True it must return (d, (dd/dx1, dd/dx2)) for gradients).",
        ),
    },
    "margin": {
        "input": (
            "array_like, shape (N, C) or (C,)",
            "Scores of C classes per row, any real values (torch's layout: one row per "
            "sample, or one unbatched row). " + _DTYPES,
        ),
        "target": (
            lambda fn: _MARGIN_TARGET[fn.spec.target_domain][0],
            lambda fn: _MARGIN_TARGET[fn.spec.target_domain][1],
        ),
        "weight": (
            "array_like, shape (C,)",
            "Per-class weights w[c] (None: all 1), see the formula.",
        ),
        "p": ("int", "The hinge's exponent, 1 or 2 (ValueError otherwise, as torch)."),
    },
    "pair": {
        "input1": ("array_like", "First scores: any real values. " + _DTYPES),
        "input2": (
            "array_like",
            "Second scores, with input1's number of dimensions (broadcast together).",
        ),
        "input": ("array_like", "Predicted means: any real values. " + _DTYPES),
        "target": (
            "array_like",
            lambda fn: (
                _TARGET_DOMAIN[fn.spec.target_domain]
                + " Broadcast with the inputs (as many dimensions for margin_ranking_loss)."
            ),
        ),
        "grad_out": (
            "tuple of 2 ndarrays",
            "Preallocated gradient buffers, each C-contiguous, of its argument's shape and "
            "the working dtype, written and returned (needs return_grad=True).",
        ),
        "var": (
            "array_like or float",
            "Variances, >= 0 (ValueError otherwise), clamped below at eps: a number, "
            "input's shape, one dimension short (one variance per row), or input's shape "
            "with one dimension of size 1 (torch's rules).",
        ),
    },
    "axis": {
        "x": ("array_like, any shape", "Real values (e.g. logits). " + _DTYPES),
        "axis": (
            "int",
            "The axis along which to compute, read in place (no transposing copy). A 0-d x "
            "is one slice of one element (axis 0 or -1).",
        ),
        "keepdims": (
            "bool",
            "Keep axis with length 1, so that the result broadcasts against x.",
        ),
    },
    "evaluate": {
        "loss": (
            "str",
            lambda fn: (
                "The loss, one of: "
                + ", ".join(s.name for s in _losses.losses(*_EVAL_FAMILIES))
                + "."
            ),
        ),
        "logits": (
            "ndarray or path",
            "The loss's input, or the path of a .npy / .npz file, read in chunks of rows "
            "(never loaded whole; pass paths rather than np.memmap arrays to keep the "
            "resident memory flat).",
        ),
        "targets": ("ndarray or path", "The loss's target, as logits."),
        "weight": (
            "ndarray or path",
            _evaluate_option("weight", "The loss's weight (an array or a .npy / .npz path)."),
        ),
        "pos_weight": (
            "ndarray or path",
            _evaluate_option("pos_weight", "The loss's pos_weight (array or path)."),
        ),
        "ignore_index": ("int", _evaluate_option("ignore_index", "The loss's ignore_index.")),
        "label_smoothing": (
            "float",
            _evaluate_option("label_smoothing", "The loss's label_smoothing."),
        ),
        "gamma": ("float", _evaluate_option("gamma", "The loss's gamma.")),
        "alpha": ("float", _evaluate_option("alpha", "The loss's alpha.")),
        "beta": ("float", _evaluate_option("beta", "The loss's beta.")),
        "delta": ("float", _evaluate_option("delta", "The loss's delta.")),
        "log_target": ("bool", _evaluate_option("log_target", "The loss's log_target.")),
        "log_input": ("bool", _evaluate_option("log_input", "The loss's log_input.")),
        "full": ("bool", _evaluate_option("full", "The loss's full.")),
        "eps": ("float", _evaluate_option("eps", "The loss's eps.")),
        "margin": ("float", _evaluate_option("margin", "The loss's margin.")),
        "p": ("int", _evaluate_option("p", "The loss's p.")),
        "reduction": ("str", _evaluate_reduction),
        "top_k": (
            "int or sequence of int",
            "k values for top-k accuracy (class-index targets only); None: [5] when there "
            "are more than 5 classes.",
        ),
        "chunk_rows": ("int", "Rows per chunk; None: about 64 MB of logits per chunk."),
        "per_sample": (
            "path",
            'A .npy file written chunk by chunk with the per-sample losses (reduction="none"\'s '
            "array).",
        ),
        "logits_key": ("str", "The array to read from a .npz logits file holding several."),
        "targets_key": ("str", "The array to read from a .npz targets file holding several."),
        "threads": (
            "int",
            "fastloss threads for this call (set_num_threads, restored on return); None: the "
            "current setting.",
        ),
        "progress": ("bool", "Show a tqdm progress bar on stderr (when tqdm is installed)."),
    },
    "config": {},
}

_BY_FUNCTION = {
    "gaussian_nll_loss": {
        "eps": ("float", "The clamp of var from below (straight-through, as torch)."),
        "full": ("bool", "True: add the constant log(2π) / 2."),
    },
    "focal_loss": {
        "gamma": (
            "float",
            "γ: the focusing exponent on 1 - p_y, which down-weights the well-classified "
            "samples; 0 gives cross_entropy.",
        ),
    },
    "sigmoid_focal_loss": {
        "gamma": (
            "float",
            "γ: the focusing exponent on 1 - p_t, which down-weights the well-classified "
            "elements; 0 gives the (alpha-weighted) binary cross entropy with logits.",
        ),
    },
    "kl_div": {
        "target": (
            "array_like, input's shape",
            "Probabilities t (log-probabilities log t with log_target=True). Exactly "
            "input's shape (no broadcasting).",
        ),
    },
    "set_num_threads": {
        "n": (
            "int",
            "Threads the kernels may use, 1 to 4096 (default at import: the usable CPUs).",
        ),
    },
    "set_backend": {"name": _BACKEND_NAME},
    "use_backend": {"name": _BACKEND_NAME},
}


def _lookup(fn, name):
    for table in (_BY_FUNCTION.get(fn.name, {}), _BY_FAMILY[fn.family], _COMMON):
        if name in table:
            return table[name]
    return None


def _resolve(value, fn):
    return value(fn) if callable(value) else value


def _param_lines(fn, param):
    found = _lookup(fn, param.name)
    kind, text = ("", _UNDOCUMENTED) if found is None else map(lambda v: _resolve(v, fn), found)
    row = fn.row_params.get(param.name)
    if row is not None and row.check in _RANGE:
        kind = f"{kind} {_RANGE[row.check]}"
    head = param.name + (" : " + kind if kind else "")
    if param.default is not inspect.Parameter.empty:
        head += f", default {_quote(param.default)}"
    return _wrap(head) + _wrap(text, "    ")


def missing_descriptions(name, func):
    """The parameters of `func` (public name `name`) that have no description."""
    fn = _Fn(name, func)
    return [p for p in fn.params if _lookup(fn, p) is None]


# ----------------------------------------------------------------- per-function prose

_SHAPES_CLASS = "(N, d1, ..., dk)"

_LOSS_RETURNS_GRAD = (
    "Only with return_grad=True, which returns the pair (loss, grad): d(loss)/d(input) "
    'for the chosen reduction ("mean"\'s 1/N or 1/Σw included; for "none", of the sum of '
    "the losses), times grad_output; grad_out when given."
)


def _loss_returns(fn):
    if fn.family == "margin":
        none_shape = "input's shape without the class axis, (N,) (0-d for an unbatched (C,) input)"
    elif fn.family == "class":
        none_shape = (
            f"input's shape without the class axis, {_SHAPES_CLASS} (0-d for an unbatched "
            "(C,) input)"
        )
    else:
        none_shape = "input's shape"
    return [
        (
            "loss : NumPy scalar or ndarray",
            [
                "A scalar of input's working dtype for "
                + "/".join(_quote(r) for r in fn.spec.reductions if r != "none")
                + f'; for "none" an array of {none_shape}.'
            ],
        ),
        ("grad : ndarray, input's shape and working dtype", [_LOSS_RETURNS_GRAD]),
    ]


_PAIR_RETURNS_GRAD = (
    "Only with return_grad=True, which returns (loss, (grad_1, grad_2)): the gradients of "
    "the two differentiable arguments named in the summary, in argument order, each of its "
    "argument's shape (summed over the dimensions it was broadcast along); \"mean\"'s 1/N "
    "included, times grad_output; written into grad_out (a tuple of 2 arrays) when given."
)


def _pair_returns(fn):
    k = len(fn.spec.differentiable)
    if fn.family == "embedding":
        grads = ", ".join(fn.spec.differentiable)
        return [
            (
                "loss : NumPy scalar or ndarray",
                [
                    'A scalar for "mean"/"sum"; for "none" one loss per row, shape (N,) '
                    "(0-d for unbatched (D,) inputs)."
                ],
            ),
            (
                f"grads : tuple of {k} ndarrays",
                [
                    f"Only with return_grad=True: the gradients of {grads}, each of its "
                    "argument's shape, times grad_output; written into grad_out when given."
                ],
            ),
        ]
    return [
        (
            "loss : NumPy scalar or ndarray",
            [
                'A scalar of the working dtype for "mean"/"sum"; for "none" an array of the '
                "inputs' broadcast shape."
            ],
        ),
        ("grads : tuple of 2 ndarrays", [_PAIR_RETURNS_GRAD]),
    ]


def _loss_raises(fn):
    value = (
        "Shapes that do not match, an unknown reduction, an option outside its range, "
        "grad_output or grad_out without return_grad=True"
    )
    if fn.spec.input_domain == "prob":
        value += ", an input outside [0, 1]"
    if fn.class_or_prob:
        value += ", a nonnegative ignore_index with probability targets"
    raises = [
        (
            "TypeError",
            [
                "Non-numeric arrays, an option of the wrong type, a torch tensor "
                "that requires grad (pass .detach(), or use fastloss.torch)."
            ],
        ),
        ("ValueError", [value + "."]),
    ]
    if fn.family == "class":
        raises.append(("IndexError", ["A class index outside [0, C) that is not ignore_index."]))
    if fn.family == "margin" and fn.spec.target_domain in ("class", "multilabel"):
        lo = "0" if fn.spec.target_domain == "class" else "-1"
        raises.append(("IndexError", [f"A target entry outside [{lo}, C) (as torch)."]))
    return raises


def _torch_lines(fn):
    """The "torch equivalent:" line (the peer alone on it), then the fastloss.torch bridge."""
    spec = fn.spec
    if spec is None:
        return []
    peer = spec.torch_name
    if peer is None:
        peer = "none in torch itself"
    elif spec.family == "axis":
        peer = _TORCH_AXIS.get(spec.name, f"torch.{peer}(x, dim=axis)")
    elif "." not in peer:
        peer = f"torch.nn.functional.{peer}"
    lines = [f"torch equivalent: {peer}"]
    if spec.torch_module:
        lines += _wrap(
            f"With torch tensors and autograd: fastloss.torch.{spec.name}, "
            f"fastloss.torch.{spec.torch_module}."
        )
    return lines + [""]


_TORCH_AXIS = {
    "softmax": "torch.softmax(x, dim=axis)",
    "log_softmax": "torch.log_softmax(x, dim=axis)",
    "logsumexp": "torch.logsumexp(x, dim=axis, keepdim=keepdims)",
}


class _Prose:
    def __init__(self, summary, formula="", notes=(), example="", returns=None, raises=None):
        self.summary = summary
        self.formula = formula
        self.notes = notes
        self.example = example
        self.returns = returns  # [(head, [paragraphs])] for functions without a loss row
        self.raises = raises


# example pieces, indented like the examples they start (one block for inspect.cleandoc)
_SETUP = """
        >>> import numpy as np
        >>> import fastloss"""
_IMPORT = """
        >>> import fastloss"""
_LOGITS = """
        >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        >>> y = np.array([0, 2])"""
_IGNORED_NAN = (
    "Ignored samples get loss 0 and gradient 0 even when their row holds NaN (torch's "
    "backward leaks NaN into such a row's gradient)."
)

_PROSE = {
    "cross_entropy": _Prose(
        "Softmax cross entropy from logits, one fused pass (value and gradient).",
        """
        p_i = softmax(input_i) over the C classes, w = weight (1 if None),
        ε = label_smoothing.  Class-index targets y:
          loss_i = (1-ε) w[y_i] (-log p_i[y_i]) + (ε/C) Σ_c w[c] (-log p_i[c])
        Probability targets t, with t' = (1-ε) t + ε/C:
          loss_i = -Σ_c w[c] t'_i[c] log p_i[c]
        """,
        (
            "With probability targets, a term whose coefficient w[c] t'_i[c] is 0 "
            "contributes 0 even where log p = -inf (torch: NaN).",
            _IGNORED_NAN,
        ),
        _SETUP
        + _LOGITS
        + """
        >>> print(np.round(fastloss.cross_entropy(x, y), 4))
        0.2056
        >>> loss, grad = fastloss.cross_entropy(x, y, return_grad=True)
        >>> print(np.round(grad, 4))
        [[-0.1072  0.0876  0.0196]
         [ 0.021   0.0571 -0.0781]]
        >>> t = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])
        >>> print(np.round(fastloss.cross_entropy(x, t, reduction="none"), 4))
        [0.3913 0.5698]
        """,
    ),
    "nll_loss": _Prose(
        "Negative log-likelihood of the target class, on log-probabilities.",
        """
        w = weight (1 if None), y = target:
          loss_i = -w[y_i] input[i, y_i]   (0 where y_i == ignore_index)
        """,
        (_IGNORED_NAN,),
        _SETUP
        + """
        >>> logp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
        >>> y = np.array([0, 2])
        >>> print(np.round(fastloss.nll_loss(logp, y, reduction="none"), 4))
        [0.3567 0.5108]
        >>> w = np.array([1.0, 1.0, 3.0])
        >>> print(np.round(fastloss.nll_loss(logp, y, weight=w), 4))
        0.4723
        """,
    ),
    "focal_loss": _Prose(
        "Multi-class softmax focal loss (Lin et al. 2017), from logits.",
        """
        p_i = softmax(input_i), w = weight (1 if None), γ = gamma:
          loss_i = -w[y_i] (1 - p_i[y_i])^γ log p_i[y_i]   (0 where ignored)
        gamma=0 is cross_entropy (same "mean" denominator Σ w[y_i]).
        """,
        (
            "Values and gradients stay finite at saturated logits for every gamma >= 0 "
            "(also gamma < 1), where the composed torch formula gives NaN.",
            _IGNORED_NAN,
        ),
        _SETUP
        + _LOGITS
        + """
        >>> print(np.round(fastloss.focal_loss(x, y, reduction="none"), 4))
        [0.0111 0.0041]
        >>> print(np.round(fastloss.focal_loss(x, y, gamma=0.0), 4))
        0.2056
        """,
    ),
    "sigmoid_focal_loss": _Prose(
        "Sigmoid focal loss (Lin et al. 2017) from logits, as torchvision's.",
        """
        p = sigmoid(input), t = target, γ = gamma,
        ce  = -t log p - (1-t) log(1-p)        (binary cross entropy)
        p_t = p t + (1-p)(1-t),   α_t = α t + (1-α)(1-t)   (1 if α < 0)
          loss = α_t (1 - p_t)^γ ce
        """,
        (
            "A term whose target coefficient is 0 contributes 0, so input = +-inf with an "
            "agreeing target gives loss 0 and gradient 0 (torch: NaN).",
            "Values and gradients stay finite at saturated logits for every gamma >= 0.",
            "alpha above 1, +inf or NaN raises ValueError (torchvision raises too).",
        ),
        _SETUP
        + """
        >>> x = np.array([2.0, -1.0, 0.5])
        >>> t = np.array([1.0, 0.0, 0.0])
        >>> print(np.round(fastloss.sigmoid_focal_loss(x, t), 4))
        [0.0005 0.017  0.2831]
        >>> print(np.round(fastloss.sigmoid_focal_loss(x, t, reduction="sum"), 4))
        0.3005
        """,
    ),
    "binary_cross_entropy": _Prose(
        "Binary cross entropy on probabilities.",
        """
        w = weight (1 if None), t = target, each log clamped at -100 like torch:
          loss = -w (t max(log input, -100) + (1-t) max(log(1 - input), -100))
        """,
        (
            "The gradient w (x - t) / max(x (1 - x), 1e-12) uses torch's float32 "
            "epsilon, so it matches torch's also at x = 0 and x = 1.",
        ),
        _SETUP
        + """
        >>> p = np.array([0.9, 0.2, 0.6])
        >>> t = np.array([1.0, 0.0, 1.0])
        >>> print(np.round(fastloss.binary_cross_entropy(p, t), 4))
        0.2798
        >>> _, grad = fastloss.binary_cross_entropy(p, t, return_grad=True)
        >>> print(np.round(grad, 4))
        [-0.3704  0.4167 -0.5556]
        """,
    ),
    "binary_cross_entropy_with_logits": _Prose(
        "Binary cross entropy from logits (sigmoid fused in, never overflows).",
        """
        w = weight, pw = pos_weight (1 if None), t = target,
        softplus(z) = log(1 + exp(z)):
          loss = w (pw t softplus(-input) + (1-t) softplus(input))
        """,
        (
            "A term whose coefficient is 0 contributes 0, so input = +-inf with an agreeing "
            "target gives loss 0 and gradient 0 (torch: NaN).",
        ),
        _SETUP
        + """
        >>> x = np.array([[1.5, -0.5], [-2.0, 0.3]])
        >>> t = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> bce = fastloss.binary_cross_entropy_with_logits
        >>> print(np.round(bce(x, t), 4))
        0.3392
        >>> print(np.round(bce(x, t, pos_weight=np.array([1.0, 3.0])), 4))
        0.6164
        """,
    ),
    "mse_loss": _Prose(
        "Mean squared error.",
        """
        w = weight (1 if None):   loss = w (input - target)^2
        """,
        (),
        _SETUP
        + """
        >>> x = np.array([1.0, 2.0, 4.0])
        >>> t = np.array([1.5, 2.0, 2.0])
        >>> print(np.round(fastloss.mse_loss(x, t), 4))
        1.4167
        >>> print(fastloss.mse_loss(x, t, weight=np.array([1.0, 1.0, 2.0])))
        2.0625
        """,
    ),
    "l1_loss": _Prose(
        "Mean absolute error.",
        """
        w = weight (1 if None):   loss = w |input - target|
        gradient w sign(input - target), with sign(0) = 0 as in torch
        """,
        ("The gradient is NaN where input - target is NaN (torch's gives 0 there).",),
        _SETUP
        + """
        >>> x = np.array([1.0, 2.0, 4.0])
        >>> t = np.array([1.5, 2.0, 2.0])
        >>> print(fastloss.l1_loss(x, t, reduction="none"))
        [0.5 0.  2. ]
        >>> _, grad = fastloss.l1_loss(x, t, reduction="sum", return_grad=True)
        >>> print(grad)
        [-1.  0.  1.]
        """,
    ),
    "smooth_l1_loss": _Prose(
        "Smooth L1 loss: quadratic below beta, linear above.",
        """
        d = |input - target|, β = beta:
          loss = 0.5 d^2 / β   if d < β
                 d - 0.5 β     otherwise          (β = 0: l1_loss)
        """,
        ("With beta=0 the gradient is NaN where input - target is NaN (as l1_loss).",),
        _SETUP
        + """
        >>> x = np.array([1.0, 2.0, 4.0])
        >>> t = np.array([1.5, 2.0, 2.0])
        >>> print(fastloss.smooth_l1_loss(x, t, reduction="none"))
        [0.125 0.    1.5  ]
        >>> print(fastloss.smooth_l1_loss(x, t, beta=0.5, reduction="none"))
        [0.25 0.   1.75]
        """,
    ),
    "huber_loss": _Prose(
        "Huber loss: quadratic below delta, linear above.",
        """
        d = |input - target|, δ = delta, w = weight (1 if None):
          loss = w 0.5 d^2             if d < δ
                 w δ (d - 0.5 δ)       otherwise
        """,
        (),
        _SETUP
        + """
        >>> x = np.array([1.0, 2.0, 4.0])
        >>> t = np.array([1.5, 2.0, 2.0])
        >>> print(fastloss.huber_loss(x, t, reduction="none"))
        [0.125 0.    1.5  ]
        >>> print(fastloss.huber_loss(x, t, delta=2.0, reduction="none"))
        [0.125 0.    2.   ]
        """,
    ),
    "kl_div": _Prose(
        "Kullback-Leibler divergence KL(target || exp(input)), input = log q.",
        """
        log_target=False:  loss = t (log t - input)        (0 where t == 0)
        log_target=True:   loss = exp(t) (t - input)       (0 where exp(t) == 0)
        """,
        (
            "An element whose target probability is 0 contributes 0 unless input is NaN, "
            "also where input = -inf (torch: NaN there, and with log_target=True wherever "
            "target = -inf).",
        ),
        _SETUP
        + """
        >>> logq = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
        >>> p = np.array([[0.25, 0.75], [1.0, 0.0]])
        >>> print(np.round(fastloss.kl_div(logq, p, reduction="batchmean"), 4))
        0.1181
        >>> with np.errstate(divide="ignore"):
        ...     lp = np.log(p)  # log 0 = -inf: that term is 0 (torch: nan)
        >>> kl = fastloss.kl_div(logq, lp, log_target=True, reduction="sum")
        >>> print(np.round(kl, 4))
        0.2362
        """,
    ),
    "soft_margin_loss": _Prose(
        "Two-class logistic loss for targets -1 / +1.",
        """
        y = target:   loss = log(1 + exp(-y input)) = softplus(-y input),
        softplus(z) = max(z, 0) + log1p(exp(-|z|))   (never overflows)
        """,
        (
            "Finite where torch's literal log(1 + exp(-y x)) overflows to inf "
            "(-y x > 88 in float32).",
        ),
        _SETUP
        + """
        >>> x = np.array([2.0, -1.0, 0.5])
        >>> y = np.array([1.0, 1.0, -1.0])
        >>> print(np.round(fastloss.soft_margin_loss(x, y, reduction="none"), 4))
        [0.1269 1.3133 0.9741]
        """,
    ),
    "poisson_nll_loss": _Prose(
        "Negative log-likelihood of a Poisson distribution (count regression).",
        """
        log_input=True (input = log rate):  loss = exp(input) - t input
        log_input=False (input = rate):     loss = input - t log(input + eps)
        full=True adds t log t - t + log(2π t) / 2 where t > 1 (no gradient)
        """,
        ("A zero count contributes t (...) = 0 even where (...) is infinite (torch: NaN).",),
        _SETUP
        + """
        >>> x = np.array([0.5, -1.0, 2.0])
        >>> t = np.array([0.0, 1.0, 3.0])
        >>> loss = fastloss.poisson_nll_loss(x, t, reduction="none")
        >>> print(np.round(loss, 4))
        [1.6487 1.3679 1.3891]
        >>> loss = fastloss.poisson_nll_loss(x, t, full=True, reduction="none")
        >>> print(np.round(loss, 4))
        [1.6487 1.3679 3.1531]
        """,
    ),
    "hinge_embedding_loss": _Prose(
        "Hinge loss on distances of similar (y = 1) and dissimilar pairs.",
        """
        y = target:   loss = [y != 1] max(0, margin - input) + [y != -1] input
        (a target other than ±1 gets both terms, as torch)
        """,
        (),
        _SETUP
        + """
        >>> x = np.array([0.3, 2.0, -0.5])
        >>> y = np.array([1.0, -1.0, -1.0])
        >>> loss = fastloss.hinge_embedding_loss(x, y, reduction="none")
        >>> print(np.round(loss, 4))
        [0.3 0.  1.5]
        """,
    ),
    "margin_ranking_loss": _Prose(
        "Ranking hinge loss; gradients of input1 and input2 from one pass.",
        """
        y = target:   loss = max(0, margin - y (input1 - input2))
        (the gradient passes where the argument is 0, as torch's)
        """,
        (),
        _SETUP
        + """
        >>> x1 = np.array([0.5, -1.0, 2.0])
        >>> x2 = np.array([0.2, 0.3, 2.5])
        >>> y = np.array([1.0, -1.0, 1.0])
        >>> loss = fastloss.margin_ranking_loss(
        ...     x1, x2, y, margin=0.5, reduction="none")
        >>> print(np.round(loss, 4))
        [0.2 0.  1. ]
        >>> loss, (g1, g2) = fastloss.margin_ranking_loss(
        ...     x1, x2, y, return_grad=True)
        >>> print(np.round(g1, 4) + 0.0, np.round(g2, 4) + 0.0)
        [ 0.      0.     -0.3333] [0.     0.     0.3333]
        """,
    ),
    "gaussian_nll_loss": _Prose(
        "Gaussian negative log-likelihood; gradients of input and var in one pass.",
        """
        v = max(var, eps):   loss = (log v + (input - target)² / v) / 2
        full=True adds log(2π) / 2
        """,
        (
            "As torch, var is clamped at eps without stopping its gradient: d loss / d var "
            "= (1/v - (input - target)² / v²) / 2 also where var < eps.",
        ),
        _SETUP
        + """
        >>> x = np.array([[0.5, 1.0], [2.0, -1.0]])
        >>> t = np.array([[0.0, 1.5], [2.5, -1.0]])
        >>> var = np.array([0.5, 2.0])  # one per row
        >>> loss = fastloss.gaussian_nll_loss(x, t, var, reduction="none")
        >>> print(np.round(loss, 4))
        [[-0.0966 -0.0966]
         [ 0.4091  0.3466]]
        """,
    ),
    "cosine_embedding_loss": _Prose(
        "Cosine embedding loss on rows; gradients of both inputs in one pass.",
        """
        cos = <x1, x2> / sqrt((|x1|² + e)(|x2|² + e)),  e = 1e-12 (torch's)
        loss = 1 - cos (y = 1),  max(0, cos - margin) (y = -1),  0 (other y)
        """,
        (),
        _SETUP
        + """
        >>> x1 = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])
        >>> x2 = np.array([[0.5, 1.0, 1.0], [1.0, 1.0, -0.5]])
        >>> y = np.array([1.0, -1.0])
        >>> loss = fastloss.cosine_embedding_loss(x1, x2, y, reduction="none")
        >>> print(np.round(loss, 4))
        [0.1271 0.    ]
        """,
    ),
    "triplet_margin_loss": _Prose(
        "Triplet margin loss; gradients of anchor, positive, negative in one pass.",
        """
        d(u, w) = ||u - w + eps||_p   (torch's pairwise_distance)
        loss = max(0, margin + d(a, p) - d(a, n))
        swap=True: d(a, n) -> min(d(a, n), d(p, n))
        """,
        ("p <= 0 runs on the NumPy reference (the kernel's norms need p > 0 or inf).",),
        _SETUP
        + """
        >>> a = np.array([[0.0, 1.0], [1.0, 1.0]])
        >>> p = np.array([[0.0, 1.5], [2.0, 1.0]])
        >>> n = np.array([[1.0, 1.0], [1.0, 0.0]])
        >>> loss = fastloss.triplet_margin_loss(a, p, n, reduction="none")
        >>> print(np.round(loss, 4))
        [0.5 1. ]
        """,
    ),
    "triplet_margin_with_distance_loss": _Prose(
        "Triplet margin loss with a chosen distance (default euclidean).",
        """
        loss = max(0, margin + d(a, p) - d(a, n)),  d = distance_function
        """,
        (
            'None / "euclidean" run on the fused kernel; "cosine" (1 - cosine similarity) '
            "and callables on the NumPy reference.",
        ),
        _SETUP
        + """
        >>> a = np.array([[0.0, 1.0], [1.0, 1.0]])
        >>> p = np.array([[0.0, 1.5], [2.0, 1.0]])
        >>> n = np.array([[1.0, 1.0], [1.0, 0.0]])
        >>> loss = fastloss.triplet_margin_with_distance_loss(
        ...     a, p, n, reduction="none")
        >>> print(np.round(loss, 4))
        [0.5 1. ]
        """,
    ),
    "multi_margin_loss": _Prose(
        "Multi-class margin (hinge) loss on rows of C class scores, one fused pass.",
        """
        loss_n = (1/C) Σ_{i != y} w[y] max(0, margin - x_y + x_i)^p,  p = 1 or 2
        grad: w[y] (1 or 2 z) / C on x_i where z > 0 (strict, as torch),
              minus their sum on x_y
        """,
        (
            'w[y] multiplies the whole power and "mean" is the plain mean over rows, as '
            "torch's kernel does.",
            "A NaN term gives a NaN loss and gradient (torch's kernel skips it).",
        ),
        _SETUP
        + """
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8], [0.5, -1.0, 0.3, 0.0]])
        >>> y = np.array([3, 0])
        >>> loss = fastloss.multi_margin_loss(x, y, reduction="none")
        >>> print(np.round(loss, 4))
        [0.325 0.325]
        """,
    ),
    "multilabel_margin_loss": _Prose(
        "Multi-label margin (hinge) loss: listed classes against the others, per row.",
        """
        J = the row's target entries before its first -1
        I = the classes not in J
        loss_n = (1/C) Σ_{j in J} Σ_{i in I} max(0, 1 - x_j + x_i)
        grad: +1/C on x_i, -1/C on x_j per pair with z > 0 (strict, as torch)
        """,
        ("A NaN term gives a NaN loss and gradient (torch's kernel skips it).",),
        _SETUP
        + """
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8], [0.5, -1.0, 0.3, 0.0]])
        >>> t = np.array([[3, 0, -1, 1], [0, 2, -1, -1]])
        >>> loss = fastloss.multilabel_margin_loss(x, t, reduction="none")
        >>> print(np.round(loss, 4))
        [0.85 0.3 ]
        """,
    ),
    "multilabel_soft_margin_loss": _Prose(
        "Multi-label soft margin loss: BCE with logits averaged over a row's classes.",
        """
        loss_n = (1/C) Σ_c w[c] (t_c softplus(-x_c) + (1 - t_c) softplus(x_c))
        grad = w[c] ((1 - t_c) σ(x_c) - t_c σ(-x_c)) / C
        """,
        (
            "A term whose target coefficient is 0 is exactly 0: x = ±inf with an agreeing "
            "0/1 target gives loss 0 (torch: NaN).",
        ),
        _SETUP
        + """
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8], [0.5, -1.0, 0.3, 0.0]])
        >>> t = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
        >>> loss = fastloss.multilabel_soft_margin_loss(x, t, reduction="none")
        >>> print(np.round(loss, 4))
        [0.6817 0.5087]
        """,
    ),
    "softmax": _Prose(
        "Softmax along an axis, max-shifted, one fused pass.",
        """
        m = max_k x_k along axis:
          softmax(x)_j = exp(x_j - m) / Σ_k exp(x_k - m)
        """,
        (
            "A slice holding NaN, +inf, or only -inf gives NaN (as torch). A 0-d x gives "
            "1.0 (as torch and scipy).",
        ),
        _SETUP
        + """
        >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        >>> print(np.round(fastloss.softmax(x), 4))
        [[0.09   0.2447 0.6652]
         [0.3333 0.3333 0.3333]]
        """,
    ),
    "log_softmax": _Prose(
        "Log-softmax along an axis, max-shifted, one fused pass.",
        """
        m = max_k x_k along axis:
          log_softmax(x)_j = (x_j - m) - log Σ_k exp(x_k - m)
        """,
        (
            "A slice holding NaN, +inf, or only -inf gives NaN (as torch). A 0-d x gives "
            "0.0 (as torch and scipy).",
        ),
        _SETUP
        + """
        >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        >>> print(np.round(fastloss.log_softmax(x), 4))
        [[-2.4076 -1.4076 -0.4076]
         [-1.0986 -1.0986 -1.0986]]
        """,
    ),
    "logsumexp": _Prose(
        "log(sum(exp(x))) along an axis, max-shifted, one fused pass.",
        """
        m = max_k x_k along axis (0 when m = +-inf):
          logsumexp(x) = m + log Σ_k exp(x_k - m)
        """,
        (
            "An all -inf (or empty) slice gives -inf, a slice with +inf gives +inf, a slice "
            "with NaN gives NaN (as torch). A 0-d x gives x.",
        ),
        _SETUP
        + """
        >>> x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
        >>> print(np.round(fastloss.logsumexp(x), 4))
        [3.4076 1.0986]
        >>> fastloss.logsumexp(x, axis=0, keepdims=True).shape
        (1, 3)
        """,
    ),
    "evaluate": _Prose(
        "Evaluate a loss (and accuracies) over whole arrays or files, chunk by chunk.",
        """
        Per chunk of rows: fastloss.<loss>(..., reduction="none"), summed in
        float64 with the normaliser of "mean", so that value equals
        fastloss.<loss>(whole arrays, reduction=reduction) without loading them.
        """,
        (
            "Class-index targets (multi_margin_loss's too) also count top-1 / top-k "
            "accuracy, per-class statistics and the mean entropy; the multi-label margin "
            "losses report the loss only; binary losses (those with a threshold) count "
            "accuracy at the threshold "
            + ", ".join(
                f"{s.name} {s.binary_threshold}"
                for s in _losses.losses("elementwise")
                if s.binary_threshold is not None
            )
            + " (input above it: positive).",
            "The command line `fastloss eval` runs this function.",
        ),
        _SETUP
        + """
        >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 2.0, 0.0]])
        >>> r = fastloss.evaluate("cross_entropy", x, np.array([0, 2, 0]))
        >>> print(round(r["mean"], 4), r["n_samples"], round(r["accuracy"], 4))
        0.6063 3 0.6667
        """,
        returns=[
            (
                "dict",
                [
                    "loss, reduction, value (the chosen reduction), mean, sum (and batchmean "
                    "where the loss has it), normalizer, n_samples, n_ignored, target_kind, "
                    "n_classes, accuracy, error_rate, top_k_accuracy ({k: accuracy}), "
                    "mean_entropy (class losses: of softmax(logits), in nats), per_class, "
                    "options (every option's effective value), files, shapes, "
                    "dtypes, chunk_rows, n_chunks, threads, fastloss_version, elapsed_s."
                ],
            ),
        ],
        raises=[
            (
                "EvalOptionError, EvalOptionTypeError",
                [
                    "A bad option: an unknown loss, an option the loss does not take, a value out "
                    "of range (a ValueError) or of the wrong type (a TypeError)."
                ],
            ),
            ("FileNotFoundError", ["A path that does not exist."]),
            (
                "ValueError, TypeError, IndexError",
                [
                    "Bad data: a corrupt or truncated file, a wrong shape or dtype, a target out "
                    "of range."
                ],
            ),
        ],
    ),
    "set_num_threads": _Prose(
        "Set the number of threads the kernels may use.",
        notes=(
            "Inputs below about 32k elements always run on one thread.",
            "A process forked from one that already ran fastloss on several threads starts "
            "at 1 thread: GNU OpenMP's pool does not survive fork(). Use the 'spawn' or "
            "'forkserver' start method for multi-threaded workers.",
        ),
        example=_IMPORT
        + """
        >>> old = fastloss.get_num_threads()
        >>> fastloss.set_num_threads(1)
        >>> fastloss.get_num_threads()
        1
        >>> fastloss.set_num_threads(old)
        """,
        returns=[],
        raises=[("ValueError", ["n is not an int in [1, 4096]."])],
    ),
    "get_num_threads": _Prose(
        "The number of threads the kernels may use.",
        example=_IMPORT
        + """
        >>> fastloss.get_num_threads() >= 1
        True
        """,
        returns=[("int", ["Set by set_num_threads; at import, the usable CPUs."])],
        raises=[],
    ),
    "set_backend": _Prose(
        "Select the backend of the public API for the whole process.",
        notes=(
            "FASTLOSS_BACKEND=reference in the environment selects the reference backend "
            "at import; use_backend overrides it for a block.",
        ),
        example=_IMPORT
        + """
        >>> old = fastloss.get_backend()
        >>> fastloss.set_backend("reference")
        >>> fastloss.get_backend()
        'reference'
        >>> fastloss.set_backend(old)
        """,
        returns=[],
        raises=[
            ("ValueError", ["An unknown backend name."]),
            ("RuntimeError", ['"compiled" when the compiled kernels are not installed.']),
        ],
    ),
    "get_backend": _Prose(
        "The backend the public API runs on in the current thread or context.",
        example=_IMPORT
        + """
        >>> fastloss.get_backend() in ("compiled", "reference")
        True
        """,
        returns=[("str", ['"compiled" or "reference".'])],
        raises=[],
    ),
    "use_backend": _Prose(
        "Context manager: run the public API on another backend inside a block.",
        notes=("The override is local to the current thread or task (a contextvars.ContextVar).",),
        example=_IMPORT
        + """
        >>> with fastloss.use_backend("reference"):
        ...     print(fastloss.get_backend())
        reference
        """,
        returns=[("context manager", ["Restores the previous backend on exit."])],
        raises=[
            ("ValueError", ["An unknown backend name."]),
            ("RuntimeError", ['"compiled" when the compiled kernels are not installed.']),
        ],
    ),
    "show_config": _Prose(
        "Print the version, backend, OpenMP, thread count and SIMD path in use.",
        example=_IMPORT
        + """
        >>> fastloss.show_config()  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
        version: ...
        backend: ...
        """,
        returns=[("None", ["Prints config()'s items, one per line."])],
        raises=[],
    ),
    "config": _Prose(
        "Build and runtime facts, as a dict (what show_config prints).",
        example=_IMPORT
        + """
        >>> info = fastloss.config()
        >>> info["version"] == fastloss.__version__
        True
        """,
        returns=[
            (
                "dict",
                [
                    "version, backend, kernels (the extension's path), openmp, threads, simd (the "
                    "SIMD path in use), simd_built (the paths compiled in), numpy (its version)."
                ],
            ),
        ],
        raises=[],
    ),
}


# ----------------------------------------------------------------- assembly


def _section(title, entries):
    """A numpydoc section from [(head, [paragraph, ...])]."""
    if not entries:
        return []
    lines = [title, "-" * len(title)]
    for head, paragraphs in entries:
        lines += _wrap(head)
        for text in paragraphs:
            lines += _wrap(text, "    ")
    return lines + [""]


def docstring(name, func):
    """The docstring of the public function `func`, named `name` in fastloss.__all__."""
    fn = _Fn(name, func)
    prose = _PROSE[name]
    lines = _wrap(prose.summary) + [""]
    if prose.formula:
        lines += _block(prose.formula) + [""]
    lines += _torch_lines(fn)
    if fn.params:
        lines += ["Parameters", "----------"]
        for param in fn.params.values():
            lines += _param_lines(fn, param)
        lines.append("")
    if fn.family in ("class", "elementwise", "pair", "embedding", "margin"):
        multi = fn.family in ("pair", "embedding")
        lines += _section("Returns", _pair_returns(fn) if multi else _loss_returns(fn))
        lines += _section("Raises", _loss_raises(fn))
    elif fn.family == "axis":
        out = (
            "x's shape"
            if name != "logsumexp"
            else ("x's shape without axis (kept with length 1 when keepdims=True); () for a 0-d x")
        )
        lines += _section("Returns", [("ndarray", [f"Of {out}, in x's working dtype."])])
        lines += _section(
            "Raises",
            [
                ("TypeError", ["A non-numeric x or a non-integer axis."]),
                ("ValueError", ["axis out of bounds for x."]),
            ],
        )
    else:
        lines += _section("Returns", prose.returns)
        lines += _section("Raises", prose.raises)
    if prose.notes:
        lines += ["Notes", "-----"]
        for note in prose.notes:
            lines += _wrap(note, "  ", "- ")
        lines.append("")
    if prose.example:
        lines += ["Examples", "--------"] + _block(prose.example, "")
    return "\n".join(lines).rstrip()


def twin_docstring(name):
    """The docstring of ``fastloss.reference.<name>``: what it is, and where the docs are."""
    lines = [f"NumPy reference twin of fastloss.{name}.", ""]
    lines += _wrap(_PROSE[name].summary) + [""]
    lines += _wrap(
        f"Same signature, validation and results as fastloss.{name}, computed with the "
        "float64 NumPy math of fastloss/reference/_math.py instead of the compiled kernels "
        "(the tests' oracle). The results keep the input's working dtype."
    )
    lines.append("")
    lines += _wrap(f"See help(fastloss.{name}) for the formula, the options and an example.")
    return "\n".join(lines)


def attach(namespace):
    """Set the docstring of every public function in `namespace` (fastloss's globals: its
    ``__all__``) that has prose here, and of the twins in its ``reference``.  Idempotent:
    nothing is read from the old docstrings."""
    for name in namespace["__all__"]:
        func = namespace[name]
        if callable(func) and name in _PROSE:
            func.__doc__ = docstring(name, func)
    twins = namespace["reference"]
    for name in twins.__all__:
        getattr(twins, name).__doc__ = twin_docstring(name)


# ----------------------------------------------------------------- the metrics
# error_rate, accuracy and entropy (registry family "metric"): their parameter descriptions,
# option ranges and prose.  Their Returns / Raises sections are written out in the prose
# (docstring() takes them from there for every family other than class / elementwise / axis).

_RANGE.update({_losses.check_top_k: ">= 1", _losses.check_base: "> 0"})

_METRIC_TIES = (
    "Which classes scored exactly as the target rank above it: "
    '"argmax" those of lower index (np.argmax / torch.argmax pick the first maximum, so '
    "top-1 is the usual (input.argmax(axis) == target).mean()); "
    '"sklearn" those of higher index (the order of sklearn.metrics.top_k_accuracy_score); '
    '"pessimistic" all of them.'
)

_BY_FAMILY["metric"] = {
    "input": (
        "array_like, shape (N, C), (N, C, d1, ..., dk) or (C,)",
        "Class scores: logits or probabilities alike (only their order within a sample "
        f"matters, so no softmax is needed); C classes. {_DTYPES}",
    ),
    "target": (_class_target_type, _class_target_text),
    "top_k": (
        "int",
        "A sample is a hit when its target ranks among its top_k scores (rank < top_k; "
        "top_k >= C: every sample without NaN is a hit).",
    ),
    "sample_weight": (
        "array_like, shape (N, d1, ..., dk)",
        "Per-sample weights s_i, finite and >= 0, broadcastable to the per-sample values "
        '(None means all 1): "none" gives s_i times the hit or miss, "sum" their sum, '
        '"mean" that sum over Σ s_i of the samples not ignored (sklearn\'s sample_weight).',
    ),
    "ignore_index": (
        "int",
        'A target value whose samples are left out: value 0, and not counted in the "mean" '
        "denominator.",
    ),
    "ties": (lambda fn: _choices(_losses.TIE_POLICIES), _METRIC_TIES),
    "reduction": (
        lambda fn: _choices(fn.spec.reductions),
        lambda fn: (
            '"none": per sample, s_i times 1 for a '
            + ("hit" if fn.name == "accuracy" else "miss")
            + ' and 0 otherwise (0 where ignored); "sum": their sum (sklearn\'s '
            'normalize=False); "mean": their sum over Σ s_i of the samples not ignored (NaN '
            "when none is left)."
        ),
    ),
    "axis": (
        "int or None",
        "The class axis of input. None means torch's layout (axis 1, or 0 for an unbatched "
        "(C,) input); -1 reads a channel-last (N, d1, ..., dk, C) input in place, without a "
        "transposing copy. target and the per-sample values have input's shape without "
        "this axis.",
    ),
}

_BY_FUNCTION["entropy"] = {
    "input": (
        "array_like, any shape",
        "Logits (from_logits=True; -inf masks a class out), or non-negative weights that are "
        f"normalised along axis (from_logits=False). {_DTYPES}",
    ),
    "axis": (
        "int",
        "The class axis, read in place (no transposing copy); -1, the last, is the C of "
        "(N, C) rows. Note: scipy.stats.entropy defaults to axis=0.",
    ),
    "base": (
        "float",
        "The base of the logarithm, other than 1: 2 gives bits; None gives nats (the natural log).",
    ),
    "from_logits": (
        "bool",
        "True: p = softmax(input). False: p = input / Σ input (as scipy.stats.entropy and "
        "torch's Categorical(probs=...)); the gradient is then d H / d input.",
    ),
    "reduction": (
        lambda fn: _choices(fn.spec.reductions),
        '"none": H of each distribution (input\'s shape without axis); "sum": their sum; '
        '"mean": their mean.',
    ),
}


def _metric_raises(extra=()):
    return [
        (
            "TypeError",
            [
                "Non-numeric arrays, an option of the wrong type, a torch tensor that requires "
                "grad (pass .detach())."
            ],
        ),
        (
            "ValueError",
            [
                "Shapes that do not match, an unknown reduction, an option outside its range"
                + "".join(extra)
                + "."
            ],
        ),
    ]


def _rank_prose(name, counted, example):
    what = "hits" if counted == "hit" else "misses"
    miss = "\n          miss_i = 1 - hit_i"
    return _Prose(
        (
            "Top-k classification error rate from class scores, in one pass (no sort)."
            if name == "error_rate"
            else "Top-k accuracy from class scores, in one pass (no sort)."
        ),
        f"""
        per sample i (target y, scores s, s_i = sample_weight or 1):
          rank_i = #{{j : s_j > s_y}} + #{{j != y : s_j == s_y, by ties}}
          hit_i  = rank_i < top_k and no s_j is NaN{"" if counted == "hit" else miss}
        "mean" = Σ s_i {counted}_i / Σ s_i over the samples not ignored
        """,
        (
            'Top-1 with ties="argmax" (the default) is sklearn.metrics.'
            + ("zero_one_loss" if name == "error_rate" else "accuracy_score")
            + "(target, input.argmax(axis)); with "
            'ties="sklearn", '
            + ("1 - " if name == "error_rate" else "")
            + "sklearn.metrics.top_k_accuracy_score(target, input, k=top_k) (2-d input). "
            "torch.topk follows neither: its order among ties is unspecified.",
            "A sample with a NaN score is a miss under every tie policy (sklearn rejects NaN; "
            "argmax would pick the NaN's class).",
            f"The {what} are counted by one read of the scores (no argsort); accuracy and "
            "error_rate have no gradient (they are piecewise constant).",
        ),
        _SETUP + example,
        returns=[
            (
                f"{'error' if name == 'error_rate' else 'accuracy'} : NumPy scalar or ndarray",
                [
                    'A scalar of input\'s working dtype for "mean"/"sum"; for "none" an '
                    f"array of input's shape without the class axis, {_SHAPES_CLASS}."
                ],
            )
        ],
        raises=_metric_raises()
        + [("IndexError", ["A class index outside [0, C) that is not ignore_index."])],
    )


_PROSE.update(
    {
        "error_rate": _rank_prose(
            "error_rate",
            "miss",
            """
        >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
        >>> y = np.array([0, 1, 1])
        >>> print(np.round(fastloss.error_rate(x, y), 4))
        0.6667
        >>> print(np.round(fastloss.error_rate(x, y, ties="sklearn"), 4))
        0.3333
        >>> print(fastloss.error_rate(x, y, top_k=2, reduction="none"))
        [0. 0. 0.]
        """,
        ),
        "accuracy": _rank_prose(
            "accuracy",
            "hit",
            """
        >>> x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
        >>> y = np.array([0, 1, 1])
        >>> print(np.round(fastloss.accuracy(x, y), 4))
        0.3333
        >>> print(fastloss.accuracy(x, y, ties="pessimistic", reduction="none"))
        [1. 0. 0.]
        >>> w = np.array([1.0, 0.0, 3.0])
        >>> print(fastloss.accuracy(x, y, sample_weight=w, ties="sklearn"))
        1.0
        """,
        ),
        "entropy": _Prose(
            "Shannon entropy of softmax(input) along an axis, with its gradient.",
            """
            p = softmax(input) along axis   (from_logits=False: input / Σ input)
            h = -Σ_k p_k log p_k   (nats; 0 log 0 = 0),   H = h / log(base)
            dH/dinput_k = -p_k (log p_k + h) / log(base)   (from logits)
            """,
            (
                "Agrees with scipy.stats.entropy(p, base=base, axis=axis) and torch's "
                "Categorical(logits=input).entropy(); scipy's axis defaults to 0, this one to "
                "the last axis.",
                "A masked logit (-inf) contributes 0 and gets gradient 0: finite where torch's "
                "Categorical, which clamps -inf to the dtype's smallest value, gives a NaN "
                "gradient for an upstream gradient above 1. A distribution with NaN, +inf or "
                "only -inf logits has H = NaN and an all-NaN gradient.",
                "H = log1p(R) - T / Z keeps a dominant class's tiny entropy to full precision "
                "(see reference/_metrics.py). One pass for H, a second from cache for the "
                "gradient; from_logits=False adds NumPy's log of input before it and the "
                "division by input after it (a zero weight keeps gradient 0).",
            ),
            _SETUP
            + """
        >>> x = np.array([[0.0, 0.0], [1.0, -1.0]])
        >>> print(np.round(fastloss.entropy(x), 4))
        [0.6931 0.3653]
        >>> p = np.array([0.5, 0.25, 0.25])
        >>> print(np.round(fastloss.entropy(p, from_logits=False, base=2), 4))
        1.5
        >>> H, g = fastloss.entropy(x, reduction="sum", return_grad=True)
        >>> print(np.round(g[1], 4))
        [-0.21  0.21]
            """,
            returns=[
                (
                    "H : NumPy scalar or ndarray",
                    [
                        'A scalar of input\'s working dtype for "mean"/"sum"; for "none" an '
                        "array of input's shape without axis (() for a 1-d input)."
                    ],
                ),
                (
                    "grad : ndarray, input's shape and working dtype",
                    [
                        "Only with return_grad=True, which returns the pair (H, grad): dH/d(input) "
                        'for the chosen reduction ("mean"\'s 1/n included; for "none", of the sum '
                        "of the H), times grad_output; grad_out when given."
                    ],
                ),
            ],
            raises=_metric_raises(
                (", base 1 or not finite", ", grad_output or grad_out without return_grad=True")
            ),
        ),
    }
)


# ----------------------------------------------------------------- CTC
# ctc_loss (registry family "ctc"): its parameter descriptions and prose, Returns and Raises
# written out (it has four array arguments and per-sample normalisation of its own).

_BY_FAMILY["ctc"] = {
    "log_probs": (
        "array_like, shape (T, N, C) or (T, C)",
        "Per frame and sample, log-probabilities over C classes (torch's layout: time "
        "first), or logits with from_logits=True. (T, C) is one unbatched sample. "
        f"{_DTYPES}",
    ),
    "targets": (
        "array_like of int, shape (N, S) or (sum(target_lengths),)",
        "The label sequences: padded rows (sample n's labels are targets[n, :target_lengths"
        "[n]], the rest is ignored) or all samples' labels concatenated; (S,) for an "
        "unbatched sample. Labels are class indices in [0, C) other than blank (torch does "
        "not check: IndexError / ValueError here).",
    ),
    "input_lengths": (
        "array_like of int, shape (N,)",
        "Frames of each sample, in [0, T] (an int for an unbatched sample). Frames past a "
        "sample's length are ignored and get gradient 0.",
    ),
    "target_lengths": (
        "array_like of int, shape (N,)",
        "Labels of each sample, >= 0 (an int for an unbatched sample).",
    ),
    "blank": ("int", "The class index of the blank, in [0, C)."),
    "reduction": (
        lambda fn: _choices(fn.spec.reductions),
        '"none": the per-sample losses; "sum": their sum; "mean" (torch\'s): each '
        "sample's loss divided by its target length (0 counts as 1), averaged over the batch.",
    ),
    "zero_infinity": (
        "bool",
        "Samples no alignment can produce (too few frames for their labels and the blanks "
        "between repeated labels) get loss 0 and gradient 0 instead of loss inf and a NaN "
        "gradient (as torch).",
    ),
    "from_logits": (
        "bool",
        "True: log_probs holds logits; the log-softmax over C is fused into the same pass "
        "and the gradient is w.r.t. the logits (what torch computes end to end through "
        "log_softmax).",
    ),
    "accumulate": (
        'None, "float32" or "float64"',
        "The dtype of the alpha-beta recursion. None: log_probs' working dtype (as torch). "
        '"float64" with float32 input: about 1.6x the time, the gradient exact to float32 '
        "rounding (relative error 2e-7 instead of about 1e-4 at T = 1000; torch's float32: "
        '6e-3); the results stay float32. "float32" with float64 input raises ValueError.',
    ),
}

_PROSE["ctc_loss"] = _Prose(
    "Connectionist temporal classification loss and its exact gradient.",
    """
    loss_n = -log Σ_{alignments π of targets_n} Π_{t < T_n} p_t(π_t)
    (π: the labels in order, blanks anywhere and between repeats)
    γ_t(c): the posterior probability that frame t emits class c
    d loss_n / d log_probs[t, n, c] = -γ_t(c)
    d loss_n / d logits[t, n, c]    = softmax(logits)[t, n, c] - γ_t(c)
    """,
    (
        "torch's F.ctc_loss returns exp(log_probs) - γ as the gradient w.r.t. log_probs: "
        "the gradient w.r.t. the logits, right only when log_probs come from log_softmax in "
        "the same autograd graph. This function returns the true d(loss)/d(log_probs), -γ "
        "(from_logits=False), or the gradient w.r.t. the logits (from_logits=True); chained "
        "through log_softmax, -γ gives torch's end-to-end result.",
        "Log-space alpha and beta recursions with the larger term factored out of every "
        "log-sum-exp; each input row is read once (from_logits: its log-sum-exp, the "
        "softmax written into the gradient row while in cache); samples are split over "
        "threads, each with O(T (S + 1)) scratch.",
        "A NaN in a sample's log-probabilities (its blank and labels; with from_logits any "
        "class) makes its loss and its gradient NaN.",
    ),
    _SETUP
    + """
        >>> logits = np.zeros((4, 1, 3))  # T = 4 frames, N = 1, C = 3 (blank 0):
        >>> # uniform p = 1/3, so exp(-loss) * 3**4 counts the alignments of [1, 2]
        >>> targets = np.array([[1, 2]])
        >>> loss, g = fastloss.ctc_loss(logits, targets, [4], [2], from_logits=True,
        ...                             reduction="sum", return_grad=True)
        >>> print(np.round(loss, 4), np.round(np.exp(-loss) * 3**4, 4))
        1.6864 15.0
        >>> print(np.allclose(g.sum(axis=-1), 0))  # per frame: p - occupancy
        True
    """,
    returns=[
        (
            "loss : NumPy scalar or ndarray",
            [
                'A scalar of log_probs\' working dtype for "mean"/"sum"; for "none" one loss '
                "per sample, shape (N,) (0-d for unbatched input). inf for a sample no "
                "alignment can produce (0 with zero_infinity)."
            ],
        ),
        (
            "grad : ndarray, log_probs' shape and working dtype",
            [
                "Only with return_grad=True, which returns (loss, grad): d(loss)/d(log_probs) "
                "(w.r.t. the logits with from_logits=True) for the chosen reduction, times "
                "grad_output; 0 on frames past input_lengths; grad_out when given (it may be "
                "log_probs itself)."
            ],
        ),
    ],
    raises=[
        (
            "TypeError",
            ["Non-numeric log_probs, non-integer targets or lengths, a tensor that requires grad."],
        ),
        (
            "ValueError",
            [
                "An empty log_probs, shapes that do not match, lengths out of range, blank "
                "out of range or inside targets, an unknown reduction, grad_output or grad_out "
                "without return_grad=True."
            ],
        ),
        ("IndexError", ["A label outside [0, C)."]),
        ("MemoryError", ["A thread's alignment tables could not be allocated."]),
    ],
)


# ----------------------------------------------------------------- the box losses
# iou_loss ... focal_eiou_loss (registry family "box") and focal_l1_loss (elementwise): their
# parameter descriptions and prose; the box losses' Returns / Raises are written out here.

_RANGE.update({_losses.check_focal_l1_beta: "in (0, 1)"})
_BOX_SHAPE = "array_like, shape (N, 4) or (4,)"
_BY_FAMILY["box"] = {
    "boxes1": (
        _BOX_SHAPE,
        'The predicted boxes (x1, y1, x2, y2), or (cx, cy, w, h) with fmt="cxcywh". ' + _DTYPES,
    ),
    "boxes2": (_BOX_SHAPE, "The target boxes, matched one to one with boxes1 (same shape)."),
    "reduction": (
        '{"none", "mean", "sum"}',
        '"none": one loss per box; "sum": their sum; "mean": their sum over the number of '
        "boxes, 0 for no box (torchvision's 0.0 * loss.sum()).",
    ),
    "eps": (
        "float",
        "Added to the union, the enclosing area or diagonal and (EIoU) the squared enclosing "
        "sides, where torchvision adds it (see the formula).",
    ),
    "fmt": (
        '{"xyxy", "cxcywh"}',
        "The boxes' layout: corners, or centre and size (converted as torchvision's "
        "box_convert, and the gradients taken by the given coordinates).",
    ),
    "weight": (
        "array_like, shape (N,)",
        'Per-box weights multiplying each box\'s loss and gradient (None: 1); "mean" still '
        "divides by the number of boxes.",
    ),
    "validate": (
        "bool",
        "True: raise ValueError for a box that is not finite or has x2 <= x1 or y2 <= y1 "
        "(w <= 0 or h <= 0); False (torchvision's behaviour): compute them as given.",
    ),
    "return_grad": (
        "bool",
        "Also return d(loss)/d(boxes1) (see Returns), from the same fused pass.",
    ),
    "grad_boxes2": (
        "bool",
        "With return_grad=True, return the gradients of both boxes1 and boxes2, from the "
        "same pass.",
    ),
    "grad_out": (
        "ndarray or tuple of 2 ndarrays",
        "Buffer(s) the gradient(s) are written into (each its boxes' shape, working dtype, "
        "C-contiguous; a box array itself computes in place); a tuple with grad_boxes2=True.",
    ),
    "ciou_alpha": (
        '{"torchvision", "mmdet", "yolo"}',
        "CIoU's weight alpha (a constant in the gradient): torchvision's v / (1 - IoU + v + "
        "eps), mmdetection's (IoU > 0.5) v / (1 - IoU + v) or YOLO's (Ultralytics, YOLOv5) "
        "v / (v - IoU + (1 + eps)).",
    ),
    "gamma": ("float", "γ: the exponent of the weight IoU^γ (0: the EIoU loss)."),
    "detach_weight": (
        "bool",
        "True (as every implementation in use): IoU^γ is a constant in the gradient. False: "
        "differentiate it too; its term is 0 where the boxes do not overlap (finite at "
        "IoU = 0, where torch's pow gives NaN), large for a tiny overlap when γ < 1.",
    ),
}
_BY_FUNCTION["focal_l1_loss"] = {
    "alpha": ("float", "α: the scale of the loss (> 0)."),
    "beta": (
        "float",
        "β in (0, 1): the curvature; α ln β = -1 (the defaults) makes the gradient 1 at "
        "|d| = 1 and beyond, like l1_loss; β <= 1/e keeps it increasing in |d|.",
    ),
}


def _box_returns(name):
    return [
        (
            "loss : NumPy scalar or ndarray",
            [
                'A scalar of the working dtype for "mean"/"sum"; for "none" one loss per box, '
                "shape (N,) (0-d for (4,) boxes)."
            ],
        ),
        (
            "grad : ndarray, or tuple of 2 ndarrays",
            [
                "Only with return_grad=True, which returns (loss, grad): d(loss)/d(boxes1) of "
                "boxes1's shape, or with grad_boxes2=True (loss, (grad_1, grad_2)); "
                '"mean"\'s 1/N and the weights included, times grad_output.'
            ],
        ),
    ]


_BOX_RAISES = [
    (
        "TypeError",
        ["Non-numeric arrays, an option of the wrong type, a torch tensor that requires grad."],
    ),
    (
        "ValueError",
        [
            "Boxes not of shape (N, 4) or (4,) or of different shapes, a weight that does not "
            "broadcast to (N,), an unknown reduction, fmt or ciou_alpha, a negative eps or "
            "gamma, grad_output / grad_out / grad_boxes2 without return_grad=True, and with "
            "validate=True a degenerate or non-finite box (naming it)."
        ],
    ),
]
_BOX_NOTES = (
    "Degenerate boxes (zero area, x2 < x1) are computed as torchvision does unless "
    "validate=True: e.g. [0, 0, 0, 0] against itself has GIoU loss 1 (pytorch/vision "
    "issue 7746).",
    "Gradients are torch autograd's through torchvision's formulas: a tie of torch.max / "
    "torch.min (pred == target) splits the gradient in halves, boxes that only touch get "
    "none through the intersection (its strict mask).",
)
_BOXES = """
        >>> b1 = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
        >>> b2 = np.array([[1.0, 1.0, 3.0, 3.0], [1.0, 0.0, 5.0, 3.0]])"""


def _box_prose(name, summary, formula, example, notes=()):
    call = f"fastloss.{name}(b1, b2)"
    return _Prose(
        summary,
        formula,
        notes + _BOX_NOTES,
        _SETUP + _BOXES + f"\n        >>> print(np.round({call}, 4))\n        {example}\n",
        returns=_box_returns(name),
        raises=_BOX_RAISES,
    )


_BOX_IOU = """
        I = intersection (0 unless min(x2) > max(x1) and min(y2) > max(y1))
        U = area1 + area2 - I,   IoU = I / (U + eps)"""
_PROSE.update(
    {
        "iou_loss": _box_prose(
            "iou_loss",
            "IoU loss of matched boxes, 1 - IoU, with its gradient in one pass.",
            _BOX_IOU + "\n        loss = 1 - IoU",
            "[0.8571 0.7143]",
            ("torchvision has the IoU (box_iou) but no IoU loss; eps as its other losses.",),
        ),
        "generalized_box_iou_loss": _box_prose(
            "generalized_box_iou_loss",
            "Generalized IoU loss of matched boxes (torchvision's), fused.",
            _BOX_IOU
            + "\n        C = area of the smallest enclosing box"
            + "\n        loss = 1 - (IoU - (C - U) / (C + eps))",
            "[1.0794 0.8393]",
        ),
        "distance_box_iou_loss": _box_prose(
            "distance_box_iou_loss",
            "Distance IoU loss of matched boxes (torchvision's), fused.",
            _BOX_IOU
            + "\n        ρ² = squared distance of the centres, cw, ch = enclosing box's sides"
            + "\n        loss = 1 - IoU + ρ² / (cw² + ch² + eps)",
            "[0.9683 0.7768]",
        ),
        "complete_box_iou_loss": _box_prose(
            "complete_box_iou_loss",
            "Complete IoU loss of matched boxes (torchvision's), fused.",
            _BOX_IOU
            + "\n        loss = DIoU loss + α v,  v = 4/π² (atan(w2/h2) - atan(w1/h1))²"
            + "\n        α = v / (1 - IoU + v + eps), a constant (no gradient)",
            "[0.9683 0.7796]",
            (
                "As torchvision, eps reaches only α: the IoU and the diagonal use 1e-7. "
                "A zero-height box gives NaN (w/h = 0/0 or its gradient), as torchvision.",
            ),
        ),
        "efficient_iou_loss": _box_prose(
            "efficient_iou_loss",
            "EIoU loss of matched boxes (Zhang et al.), fused.",
            _BOX_IOU
            + "\n        loss = 1 - IoU + ρ² / (cw² + ch² + eps)"
            + "\n               + (w1 - w2)² / (cw² + eps) + (h1 - h2)² / (ch² + eps)",
            "[0.9683 1.0268]",
            (
                "Zhang et al., Focal and Efficient IOU Loss for Accurate Bounding Box "
                "Regression (Neurocomputing 2022, arXiv 2101.08158); eps placed as the YOLO "
                "implementations do. Not mmdetection's EIoULoss (Extended-IoU).",
            ),
        ),
        "focal_eiou_loss": _box_prose(
            "focal_eiou_loss",
            "Focal-EIoU loss of matched boxes (Zhang et al.): IoU^γ times EIoU.",
            _BOX_IOU + "\n        loss = IoU^γ · EIoU loss   (IoU^γ detached by default)",
            "[0.366  0.5488]",
            (
                "The weight IoU^γ up-weights well-overlapping boxes; it is a constant in the "
                "gradient unless detach_weight=False (see detach_weight).",
            ),
        ),
        "focal_l1_loss": _Prose(
            "Focal L1 loss (Zhang et al.), elementwise, with its gradient in one pass.",
            """
            x = |input - target|
            loss = -α x² (2 ln(βx) - 1) / 4              (x <= 1)
                   -α ln(β) x + (2α ln(β) + α) / 4       (x > 1)
            d loss / dx = -α x ln(βx) (0 at x = 0), then -α ln(β)
            """,
            (
                "The regression loss of Zhang et al. (arXiv 2101.08158, section 'Focal L1 "
                "loss'), derived from the gradient magnitude g(x) = -α x ln(βx); the paper "
                "ties α ln β = -1 (the defaults: α = 1, β = 1/e). Not the Focal L1 of "
                "imbalanced regression (Yang et al. 2021).",
            ),
            _SETUP
            + """
        >>> x = np.array([0.0, 0.5, 2.0])
        >>> t = np.zeros(3)
        >>> print(np.round(fastloss.focal_l1_loss(x, t, reduction="none"), 4))
        [0.     0.2741 1.75  ]
        """,
        ),
    }
)


# ----------------------------------------------------------------- fused linear + CE
# linear_cross_entropy (registry family "linear"): torch's F.linear_cross_entropy in row
# chunks; its parameter descriptions and prose, Returns and Raises written out (three
# gradients, chunking options).

_BY_FAMILY["linear"] = {
    "return_grad": (
        "bool",
        "Also return the gradients w.r.t. input, linear_weight and linear_bias (see "
        "Returns), from the same chunks.",
    ),
    "input": (
        "array_like, shape (N, H) or (H,)",
        "Hidden states: N rows of H = in_features (one unbatched row). float32 and float64 "
        "are kept; float16, integer and bool compute in float32.",
    ),
    "linear_weight": (
        "array_like, shape (C, H) or (C, d1, ..., dk, H)",
        "The projection (torch.nn.Linear's weight): logits = input @ linear_weight.T. "
        "Must have input's working dtype (TypeError otherwise, as torch). With "
        "(C, d1, ..., dk, H) the logits are (N, C, d1, ..., dk), a K-dimensional loss "
        "(batched input only).",
    ),
    "target": (
        "array_like, shape (N,), (N, d1, ..., dk) or the logits' shape",
        "Class indices (any integer dtype) in [0, C) or equal to ignore_index, one per row "
        "(() for an unbatched input); or class probabilities (floating dtype) of the "
        "logits' shape (N, C, d1, ..., dk).",
    ),
    "linear_bias": (
        "array_like, shape (C,) or (C, d1, ..., dk)",
        "Added to the logits (None: no bias); its gradient is returned too.",
    ),
    "weight": (
        "array_like, shape (C,)",
        "Per-class weights w[c] (None: all 1), as cross_entropy's.",
    ),
    "reduction": (
        lambda fn: _choices(fn.spec.reductions),
        '"none": the per-row losses (shape (N,) or (N, d1, ..., dk)); "sum": their sum; '
        '"mean": their sum divided by Σ w[y_i] over the targets that are not '
        "ignore_index (their number without weight), by the number of rows with "
        "probability targets.",
    ),
    "ignore_index": (
        "int",
        "A target value whose rows are skipped: loss 0, gradients 0, left out of the "
        '"mean" denominator, and dropped before the projection (no GEMM work). None (as '
        "torch): -100 with class-index targets; with probability targets any other value "
        "raises ValueError, as torch.",
    ),
    "grad_output": (
        "float or array_like",
        "Upstream gradient scaling the gradients, never the loss (needs return_grad=True): "
        'a scalar for "mean"/"sum", an array of the loss\'s shape for "none" (each row\'s '
        "gradient scaled before the G.T @ input sum).",
    ),
    "grad_out": (
        "tuple of ndarrays",
        "(grad_input, grad_weight[, grad_bias]) buffers, each C-contiguous, of its "
        "argument's shape and the working dtype, written and returned (needs "
        "return_grad=True).",
    ),
    "return_metrics": (
        "str or sequence of str",
        '"error_rate", "accuracy" and/or "top<k>" (top-k accuracy, e.g. "top5") of the '
        "logits, from the same chunks (cross_entropy's return_metrics per chunk, counts "
        "added up): also return a dict of them, last in the result. Over the targets not "
        "ignored; class-index targets only.",
    ),
    "chunk_rows": (
        "int",
        "Rows of logits per chunk (>= 1). None: as many as max_memory allows.",
    ),
    "max_memory": (
        "float",
        "Bytes of the (chunk_rows, C) logits buffer, the only logits-sized memory used "
        "(ignored when chunk_rows is given). None: 64 MiB. Results do not depend on it "
        "beyond float rounding.",
    ),
}

_PROSE["linear_cross_entropy"] = _Prose(
    "Cross entropy of a linear projection, without materialising the logits.",
    """
    logits = input @ linear_weight.T + linear_bias      (N x C, never whole)
    loss   = cross_entropy(logits, target, weight, ignore_index,
                           label_smoothing, reduction)
    G = d loss / d logits, one row chunk at a time (in place), then
      d/d input = G @ W,  d/d linear_weight = G.T @ input,
      d/d linear_bias = Σ_rows G
    """,
    (
        "Row chunks: one GEMM into a reused (chunk_rows, C) buffer, the fused "
        'cross-entropy kernel turning it into G in place (the "mean" scale known up '
        "front), two GEMMs for the gradients; grad_weight is accumulated by BLAS (SciPy's "
        "gemm with beta = 1) without a C x H temporary per chunk. The time is the three "
        "GEMMs' (6 N C H flops); the memory one chunk of logits instead of N x C logits "
        "and their gradient (docs/performance.md).",
        "Without return_grad only the forward GEMM runs, one chunk at a time: per-row "
        'losses (reduction="none") and return_metrics for evaluation. Perplexity is '
        'np.exp of the "mean" loss.',
        'All targets ignored: "mean" is NaN and every gradient 0 (torch\'s chunked path '
        "gives NaN gradients there, its reference path 0).",
    ),
    _SETUP
    + """
        >>> rng = np.random.default_rng(0)
        >>> h = rng.standard_normal((6, 4))  # 6 rows of 4 hidden features
        >>> W = rng.standard_normal((10, 4))  # a vocabulary of 10
        >>> y = np.array([1, 5, 9, -100, 0, 3])  # row 3 ignored
        >>> loss = fastloss.linear_cross_entropy(h, W, y, chunk_rows=4)
        >>> z = h @ W.T  # the unfused way
        >>> print(np.isclose(loss, fastloss.cross_entropy(z, y)))
        True
        >>> loss, (gh, gW, gb) = fastloss.linear_cross_entropy(
        ...     h, W, y, return_grad=True)
        >>> print(gh.shape, gW.shape, gb, np.round(gh[3], 4))
        (6, 4) (10, 4) None [0. 0. 0. 0.]
        >>> ppl = np.exp(fastloss.linear_cross_entropy(h, W, y))  # perplexity
    """,
    returns=[
        (
            "loss : NumPy scalar or ndarray",
            [
                'A scalar of input\'s working dtype for "mean"/"sum"; for "none" one loss '
                "per row, shape (N,) or (N, d1, ..., dk) (0-d for an unbatched input)."
            ],
        ),
        (
            "grads : tuple (grad_input, grad_weight, grad_bias)",
            [
                "Only with return_grad=True, which returns (loss, grads): the gradients "
                "w.r.t. input, linear_weight and linear_bias (None without a bias), each "
                "of its argument's shape and the working dtype, for the chosen reduction "
                '("mean"\'s 1/Σw included), times grad_output; grad_out when given.'
            ],
        ),
        (
            "metrics : dict",
            ["Only with return_metrics: {name: float64 value}, last in the result."],
        ),
    ],
    raises=[
        (
            "TypeError",
            [
                "Non-numeric arrays, linear_weight or linear_bias of another working dtype "
                "than input, float targets of the index shape, a tensor that requires grad "
                "(use fastloss.torch.linear_cross_entropy)."
            ],
        ),
        (
            "ValueError",
            [
                "Shapes that do not match, an unknown reduction, label_smoothing outside "
                "[0, 1], ignore_index with probability targets, chunk_rows < 1 or "
                "max_memory <= 0, grad_output or grad_out without return_grad=True."
            ],
        ),
        ("IndexError", ["A class index outside [0, C) that is not ignore_index."]),
    ],
)
