"""Reading ``.npy`` / ``.npz`` files by chunks of rows, for ``fastloss.evaluate``.

Imported by ``fastloss._evaluate`` only when a path is given (arrays never need it):

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

A memory-mapped array is handed to the caller's ``array_source`` with a ``PageReleaser``; a
compressed member becomes a ``_StreamSource``.  Both read rows [a, b) in increasing order
(``rows``), the whole array (``read_all``), release the pages of rows done (``release``) and
``close``.
"""

import mmap
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["open_file", "page_releaser", "PageReleaser", "KeyOptionError"]


class KeyOptionError(ValueError):
    """An array key (``logits_key`` ...) that does not fit the file: fastloss.evaluate raises
    it as an EvalOptionError (a problem with the options, not with the data)."""


def _label(role, path, key=None):
    if path is None:
        return role
    return f"{role} {path!r}" + (f" (array {key!r})" if key is not None else "")


class PageReleaser:
    """Returns the pages of rows of an array memory-mapped by this module (or by np.load /
    open_memmap on its behalf) to the kernel once they are done."""

    def __init__(self, arr, owned_map, delta):
        self._mm = owned_map
        self._delta = delta  # byte offset of arr in the map
        self._row_bytes = arr.strides[0]
        self._whole = not arr.flags.c_contiguous  # rows scattered (Fortran order): whole map

    def release(self, a, b):
        """Forget the pages of rows [a, b)."""
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


def page_releaser(arr, owned_map):
    """A PageReleaser for `arr`, a view of the memory map `owned_map`, or None when there is
    nothing to release or the platform cannot (no madvise)."""
    if (
        owned_map is None
        or arr.ndim < 1
        or not arr.size
        or not hasattr(owned_map, "madvise")
        or not hasattr(mmap, "MADV_DONTNEED")
    ):
        return None
    try:
        base = np.frombuffer(owned_map, dtype=np.uint8)
        delta = arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        del base
    except (TypeError, ValueError, BufferError):
        return None
    return PageReleaser(arr, owned_map, delta)


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


class _StreamSource:
    """A compressed .npz member, decompressed chunk by chunk (C order only)."""

    def __init__(self, zf, fp, shape, dtype, role, label, path, key):
        self.role, self.shape, self.dtype, self.label = role, tuple(shape), np.dtype(dtype), label
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
                    raise ValueError(
                        f"{self.label} is truncated (the compressed data ends "
                        "before the array does)"
                    )
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

    def release(self, a, b):
        pass  # nothing mapped: the decompressed chunks are the caller's arrays

    def close(self):
        for f in (self._fp, self._zf):
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a broken zip must not mask the error
                pass


def _open_npz(path, role, key, key_option, array_source):
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
                raise KeyOptionError(
                    f"{_label(role, path)} holds {len(members)} arrays ({keys}): select one "
                    f"with {key_option}"
                )
            key = next(iter(members))
        elif key not in members:
            raise KeyOptionError(f"{_label(role, path)} has no array {key!r} (arrays: {keys})")
        label = _label(role, path, key)
        info = zf.getinfo(members[key])
        if info.flag_bits & 0x1:
            raise ValueError(f"{label} is encrypted")
        if info.compress_type == zipfile.ZIP_STORED:
            arr, mm = _map_stored_member(path, info, label)
            zf.close()
            return array_source(arr, role, label, path, key, page_releaser(arr, mm))
        fp = zf.open(info)
        try:
            shape, fortran, dtype = _read_npy_header(fp, label)
            header = fp.tell()
        except _ObjectArray:
            raise
        except (ValueError, EOFError, OSError, SyntaxError, zlib.error, zipfile.BadZipFile) as exc:
            raise ValueError(f"{label} is corrupt or not a .npy member ({exc})") from None
        if header + _nbytes(shape, dtype) > info.file_size:
            raise ValueError(
                f"{label} is truncated: the header announces {shape} {dtype} "
                f"({_nbytes(shape, dtype)} bytes) but the member holds "
                f"{info.file_size - header}"
            )
        if fortran and len(shape) > 1:
            raise ValueError(
                f"{label} is a compressed Fortran-ordered array, which cannot be "
                "read by rows: save it in C order or with np.savez (uncompressed)"
            )
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
        raise ValueError(
            f"{label} is truncated: the header announces {shape} {dtype} "
            f"({nbytes} bytes) but the member holds "
            f"{max(0, info.file_size - (offset - start))}"
        )
    if nbytes == 0:
        return np.empty(shape, dtype=dtype), None
    arr = np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )
    return arr, getattr(arr, "_mmap", None)


def open_file(value, role, key, key_option, array_source):
    """A source of rows for the .npy or .npz file at path `value` (detected by content, not by
    name).  `key` picks the array of a .npz (`key_option` names that option in messages);
    `array_source(arr, role, label, path, key, pages)` wraps a memory-mapped array (pages: a
    PageReleaser or None)."""
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
            raise KeyOptionError(
                f"{key_option} is only used with a .npz file; {label} is a .npy file"
            )
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
        return array_source(
            arr, role, label, path, None, page_releaser(arr, getattr(arr, "_mmap", None))
        )
    if magic[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _open_npz(path, role, key, key_option, array_source)
    raise ValueError(
        f"{label} is not a .npy or .npz file (it starts with neither the NumPy "
        "nor the zip magic bytes)"
    )
