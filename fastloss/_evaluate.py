"""Batch evaluation of prediction arrays and files: ``fastloss.evaluate``.

The logits and targets are read in bounded chunks of rows (about 64 MB of logits each) and
never loaded whole; files (``.npy``, ``.npz``) are read by ``fastloss._npyio``, imported only
when a path is given, which memory-maps them or decompresses them as a stream and returns the
pages of each chunk to the kernel once it is done (see there).  The command line
``fastloss eval`` is ``fastloss.cli.eval``.

Per chunk, the loss runs with ``reduction="none"`` and the per-sample losses are added in
float64, together with the normaliser of the loss's ``"mean"`` (the sum of ``weight[target]``
over non-ignored samples for class-index targets, the element count otherwise), so the final
mean is the one of ``fastloss.<loss>(whole arrays, reduction="mean")``.  Classification losses
also count top-1 / top-k accuracy (the ranks from one pass of the metrics' rank kernel) and
per-class statistics, and average the entropy of the predictions (``fastloss.entropy`` of the
logits along the class axis, over the samples counted); binary losses count the accuracy at
threshold 0.5.  Of the margin family, ``multi_margin_loss`` (class-index targets, rows of C
scores) is reported as the class losses (its "mean" is the plain mean over rows: its class
weights scale the losses, not the divisor), and the multi-label ones
(``multilabel_margin_loss``, ``multilabel_soft_margin_loss``: targets of the scores' shape)
report the loss only, one per row.

Errors: a bad option raises ``EvalOptionError`` (a ValueError) or ``EvalOptionTypeError`` (a
TypeError); a missing file raises FileNotFoundError; the content of a file (corrupt,
truncated, wrong shape or dtype, target out of range) raises ValueError, TypeError or
IndexError.  The command line turns the first two groups into exit status 2, the last into 1.
"""

from __future__ import annotations

import abc
import operator
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from . import _api, _config, _losses
from . import _validate as V

#: an array, or the path of a .npy / .npz file
ArrayOrPath = Union[np.ndarray, str, os.PathLike]

__all__ = ["evaluate", "EvalOptionError", "EvalOptionTypeError"]

CHUNK_BYTES = 64 << 20  # default logits bytes per chunk


class _OptionProblem(Exception):
    """Marker of an error in the options (not in the data): the CLI exits with status 2."""


class EvalOptionError(_OptionProblem, ValueError):
    """A bad option value for fastloss.evaluate (unknown loss, out-of-range value, ...)."""


class EvalOptionTypeError(_OptionProblem, TypeError):
    """An option of the wrong type for fastloss.evaluate."""


# ------------------------------------------------------------------------- the losses


class _Spec:
    """What evaluate needs of a registry row (fastloss._losses.LOSSES)."""

    __slots__ = (
        "name",
        "family",
        "kind",
        "options",
        "reductions",
        "threshold",
        "checks",
        "defaults",
    )

    def __init__(self, row):
        self.name = row.name
        self.family = row.family
        # "class" (class-index or probability targets: the class losses and
        # multi_margin_loss), "multilabel" (the margin family's (N, C) targets), "binary" (a
        # binary_threshold: error rate and confusion counts) or "elementwise"
        if row.family == "margin":
            self.kind = "class" if row.target_domain == "class" else "multilabel"
        elif row.family == "class":
            self.kind = "class"
        else:
            self.kind = "binary" if row.binary_threshold is not None else "elementwise"
        self.options = row.weight_names + row.param_names  # in display order
        self.reductions = tuple(r for r in row.reductions if r != "none")
        self.threshold = row.binary_threshold  # binary: predicted positive when input > it
        self.checks = {p.name: p.check for p in row.params}  # the library's validators
        # this row's defaults, shown in the report when an option is not given (a name such
        # as eps or margin has different defaults in different rows)
        self.defaults = row.defaults()


_SPECS = {row.name: _Spec(row) for row in _losses.losses("class", "elementwise", "margin")}
LOSSES = tuple(_SPECS)

_DEFAULT_IGNORE_INDEX = _losses.LOSSES["cross_entropy"].defaults()["ignore_index"]


