"""fastloss on ``dask.array``: every loss of the registry over chunked arrays, and
``evaluate`` over shards, Zarr arrays or dask arrays, on any Dask scheduler.

The functions are generated from the loss registry (``fastloss._losses.LOSSES``) and take the
NumPy API's arguments (``grad_out`` aside), with dask arrays (or NumPy arrays) as the array
arguments:

* ``reduction="none"`` is lazy, block by block (the kernel on each block);
* ``"mean"`` / ``"sum"`` are a tree reduction of per-block float64 partial sums, the loss's sum
  and the denominator of its ``"mean"`` (torch's: the sum of the class weights of the samples
  not ignored, of the per-element weights for a weighted ``mse_loss``, the batch size for
  ``"batchmean"``, the count otherwise), divided once at the end: never a mean of block means,
  which is biased when blocks differ in size.  The result is a 0-d dask array;
* ``return_grad=True`` returns lazy gradients, each block computed with the global denominator
  (reduced first).

The axes a sample's computation reads whole (the class axis, the features of an embedding, the
frames and classes of a CTC sample) are kept in one chunk: an array chunked along them is
rechunked, with a ``PerformanceWarning``.  Inside a task the kernels run on one thread by
default (``threads=1``): Dask already runs a task per core.

``evaluate(loss, logits, targets, ...)`` is ``fastloss.evaluate`` over blocks: each block's
report (sums, counts, per-class statistics) is computed where the block is and the reports are
merged in a tree, so the numbers are those of the single-process ``fastloss.evaluate``.

``linear_cross_entropy`` is not offered: its weight gradient sums over every row of the batch.
Needs ``dask[array]`` (``pip install "fastloss[dask]"``); ``distributed`` for clusters.
"""

from __future__ import annotations

import contextlib
import glob as _glob
import inspect
import os
import threading
import warnings

import dask
import dask.array as da
import numpy as np

from . import _api, _evaluate, _losses
from . import _config as _cfg

__all__ = ["evaluate", "from_npy"]

# ------------------------------------------------------------------ kernel threads in tasks

_threads_lock = threading.Lock()
_threads_depth = [0, None]  # tasks running with their own thread count, the count to restore


@contextlib.contextmanager
def _task_threads(n):
    """fastloss's thread count set to n while any task of this process runs (the count is
    process-wide; the first task to enter saves it, the last to leave restores it)."""
    if n is None:
        yield
        return
    with _threads_lock:
        if _threads_depth[0] == 0:
            _threads_depth[1] = _cfg.get_num_threads()
            _cfg.set_num_threads(n)
        _threads_depth[0] += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth[0] -= 1
            if _threads_depth[0] == 0:
                _cfg.set_num_threads(_threads_depth[1])


# ------------------------------------------------------------------ layouts

_LETTERS = "abdefghijklmopqrsuvwxyz"  # index letters of blockwise; c, n, t, z are named


class _Layout:
    """How a call's arrays line up: a blockwise index string per array, the index of the
    per-sample loss, the letters that must be one chunk, and what the "mean" divides by."""

    def __init__(self, inds, out, whole, denom):
        self.inds, self.out, self.whole, self.denom = inds, out, whole, denom


def _sample_letters(k):
    return "n" + _LETTERS[: k - 1] if k else ""


