"""Batch evaluation of prediction files: ``fastloss.evaluate`` and ``fastloss eval``.

The logits and targets are read in bounded chunks of rows (about 64 MB of logits each) and
never loaded whole:

- ``.npy`` files are opened with ``np.load(mmap_mode="r")``; the pages of each chunk are
  returned to the kernel (``madvise(MADV_DONTNEED)``) once the chunk is done, so the resident
  memory stays flat whatever the file size.
- uncompressed ``.npz`` members (``np.savez``) are memory-mapped at their offset inside the zip
  file, like a ``.npy``; compressed members (``np.savez_compressed``) are decompressed as a
  stream, chunk by chunk (a Fortran-ordered compressed member cannot be streamed by rows and
  is refused).
- a Fortran-ordered array (``np.save`` of a transposed array) is read correctly, but a chunk
  of rows is then scattered over the whole file and the kernel maps whole large folios: the
  pages are still released after each chunk, yet the peak resident memory can approach the
  file size.  Save C-ordered arrays (``np.ascontiguousarray``) for flat memory.

Per chunk, the loss runs with ``reduction="none"`` and the per-sample losses are added in
float64, together with the normaliser of the loss's ``"mean"`` (the sum of ``weight[target]``
over non-ignored samples for class-index targets, the element count otherwise), so the final
mean is the one of ``fastloss.<loss>(whole arrays, reduction="mean")``.  Classification losses
also count top-1 / top-k accuracy and per-class statistics; binary losses count the accuracy
at threshold 0.5.

Errors: a bad option raises ``EvalOptionError`` (a ValueError) or ``EvalOptionTypeError`` (a
TypeError); a missing file raises FileNotFoundError; the content of a file (corrupt,
truncated, wrong shape or dtype, target out of range) raises ValueError, TypeError or
IndexError.  The command line turns the first two groups into exit status 2, the last into 1.
"""
import argparse
import math
import mmap
import operator
import os
import pickle
import struct
import sys
import time
import zipfile
import zlib

import numpy as np

from . import _api, _config
from . import _validate as V

__all__ = ["evaluate", "EvalOptionError", "EvalOptionTypeError", "format_report"]

CHUNK_BYTES = 64 << 20          # default logits bytes per chunk
MAX_TABLE_CLASSES = 20          # more classes than this: the table shows the worst 10
WORST_SHOWN = 10


class _OptionProblem(Exception):
    """Marker of an error in the options (not in the data): the CLI exits with status 2."""


class EvalOptionError(_OptionProblem, ValueError):
    """A bad option value for fastloss.evaluate (unknown loss, out-of-range value, ...)."""


class EvalOptionTypeError(_OptionProblem, TypeError):
    """An option of the wrong type for fastloss.evaluate."""


# ------------------------------------------------------------------------- the losses

class _Spec:
    __slots__ = ("name", "kind", "options", "reductions", "threshold")

    def __init__(self, name, kind, options, reductions=("mean", "sum"), threshold=None):
        self.name = name
        self.kind = kind              # "class", "binary" or "elementwise"
        self.options = options        # option names that apply, in display order
        self.reductions = reductions
        self.threshold = threshold    # binary: predicted positive when input > threshold


_SPECS = {s.name: s for s in (
    _Spec("cross_entropy", "class", ("weight", "ignore_index", "label_smoothing")),
    _Spec("nll_loss", "class", ("weight", "ignore_index")),
    _Spec("focal_loss", "class", ("weight", "ignore_index", "gamma")),
    _Spec("sigmoid_focal_loss", "binary", ("alpha", "gamma"), threshold=0.0),
    _Spec("binary_cross_entropy", "binary", ("weight",), threshold=0.5),
    _Spec("binary_cross_entropy_with_logits", "binary", ("weight", "pos_weight"), threshold=0.0),
    _Spec("mse_loss", "elementwise", ()),
    _Spec("l1_loss", "elementwise", ()),
    _Spec("smooth_l1_loss", "elementwise", ("beta",)),
    _Spec("huber_loss", "elementwise", ("delta",)),
    _Spec("kl_div", "elementwise", ("log_target",), reductions=("mean", "sum", "batchmean")),
)}
LOSSES = tuple(_SPECS)