def _real(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise EvalOptionTypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EvalOptionTypeError(f"{name} must be a real number, got {value!r}") from None


def _positive_int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise EvalOptionTypeError(f"{name} must be a positive int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise EvalOptionTypeError(f"{name} must be a positive int, got {value!r}") from None
    if v < 1:
        raise EvalOptionError(f"{name} must be a positive int, got {value!r}")
    return v


def _check_options(spec, given):
    """(library keyword arguments, effective option values for the report)."""
    for name, value in given.items():
        if value is not None and name not in spec.options:
            applies = (
                f"its options: {', '.join(spec.options)}"
                if spec.options
                else f"{spec.name} takes no options"
            )
            raise EvalOptionError(f"option {name} does not apply to {spec.name} ({applies})")
    kw = {}
    shown = {}
    for name in spec.options:
        value = given.get(name)
        if name in ("weight", "pos_weight"):
            continue  # arrays or files, handled with the data
        if value is None:
            shown[name] = spec.defaults[name]
            continue
        check = spec.checks[name]
        if name == "ignore_index":
            if isinstance(value, (bool, np.bool_)):
                raise EvalOptionTypeError(f"ignore_index must be an int, got {value!r}")
            try:
                value = operator.index(value)
            except TypeError:
                raise EvalOptionTypeError(f"ignore_index must be an int, got {value!r}") from None
        elif check is V.as_flag:  # log_target, log_input, full: a real bool, not any truthy
            if not isinstance(value, (bool, np.bool_)):
                raise EvalOptionTypeError(f"{name} must be a bool, got {value!r}")
            value = bool(value)
        else:  # a real number, then the library's own range check
            value = _real(value, name)
            try:
                value = check(value, name)
            except ValueError as exc:
                raise EvalOptionError(str(exc)) from None
        kw[name] = value
        shown[name] = value
    return kw, shown


def _check_top_k(top_k):
    if top_k is None:
        return None
    if isinstance(top_k, (int, np.integer)) and not isinstance(top_k, (bool, np.bool_)):
        top_k = [top_k]
    try:
        values = list(top_k)
    except TypeError:
        raise EvalOptionTypeError(
            f"top_k must be an int or a list of ints, got {top_k!r}"
        ) from None
    return sorted({_positive_int(k, "top_k") for k in values})


# ------------------------------------------------------------------------- input arrays


class _Source(abc.ABC):
    """One input array, read as consecutive chunks of rows (first axis), in increasing order.
    Files are read by fastloss._npyio's sources, which have the same attributes and methods."""

    path = None
    key = None

    def __init__(self, role, shape, dtype, label):
        self.role, self.shape, self.dtype, self.label = role, tuple(shape), np.dtype(dtype), label

    @abc.abstractmethod
    def rows(self, a, b):
        """Rows [a, b) as an array."""

    @abc.abstractmethod
    def read_all(self):
        """The whole array."""

    def release(self, a, b):  # noqa: B027 - an optional hook: nothing to do by default
        """Forget the pages of rows [a, b) (only for the files fastloss mapped itself)."""

    def close(self):  # noqa: B027 - an optional hook: nothing to do by default
        pass


def _aligned(arr):
    """`arr`, or an aligned copy: a member of an uncompressed .npz sits at any byte offset, and
    the kernels must not be given misaligned data (they load it as `const double *`)."""
    return arr if arr.flags.aligned else np.require(arr, requirements=("A", "C"))


class _ArraySource(_Source):
    """An array in memory, or memory-mapped from a file: `pages` (a fastloss._npyio
    PageReleaser, for the files fastloss mapped itself) returns the pages of done rows."""

    def __init__(self, arr, role, label, path=None, key=None, pages=None):
        super().__init__(role, arr.shape, arr.dtype, label)
        self.arr, self.path, self.key = arr, path, key
        self._pages = pages

    def rows(self, a, b):
        return _aligned(self.arr[a:b])

    def read_all(self):
        return _aligned(self.arr)

    def release(self, a, b):
        if self._pages is not None:
            self._pages.release(a, b)

    def close(self):
        self._pages = None
        self.arr = None


def _open(value, role, key=None, key_option=None):
    """A _Source for an array or a .npy/.npz path (detected by content, not by name)."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        if key is not None:
            raise EvalOptionError(f"{key_option} is only used with a .npz file")
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        return _ArraySource(arr, role, role)
    from . import _npyio  # zip / mmap file reading: only when a path is given

    try:
        return _npyio.open_file(value, role, key, key_option, _ArraySource)
    except _npyio.KeyOptionError as exc:
        raise EvalOptionError(str(exc)) from None


# ------------------------------------------------------------------------- the engine


class _Acc:
    """float64 accumulators over the chunks."""

    def __init__(self, C=0, top_k=()):
        self.total = 0.0
        self.denom = 0.0
        self.n = 0  # samples (positions) or elements
        self.ignored = 0
        self.correct = 0  # top-1 / threshold-0.5 correct predictions (non-ignored)
        self.topk = {k: 0 for k in top_k}
        self.cls_count = np.zeros(C, dtype=np.int64)
        self.cls_loss = np.zeros(C, dtype=np.float64)
        self.cls_correct = np.zeros(C, dtype=np.int64)
        self.entropy = 0.0  # class losses: sum of the entropy of softmax(logits), and the
        self.entropy_n = 0  # number of samples it was summed over


def _as_index(t, label, a, ignore_index, C):
    """int64 class indices of a chunk; IndexError with the position in the whole array.
    ignore_index None: the loss ignores no target (multi_margin_loss)."""
    if (
        t.dtype.kind == "u"
        and t.dtype.itemsize == 8
        and t.size
        and t.max() > np.iinfo(np.int64).max
    ):
        flat = int(np.argmax(t.reshape(-1) > np.iinfo(np.int64).max))
        _raise_target(label, t.reshape(-1)[flat], flat, t.shape, a, C, ignore_index)
    t64 = np.ascontiguousarray(t, dtype=np.int64)
    valid = np.ones(t64.shape, bool) if ignore_index is None else t64 != ignore_index
    bad = valid & ((t64 < 0) | (t64 >= C))
    if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        _raise_target(label, t64.reshape(-1)[flat], flat, t.shape, a, C, ignore_index)
    return t64, valid


def _raise_target(label, value, flat, chunk_shape, a, C, ignore_index):
    where = [int(i) for i in np.unravel_index(flat, chunk_shape)]
    where[0] += a
    raise IndexError(
        f"{label}: target {value} at position {tuple(where)} is out of range [0, {C})"
        + (f" and is not ignore_index ({ignore_index})" if ignore_index is not None else "")
    )


def _ranks(x3, t2, valid):
    """Rank of the target's score in each sample, numpy.argmax's order: highest score first,
    ties to the lower class index, NaN above everything.  Rank 0 is argmax == target."""
    n, C, S = x3.shape
    tc = np.where(valid, t2, 0)
    xt = np.take_along_axis(x3, tc[:, None, :], axis=1)  # (n, 1, S)
    buf = np.less_equal(x3, xt)  # False: above the target
    rank = C - np.count_nonzero(buf, axis=1)  # (n, S)
    np.equal(x3, xt, out=buf)
    ties = np.count_nonzero(buf, axis=1) > 1
    if ties.any():
        cls = np.arange(C).reshape(1, C, 1)
        np.logical_and(buf, cls < tc[:, None, :], out=buf)
        rank += np.count_nonzero(buf, axis=1)
    if x3.dtype.kind == "f":
        nan_t = np.isnan(xt[:, 0, :])
        if nan_t.any():  # a NaN target score: only NaNs of lower classes come first
            i, s = np.nonzero(nan_t)
            sub = x3[i, :, s]  # (k, C)
            rank[i, s] = np.count_nonzero(
                np.isnan(sub) & (np.arange(C) < tc[i, s][:, None]), axis=1
            )
    return rank


def _target_ranks(x, t2, v2, ignore_index):
    """_ranks of a chunk: on the compiled backend one pass of the rank kernel
    (fastloss._api._target_ranks, no temporaries of the logits' size), whose samples with a
    NaN score (rank -1) are then ranked by _ranks, which orders NaN as numpy.argmax does."""
    n, C, S = x.shape[0], x.shape[1], t2.shape[1]
    if _config.get_backend() != "compiled":
        return _ranks(x.reshape(n, C, S), t2, v2)
    rank = _api._target_ranks(x, t2, ignore_index).reshape(n, S)
    i, s = np.nonzero((rank < 0) & v2)
    if i.size:
        sub = np.asarray(x).reshape(n, C, S)[i, :, s]  # (k, C)
        rank[i, s] = _ranks(sub[:, :, None], t2[i, s][:, None], np.ones((i.size, 1), bool))[:, 0]
    return rank


def _entropies(acc, x, v2):
    """The entropy of softmax(x) along the class axis of a chunk, summed over the samples
    counted (v2; all of them with probability targets)."""
    h = _api.entropy(x, axis=1).reshape(v2.shape)
    acc.entropy += float(h[v2].sum(dtype=np.float64))
    acc.entropy_n += int(np.count_nonzero(v2))


def _class_chunk(acc, fn, kw, x, t, a, plan):
    """One chunk of a class loss; returns the per-sample losses."""
    C, wk = plan.C, plan.weight_work
    if plan.target_kind == "probability":
        loss = fn(x, t, reduction="none", **kw)
        acc.total += float(loss.sum(dtype=np.float64))
        acc.denom += loss.size
        acc.n += loss.size
        if loss.size and C:
            _entropies(acc, x, np.ones((x.shape[0], loss.size // x.shape[0]), bool))
        return loss
    t64, valid = _as_index(t, plan.targets_label, a, plan.ignore_index, C)
    loss = fn(x, t64, reduction="none", **kw)
    n = x.shape[0]
    S = loss.size // n if n else 1
    t2, v2 = t64.reshape(n, S), valid.reshape(n, S)
    acc.total += float(loss.sum(dtype=np.float64))
    nvalid = int(np.count_nonzero(v2))
    if wk is None:
        acc.denom += nvalid
    else:
        acc.denom += float(wk[t2[v2]].sum(dtype=np.float64))
    acc.n += loss.size
    acc.ignored += loss.size - nvalid
    if nvalid == 0 or C == 0:
        return loss
    _entropies(acc, x, v2)
    # no ignore_index (multi_margin_loss): -1, which no checked target equals
    rank = _target_ranks(x, t2, v2, -1 if plan.ignore_index is None else plan.ignore_index)
    for k in acc.topk:
        acc.topk[k] += int(np.count_nonzero((rank < k) & v2))
    top1 = (rank == 0) & v2
    acc.correct += int(np.count_nonzero(top1))
    tv = t2[v2]
    acc.cls_count += np.bincount(tv, minlength=C)
    acc.cls_loss += np.bincount(tv, weights=loss.reshape(n, S)[v2].astype(np.float64), minlength=C)
    acc.cls_correct += np.bincount(t2[top1], minlength=C)
    return loss


def _multilabel_chunk(acc, fn, kw, x, t, a, plan):
    """One chunk of a multi-label margin loss (one loss per row); returns the row losses.
    multilabel_margin_loss's index lists: every entry in [-1, C), checked here to name the
    position in the whole array."""
    if plan.target_kind == "multilabel_index":
        bad = (t < -1) | (t >= plan.C)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise IndexError(
                f"{plan.targets_label}: target {t[i, j]} at position ({a + i}, {j}) is out "
                f"of range [-1, {plan.C}) (a row's class indices end at its first -1)"
            )
    loss = fn(x, t, reduction="none", **kw)
    acc.total += float(loss.sum(dtype=np.float64))
    acc.denom += loss.size
    acc.n += loss.size
    return loss


def _elementwise_chunk(acc, fn, kw, x, t, threshold):
    loss = fn(x, t, reduction="none", **kw)
    acc.total += float(loss.sum(dtype=np.float64))
    acc.denom += loss.size
    acc.n += loss.size
    if threshold is not None:
        acc.correct += int(np.count_nonzero((x > threshold) == (t > 0.5)))
    return loss


def _ratio(num, den):
    return num / den if den else float("nan")


def _check_per_sample(path, sources):
    path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise EvalOptionError(
            f"per_sample (--per-sample): cannot write {path!r} (no such folder, or it is a folder)"
        )
    if os.path.exists(path):
        for s in sources:
            if (
                s is not None
                and s.path is not None
                and os.path.exists(s.path)
                and os.path.samefile(path, s.path)
            ):
                raise EvalOptionError(
                    f"per_sample (--per-sample): {path!r} is the {s.role} "
                    "file; refusing to overwrite an input"
                )
    return path


def evaluate(
    loss: str,
    logits: ArrayOrPath,
    targets: ArrayOrPath,
    *,
    weight: ArrayOrPath | None = None,
    pos_weight: ArrayOrPath | None = None,
    ignore_index: int | None = None,
    label_smoothing: float | None = None,
    gamma: float | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    delta: float | None = None,
    log_target: bool | None = None,
    log_input: bool | None = None,
    full: bool | None = None,
    eps: float | None = None,
    margin: float | None = None,
    p: int | None = None,
    reduction: str = "mean",
    top_k: int | Sequence[int] | None = None,
    chunk_rows: int | None = None,
    per_sample: str | os.PathLike | None = None,
    logits_key: str | None = None,
    targets_key: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> dict:
    """Evaluate a loss (and accuracies) over whole prediction arrays or files, chunk by chunk.

    loss: a loss name (``fastloss.cross_entropy`` ... ``fastloss.kl_div``, and the margin
    family: ``multi_margin_loss`` with class-index targets, reported as the class losses, and
    ``multilabel_margin_loss`` / ``multilabel_soft_margin_loss`` with targets of the scores'
    shape, the loss only).  logits, targets, weight, pos_weight: arrays, or paths of .npy /
    .npz files (read chunk by chunk, never loaded whole; ``logits_key`` / ``targets_key`` pick
    the array of a .npz holding several).  Loss options (ignore_index, label_smoothing, gamma,
    alpha, beta, delta, log_target, log_input, full, eps, margin, p) have the library's
    defaults and its validation; giving one that the loss does not take is an error.

    reduction: which of "mean" / "sum" (kl_div: also "batchmean") is reported as ``value``.
    top_k: k values for top-k accuracy (class-index targets; default [5] when C > 5).
    chunk_rows: rows per chunk (default: about 64 MB of logits).  per_sample: path of a .npy
    written incrementally with the per-sample losses (``reduction="none"``'s array).
    threads: fastloss threads for this call (fastloss.set_num_threads, restored on return).
    progress: a tqdm bar on stderr if tqdm is installed.  Pass paths rather than np.memmap
    arrays to keep the resident memory flat: only the files opened here have their pages
    released after each chunk.

    Returns a dict: loss, reduction, value, mean, sum (batchmean for kl_div), normalizer,
    n_samples, n_ignored, accuracy, error_rate, top_k_accuracy, mean_entropy, per_class,
    options, files, shapes, dtypes, chunk_rows, n_chunks, threads, elapsed_s.  Raises
    ValueError, TypeError, IndexError (EvalOptionError / EvalOptionTypeError for bad options)
    and FileNotFoundError.
    """
    t_start = time.perf_counter()
    if not isinstance(loss, str) or loss not in _SPECS:
        raise EvalOptionError(f"unknown loss {loss!r} (choose from {', '.join(LOSSES)})")
    spec = _SPECS[loss]
    kw, shown = _check_options(
        spec,
        {
            "weight": weight,
            "pos_weight": pos_weight,
            "ignore_index": ignore_index,
            "label_smoothing": label_smoothing,
            "gamma": gamma,
            "alpha": alpha,
            "beta": beta,
            "delta": delta,
            "log_target": log_target,
            "log_input": log_input,
            "full": full,
            "eps": eps,
            "margin": margin,
            "p": p,
        },
    )
    if reduction not in spec.reductions:
        raise EvalOptionError(
            f"reduction must be one of {spec.reductions} for {loss}, got {reduction!r}"
        )
    top_k = _check_top_k(top_k)
    if top_k and spec.kind != "class":
        raise EvalOptionError(f"top_k applies to class losses only, not to {loss}")
    if chunk_rows is not None:
        chunk_rows = _positive_int(chunk_rows, "chunk_rows")
    if threads is not None:
        threads = _positive_int(threads, "threads")

    sources = []
    out = out_path = None
    bar = None
    old_threads = _config.get_num_threads()
    ok = False
    try:
        xs = _open(logits, "logits", logits_key, "logits_key (--logits-key)")
        sources.append(xs)
        ts = _open(targets, "targets", targets_key, "targets_key (--targets-key)")
        sources.append(ts)
        ws = None if weight is None else _open(weight, "weight")
        pws = None if pos_weight is None else _open(pos_weight, "pos_weight")
        sources += [ws, pws]

        plan = _plan(spec, xs, ts, shown)
        if top_k and plan.target_kind != "index":
            raise EvalOptionError("top_k needs class-index targets (not probability targets)")
        C = plan.C or 0
        if top_k is None:
            top_k = [5] if plan.target_kind == "index" and C > 5 else []
        for k in top_k:
            if k > C:
                raise EvalOptionError(f"top_k {k} exceeds the number of classes ({C})")
        work = plan.work
        weight_chunks = {}
        if spec.kind in ("class", "multilabel"):
            if ws is not None:
                w = _read_small(ws)
                try:
                    kw["weight"] = V.class_weight(w, C, work)
                except (ValueError, TypeError) as exc:
                    raise _same_kind(exc, f"{ws.label}: {exc}") from None
                # the divisor of "mean": the class losses' weight[target] sum; the margin
                # family's weights scale the losses only
                if plan.target_kind == "index" and spec.family == "class":
                    plan.weight_work = kw["weight"]
        else:
            for name, src in (("weight", ws), ("pos_weight", pws)):
                if src is not None:
                    weight_chunks[name] = _plan_elementwise_weight(src, plan)
        shown_files = {"logits": xs.path, "targets": ts.path}
        if ws is not None:
            shown["weight"] = ws.path if ws.path is not None else "<array>"
            shown_files["weight"] = ws.path
        if pws is not None:
            shown["pos_weight"] = pws.path if pws.path is not None else "<array>"
            shown_files["pos_weight"] = pws.path

        # the rows: unbatched inputs are one row
        N = plan.N
        if plan.unbatched:
            for i, s in enumerate(sources[:2]):
                arr = s.read_all()
                sources[i] = _ArraySource(
                    np.asarray(arr).reshape((1,) + s.shape), s.role, s.label, s.path, s.key
                )
                s.close()
            xs, ts = sources[0], sources[1]
        if chunk_rows is None:
            row_elems = 1
            for d in xs.shape[1:]:
                row_elems *= d
            row_bytes = max(1, row_elems * max(xs.dtype.itemsize, work.itemsize))
            chunk_rows = max(1, CHUNK_BYTES // row_bytes)
        chunk_rows = min(chunk_rows, max(N, 1))

        if per_sample is not None:
            out_path = _check_per_sample(per_sample, sources)
            out = np.lib.format.open_memmap(out_path, mode="w+", dtype=work, shape=plan.loss_shape)
            out_rows = out.reshape((1,) + out.shape) if plan.unbatched else out
            from . import _npyio  # a path was given: returns the pages of written rows

            out_src = _ArraySource(
                out_rows,
                "per_sample",
                out_path,
                pages=_npyio.page_releaser(out_rows, getattr(out, "_mmap", None)),
            )
        if threads is not None:
            _config.set_num_threads(threads)
        if progress:
            bar = _progress_bar(N, loss)

        fn = getattr(_api, loss)
        acc = _Acc(C if plan.target_kind == "index" else 0, top_k)
        n_chunks = 0
        for a in range(0, N, chunk_rows):
            b = min(N, a + chunk_rows)
            x = xs.rows(a, b)
            t = ts.rows(a, b)
            for name, (src, sliced, whole) in weight_chunks.items():
                kw[name] = src.rows(a, b) if sliced else whole
            try:
                if spec.kind == "class":
                    chunk_loss = _class_chunk(acc, fn, kw, x, t, a, plan)
                elif spec.kind == "multilabel":
                    chunk_loss = _multilabel_chunk(acc, fn, kw, x, t, a, plan)
                else:
                    chunk_loss = _elementwise_chunk(acc, fn, kw, x, t, spec.threshold)
            except (ValueError, TypeError) as exc:  # the library's, about this chunk's data
                raise _same_kind(exc, f"{xs.label}, rows {a} to {b - 1}: {exc}") from None
            if out is not None:
                out_rows[a:b] = chunk_loss.reshape((b - a,) + out_rows.shape[1:])
                out_src.release(a, b)
            del x, t, chunk_loss
            xs.release(a, b)
            ts.release(a, b)
            for src, sliced, _ in weight_chunks.values():
                if sliced:
                    src.release(a, b)
            n_chunks += 1
            if bar is not None:
                bar.update(b - a)
        if out is not None:
            out.flush()
        doc = _document(
            spec,
            plan,
            acc,
            reduction,
            shown,
            shown_files,
            xs,
            ts,
            top_k,
            chunk_rows,
            n_chunks,
            out_path,
        )
        ok = True
    finally:
        if bar is not None:
            bar.close()
        _config.set_num_threads(old_threads)
        for s in sources:
            if s is not None:
                s.close()
        if out is not None:
            del out
            out_rows = out_src = None
        if out_path is not None and not ok:
            try:
                os.remove(out_path)
            except OSError:
                pass
    doc["elapsed_s"] = time.perf_counter() - t_start
    return doc


def _same_kind(exc, message):
    """A plain ValueError or TypeError (as `exc` is) with a message naming the data."""
    return (ValueError if isinstance(exc, ValueError) else TypeError)(message)


def _read_small(src):
    arr = np.asarray(src.read_all())
    if isinstance(arr, np.memmap):
        arr = np.array(arr)
    return arr


@dataclass
class _Plan:
    """What the checks of the whole arrays found: the facts the chunk loop needs."""

    work: np.dtype  # the working dtype (float32 or float64) of the logits
    # "index" or "probability" (class losses and multi_margin_loss), "multilabel_index"
    # (multilabel_margin_loss), "multilabel" (multilabel_soft_margin_loss), "elementwise"
    target_kind: str
    loss_shape: tuple  # the shape of reduction="none"'s result
    unbatched: bool  # (C,) class logits or a 0-d input: read as one row
    N: int  # rows of the chunk loop
    batch: int  # the first dimension (kl_div's batchmean divisor)
    targets_label: str
    ignore_index: int | None  # None: the loss takes none
    C: int | None = None  # class losses: the number of classes
    weight_work: np.ndarray | None = None  # class weights (working dtype), index targets


def _plan(spec, xs, ts, shown):
    """Check shapes and dtypes of the whole arrays; the facts the chunk loop needs."""
    try:
        work = V.working_dtype(xs.dtype, "logits")
    except TypeError as exc:
        raise TypeError(f"{xs.label}: {exc}") from None
    xshape = xs.shape
    common = {
        "work": work,
        "targets_label": ts.label,
        "batch": xshape[0] if len(xshape) else 1,
        "ignore_index": shown.get("ignore_index", _DEFAULT_IGNORE_INDEX)
        if "ignore_index" in spec.options
        else None,
    }
    if spec.family == "margin" and len(xshape) not in (1, 2):
        raise ValueError(
            f"{xs.label}: {spec.name} needs scores of shape (N, C) or (C,), got shape {xshape}"
        )
    if spec.kind == "multilabel":
        return _plan_multilabel(spec, xs, ts, common)
    if spec.kind == "class":
        if len(xshape) == 0:
            raise ValueError(
                f"{xs.label}: {spec.name} needs logits of shape (N, C), "
                "(N, C, d1, ...) or (C,), got a 0-d array"
            )
        unbatched = len(xshape) == 1
        C = xshape[0] if unbatched else xshape[1]
        loss_shape = () if unbatched else (xshape[0],) + xshape[2:]
        kind = ts.dtype.kind
        if kind == "f":
            if spec.name != "cross_entropy":
                raise TypeError(
                    f"{ts.label}: {spec.name} needs integer class indices, got dtype "
                    f"{ts.dtype}"
                    + (
                        " (probability targets are for cross_entropy only)"
                        if ts.shape == xshape
                        else ""
                    )
                )
            if ts.shape != xshape:
                hint = (
                    f"; class indices of shape {ts.shape} must have an integer dtype"
                    if ts.shape == loss_shape
                    else ""
                )
                raise ValueError(
                    f"{ts.label}: float targets are class probabilities and must "
                    f"have the logits' shape {xshape}, got {ts.shape}{hint}"
                )
            target_kind = "probability"
        elif kind in "iu":
            if ts.shape != loss_shape:
                raise ValueError(
                    f"{ts.label} has shape {ts.shape} but {xs.label} of shape "
                    f"{xshape} needs class indices of shape {loss_shape} (the "
                    "logits' shape without the class axis)"
                )
            target_kind = "index"
        else:
            raise TypeError(
                f"{ts.label}: targets must be integer class indices or float "
                f"probabilities, got dtype {ts.dtype}"
            )
        n_pos = 1
        for d in loss_shape:
            n_pos *= d
        if C == 0 and n_pos > 0:
            raise ValueError(f"{xs.label} has 0 classes (shape {xshape})")
        return _Plan(
            target_kind=target_kind,
            loss_shape=loss_shape,
            unbatched=unbatched,
            N=1 if unbatched else xshape[0],
            C=C,
            **common,
        )
    if ts.dtype.kind not in "fiub":
        raise TypeError(f"{ts.label}: targets must be real numbers, got dtype {ts.dtype}")
    if ts.shape != xshape:
        raise ValueError(
            f"{ts.label} has shape {ts.shape} but {spec.name} needs targets of "
            f"the input's shape {xshape} ({xs.label})"
        )
    unbatched = len(xshape) == 0
    return _Plan(
        target_kind="elementwise",
        loss_shape=xshape,
        unbatched=unbatched,
        N=1 if unbatched else xshape[0],
        **common,
    )


def _plan_multilabel(spec, xs, ts, common):
    """multilabel_margin_loss (integer index lists) and multilabel_soft_margin_loss (real
    targets): targets of the scores' shape (N, C) or (C,), one loss per row."""
    xshape = xs.shape
    index = spec.name == "multilabel_margin_loss"
    if index and ts.dtype.kind not in "iu":
        raise TypeError(
            f"{ts.label}: {spec.name} needs integer class indices (each row's list ended by "
            f"its first -1), got dtype {ts.dtype}"
        )
    if not index and ts.dtype.kind not in "fiub":
        raise TypeError(f"{ts.label}: targets must be real numbers, got dtype {ts.dtype}")
    if ts.shape != xshape:
        raise ValueError(
            f"{ts.label} has shape {ts.shape} but {spec.name} needs targets of the scores' "
            f"shape {xshape} ({xs.label})"
        )
    unbatched = len(xshape) == 1
    return _Plan(
        target_kind="multilabel_index" if index else "multilabel",
        loss_shape=xshape[:-1],
        unbatched=unbatched,
        N=1 if unbatched else xshape[0],
        C=xshape[-1],
        **common,
    )


def _plan_elementwise_weight(src, plan):
    """(source, sliced by rows?, whole array) for an elementwise weight / pos_weight."""
    try:
        V.working_dtype(src.dtype, src.role)
    except TypeError as exc:
        raise TypeError(f"{src.label}: {exc}") from None
    shape = plan.loss_shape
    try:
        full = np.broadcast_shapes(src.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(
            f"{src.label} of shape {src.shape} does not broadcast to the input shape {shape}"
        )
    if not plan.unbatched and len(src.shape) == len(shape) and src.shape[0] != 1:
        return src, True, None
    # broadcast over the rows: at most one row of data, the same for every chunk
    return src, False, _read_small(src)


def _progress_bar(total, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total,
        desc=desc,
        unit="row",
        unit_scale=True,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )


def _document(
    spec, plan, acc, reduction, shown, files, xs, ts, top_k, chunk_rows, n_chunks, out_path
):
    from . import __version__

    mean = _ratio(acc.total, acc.denom)
    doc = {
        "loss": spec.name,
        "reduction": reduction,
        "value": None,
        "mean": mean,
        "sum": acc.total,
        "normalizer": acc.denom,
        "n_samples": acc.n,
        "n_ignored": acc.ignored,
        "target_kind": plan.target_kind,
        "n_classes": plan.C,
        "accuracy": None,
        "error_rate": None,
        "top_k_accuracy": None,
        "mean_entropy": None,
        "per_class": None,
        "options": dict(shown, reduction=reduction),
        "files": dict(files, per_sample=out_path),
        "shapes": {
            "logits": list(xs.shape if not plan.unbatched else xs.shape[1:]),
            "targets": list(ts.shape if not plan.unbatched else ts.shape[1:]),
        },
        "dtypes": {"logits": str(xs.dtype), "targets": str(ts.dtype)},
        "chunk_rows": chunk_rows,
        "n_chunks": n_chunks,
        "threads": _config.get_num_threads(),
        "fastloss_version": __version__,
        "elapsed_s": None,
    }
    if xs.key is not None or ts.key is not None:
        doc["options"]["logits_key"] = xs.key
        doc["options"]["targets_key"] = ts.key
    if spec.name == "kl_div":
        doc["batchmean"] = _ratio(acc.total, plan.batch)
    doc["value"] = {"mean": mean, "sum": acc.total}.get(reduction, doc.get("batchmean"))
    if plan.target_kind == "index" or spec.kind == "binary":
        counted = acc.n - acc.ignored
        doc["accuracy"] = _ratio(acc.correct, counted)
        doc["error_rate"] = _ratio(counted - acc.correct, counted)
    if spec.kind == "class":
        doc["mean_entropy"] = _ratio(acc.entropy, acc.entropy_n)
    if plan.target_kind == "index":
        doc["top_k_accuracy"] = {k: _ratio(acc.topk[k], acc.n - acc.ignored) for k in top_k}
        present = np.flatnonzero(acc.cls_count)
        doc["per_class"] = [
            {
                "class": int(c),
                "count": int(acc.cls_count[c]),
                "mean_loss": float(acc.cls_loss[c] / acc.cls_count[c]),
                "accuracy": float(acc.cls_correct[c] / acc.cls_count[c]),
            }
            for c in present
        ]
    return doc