def _layout(spec, arrays, options):
    fam = spec.family
    x = arrays[0]
    if fam in ("class", "metric") and spec.name != "entropy":
        if options.get("axis") not in (None, 1):
            raise ValueError(
                f"fastloss.dask.{spec.name}: the class axis must be axis 1 (axis=None); "
                f"move it there (x.transpose) first, got axis={options.get('axis')!r}"
            )
        if x.ndim < 2:
            raise ValueError(
                f"fastloss.dask.{spec.name}: input must be batched, (N, C, d1, ...), got "
                f"{x.ndim} dimension(s)"
            )
        rest = _sample_letters(x.ndim - 1)  # n d1 ...
        xin = rest[0] + "c" + rest[1:]
        prob = arrays[1].ndim == x.ndim  # probability targets
        kind = "class_prob" if prob else ("kept" if fam == "metric" else "class_index")
        return _Layout([xin, xin if prob else rest], rest, "c", kind)
    if spec.name == "entropy":
        axis = options.get("axis", -1)
        axis = axis + x.ndim if axis < 0 else axis
        if not 0 <= axis < x.ndim:
            raise ValueError(f"axis {options.get('axis')} is out of bounds for {x.ndim}-d input")
        rest = _sample_letters(x.ndim - 1)
        xin = rest[:axis] + "c" + rest[axis:]
        return _Layout([xin], rest, "c", "count")
    if fam in ("elementwise", "pair"):
        if fam == "pair" and len({a.shape for a in arrays}) > 1:
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
            arrays[:] = [da.broadcast_to(a, shape) for a in arrays]
        ind = _sample_letters(x.ndim)
        denom = "weight_sum" if spec.weighted_mean == "weight_sum" else "count"
        return _Layout([ind] * len(arrays), ind, "", denom)
    if fam in ("embedding", "margin"):
        if x.ndim != 2:
            raise ValueError(
                f"fastloss.dask.{spec.name}: inputs must be batched, (N, D), got shape {x.shape}"
            )
        inds = ["nc" if a.ndim == 2 else "n" for a in arrays]
        return _Layout(inds, "n", "c", "count")
    if fam == "box":  # matched boxes (N, 4): a box's 4 coordinates in one chunk
        if x.ndim != 2:
            raise ValueError(
                f"fastloss.dask.{spec.name}: boxes must be batched, (N, 4), got shape {x.shape}"
            )
        return _Layout(["nc", "nc"], "n", "c", "count")
    if fam == "ctc":
        if x.ndim != 3 or arrays[1].ndim != 2:
            raise ValueError(
                "fastloss.dask.ctc_loss: log_probs must be (T, N, C) and targets padded (N, S)"
            )
        return _Layout(["tnc", "ns", "n", "n"], "n", "tcs", "ctc")
    raise ValueError(f"fastloss.dask has no {spec.name}")


def _one_chunk(a, ind, whole, name):
    """a with every axis whose letter is in `whole` in one chunk (rechunked with a warning)."""
    axes = {i: -1 for i, letter in enumerate(ind) if letter in whole and a.numblocks[i] > 1}
    if not axes:
        return a
    warnings.warn(
        f"fastloss.dask: {name} is chunked along axis {sorted(axes)}, which each sample reads "
        "whole; rechunking it into one chunk there",
        da.PerformanceWarning,
        stacklevel=4,
    )
    return a.rechunk(axes)


# ------------------------------------------------------------------ block functions


def _call(loss, arrays, kw, threads):
    with _task_threads(threads):
        return getattr(_api, loss)(*arrays, **kw)


def _split(blocks, n_arrays, extra_names, kw, grad=False):
    """The loss's arrays, and the options with the per-block weights filled in (without the
    gradient-only grad_boxes2 unless for a gradient)."""
    arrays, rest = list(blocks[:n_arrays]), list(blocks[n_arrays:])
    kw = dict(kw)
    if not grad:
        kw.pop("grad_boxes2", None)
    for k in extra_names:
        kw[k] = rest.pop(0)
    return arrays, kw, rest


def _denominator(kind, arrays, kw, count):
    """The block's share of the "mean" denominator (float64); count: its per-sample values."""
    if kind == "count":
        return float(count)
    if kind == "weight_sum":
        w = kw.get("weight")
        return float(count if w is None else np.sum(w, dtype=np.float64))
    sw = kw.get("sample_weight")
    if kind == "class_prob":
        return float(count if sw is None else np.sum(sw, dtype=np.float64))
    t = np.asarray(arrays[1])
    keep = t != kw.get("ignore_index", -100)
    share = keep.astype(np.float64)
    w = kw.get("weight")
    if w is not None and kind == "class_index":
        share[keep] = np.asarray(w, np.float64)[t[keep]]
    if sw is not None:
        share *= np.asarray(sw, np.float64)
    return float(share.sum())