# the library's defaults, shown in the report when an option is not given
_DEFAULTS = {"ignore_index": -100, "label_smoothing": 0.0, "gamma": 2.0, "alpha": 0.25,
             "beta": 1.0, "delta": 1.0, "log_target": False}


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
            applies = (f"its options: {', '.join(spec.options)}" if spec.options
                       else f"{spec.name} takes no options")
            raise EvalOptionError(f"option {name} does not apply to {spec.name} ({applies})")
    kw = {}
    shown = {}
    for name in spec.options:
        value = given.get(name)
        if name in ("weight", "pos_weight"):
            continue  # arrays or files, handled with the data
        if value is None:
            shown[name] = _DEFAULTS[name]
            continue
        if name == "ignore_index":
            if isinstance(value, (bool, np.bool_)):
                raise EvalOptionTypeError(f"ignore_index must be an int, got {value!r}")
            try:
                value = operator.index(value)
            except TypeError:
                raise EvalOptionTypeError(f"ignore_index must be an int, got {value!r}") from None
        elif name == "log_target":
            if not isinstance(value, (bool, np.bool_)):
                raise EvalOptionTypeError(f"log_target must be a bool, got {value!r}")
            value = bool(value)
        else:
            value = _real(value, name)
            if name == "alpha":
                if not math.isfinite(value):
                    raise EvalOptionError(f"alpha must be a finite number, got {value!r}")
            elif name == "label_smoothing":
                if not 0.0 <= value <= 1.0:
                    raise EvalOptionError(f"label_smoothing must be in [0, 1], got {value!r}")
            elif name == "delta":
                if not value > 0:
                    raise EvalOptionError(f"delta must be > 0, got {value!r}")
            elif not value >= 0:  # gamma, beta (NaN fails too)
                raise EvalOptionError(f"{name} must be >= 0, got {value!r}")
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
        raise EvalOptionTypeError(f"top_k must be an int or a list of ints, got {top_k!r}") \
            from None
    return sorted({_positive_int(k, "top_k") for k in values})


# ------------------------------------------------------------------------- input arrays

def _label(role, path, key=None):
    if path is None:
        return role
    return f"{role} {path!r}" + (f" (array {key!r})" if key is not None else "")


class _Source:
    """One input array, read as consecutive chunks of rows (first axis), in increasing order."""
    path = None
    key = None

    def __init__(self, role, shape, dtype, label):
        self.role, self.shape, self.dtype, self.label = role, tuple(shape), np.dtype(dtype), label

    def rows(self, a, b):
        raise NotImplementedError

    def read_all(self):
        raise NotImplementedError

    def release(self, a, b):
        """Forget the pages of rows [a, b) (only for the files this module mapped itself)."""

    def close(self):
        pass


def _aligned(arr):
    """`arr`, or an aligned copy: a member of an uncompressed .npz sits at any byte offset, and
    the kernels must not be given misaligned data (they load it as `const double *`)."""
    return arr if arr.flags.aligned else np.require(arr, requirements=("A", "C"))


