"""pytest-benchmark suite of fastloss: ``pytest bench/ --benchmark-only``.

Not collected by a plain ``pytest`` from the repository root (pyproject's testpaths is
["tests"]); this conftest is only loaded when bench/ is collected, and defines nothing that
other test directories rely on.

Environment:
  FASTLOSS_BENCH_THREADS  threads for fastloss (default: fastloss's default, the usable CPUs)
  FASTLOSS_BENCH_SCALE    multiply the ~4M-element default sizes (e.g. 0.25 for a smoke run)
"""

import os
import zlib

import numpy as np
import pytest

import fastloss
from fastloss.cli.bench import cases


def _env_threads():
    value = os.environ.get("FASTLOSS_BENCH_THREADS")
    if not value:
        return None
    n = int(value)
    if n < 1:
        raise pytest.UsageError(f"FASTLOSS_BENCH_THREADS must be >= 1, got {value!r}")
    return n


@pytest.fixture(scope="session", autouse=True)
def bench_threads():
    """Thread count used by every benchmark (restored afterwards)."""
    old = fastloss.get_num_threads()
    n = _env_threads() or old
    fastloss.set_num_threads(n)
    yield n
    fastloss.set_num_threads(old)


class _Inputs:
    """Deterministic inputs, built once per (loss row, variant, shape, dtype)."""

    def __init__(self):
        self._cache = {}

    def get(self, name, variant, shape, dtype):
        key = (name, variant, tuple(shape), np.dtype(dtype).name)
        if key not in self._cache:
            self._cache[key] = self._make(name, variant, tuple(shape), np.dtype(dtype))
        return self._cache[key]

    @staticmethod
    def _make(name, variant, shape, dtype):
        rng = np.random.default_rng(zlib.crc32(repr((name, variant, shape)).encode()))
        z = rng.standard_normal(shape, dtype=np.float32)
        if name in cases.LOSSES:
            row = cases.LOSSES[name]
            kind = cases.KINDS[row.kind]
            made = row.make(rng, z, shape, dtype)
            x = made[0] if isinstance(made, tuple) else made
            x = np.ascontiguousarray(x, dtype=dtype)
            if kind.target == "index":
                if variant == "probs":
                    e = np.exp(rng.standard_normal(shape))
                    t = (e / e.sum(axis=1, keepdims=True)).astype(dtype)
                else:
                    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:], dtype=np.int64)
                return x, t
            if kind.target == "same":
                return x, np.ascontiguousarray(made[1], dtype=dtype)
            return x, None
        return np.ascontiguousarray(z, dtype=dtype), None  # floors


@pytest.fixture(scope="session")
def bench_inputs():
    return _Inputs()