def _partial_block(
    *blocks, loss, kind, kw, threads, n_arrays, extra_names, count_axes, n_out, mean
):
    """(1, ..., 1, 2): the block's loss sum and its share of the denominator."""
    arrays, kw, _ = _split(blocks, n_arrays, extra_names, kw)
    count = 1
    for ax in count_axes:
        count *= arrays[0].shape[ax]
    if kind == "ctc" and mean:  # torch's: each loss over its target length, then the average
        s = (
            float(_call(loss, arrays, dict(kw, reduction="mean"), threads)) * count
            if count
            else 0.0
        )
        d = float(count)
    else:
        s = float(_call(loss, arrays, dict(kw, reduction="sum"), threads))
        d = _denominator(kind, arrays, kw, count)
    return np.array([s, d], np.float64).reshape((1,) * n_out + (2,))


def _none_block(*blocks, loss, kw, threads, n_arrays, extra_names):
    arrays, kw, _ = _split(blocks, n_arrays, extra_names, kw)
    return np.asarray(_call(loss, arrays, dict(kw, reduction="none"), threads))


def _grad_block(*blocks, loss, kw, threads, n_arrays, extra_names, reduction, kind, n_diff):
    """The block's gradients (stacked on a new last axis when there are several); the last
    block is the upstream gradient: per sample ("none") or the global scale."""
    arrays, kw, (go,) = _split(blocks, n_arrays, extra_names, kw, grad=True)
    if reduction == "none":
        kw.update(reduction="none", grad_output=go)
    elif kind == "ctc" and reduction == "mean":  # the block's divides by its own batch size
        kw.update(reduction="mean", grad_output=float(go) * arrays[0].shape[1])
    else:
        kw.update(reduction="sum", grad_output=float(go))
    _, g = _call(loss, arrays, dict(kw, return_grad=True), threads)
    if n_diff == 1:
        return np.asarray(g)
    return np.stack([np.asarray(gi) for gi in g], axis=-1)


# ------------------------------------------------------------------ the generated functions