class _ArraySource(_Source):
    def __init__(self, arr, role, label, path=None, key=None, owned_map=None):
        super().__init__(role, arr.shape, arr.dtype, label)
        self.arr, self.path, self.key = arr, path, key
        self._mm = None
        self._whole = False   # rows not contiguous (Fortran order): release the whole map
        if owned_map is not None and arr.ndim >= 1 and arr.size \
                and hasattr(owned_map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                base = np.frombuffer(owned_map, dtype=np.uint8)
                self._delta = (arr.__array_interface__["data"][0]
                               - base.__array_interface__["data"][0])
                del base
            except (TypeError, ValueError, BufferError):
                pass
            else:
                self._mm = owned_map
                self._row_bytes = arr.strides[0]
                self._whole = not arr.flags.c_contiguous

    def rows(self, a, b):
        return _aligned(self.arr[a:b])

    def read_all(self):
        return _aligned(self.arr)

    def release(self, a, b):
        if self._mm is None or b <= a:
            return
        if self._whole:
            start, hi = 0, len(self._mm)
        else:
            lo = self._delta + a * self._row_bytes
            hi = self._delta + b * self._row_bytes
            start = lo - lo % mmap.PAGESIZE
        try:
            self._mm.madvise(mmap.MADV_DONTNEED, start, hi - start)
        except (OSError, ValueError):
            self._mm = None  # not supported here: the pages stay reclaimable page cache

    def close(self):
        self._mm = None
        self.arr = None


def _objects_message(label):
    return f"{label} holds Python objects (pickled data), which are never loaded"


def _read_npy_header(fp, label, check_objects=True):
    """(shape, fortran_order, dtype) of the .npy header at fp's position."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    if check_objects and dtype.hasobject:
        raise _ObjectArray(_objects_message(label))
    return tuple(shape), fortran, dtype


class _ObjectArray(ValueError):
    pass


def _nbytes(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return n * dtype.itemsize


class _StreamSource(_Source):
    """A compressed .npz member, decompressed chunk by chunk (C order only)."""

    def __init__(self, zf, fp, shape, dtype, role, label, path, key):
        super().__init__(role, shape, dtype, label)
        self.path, self.key = path, key
        self._zf, self._fp = zf, fp
        self._row_bytes = _nbytes(self.shape[1:], self.dtype)
        self._pos = 0

    def _read(self, shape):
        out = np.empty(shape, dtype=self.dtype)
        buf = out.reshape(-1).view(np.uint8)
        got = 0
        try:
            while got < buf.size:
                k = self._fp.readinto(buf[got:])
                if not k:
                    raise ValueError(f"{self.label} is truncated (the compressed data ends "
                                     "before the array does)")
                got += k
        except (zlib.error, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ValueError(f"{self.label}: corrupt compressed data ({exc})") from None
        return out

    def rows(self, a, b):
        if a != self._pos:
            raise RuntimeError("compressed .npz members are read in order")
        out = self._read((b - a,) + self.shape[1:])
        self._pos = b
        return out

    def read_all(self):
        return self._read(self.shape)

    def close(self):
        for f in (self._fp, self._zf):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a broken zip must not mask the error
                pass


def _open_npz(path, role, key, key_option):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"{_label(role, path)} is not a valid .npz file ({exc})") from None
    try:
        members = {}
        for name in zf.namelist():
            members[name[:-4] if name.endswith(".npy") else name] = name
        keys = ", ".join(repr(k) for k in members) or "none"
        if key is None:
            if len(members) != 1:
                raise EvalOptionError(
                    f"{_label(role, path)} holds {len(members)} arrays ({keys}): select one "
                    f"with {key_option}")
            key = next(iter(members))
        elif key not in members:
            raise EvalOptionError(f"{_label(role, path)} has no array {key!r} (arrays: {keys})")
        label = _label(role, path, key)
        info = zf.getinfo(members[key])
        if info.flag_bits & 0x1:
            raise ValueError(f"{label} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            arr, mm = _map_stored_member(path, info, label)
            zf.close()
            return _ArraySource(arr, role, label, path, key, owned_map=mm)
        fp = zf.open(info)
        try:
            shape, fortran, dtype = _read_npy_header(fp, label)
            header = fp.tell()
        except _ObjectArray:
            raise
        except (ValueError, EOFError, OSError, SyntaxError, zlib.error,
                zipfile.BadZipFile) as exc:
            raise ValueError(f"{label} is corrupt or not a .npy member ({exc})") from None
        if header + _nbytes(shape, dtype) > info.file_size:
            raise ValueError(f"{label} is truncated: the header announces {shape} {dtype} "
                             f"({_nbytes(shape, dtype)} bytes) but the member holds "
                             f"{info.file_size - header}")
        if fortran and len(shape) > 1:
            raise ValueError(f"{label} is a compressed Fortran-ordered array, which cannot be "
                             "read by rows: save it in C order or with np.savez (uncompressed)")
        return _StreamSource(zf, fp, shape, dtype, role, label, path, key)
    except BaseException:
        zf.close()
        raise


def _map_stored_member(path, info, label):
    """Memory-map an uncompressed .npz member at its offset inside the zip file."""
    try:
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError("bad local file header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            shape, fortran, dtype = _read_npy_header(f, label)
            offset = f.tell()
    except _ObjectArray:
        raise
    except (ValueError, EOFError, SyntaxError, struct.error) as exc:
        raise ValueError(f"{label} is not a valid .npy member ({exc})") from None
    nbytes = _nbytes(shape, dtype)
    if offset - start + nbytes > info.file_size or offset + nbytes > os.path.getsize(path):
        raise ValueError(f"{label} is truncated: the header announces {shape} {dtype} "
                         f"({nbytes} bytes) but the member holds "
                         f"{max(0, info.file_size - (offset - start))}")
    if nbytes == 0:
        return np.empty(shape, dtype=dtype), None
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                    order="F" if fortran else "C")
    return arr, getattr(arr, "_mmap", None)


def _open(value, role, key=None, key_option=None):
    """A _Source for an array or a .npy/.npz path (detected by content, not by name)."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        if key is not None:
            raise EvalOptionError(f"{key_option} is only used with a .npz file")
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        return _ArraySource(arr, role, role)
    path = os.fsdecode(value)
    label = _label(role, path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise FileNotFoundError(f"{role}: no such file: {path!r}") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{role}: {path!r} is a directory, not a .npy/.npz file") from None
    except OSError as exc:
        raise OSError(f"{role}: cannot read {path!r}: {exc.strerror or exc}") from None
    if magic == b"\x93NUMPY":
        if key is not None:
            raise EvalOptionError(f"{key_option} is only used with a .npz file; {label} is a "
                                  ".npy file")
        try:
            with open(path, "rb") as f:
                dtype = _read_npy_header(f, label, check_objects=False)[2]
            if dtype.hasobject:
                arr = None
            else:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError, OSError, SyntaxError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{label} is a corrupt or truncated .npy file ({exc})") from None
        if arr is None:
            raise ValueError(_objects_message(label))
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{label} is not a .npy array file")
        return _ArraySource(arr, role, label, path, owned_map=getattr(arr, "_mmap", None))
    if magic[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _open_npz(path, role, key, key_option)
    raise ValueError(f"{label} is not a .npy or .npz file (it starts with neither the NumPy "
                     "nor the zip magic bytes)")


# ------------------------------------------------------------------------- the engine

class _Acc:
    """float64 accumulators over the chunks."""

    def __init__(self, C=0, top_k=()):
        self.total = 0.0
        self.denom = 0.0
        self.n = 0            # samples (positions) or elements
        self.ignored = 0
        self.correct = 0      # top-1 / threshold-0.5 correct predictions (non-ignored)
        self.topk = {k: 0 for k in top_k}
        self.cls_count = np.zeros(C, dtype=np.int64)
        self.cls_loss = np.zeros(C, dtype=np.float64)
        self.cls_correct = np.zeros(C, dtype=np.int64)


def _as_index(t, label, a, ignore_index, C):
    """int64 class indices of a chunk; IndexError with the position in the whole array."""
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size \
            and t.max() > np.iinfo(np.int64).max:
        flat = int(np.argmax(t.reshape(-1) > np.iinfo(np.int64).max))
        _raise_target(label, t.reshape(-1)[flat], flat, t.shape, a, C, ignore_index)
    t64 = np.ascontiguousarray(t, dtype=np.int64)
    valid = t64 != ignore_index
    bad = valid & ((t64 < 0) | (t64 >= C))
    if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        _raise_target(label, t64.reshape(-1)[flat], flat, t.shape, a, C, ignore_index)
    return t64, valid


def _raise_target(label, value, flat, chunk_shape, a, C, ignore_index):
    where = [int(i) for i in np.unravel_index(flat, chunk_shape)]
    where[0] += a
    raise IndexError(f"{label}: target {value} at position {tuple(where)} is out of range "
                     f"[0, {C}) and is not ignore_index ({ignore_index})")


def _ranks(x3, t2, valid):
    """Rank of the target's score in each sample, numpy.argmax's order: highest score first,
    ties to the lower class index, NaN above everything.  Rank 0 is argmax == target."""
    n, C, S = x3.shape
    tc = np.where(valid, t2, 0)
    xt = np.take_along_axis(x3, tc[:, None, :], axis=1)          # (n, 1, S)
    buf = np.less_equal(x3, xt)                                   # False: above the target
    rank = C - np.count_nonzero(buf, axis=1)                      # (n, S)
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
            sub = x3[i, :, s]                                         # (k, C)
            rank[i, s] = np.count_nonzero(np.isnan(sub) & (np.arange(C) < tc[i, s][:, None]),
                                          axis=1)
    return rank


def _class_chunk(acc, fn, kw, x, t, a, ctx):
    """One chunk of a class loss; returns the per-sample losses."""
    C, wk = ctx["C"], ctx["weight_work"]
    if ctx["target_kind"] == "probability":
        loss = fn(x, t, reduction="none", **kw)
        acc.total += float(loss.sum(dtype=np.float64))
        acc.denom += loss.size
        acc.n += loss.size
        return loss
    t64, valid = _as_index(t, ctx["targets_label"], a, ctx["ignore_index"], C)
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
    rank = _ranks(x.reshape(n, C, S), t2, v2)
    for k in acc.topk:
        acc.topk[k] += int(np.count_nonzero((rank < k) & v2))
    top1 = (rank == 0) & v2
    acc.correct += int(np.count_nonzero(top1))
    tv = t2[v2]
    acc.cls_count += np.bincount(tv, minlength=C)
    acc.cls_loss += np.bincount(tv, weights=loss.reshape(n, S)[v2].astype(np.float64),
                                minlength=C)
    acc.cls_correct += np.bincount(t2[top1], minlength=C)
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
        raise EvalOptionError(f"per_sample (--per-sample): cannot write {path!r} (no such "
                              "folder, or it is a folder)")
    if os.path.exists(path):
        for s in sources:
            if s is not None and s.path is not None and os.path.exists(s.path) \
                    and os.path.samefile(path, s.path):
                raise EvalOptionError(f"per_sample (--per-sample): {path!r} is the {s.role} "
                                      "file; refusing to overwrite an input")
    return path


def evaluate(loss, logits, targets, *, weight=None, pos_weight=None, ignore_index=None,
             label_smoothing=None, gamma=None, alpha=None, beta=None, delta=None,
             log_target=None, reduction="mean", top_k=None, chunk_rows=None, per_sample=None,
             logits_key=None, targets_key=None, threads=None, progress=False):
    """Evaluate a loss (and accuracies) over whole prediction arrays or files, chunk by chunk.

    loss: a loss name (``fastloss.cross_entropy`` ... ``fastloss.kl_div``).  logits, targets,
    weight, pos_weight: arrays, or paths of .npy / .npz files (read chunk by chunk, never
    loaded whole; ``logits_key`` / ``targets_key`` pick the array of a .npz holding several).
    Loss options (ignore_index, label_smoothing, gamma, alpha, beta, delta, log_target) have
    the library's defaults; giving one that the loss does not take is an error.

    reduction: which of "mean" / "sum" (kl_div: also "batchmean") is reported as ``value``.
    top_k: k values for top-k accuracy (class-index targets; default [5] when C > 5).
    chunk_rows: rows per chunk (default: about 64 MB of logits).  per_sample: path of a .npy
    written incrementally with the per-sample losses (``reduction="none"``'s array).
    threads: fastloss threads for this call (fastloss.set_num_threads, restored on return).
    progress: a tqdm bar on stderr if tqdm is installed.  Pass paths rather than np.memmap
    arrays to keep the resident memory flat: only the files opened here have their pages
    released after each chunk.

    Returns a dict: loss, reduction, value, mean, sum (batchmean for kl_div), normalizer,
    n_samples, n_ignored, accuracy, error_rate, top_k_accuracy, per_class, options, files,
    shapes, dtypes, chunk_rows, n_chunks, threads, elapsed_s.  Raises ValueError, TypeError,
    IndexError (EvalOptionError / EvalOptionTypeError for bad options) and FileNotFoundError.
    """
    t_start = time.perf_counter()
    if not isinstance(loss, str) or loss not in _SPECS:
        raise EvalOptionError(f"unknown loss {loss!r} (choose from {', '.join(LOSSES)})")
    spec = _SPECS[loss]
    kw, shown = _check_options(spec, {
        "weight": weight, "pos_weight": pos_weight, "ignore_index": ignore_index,
        "label_smoothing": label_smoothing, "gamma": gamma, "alpha": alpha, "beta": beta,
        "delta": delta, "log_target": log_target})
    if reduction not in spec.reductions:
        raise EvalOptionError(f"reduction must be one of {spec.reductions} for {loss}, got "
                              f"{reduction!r}")
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

        ctx = _plan(spec, xs, ts, shown)
        if top_k and ctx["target_kind"] != "index":
            raise EvalOptionError("top_k needs class-index targets (not probability targets)")
        C = ctx.get("C", 0)
        if top_k is None:
            top_k = [5] if ctx["target_kind"] == "index" and C > 5 else []
        for k in top_k:
            if k > C:
                raise EvalOptionError(f"top_k {k} exceeds the number of classes ({C})")
        work = ctx["work"]
        weight_chunks = {}
        if spec.kind == "class":
            if ws is not None:
                w = _read_small(ws)
                try:
                    kw["weight"] = V.class_weight(w, C, work)
                except (ValueError, TypeError) as exc:
                    raise _same_kind(exc, f"{ws.label}: {exc}") from None
                ctx["weight_work"] = kw["weight"] if ctx["target_kind"] == "index" else None
        else:
            for name, src in (("weight", ws), ("pos_weight", pws)):
                if src is not None:
                    weight_chunks[name] = _plan_elementwise_weight(src, ctx)
        shown_files = {"logits": xs.path, "targets": ts.path}
        if ws is not None:
            shown["weight"] = ws.path if ws.path is not None else "<array>"
            shown_files["weight"] = ws.path
        if pws is not None:
            shown["pos_weight"] = pws.path if pws.path is not None else "<array>"
            shown_files["pos_weight"] = pws.path

        # the rows: unbatched inputs are one row
        N = ctx["N"]
        if ctx["unbatched"]:
            for i, s in enumerate(sources[:2]):
                arr = s.read_all()
                sources[i] = _ArraySource(np.asarray(arr).reshape((1,) + s.shape), s.role,
                                          s.label, s.path, s.key)
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
            out = np.lib.format.open_memmap(out_path, mode="w+", dtype=work,
                                            shape=ctx["loss_shape"])
            out_rows = out.reshape((1,) + out.shape) if ctx["unbatched"] else out
            out_src = _ArraySource(out_rows, "per_sample", out_path,
                                   owned_map=getattr(out, "_mmap", None))
        if threads is not None:
            _config.set_num_threads(threads)
        if progress:
            bar = _progress_bar(N, loss)

        fn = getattr(_api, loss)
        acc = _Acc(C if ctx["target_kind"] == "index" else 0, top_k)
        n_chunks = 0
        for a in range(0, N, chunk_rows):
            b = min(N, a + chunk_rows)
            x = xs.rows(a, b)
            t = ts.rows(a, b)
            for name, (src, sliced, whole) in weight_chunks.items():
                kw[name] = src.rows(a, b) if sliced else whole
            try:
                if spec.kind == "class":
                    chunk_loss = _class_chunk(acc, fn, kw, x, t, a, ctx)
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
        doc = _document(spec, ctx, acc, reduction, shown, shown_files, xs, ts, top_k,
                        chunk_rows, n_chunks, out_path)
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


def _plan(spec, xs, ts, shown):
    """Check shapes and dtypes of the whole arrays; the facts the chunk loop needs."""
    try:
        work = V.working_dtype(xs.dtype, "logits")
    except TypeError as exc:
        raise TypeError(f"{xs.label}: {exc}") from None
    xshape = xs.shape
    ctx = {"work": work, "targets_label": ts.label, "weight_work": None,
           "ignore_index": shown.get("ignore_index", _DEFAULTS["ignore_index"])}
    if spec.kind == "class":
        if len(xshape) == 0:
            raise ValueError(f"{xs.label}: {spec.name} needs logits of shape (N, C), "
                             "(N, C, d1, ...) or (C,), got a 0-d array")
        unbatched = len(xshape) == 1
        C = xshape[0] if unbatched else xshape[1]
        loss_shape = () if unbatched else (xshape[0],) + xshape[2:]
        kind = ts.dtype.kind
        if kind == "f":
            if spec.name != "cross_entropy":
                raise TypeError(f"{ts.label}: {spec.name} needs integer class indices, got dtype "
                                f"{ts.dtype}" + (" (probability targets are for cross_entropy "
                                                 "only)" if ts.shape == xshape else ""))
            if ts.shape != xshape:
                hint = (f"; class indices of shape {ts.shape} must have an integer dtype"
                        if ts.shape == loss_shape else "")
                raise ValueError(f"{ts.label}: float targets are class probabilities and must "
                                 f"have the logits' shape {xshape}, got {ts.shape}{hint}")
            target_kind = "probability"
        elif kind in "iu":
            if ts.shape != loss_shape:
                raise ValueError(f"{ts.label} has shape {ts.shape} but {xs.label} of shape "
                                 f"{xshape} needs class indices of shape {loss_shape} (the "
                                 "logits' shape without the class axis)")
            target_kind = "index"
        else:
            raise TypeError(f"{ts.label}: targets must be integer class indices or float "
                            f"probabilities, got dtype {ts.dtype}")
        n_pos = 1
        for d in loss_shape:
            n_pos *= d
        if C == 0 and n_pos > 0:
            raise ValueError(f"{xs.label} has 0 classes (shape {xshape})")
        ctx.update(C=C, loss_shape=loss_shape, target_kind=target_kind, unbatched=unbatched,
                   N=1 if unbatched else xshape[0])
    else:
        if ts.dtype.kind not in "fiub":
            raise TypeError(f"{ts.label}: targets must be real numbers, got dtype {ts.dtype}")
        if ts.shape != xshape:
            raise ValueError(f"{ts.label} has shape {ts.shape} but {spec.name} needs targets of "
                             f"the input's shape {xshape} ({xs.label})")
        unbatched = len(xshape) == 0
        ctx.update(loss_shape=xshape, target_kind="elementwise", unbatched=unbatched,
                   N=1 if unbatched else xshape[0])
    ctx["batch"] = xshape[0] if len(xshape) else 1
    return ctx


def _plan_elementwise_weight(src, ctx):
    """(source, sliced by rows?, whole array) for an elementwise weight / pos_weight."""
    try:
        V.working_dtype(src.dtype, src.role)
    except TypeError as exc:
        raise TypeError(f"{src.label}: {exc}") from None
    shape = ctx["loss_shape"]
    try:
        full = np.broadcast_shapes(src.shape, shape)
    except ValueError:
        full = None
    if full != tuple(shape):
        raise ValueError(f"{src.label} of shape {src.shape} does not broadcast to the input "
                         f"shape {shape}")
    if not ctx["unbatched"] and len(src.shape) == len(shape) and src.shape[0] != 1:
        return src, True, None
    # broadcast over the rows: at most one row of data, the same for every chunk
    return src, False, _read_small(src)


def _progress_bar(total, desc):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="row", unit_scale=True, file=sys.stderr,
                leave=False, dynamic_ncols=True)


def _document(spec, ctx, acc, reduction, shown, files, xs, ts, top_k, chunk_rows, n_chunks,
              out_path):
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
        "target_kind": ctx["target_kind"],
        "n_classes": ctx.get("C"),
        "accuracy": None,
        "error_rate": None,
        "top_k_accuracy": None,
        "per_class": None,
        "options": dict(shown, reduction=reduction),
        "files": dict(files, per_sample=out_path),
        "shapes": {"logits": list(xs.shape if not ctx["unbatched"] else xs.shape[1:]),
                   "targets": list(ts.shape if not ctx["unbatched"] else ts.shape[1:])},
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
        doc["batchmean"] = _ratio(acc.total, ctx["batch"])
    doc["value"] = {"mean": mean, "sum": acc.total}.get(reduction, doc.get("batchmean"))
    if ctx["target_kind"] == "index" or spec.kind == "binary":
        counted = acc.n - acc.ignored
        doc["accuracy"] = _ratio(acc.correct, counted)
        doc["error_rate"] = _ratio(counted - acc.correct, counted)
    if ctx["target_kind"] == "index":
        doc["top_k_accuracy"] = {str(k): _ratio(acc.topk[k], acc.n - acc.ignored)
                                 for k in top_k}
        present = np.flatnonzero(acc.cls_count)
        doc["per_class"] = [
            {"class": int(c), "count": int(acc.cls_count[c]),
             "mean_loss": float(acc.cls_loss[c] / acc.cls_count[c]),
             "accuracy": float(acc.cls_correct[c] / acc.cls_count[c])}
            for c in present]
    return doc


# ------------------------------------------------------------------------- output

def to_json(doc):
    """The document as strict JSON (NaN and infinities become null)."""
    import json

    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            v = float(v)
            return v if math.isfinite(v) else None
        return v
    return json.dumps(clean(doc), indent=2, allow_nan=False)


def _g(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.7g}"


def _pct(v):
    return "n/a" if v is None or math.isnan(v) else f"{100 * v:.2f}%"


def format_report(doc):
    """The human-readable table printed by ``fastloss eval``."""
    lines = []
    shown = [f"{k}={v}" for k, v in doc["options"].items() if k != "reduction"]

    def source(role):
        path = doc["files"].get(role)
        name = repr(path) if path is not None else "<array>"
        return (f"{name}  shape ({', '.join(map(str, doc['shapes'][role]))}"
                f"{',' if len(doc['shapes'][role]) == 1 else ''}) {doc['dtypes'][role]}")

    lines.append(f"fastloss eval: {doc['loss']}" + (f" ({', '.join(shown)})" if shown else ""))
    lines.append(f"  logits   {source('logits')}")
    lines.append(f"  targets  {source('targets')}")
    lines.append("")
    rows = [(f"loss ({doc['reduction']})", _g(doc["value"]))]
    for red in ("mean", "sum", "batchmean"):
        if red != doc["reduction"] and red in doc:
            rows.append((red, _g(doc[red])))
    what = "elements" if doc["target_kind"] == "elementwise" else "samples"
    count = f"{doc['n_samples']}"
    if doc["target_kind"] == "index":
        count += f" ({doc['n_ignored']} ignored)"
    rows.append((what, count))
    if doc["accuracy"] is not None:
        label = "accuracy (top-1)" if doc["target_kind"] == "index" else "accuracy (at 0.5)"
        rows.append((label, _pct(doc["accuracy"])))
        rows.append(("error rate", _pct(doc["error_rate"])))
    for k, v in (doc["top_k_accuracy"] or {}).items():
        rows.append((f"top-{k} accuracy", _pct(v)))
    if doc["files"].get("per_sample"):
        rows.append(("per-sample losses", repr(doc["files"]["per_sample"])))
    chunks = "chunk" if doc["n_chunks"] == 1 else "chunks"
    rows.append(("elapsed", f"{doc['elapsed_s']:.3f} s ({doc['n_chunks']} {chunks} of up to "
                            f"{doc['chunk_rows']} rows, {doc['threads']} threads)"))
    width = max(len(r[0]) for r in rows)
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]

    per_class = doc["per_class"]
    if per_class:
        lines.append("")
        n = len(per_class)
        if n > MAX_TABLE_CLASSES:
            def badness(r):
                m = r["mean_loss"]
                return math.inf if math.isnan(m) else m
            shown_rows = sorted(per_class, key=badness, reverse=True)[:WORST_SHOWN]
            lines.append(f"  per class: the {WORST_SHOWN} classes with the highest mean loss, "
                         f"of {n} classes present (--json lists all)")
        else:
            shown_rows = per_class
            lines.append(f"  per class ({n} classes present)")
        lines.append(f"  {'class':>8}  {'count':>10}  {'mean loss':>12}  {'accuracy':>9}")
        for r in shown_rows:
            lines.append(f"  {r['class']:>8}  {r['count']:>10}  {_g(r['mean_loss']):>12}  "
                         f"{_pct(r['accuracy']):>9}")
    return "\n".join(lines)


# ------------------------------------------------------------------------- command line

_EPILOG = """\
Inputs are .npy files (memory-mapped) or .npz archives (--logits-key / --targets-key pick an
array when a .npz holds several; uncompressed members are memory-mapped, compressed members
are decompressed chunk by chunk).  They are read in chunks of rows (about 64 MB of logits per
chunk; --chunk-rows N to choose), so memory stays flat whatever the file size (for C-ordered
arrays: a chunk of rows of a Fortran-ordered array is scattered over the whole file).

Reported: the loss's mean (exactly fastloss.<loss>(..., reduction="mean") on the whole
arrays: for class-index targets the sum of weight[target] over non-ignored samples is the
divisor) and sum; for class-index targets top-1 and top-k accuracy (ranks follow
numpy.argmax: ties go to the lower class index) and per-class count, mean loss and accuracy
(over non-ignored samples; every position of (N, C, d1, ...) logits is a sample); for binary
losses the accuracy at threshold 0.5 of sigmoid(input) (of input for binary_cross_entropy)
against target > 0.5.

Exit status: 0 on success, 1 for a problem with the data (corrupt or truncated file, shapes
or dtypes that do not match, targets out of range), 2 for a usage problem (bad or
inapplicable option, unknown loss, missing file), 130 when interrupted.
"""


class _EvalParser(argparse.ArgumentParser):
    """`fastloss eval`'s parser: one-line errors, unknown arguments reported by this parser."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _cli_float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_parser(subparsers):
    """Register the `eval` subcommand on fastloss.cli's subparsers."""
    from .cli import _positive_int  # cli imports this module lazily: no cycle at import time
    p = subparsers.add_parser(
        "eval", help="evaluate a loss and accuracies over .npy/.npz prediction files",
        description="Evaluate a fastloss loss over whole prediction files, chunk by chunk: "
                    "mean and sum, accuracies and per-class statistics.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.__class__ = _EvalParser  # add_parser builds every subparser with one class
    p.add_argument("--loss", required=True, choices=LOSSES, metavar="NAME",
                   help=f"the loss: {', '.join(LOSSES)}")
    p.add_argument("--logits", required=True, metavar="FILE",
                   help="predictions (.npy or .npz): logits, log-probabilities for nll_loss "
                        "and kl_div, probabilities for binary_cross_entropy")
    p.add_argument("--targets", required=True, metavar="FILE",
                   help="targets (.npy or .npz): class indices, or probabilities shaped like "
                        "the logits")
    p.add_argument("--logits-key", metavar="KEY", help="array to use in a .npz logits file")
    p.add_argument("--targets-key", metavar="KEY", help="array to use in a .npz targets file")
    p.add_argument("--weight", metavar="FILE",
                   help="class weights (C,) for class losses; elementwise weights for BCE")
    p.add_argument("--pos-weight", metavar="FILE",
                   help="pos_weight for binary_cross_entropy_with_logits")
    p.add_argument("--ignore-index", type=int, metavar="N",
                   help="target value to ignore (class losses; default -100)")
    p.add_argument("--label-smoothing", type=_cli_float, metavar="E",
                   help="cross_entropy's label smoothing in [0, 1]")
    p.add_argument("--gamma", type=_cli_float, metavar="G",
                   help="focal_loss / sigmoid_focal_loss gamma (default 2)")
    p.add_argument("--alpha", type=_cli_float, metavar="A",
                   help="sigmoid_focal_loss alpha (default 0.25; < 0 disables)")
    p.add_argument("--beta", type=_cli_float, metavar="B", help="smooth_l1_loss beta (default 1)")
    p.add_argument("--delta", type=_cli_float, metavar="D", help="huber_loss delta (default 1)")
    p.add_argument("--log-target", action="store_const", const=True,
                   help="kl_div: the targets are log-probabilities")
    p.add_argument("--reduction", default="mean", choices=("mean", "sum", "batchmean"),
                   help="the reduction reported as the loss (default mean; batchmean: kl_div)")
    p.add_argument("--top-k", nargs="+", action="extend", type=_positive_int, metavar="K",
                   help="top-k accuracies to report (default 5 when there are more than 5 "
                        "classes)")
    p.add_argument("--chunk-rows", type=_positive_int, metavar="N",
                   help="rows per chunk (default: about 64 MB of logits)")
    p.add_argument("--per-sample", metavar="OUT.npy",
                   help="write the per-sample losses (reduction='none') to OUT.npy")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for fastloss (default: fastloss.get_num_threads())")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal when tqdm is installed)")
    p.set_defaults(subparser=p)
    return p


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def run(args):
    """Run `fastloss eval` for parsed arguments; returns the exit status."""
    prog = "fastloss eval"
    progress = not args.no_progress and _isatty(sys.stderr)
    try:
        doc = evaluate(
            args.loss, args.logits, args.targets, weight=args.weight,
            pos_weight=args.pos_weight, ignore_index=args.ignore_index,
            label_smoothing=args.label_smoothing, gamma=args.gamma, alpha=args.alpha,
            beta=args.beta, delta=args.delta, log_target=args.log_target,
            reduction=args.reduction, top_k=args.top_k, chunk_rows=args.chunk_rows,
            per_sample=args.per_sample, logits_key=args.logits_key,
            targets_key=args.targets_key, threads=args.threads, progress=progress)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (_OptionProblem, FileNotFoundError, IsADirectoryError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, IndexError, OSError, EOFError, zipfile.BadZipFile,
            zlib.error, pickle.UnpicklingError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(to_json(doc) if args.json else format_report(doc))
    return 0


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