def _divide(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.true_divide(a, b)


def _as_dask(a):
    if isinstance(a, da.Array):
        return a
    a = np.asarray(a)
    return da.from_array(a, chunks=a.shape if a.ndim else ())


def _aligned(a, ind, chunks):
    """a rechunked so that each of its axes has the chunks of the axis of the same letter
    (axes of other letters in one chunk); no-op when it already has them."""
    return a.rechunk(tuple(chunks.get(letter, -1) for letter in ind))


def _make(name):
    spec = _losses.LOSSES[name]
    public = getattr(_api, name)
    sig = inspect.signature(public)
    P = inspect.Parameter
    params = [p for p in sig.parameters.values() if p.name not in ("grad_out", "return_metrics")]
    params += [
        P("split_every", P.KEYWORD_ONLY, default=None),
        P("threads", P.KEYWORD_ONLY, default=1),
    ]
    signature = sig.replace(parameters=params)
    n_arrays = 1 if name == "entropy" else len(spec.arrays)
    array_names = list(sig.parameters)[:n_arrays]
    # options that are arrays of the per-sample ("out") or the input's ("in") shape: blocked
    # like them (the class and margin families' weight is per class: passed whole)
    blocked = {"sample_weight": "out"}
    if spec.family in ("elementwise", "pair"):
        blocked.update((w, "in") for w in spec.weight_names)
    elif spec.family == "box":
        blocked["weight"] = "out"  # one per box

    def fn(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        v = dict(bound.arguments)
        split_every, threads = v.pop("split_every"), v.pop("threads")
        reduction, return_grad = v.pop("reduction"), v.pop("return_grad", False)
        grad_output = v.pop("grad_output", None)
        if grad_output is not None and not return_grad:
            raise ValueError("grad_output is only used with return_grad=True")
        if reduction not in spec.reductions:
            raise ValueError(f"reduction must be one of {spec.reductions}, got {reduction!r}")
        arrays = [_as_dask(v.pop(n)) for n in array_names]
        given_shapes = [a.shape for a in arrays]
        extras = {k: v.pop(k) for k in blocked if v.get(k) is not None}
        lay = _layout(spec, arrays, v)
        arrays = [_one_chunk(a, i, lay.whole, n) for a, i, n in zip(arrays, lay.inds, array_names)]
        chunks = dict(zip(lay.inds[0], arrays[0].chunks))
        arrays = [_aligned(a, i, chunks) for a, i in zip(arrays, lay.inds)]
        args = [x for a, i in zip(arrays, lay.inds) for x in (a, i)]
        out_shape = tuple(dict(zip(lay.inds[0], arrays[0].shape))[c] for c in lay.out)
        for k, value in extras.items():
            ind = lay.out if blocked[k] == "out" else lay.inds[0]
            shape = out_shape if blocked[k] == "out" else arrays[0].shape
            args += [_aligned(da.broadcast_to(_as_dask(value), shape), ind, chunks), ind]
        dtype = np.result_type(arrays[0].dtype, np.float32)
        common = dict(loss=name, kw=v, threads=threads, n_arrays=n_arrays)
        common["extra_names"] = tuple(extras)
        if reduction == "none":
            loss = da.blockwise(
                _none_block, lay.out, *args, dtype=dtype, concatenate=True, **common
            )
        else:
            parts = da.blockwise(
                _partial_block,
                lay.out + "z",
                *args,
                new_axes={"z": 2},
                adjust_chunks={letter: 1 for letter in lay.out},
                dtype=np.float64,
                concatenate=True,
                kind=lay.denom,
                count_axes=tuple(lay.inds[0].index(c) for c in lay.out),
                n_out=len(lay.out),
                mean=reduction == "mean",
                **common,
            )
            tot = parts.sum(axis=tuple(range(len(lay.out))), split_every=split_every)
            if reduction == "sum":
                loss = tot[0]
            elif reduction == "batchmean":
                loss = tot[0] / arrays[0].shape[0]
            else:  # 0 / 0 (nothing counted): NaN, as torch, without a warning
                loss = da.blockwise(_divide, "", tot[0], "", tot[1], "", dtype=np.float64)
            loss = loss.astype(dtype)
        if not return_grad:
            return loss
        diff = [i for i, n in enumerate(array_names) if n in spec.differentiable]
        if spec.family == "box":  # boxes2's gradient only when asked for, as fastloss's
            diff = diff if v.get("grad_boxes2") else diff[:1]
        for i in diff[1:]:
            if lay.inds[i] != lay.inds[0] or given_shapes[i] != given_shapes[0]:
                raise ValueError(
                    f"fastloss.dask.{name}: return_grad needs the differentiable arrays in "
                    "one shape (no broadcasting)"
                )
        if reduction == "none":
            go = _as_dask(1.0 if grad_output is None else grad_output)
            args += [_aligned(da.broadcast_to(go, out_shape), lay.out, chunks), lay.out]
        else:
            go = 1.0 if grad_output is None else float(np.asarray(grad_output).reshape(()))
            if reduction == "sum":
                scale = da.from_array(np.float64(go))
            elif reduction == "batchmean":
                scale = da.from_array(np.float64(go / arrays[0].shape[0]))
            else:  # the global denominator, reduced before any block's gradient
                scale = da.blockwise(_divide, "", go, None, tot[1], "", dtype=np.float64)
            args += [scale, None]
        gkw = dict(common, reduction=reduction, kind=lay.denom, n_diff=len(diff))
        ind0 = lay.inds[0]
        if len(diff) == 1:
            grad = da.blockwise(_grad_block, ind0, *args, dtype=dtype, concatenate=True, **gkw)
            return loss, grad
        stacked = da.blockwise(
            _grad_block,
            ind0 + "z",
            *args,
            new_axes={"z": len(diff)},
            dtype=dtype,
            concatenate=True,
            **gkw,
        )
        return loss, tuple(stacked[..., k] for k in range(len(diff)))

    fn.__signature__ = signature
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (
        f"fastloss.{name} on dask arrays: lazy per block for reduction='none', a tree "
        "reduction of float64 partial sums with the loss's exact denominator otherwise (a 0-d "
        "dask array); return_grad=True gives lazy gradients. split_every: the reduction's "
        "fan-in; threads: kernel threads inside each task (None: fastloss's setting). The "
        f"other arguments are those of fastloss.{name}:\n\n{public.__doc__}"
    )
    return fn


_LOSS_FAMILIES = ("class", "elementwise", "pair", "embedding", "margin", "metric", "ctc", "box")
for _name, _spec in _losses.LOSSES.items():
    if _spec.family in _LOSS_FAMILIES and hasattr(_api, _name):
        globals()[_name] = _make(_name)
        __all__.append(_name)


# ------------------------------------------------------------------ evaluate


def _paths(value):
    """The sorted .npy paths of a glob pattern, a list, or None when value is not paths."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if path.endswith(".zarr") or os.path.isdir(path):
            return None
        if any(ch in path for ch in "*?["):
            found = sorted(_glob.glob(path))
            if not found:
                raise FileNotFoundError(f"no file matches {path!r}")
            return found
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path!r}")
        return [path]
    return None


def _npy_rows(path):
    """(rows, shape, dtype) of a .npy file, from its header."""
    arr = np.load(path, mmap_mode="r")
    shape, dtype = arr.shape, arr.dtype
    del arr
    return (shape[0] if shape else 1), shape, dtype


def _read_rows(path, a, b):
    """Rows [a, b) of a .npy file, read by the task (the file mapped only meanwhile)."""
    arr = np.load(path, mmap_mode="r")
    out = np.array(arr[a:b])
    del arr
    return out


#: bytes of logits per evaluate task: a few of fastloss.evaluate's 64 MB chunks, so that the
#: per-task overhead of a scheduler (milliseconds on a distributed cluster) stays small
BLOCK_BYTES = 4 * _evaluate.CHUNK_BYTES


def _block_rows(row_bytes, block_bytes):
    """Rows of row_bytes each in a block of about block_bytes (at least one)."""
    return max(1, block_bytes // max(1, row_bytes))


def _row_blocks(rows, row_bytes, block_bytes=BLOCK_BYTES):
    step = _block_rows(row_bytes, block_bytes)
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


def from_npy(paths):
    """One dask array from .npy shards (a glob pattern or a list of paths) concatenated along
    axis 0; each chunk (about 64 MB of rows) is read by its task, which maps the file only
    while it reads (so graphs pickle small and workers keep no mapping)."""
    found = _paths(paths)
    if found is None:
        raise ValueError(f"expected .npy paths or a glob pattern, got {paths!r}")
    parts = []
    for path in found:
        rows, shape, dtype = _npy_rows(path)
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        for a, b in _row_blocks(rows, row_bytes, _evaluate.CHUNK_BYTES):
            block = dask.delayed(_read_rows, pure=True)(path, a, b)
            parts.append(da.from_delayed(block, (b - a,) + shape[1:], dtype=dtype))
    return da.concatenate(parts, axis=0)


def _open_array(value, role):
    if isinstance(value, da.Array):
        return value
    if isinstance(value, (str, os.PathLike)) and (
        os.fspath(value).endswith(".zarr") or os.path.isdir(os.fspath(value))
    ):
        return da.from_zarr(os.fspath(value))
    if _paths(value) is not None:
        return from_npy(value)
    a = np.asarray(value)
    if not a.ndim:
        return a
    rows = _block_rows(
        a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)), _evaluate.CHUNK_BYTES
    )
    return da.from_array(a, chunks=(rows,) + a.shape[1:])


def _file_plan(logits, targets):
    """[(logits path, targets path, a, b, first row)] when both are .npy shards that pair up
    (same number of files, same rows each), else None."""
    xp, tp = _paths(logits), _paths(targets)
    if xp is None or tp is None or len(xp) != len(tp):
        return None
    plan, row0 = [], 0
    for x_path, t_path in zip(xp, tp):
        rows, shape, dtype = _npy_rows(x_path)
        if _npy_rows(t_path)[0] != rows or not shape:
            return None
        row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        for a, b in _row_blocks(rows, row_bytes):
            plan.append((x_path, t_path, a, b, row0 + a))
        row0 += rows
    return plan


def _eval_file_block(x_path, t_path, a, b, **kw):
    """_eval_block on rows [a, b) of two .npy files, mapped only while the task runs."""
    x, t = np.load(x_path, mmap_mode="r"), np.load(t_path, mmap_mode="r")
    try:
        return _eval_block(x[a:b], t[a:b], **kw)
    finally:
        del x, t


def _eval_block(x, t, *, name, options, top_k, threads, per_sample=None, row0=0):
    """The report of one block: fastloss.evaluate on it; with per_sample (a .npy file made
    by the caller), its per-sample losses go to rows row0... of that file."""
    with _task_threads(threads):
        if per_sample is None:
            return _evaluate.evaluate(name, x, t, reduction="sum", top_k=list(top_k), **options)
        tmp = f"{per_sample}.rows{row0}.npy"
        try:
            doc = _evaluate.evaluate(
                name, x, t, reduction="sum", top_k=list(top_k), per_sample=tmp, **options
            )
            rows = np.load(tmp, mmap_mode="r")
            out = np.lib.format.open_memmap(per_sample, mode="r+")
            out[row0 : row0 + len(rows)] = rows
            out.flush()
            del out, rows
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return doc


def evaluate(
    loss,
    logits,
    targets,
    *,
    top_k=None,
    reduction="mean",
    per_sample=None,
    scheduler=None,
    threads=1,
    **options,
):
    """fastloss.evaluate over dask arrays, .npy shards (a glob or a list), Zarr stores or
    arrays: each row block is evaluated by a task (on `scheduler`: None for Dask's default, a
    name such as "threads", "processes", "synchronous", or a distributed Client) and the block
    reports are merged in float64, so the numbers equal fastloss.evaluate on the whole data
    (up to the order of the float64 additions).  per_sample: a .npy path that the tasks write
    the per-sample losses into (on a filesystem the workers share).  threads: kernel threads
    per task.  The other options are fastloss.evaluate's.  Returns the same dict."""
    import time

    t0 = time.perf_counter()
    if not isinstance(loss, str) or loss not in _evaluate.LOSSES:
        raise _evaluate.EvalOptionError(
            f"unknown loss {loss!r} (choose from {', '.join(_evaluate.LOSSES)})"
        )
    files = _file_plan(logits, targets)
    if files is not None:  # .npy shards: each task maps its rows itself
        x = t = None
        n_rows = files[-1][4] + files[-1][3] - files[-1][2]
        x0 = np.array(np.load(files[0][0], mmap_mode="r")[:1])
        t0_ = np.array(np.load(files[0][1], mmap_mode="r")[:1])
    else:
        x = _open_array(logits, "logits")
        t = _open_array(targets, "targets")
        if not isinstance(x, da.Array) or x.ndim == 0 or x.shape[0] == 0:
            return _evaluate.evaluate(
                loss,
                np.asarray(x),
                np.asarray(t),
                top_k=top_k,
                reduction=reduction,
                per_sample=per_sample,
                **options,
            )
        if t.ndim == 0 or x.shape[0] != t.shape[0]:
            raise ValueError(
                f"logits and targets must have the same number of rows, got {x.shape} and {t.shape}"
            )
        x = x.rechunk((x.chunks[0],) + tuple(-1 for _ in x.shape[1:]))
        t = t.rechunk((x.chunks[0],) + tuple(-1 for _ in t.shape[1:]))
        n_rows = x.shape[0]
        x0, t0_ = np.asarray(x[:1]), np.asarray(t[:1])
    # the option checks and the report's layout: the single-process evaluate on the first row
    # (its per-sample output gives the file's row shape and dtype)
    head_kw = dict(top_k=top_k, reduction=reduction, **options)
    if per_sample is None:
        head = _evaluate.evaluate(loss, x0, t0_, **head_kw)
    else:
        per_sample = os.fspath(per_sample)
        probe = f"{per_sample}.rows-probe.npy"
        try:
            head = _evaluate.evaluate(loss, x0, t0_, per_sample=probe, **head_kw)
            row = np.load(probe)
        finally:
            if os.path.exists(probe):
                os.remove(probe)
        np.lib.format.open_memmap(
            per_sample, mode="w+", dtype=row.dtype, shape=(n_rows,) + row.shape[1:]
        )
    ks = sorted(head["top_k_accuracy"]) if head["top_k_accuracy"] else []
    block_kw = dict(name=loss, options=options, top_k=ks, threads=threads, per_sample=per_sample)
    if files is not None:
        blocks = [
            dask.delayed(_eval_file_block)(xp, tp, a, b, row0=r0, **block_kw)
            for xp, tp, a, b, r0 in files
        ]
        shapes = {
            "logits": [n_rows] + list(np.load(files[0][0], mmap_mode="r").shape[1:]),
            "targets": [n_rows] + list(np.load(files[0][1], mmap_mode="r").shape[1:]),
        }
    else:
        starts = np.concatenate(([0], np.cumsum(x.chunks[0])[:-1]))
        blocks = [
            dask.delayed(_eval_block)(xb, tb, row0=int(r0), **block_kw)
            for xb, tb, r0 in zip(x.to_delayed().ravel(), t.to_delayed().ravel(), starts)
        ]
        shapes = {"logits": list(x.shape), "targets": list(t.shape)}
    compute_kw = {} if scheduler is None else {"scheduler": scheduler}
    (reports,) = dask.compute(blocks, **compute_kw)
    chunk_rows = max(b - a for _, _, a, b, _ in files) if files else int(max(x.chunks[0]))
    doc = _combine(head, reports, reduction, n_rows, shapes, chunk_rows)
    named = {"logits": logits, "targets": targets, "per_sample": per_sample}
    doc["files"] = {
        k: os.fspath(v) if isinstance(v, (str, os.PathLike)) else None for k, v in named.items()
    }
    doc["threads"] = threads
    doc["elapsed_s"] = time.perf_counter() - t0
    return doc


def _combine(head, reports, reduction, n_rows, shapes, chunk_rows):
    """One report from the block reports: every sum and count added in float64."""
    doc = dict(head)
    total = sum(r["sum"] for r in reports)
    denom = sum(r["normalizer"] for r in reports)
    n = sum(r["n_samples"] for r in reports)
    ignored = sum(r["n_ignored"] for r in reports)
    counted = n - ignored
    ratio = _evaluate._ratio
    doc.update(
        sum=total, normalizer=denom, n_samples=n, n_ignored=ignored, mean=ratio(total, denom)
    )
    if "batchmean" in head:
        doc["batchmean"] = ratio(total, n_rows)
    doc["value"] = {"mean": doc["mean"], "sum": total}.get(reduction, doc.get("batchmean"))
    if head["accuracy"] is not None:
        correct = sum(_count(r, "accuracy") for r in reports)
        doc["accuracy"] = ratio(correct, counted)
        doc["error_rate"] = ratio(counted - correct, counted)
    if head["mean_entropy"] is not None:
        h = sum(r["mean_entropy"] * _entropy_n(r) for r in reports if _entropy_n(r))
        doc["mean_entropy"] = ratio(h, sum(_entropy_n(r) for r in reports))
    if head["top_k_accuracy"] is not None:
        doc["top_k_accuracy"] = {
            k: ratio(sum(_count_k(r, k) for r in reports), counted) for k in head["top_k_accuracy"]
        }
    if head["per_class"] is not None:
        stats = {}
        for r in reports:
            for row in r["per_class"] or ():
                c = row["class"]
                cnt, ls, ok = stats.get(c, (0, 0.0, 0))
                stats[c] = (
                    cnt + row["count"],
                    ls + row["mean_loss"] * row["count"],
                    ok + round(row["accuracy"] * row["count"]),
                )
        doc["per_class"] = [
            {"class": c, "count": cnt, "mean_loss": ls / cnt, "accuracy": ok / cnt}
            for c, (cnt, ls, ok) in sorted(stats.items())
        ]
    doc["shapes"] = shapes
    doc["n_chunks"] = len(reports)
    doc["chunk_rows"] = chunk_rows
    return doc


def _count(r, key):
    counted = r["n_samples"] - r["n_ignored"]
    return round((r[key] or 0.0) * counted) if counted else 0


def _count_k(r, k):
    counted = r["n_samples"] - r["n_ignored"]
    return round((r["top_k_accuracy"][k] or 0.0) * counted) if counted else 0


def _entropy_n(r):
    return r["n_samples"] - r["n_ignored"] if r["mean_entropy"] is not None else 0
