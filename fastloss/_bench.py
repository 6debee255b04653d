"""Benchmark engine behind ``fastloss bench`` (see fastloss/cli.py).

How speed is measured (docs/PERFORMANCE.md): absolute times drift on shared machines, so every
number is compared with others taken in the SAME run:

* the memory floor of the same shape and dtype, measured right before the case:
  ``x.sum()`` (one read: the floor of a loss-only call), ``np.copy(x)`` (read + write into a fresh
  allocation: the floor of a call that allocates its gradient), ``np.copyto(buf, x)`` (read +
  write into a preallocated buffer: the floor of a call with ``grad_out=``).  A loss that also
  reads a target array has its floor scaled by the extra bytes it must read (``floor_factor``):
  same-sized float targets give x2.0 on the read floor and x1.5 on the copy floors, int64 class
  indices add 8 bytes per row;
* the NumPy reference twin ``fastloss.reference.<name>`` (same call);
* ``torch.nn.functional`` (forward under ``no_grad``; forward+backward with autograd) on
  ``torch.from_numpy`` views with ``torch.set_num_threads`` at the same thread count;
* scikit-learn's ``_loss`` module, ``loss_gradient`` with preallocated outputs at the same thread
  count, where it has the loss: ``HalfMultinomialLoss`` for ``cross_entropy``,
  ``HalfBinomialLoss`` for ``binary_cross_entropy_with_logits``, ``HalfSquaredError`` for
  ``mse_loss``, ``AbsoluteError`` for ``l1_loss`` and ``HuberLoss(delta=...)`` for
  ``huber_loss`` (per-element losses and gradients, no reduction: timed against the
  ``grad_out`` call).

With more than one thread, a last section measures the thread scaling of the compute-bound
cases (``scaling_cases``: the small-C class losses and the sigmoid focal loss): each call on
one thread and on N threads, and N Python threads each making the call on one thread at once
against the same N calls one after another (which proves the GIL is released).

Times are best-of-K ``time.perf_counter`` wall times after one warm-up call; tiny calls are
repeated in an inner loop so that one measurement lasts at least a few milliseconds.  A full
run makes two passes (``--passes``): after all cases, fastloss and the floors are timed again
on fresh inputs of the same kind, and each row keeps its best fastloss and best floor time (a
slow spell of a shared VM, which can last seconds, rarely hits the same case in both).

Adding a loss is adding a row to ``LOSSES`` (and, for a new kind of loss, a row to ``KINDS``,
which says which calls are timed and which floor each is compared with).  Only rows whose name
is in ``fastloss.__all__`` are benchmarked.

JSON document written by ``fastloss bench --json FILE`` (``schema`` = "fastloss-bench/1"):

* ``created``, ``command``, ``settings`` (quick, threads, repeat, passes, dtypes, losses,
  shapes),
  ``machine`` (cpu, logical_cpus, usable_cpus, physical_cores, cache, simd_flags, memory_gib,
  platform, load_average_start), ``versions`` (python, numpy, fastloss, torch, sklearn; null
  when absent),
  ``fastloss_config`` (``fastloss.config()``), ``elapsed_s``, ``others_cpu_fraction``;
* ``results``: one record per loss x shape x dtype x mode with ``loss``, ``kind``, ``shape``,
  ``dtype``, ``mode`` ("loss" | "fwd+bwd" | "grad_out" | "fwd"), ``elements``, ``bytes``
  (of the input), ``threads``, ``fastloss_s``, ``ns_per_element``, ``floor_op``,
  ``floor_raw_s``, ``floor_factor``, ``floor_s`` (= raw x factor), ``x_floor``
  (= fastloss_s / floor_s), ``fastloss_pass_s`` and ``floor_pass_s`` (each pass's time;
  fastloss_s and floor_raw_s are their minima),
  ``numpy_s``, ``vs_numpy``, ``torch_s``, ``vs_torch``,
  ``sklearn_s``, ``vs_sklearn`` (``vs_X`` = X time / fastloss time; null when not measured),
  ``others_cpu`` (fraction of the CPUs other processes used during the case: above ~0.1 the
  timings are inflated), ``error`` (null, or the message of a failed fastloss call) and
  ``notes``;
* ``scaling``: thread scaling of the compute-bound cases of the run (``Loss.scaling``, see
  ``scaling_cases``) when it uses more than one thread, per case and mode ("loss",
  "grad_out"): ``loss``, ``kind``, ``shape``, ``dtype``, ``mode``, ``elements``, ``threads``,
  ``one_thread_s`` and ``threads_s`` (fastloss on 1 and on ``threads`` threads),
  ``speedup`` (= one_thread_s / threads_s), ``python_threads_s`` (``threads`` Python threads
  each making the call on one thread at once, from their release to the last one's end),
  ``python_serial_s`` (= threads x one_thread_s: the same calls one after another),
  ``python_speedup`` (= python_serial_s / python_threads_s), ``others_cpu``, ``error``;
* ``checks``: per case, the relative difference of fastloss's loss and gradient (or output)
  from the reference (or torch): ``loss_rel_err``, ``grad_rel_err``, ``against``, ``ok``.
"""
import gc
import json
import math
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

import fastloss
from .reference._oracles import torchvision_sigmoid_focal_loss

__all__ = ["KINDS", "LOSSES", "BenchConfig", "available_losses", "default_losses",
           "run", "machine_facts", "versions", "plot", "parse_shape"]

# --------------------------------------------------------------------------------------------
# the tables
# --------------------------------------------------------------------------------------------
CLASS_SHAPES = ((65536, 1000), (1048576, 10), (2048, 32000), (32, 10))
CLASS_QUICK = ((8192, 1000), (131072, 10), (256, 32000), (32, 10))
FLAT_SHAPES = ((16777216,),)
FLAT_QUICK = ((2097152,),)

# floor name -> (label, bytes written per element of x: 0 for a pure read, 1 for a copy)
FLOORS = {
    "sum": ("x.sum()", 0),
    "copy": ("np.copy(x)", 1),
    "copyto": ("np.copyto(buf, x)", 1),
}


@dataclass(frozen=True)
class Kind:
    """What is timed for a kind of loss and which memory floor each call is compared with."""
    modes: tuple          # ((mode, floor name), ...) in table order
    shapes: tuple         # default shapes
    quick_shapes: tuple   # --quick shapes (about 1/8 of the default sizes)
    target: str           # "index" (int64 class per sample), "same" (x's shape and dtype), "none"
    min_ndim: int         # shapes with fewer dimensions are refused for this kind
    peer_mode: str        # the mode the NumPy reference is timed in


_LOSS_MODES = (("loss", "sum"), ("fwd+bwd", "copy"), ("grad_out", "copyto"))
KINDS = {
    # softmax-axis losses with class-index targets: (N, C) logits, (N,) int64 targets
    "class": Kind(_LOSS_MODES, CLASS_SHAPES, CLASS_QUICK, "index", 2, "fwd+bwd"),
    # elementwise losses: x and a target of the same shape, read both -> floor x1.5 (x2 read)
    "elementwise": Kind(_LOSS_MODES, FLAT_SHAPES, FLAT_QUICK, "same", 1, "fwd+bwd"),
    # x -> array shaped like x (log_softmax, softmax): one read + one allocating write
    "softmax": Kind((("fwd", "copy"),), CLASS_SHAPES, CLASS_QUICK, "none", 1, "fwd"),
    # x -> one value per row (logsumexp): one read
    "rowreduce": Kind((("fwd", "sum"),), CLASS_SHAPES, CLASS_QUICK, "none", 1, "fwd"),
}


# ---- input makers: (rng, z, shape, dtype) -> (x, target); z is a cached float32 N(0,1) array
def _logits(rng, z, shape, dtype):
    return z.astype(dtype, copy=False)


def _binary_target(rng, shape, dtype):
    return (rng.random(shape, dtype=np.float32) < 0.5).astype(dtype)


def _make_logits_binary(rng, z, shape, dtype):
    return (2 * z).astype(dtype), _binary_target(rng, shape, dtype)


def _make_probs_binary(rng, z, shape, dtype):
    p = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
    return np.clip(p, 1e-6, 1 - 1e-6).astype(dtype), _binary_target(rng, shape, dtype)


def _make_regression(rng, z, shape, dtype):
    return z.astype(dtype, copy=False), rng.standard_normal(shape, dtype=np.float32).astype(dtype)


def _make_kl(rng, z, shape, dtype):
    x = np.log(rng.uniform(0.01, 1.0, shape)).astype(dtype)
    return x, rng.uniform(0.0, 1.0, shape).astype(dtype)


def _make_logprobs(rng, z, shape, dtype):
    return (-np.abs(z)).astype(dtype), None


# ---- torch formulas: (torch, F, x, t) -> tensor (a scalar for the losses)
def _torch_focal(torch, F, x, t, gamma=2.0):
    logp = F.log_softmax(x, dim=1)
    logpt = logp.gather(1, t.unsqueeze(1)).squeeze(1)
    return (-((1 - logpt.exp()) ** gamma) * logpt).mean()


def _torch_sigmoid_focal(torch, F, x, t, alpha=0.25, gamma=2.0):
    return torchvision_sigmoid_focal_loss(x, t, alpha, gamma, reduction="mean")


@dataclass(frozen=True)
class Loss:
    name: str
    kind: str
    make: object = _logits          # (rng, z, shape, dtype) -> x, or (x, target)
    kwargs: dict = field(default_factory=dict)
    torch: object = None            # (torch, F, x, t) -> tensor
    sklearn: object = None          # (sklearn._loss.loss module, shape) -> loss object
    default: bool = False           # benchmarked when no --loss is given
    scaling: bool = False           # compute-bound: its 1 -> N thread scaling is measured


LOSSES = {row.name: row for row in (
    Loss("cross_entropy", "class", torch=lambda torch, F, x, t: F.cross_entropy(x, t),
         sklearn=lambda sk, shape: sk.HalfMultinomialLoss(n_classes=shape[1]), default=True,
         scaling=True),
    Loss("focal_loss", "class", kwargs={"gamma": 2.0}, torch=_torch_focal, default=True,
         scaling=True),
    Loss("nll_loss", "class", make=_make_logprobs,
         torch=lambda torch, F, x, t: F.nll_loss(x, t)),
    Loss("log_softmax", "softmax", torch=lambda torch, F, x, t: F.log_softmax(x, dim=-1)),
    Loss("softmax", "softmax", torch=lambda torch, F, x, t: F.softmax(x, dim=-1)),
    Loss("logsumexp", "rowreduce", torch=lambda torch, F, x, t: torch.logsumexp(x, dim=-1)),
    Loss("sigmoid_focal_loss", "elementwise", _make_logits_binary,
         {"alpha": 0.25, "gamma": 2.0, "reduction": "mean"}, _torch_sigmoid_focal, default=True,
         scaling=True),
    Loss("binary_cross_entropy_with_logits", "elementwise", _make_logits_binary,
         torch=lambda torch, F, x, t: F.binary_cross_entropy_with_logits(x, t),
         sklearn=lambda sk, shape: sk.HalfBinomialLoss(), default=True),
    Loss("binary_cross_entropy", "elementwise", _make_probs_binary,
         torch=lambda torch, F, x, t: F.binary_cross_entropy(x, t), default=True),
    Loss("mse_loss", "elementwise", _make_regression,
         torch=lambda torch, F, x, t: F.mse_loss(x, t),
         sklearn=lambda sk, shape: sk.HalfSquaredError(), default=True),
    Loss("l1_loss", "elementwise", _make_regression,
         torch=lambda torch, F, x, t: F.l1_loss(x, t),
         sklearn=lambda sk, shape: sk.AbsoluteError(), default=True),
    Loss("smooth_l1_loss", "elementwise", _make_regression, {"beta": 1.0},
         lambda torch, F, x, t: F.smooth_l1_loss(x, t, beta=1.0), default=True),
    Loss("huber_loss", "elementwise", _make_regression, {"delta": 1.0},
         lambda torch, F, x, t: F.huber_loss(x, t, delta=1.0),
         lambda sk, shape: sk.HuberLoss(delta=1.0), default=True),
    Loss("kl_div", "elementwise", _make_kl, {"reduction": "batchmean"},
         lambda torch, F, x, t: F.kl_div(x, t, reduction="batchmean"), default=True),
)}


def available_losses():
    """Names of the LOSSES rows that this fastloss exports (in table order)."""
    exported = set(getattr(fastloss, "__all__", ()))
    return [name for name in LOSSES if name in exported and hasattr(fastloss, name)]


def default_losses():
    return [name for name in available_losses() if LOSSES[name].default]


def parse_shape(text):
    """"65536x1000" -> (65536, 1000); "16777216" -> (16777216,).  ValueError when malformed."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"invalid shape {text!r}: expected positive integers joined by 'x', "
                         f"e.g. 65536x1000 or 16777216") from None
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"invalid shape {text!r}: every dimension must be >= 1")
    return shape


def shape_str(shape):
    return "x".join(str(n) for n in shape)


# --------------------------------------------------------------------------------------------
# machine facts and versions
# --------------------------------------------------------------------------------------------
def machine_facts():
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "usable_cpus": None, "physical_cores": None, "cache": None, "simd_flags": [],
            "memory_gib": None, "platform": platform.platform()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        cores, flags = set(), set()
        phys = core = None
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and value:
                info["cpu"] = value
            elif key == "cache size" and info["cache"] is None:
                info["cache"] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "physical id":
                phys = value
            elif key == "core id":
                core = value
            elif not line.strip():
                if core is not None:
                    cores.add((phys, core))
                phys = core = None
        if core is not None:
            cores.add((phys, core))
        info["physical_cores"] = len(cores) or None
        info["simd_flags"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                          "avx512vl", "avx512dq", "avx512_bf16", "asimd", "sve")
                              if f in flags]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return info


def _cpu_busy_seconds():
    """Busy CPU seconds of the whole machine since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
        values = [int(v) for v in fields[1:9]]
    except (OSError, ValueError, AttributeError):
        return None
    if len(values) < 8 or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / ticks


class CpuWatch:
    """How much of the machine OTHER processes used while we ran (load they add inflates
    multi-threaded timings: a parallel region waits for its slowest thread)."""

    def __init__(self):
        self.wall = time.perf_counter()
        self.busy = _cpu_busy_seconds()
        t = os.times()
        self.own = t.user + t.system

    def others_fraction(self):
        """Fraction of the usable CPUs' time used by other processes since creation."""
        busy = _cpu_busy_seconds()
        if busy is None or self.busy is None:
            return None
        t = os.times()
        wall = time.perf_counter() - self.wall
        ncpu = os.cpu_count() or 1
        others = (busy - self.busy) - (t.user + t.system - self.own)
        if wall <= 0:
            return None
        return max(0.0, min(1.0, others / (wall * ncpu)))


def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _import_torch():
    try:
        import torch
        import torch.nn.functional as F
    except Exception:  # noqa: BLE001 - torch missing or broken: just no torch column
        return None, None
    return torch, F


def _import_sklearn_loss():
    """scikit-learn's private loss module (sklearn._loss.loss), or None."""
    try:
        from sklearn._loss import loss as sk_loss
    except Exception:  # noqa: BLE001
        return None
    return sk_loss


def versions(torch=None):
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "fastloss": fastloss.__version__, "torch": None, "sklearn": None}
    if torch is not None:
        out["torch"] = torch.__version__
    try:
        import sklearn
        out["sklearn"] = sklearn.__version__
    except Exception:  # noqa: BLE001
        pass
    return out


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def measure(fn, repeat, *, budget=10.0, min_time=0.002, min_total=0.0, max_count=50,
            warmup=True):
    """Best-of-`repeat` wall time of one call of fn (seconds), and the last result.

    One warm-up call (unless warmup=False), then single calls are timed.  Once three of them
    have been timed and the fastest took less than `min_time`, the call is timed in inner loops
    of about min_time instead (per-call average of each loop; the best loop counts).  At least
    `repeat` measurements are taken; more (up to `max_count`) while less than `min_total`
    seconds have been spent, which makes the best of them robust against preemption on a busy
    machine; none after `budget` seconds (at least one measurement is always taken)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    perf = time.perf_counter
    try:
        start = perf()
        result = fn() if warmup else None

        def more(done):
            spent = perf() - start
            if spent >= budget:
                return False
            return done < repeat or (spent < min_total and done < max_count)

        best, done = math.inf, 0
        while True:
            result = None
            t0 = perf()
            result = fn()
            best = min(best, perf() - t0)
            done += 1
            if done >= 3 and best < min_time:
                break
            if not more(done):
                return best, result
        number = min(100000, int(math.ceil(min_time / max(best, 1e-8))))
        best, done = math.inf, 0
        while done == 0 or more(done):
            t0 = perf()
            for _ in range(number):
                fn()
            best = min(best, (perf() - t0) / number)
            done += 1
        return best, result
    finally:
        if gc_was_enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    losses: list = None           # None: default_losses()
    shapes: list = None           # None: each kind's default (or quick) shapes
    dtypes: tuple = ("float32", "float64")
    quick: bool = False
    threads: int = None           # None: fastloss.get_num_threads()
    repeat: int = None            # None: 3 (quick) / 5
    skip: tuple = ()              # peers not to run: "numpy", "torch", "sklearn"
    reference_limit_s: float = None   # skip the reference above this estimated s/call
    min_total: float = None       # keep measuring fastloss and the floors at least this long
    passes: int = None            # None: 1 (quick) / 2: fastloss and the floors timed again
                                  # after all cases, best of the passes kept per row
    seed: int = 0
    command: list = None          # recorded in the JSON document (default: sys.argv)


def format_time(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 10:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _ratio(num, den):
    if num is None or den is None or den <= 0 or not math.isfinite(num):
        return None
    return num / den


def _fmt_ratio(r, digits=2):
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    return f"{r:.{digits}f}x"


class Table:
    """Fixed-width table printed row by row as the measurements come in."""
    COLS = (("loss", "<"), ("shape", "<"), ("dtype", "<"), ("mode", "<"), ("fastloss", ">"),
            ("ns/el", ">"), ("floor", ">"), ("x floor", ">"), ("vs numpy", ">"),
            ("vs torch", ">"), ("vs sklearn", ">"))

    def __init__(self, out, loss_width, shape_width):
        self.out = out
        self.widths = [max(loss_width, 4), max(shape_width, 5), 7, 8, 10, 7, 10, 7, 8, 8, 10]

    def _line(self, cells):
        parts = []
        for (name, align), width, cell in zip(self.COLS, self.widths, cells):
            parts.append(f"{cell:{align}{width}}")
        return " | ".join(parts).rstrip()

    def header(self):
        line = self._line([c[0] for c in self.COLS])
        print(line, file=self.out)
        print("-" * len(line), file=self.out)
        self.out.flush()

    def row(self, rec):
        if rec["error"]:
            cells = [rec["loss"], shape_str(rec["shape"]), rec["dtype"], rec["mode"],
                     "ERROR", "", "", "", "", "", ""]
            line = self._line(cells) + "  " + rec["error"][:100]
        else:
            ns = rec["ns_per_element"]
            cells = [rec["loss"], shape_str(rec["shape"]), rec["dtype"], rec["mode"],
                     format_time(rec["fastloss_s"]), "-" if ns is None else f"{ns:.2f}",
                     format_time(rec["floor_s"]), _fmt_ratio(rec["x_floor"]),
                     _fmt_ratio(rec["vs_numpy"], 1), _fmt_ratio(rec["vs_torch"], 1),
                     _fmt_ratio(rec["vs_sklearn"], 1)]
            line = self._line(cells)
        if rec.get("others_cpu") is not None and rec["others_cpu"] > 0.1:
            line += f"  busy {100 * rec['others_cpu']:.0f}%"
        print(line, file=self.out)
        self.out.flush()

    def note(self, text):
        print(f"    note: {text}", file=self.out)
        self.out.flush()


def _rel_err(a, b):
    """max |a - b| / max |b| (inf/nan-safe; 0 when both are all zero/equal)."""
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    diff = np.abs(a - b)
    diff[same] = 0.0
    scale = np.max(np.abs(b[np.isfinite(b)]), initial=0.0)
    err = float(np.max(diff))
    return err / scale if scale > 0 else err


def _tolerance(dtype):
    return 2e-4 if dtype == "float32" else 1e-9


def header_lines(cfg, machine, vers, threads, torch):
    conf = fastloss.config()
    cpu = (f"CPU: {machine['cpu']} ({machine['logical_cpus']} logical CPUs, "
           f"{machine['usable_cpus']} usable, {machine['physical_cores'] or '?'} cores"
           f"{', cache ' + machine['cache'] if machine['cache'] else ''}; "
           f"{' '.join(machine['simd_flags']) or 'no SIMD flags listed'})")
    if machine["memory_gib"]:
        cpu += f", {machine['memory_gib']} GiB RAM"
    fl = (f"fastloss {conf['version']}: backend {conf['backend']}, "
          f"OpenMP {'on' if conf['openmp'] else 'off'}, {threads} threads, "
          f"SIMD {conf['simd']} | numpy {vers['numpy']} | "
          f"torch {vers['torch'] or 'not available'}"
          f"{f' ({threads} threads)' if torch is not None else ''} | "
          f"scikit-learn {vers['sklearn'] or 'not available'} | python {vers['python']}")
    how = ("best of {} wall times after a warm-up (reference/torch/sklearn: fewer); "
           "floors: single-threaded NumPy in the same run; x floor = fastloss / floor "
           "(1.00x = memory bound, lower is better); vs X = X time / fastloss time "
           "(speedup)").format(cfg.repeat)
    modes = ("modes: loss = forward only (floor x.sum()); fwd+bwd = return_grad=True, "
             "allocating (floor np.copy); grad_out = into a preallocated buffer "
             "(floor np.copyto; vs sklearn: loss_gradient with preallocated outputs); "
             "fwd = softmax family output")
    return [cpu, fl, how, modes]


def run(cfg, out=None, records=None):
    """Run the benchmark described by cfg, printing the table to `out` (default stdout).

    Returns the JSON-able document (see the module docstring).  `records`, if given, is a
    list that receives each result as it is measured (so a caller can keep partial results
    after a KeyboardInterrupt)."""
    out = sys.stdout if out is None else out
    started = time.perf_counter()
    losses = list(cfg.losses) if cfg.losses else default_losses()
    if cfg.repeat is None:
        cfg.repeat = 3 if cfg.quick else 5
    threads = cfg.threads or fastloss.get_num_threads()
    if cfg.reference_limit_s is None:
        cfg.reference_limit_s = 3.0 if cfg.quick else math.inf
    slow_budget = 0.5 if cfg.quick else 4.0
    slow_repeat = max(1, min(cfg.repeat, 2 if cfg.quick else 3))
    if cfg.min_total is None:
        cfg.min_total = 0.04 if cfg.quick else 0.3
    if cfg.passes is None:
        cfg.passes = 1 if cfg.quick else 2

    torch, F = (None, None) if "torch" in cfg.skip else _import_torch()
    sk_loss = None if "sklearn" in cfg.skip else _import_sklearn_loss()
    machine = machine_facts()
    machine["load_average_start"] = load_average()
    vers = versions(torch)
    watch = CpuWatch()

    old_threads = fastloss.get_num_threads()
    old_torch_threads = torch.get_num_threads() if torch is not None else None
    fastloss.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)

    records = [] if records is None else records
    checks, scaling = [], []
    doc = {"schema": "fastloss-bench/1",
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "command": list(cfg.command if cfg.command is not None else sys.argv),
           "settings": None, "machine": machine, "versions": vers,
           "fastloss_config": fastloss.config(), "results": records, "checks": checks,
           "scaling": scaling,
           "elapsed_s": None, "others_cpu_fraction": None}
    plan = []
    for name in losses:
        kind = KINDS[LOSSES[name].kind]
        shapes = cfg.shapes or (kind.quick_shapes if cfg.quick else kind.shapes)
        for shape in shapes:
            plan.append((name, tuple(shape)))
    doc["settings"] = {"quick": cfg.quick, "threads": threads, "repeat": cfg.repeat,
                       "passes": cfg.passes,
                       "dtypes": list(cfg.dtypes), "losses": losses,
                       "shapes": [list(s) for s in (cfg.shapes or [])] or "default",
                       "skip": list(cfg.skip)}

    for line in header_lines(cfg, machine, vers, threads, torch):
        print(line, file=out)
    load = machine["load_average_start"]
    ncpu = machine["usable_cpus"] or machine["logical_cpus"] or 1
    if load and load[0] > 0.25 * ncpu:
        print(f"WARNING: load average {load[0]:.2f} on {ncpu} CPUs before the run: other "
              "processes compete for the CPUs and inflate (multi-threaded) timings; rows "
              "marked 'busy' below had other processes using >10% of the CPUs", file=out)
    if fastloss.get_backend() != "compiled":
        print("WARNING: fastloss runs on the NumPy reference backend (FASTLOSS_BACKEND): the "
              "'fastloss' column times the reference, not the compiled kernels", file=out)
    print(file=out)
    table = Table(out, max(len(n) for n in losses) if losses else 4,
                  max(len(shape_str(s)) for _, s in plan) if plan else 5)
    table.header()

    rng = np.random.default_rng(cfg.seed)
    base = {}   # shape -> (z float32 N(0,1), int64 class targets or None)
    try:
        for name, shape in plan:
            if shape not in base:
                base.clear()
                base[shape] = _shape_base(rng, shape)
            for dtype in cfg.dtypes:
                _run_case(cfg, name, shape, dtype, base[shape], rng, threads, torch, F,
                          sk_loss, slow_budget, slow_repeat, table, records,
                          checks)
        # a slow spell of the machine lasting a whole case (seconds, on shared VMs) inflates
        # every best-of-K time of that case: later passes time fastloss and the floors again
        # (peers are not repeated) and each row keeps its best fastloss and floor times
        for k in range(1, cfg.passes):
            print(f"\npass {k + 1} of {cfg.passes}: fastloss and the floors timed again; "
                  "each row keeps its best times of all passes", file=out)
            prng = np.random.default_rng(cfg.seed + k)
            for name, shape in plan:
                shared = _shape_base(prng, shape)
                for dtype in cfg.dtypes:
                    recs = [r for r in records if r["loss"] == name and r["dtype"] == dtype
                            and tuple(r["shape"]) == shape]
                    if recs:
                        x, target = _case_inputs(name, shape, dtype, shared, prng)
                        floors, fl_time, _, _ = _time_fastloss(cfg, name, x, target)
                        for rec in recs:
                            _keep_best(rec, floors, fl_time)
                del shared
            table.header()
            for rec in records:
                table.row(rec)
        # thread scaling of the compute-bound cases: 1 -> N OpenMP threads, and N Python
        # threads making calls at once (the GIL is released)
        cases = scaling_cases(plan) if threads > 1 and "scaling" not in cfg.skip else []
        if cases:
            print(f"\nthread scaling of the compute-bound cases, 1 -> {threads} threads, and "
                  f"{threads} Python threads each making the call on one thread at once "
                  "(speedup over the calls one after another):", file=out)
            srng = np.random.default_rng(cfg.seed + cfg.passes)
            for name, shape in cases:
                shared = _shape_base(srng, shape)
                for dtype in cfg.dtypes:
                    scaling.extend(_time_scaling(cfg, name, shape, dtype, shared, srng,
                                                 threads))
                del shared
            for line in _scaling_lines(scaling, threads):
                print(line, file=out)
    finally:
        fastloss.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch_threads)
        doc["elapsed_s"] = time.perf_counter() - started
        doc["others_cpu_fraction"] = watch.others_fraction()
    others = doc["others_cpu_fraction"]
    busy = "" if others is None else (f"; other processes used {100 * others:.0f}% of the "
                                      f"CPUs meanwhile")
    extra = f" (and {len(scaling)} thread-scaling rows)" if scaling else ""
    print(f"\n{len(records)} measurements{extra} in {doc['elapsed_s']:.1f} s{busy}", file=out)
    if others is not None and others > 0.1:
        print("WARNING: the machine was busy: compare ratios from a run on an idle machine",
              file=out)
    failed = [r for r in records + scaling if r["error"]]
    if failed:
        print(f"WARNING: {len(failed)} fastloss call(s) failed (see ERROR rows)", file=out)
    bad = [c for c in checks if not c["ok"]]
    if bad:
        print(f"WARNING: {len(bad)} case(s) disagree with the reference/torch (see notes)",
              file=out)
    return doc


def _shape_base(rng, shape):
    """The draws every case of one shape is made from: z ~ N(0, 1) (float32) and, for shapes
    with a class axis, class indices."""
    z = rng.standard_normal(shape, dtype=np.float32)
    idx = (rng.integers(0, shape[1], size=(shape[0],) + shape[2:], dtype=np.int64)
           if len(shape) >= 2 else None)
    return z, idx


def _case_inputs(name, shape, dtype, base, rng):
    """(x, target) of one case, made from the shape's shared N(0, 1) draw and class indices."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    z, idx = base
    dt = np.dtype(dtype)
    made = row.make(rng, z, shape, dt)
    if kind.target == "index":
        x, target = (made[0] if isinstance(made, tuple) else made), idx
    elif kind.target == "same":
        x, target = made
    else:
        x, target = (made[0] if isinstance(made, tuple) else made), None
    return np.ascontiguousarray(x, dtype=dt), target


def _time_fastloss(cfg, name, x, target):
    """The floors of the case's modes (right before it) and fastloss's best times per mode:
    (floors, times, results of the peer mode, errors)."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    args = (x,) if target is None else (x, target)
    fn = getattr(fastloss, name)
    kw = dict(row.kwargs)
    buf = np.empty_like(x)
    np.copyto(buf, x)   # fault the pages in
    floor_fns = {"sum": lambda: x.sum(), "copy": lambda: np.copy(x),
                 "copyto": lambda: np.copyto(buf, x)}
    floors = {}
    for _, floor in kind.modes:
        if floor not in floors:
            floors[floor] = measure(floor_fns[floor], cfg.repeat, min_total=cfg.min_total)[0]
    calls = {"loss": lambda: fn(*args, **kw),
             "fwd": lambda: fn(*args, **kw),
             "fwd+bwd": lambda: fn(*args, return_grad=True, **kw),
             "grad_out": lambda: fn(*args, return_grad=True, grad_out=buf, **kw)}
    fl_time, fl_result, errors = {}, {}, {}
    for mode, _ in kind.modes:
        try:
            fl_time[mode], fl_result[mode] = measure(calls[mode], cfg.repeat,
                                                      min_total=cfg.min_total)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other cases
            errors[mode] = f"{type(exc).__name__}: {exc}"
        if mode != kind.peer_mode:
            fl_result.pop(mode, None)
    return floors, fl_time, fl_result, errors


def _derive(rec):
    """A record's fastloss and floor times (best of its passes) and the figures derived from
    them and the peers' times."""
    times = [v for v in rec["fastloss_pass_s"] if v is not None]
    rec["fastloss_s"] = t = min(times) if times else None
    rec["floor_raw_s"] = min(rec["floor_pass_s"])
    rec["floor_s"] = rec["floor_raw_s"] * rec["floor_factor"]
    n = rec["elements"]
    rec["ns_per_element"] = None if t is None or not n else t / n * 1e9
    rec["x_floor"] = _ratio(t, rec["floor_s"])
    for peer in ("numpy", "torch", "sklearn"):
        rec["vs_" + peer] = _ratio(rec[peer + "_s"], t)
    return rec


def _keep_best(rec, floors, fl_time):
    """Fold one more pass's fastloss and floor times into a record (best of the passes)."""
    floor = dict(KINDS[rec["kind"]].modes)[rec["mode"]]
    rec["fastloss_pass_s"].append(fl_time.get(rec["mode"]))
    rec["floor_pass_s"].append(floors[floor])
    _derive(rec)


def _run_case(cfg, name, shape, dtype, base, rng, threads, torch, F, sk_loss,
              slow_budget, slow_repeat, table, records, checks):
    row = LOSSES[name]
    kind = KINDS[row.kind]
    watch = CpuWatch()
    dt = np.dtype(dtype)
    x, target = _case_inputs(name, shape, dtype, base, rng)
    args = (x,) if target is None else (x, target)
    n = x.size
    xbytes = x.nbytes
    tbytes = 0 if target is None else target.nbytes
    ref_fn = getattr(fastloss.reference, name, None)
    kw = dict(row.kwargs)
    notes = []

    # ---- floors, measured right before the case, then fastloss
    floors, fl_time, fl_result, errors = _time_fastloss(cfg, name, x, target)

    # ---- NumPy reference (same call), in the peer mode only
    peer_time = {}
    ref_result = None
    if "numpy" not in cfg.skip and ref_fn is not None and kind.peer_mode in fl_time:
        grad_kw = {"return_grad": True} if kind.peer_mode == "fwd+bwd" else {}
        try:
            # estimate the cost from a slice of the rows, skip when too slow
            rows = max(1, shape[0] // 16)
            probe_args = tuple(a[:rows] for a in args)
            probe = measure(lambda: ref_fn(*probe_args, **grad_kw, **kw), 1,
                            min_time=0.0)[0]
            est = probe * shape[0] / rows
            if est > cfg.reference_limit_s:
                notes.append(f"NumPy reference skipped (estimated {est:.1f} s per call)")
            else:
                # the reference is plain NumPy (no lazy initialisation to warm up): one timed
                # call in --quick mode when it is slow, fewer repeats than fastloss otherwise
                slow = est > (0.1 if cfg.quick else 1.0)
                peer_time["numpy"], ref_result = measure(
                    lambda: ref_fn(*args, **grad_kw, **kw), 1 if slow else slow_repeat,
                    budget=slow_budget, min_total=cfg.min_total,
                    warmup=not (slow and cfg.quick))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"NumPy reference failed: {type(exc).__name__}: {exc}")

    # ---- torch
    torch_result = None
    if torch is not None and row.torch is not None:
        xt = torch.from_numpy(x)
        tt = None if target is None else torch.from_numpy(target)
        tfn = row.torch

        def torch_fwd():
            with torch.no_grad():
                return tfn(torch, F, xt, tt)

        def torch_fwd_bwd():
            xr = xt.detach().requires_grad_(True)
            loss = tfn(torch, F, xr, tt)
            loss.backward()
            return loss.detach(), xr.grad

        try:
            first_mode = kind.modes[0][0]
            peer_time["torch:" + first_mode], res = measure(
                torch_fwd, slow_repeat, budget=slow_budget, min_total=cfg.min_total)
            if kind.peer_mode == "fwd":
                torch_result = res
            res = None
            if kind.peer_mode == "fwd+bwd":
                peer_time["torch:fwd+bwd"], torch_result = measure(
                    torch_fwd_bwd, slow_repeat, budget=slow_budget, min_total=cfg.min_total)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"torch failed: {type(exc).__name__}: {exc}")

    # ---- scikit-learn's loss_gradient (preallocated outputs), where it has the loss: its
    # class losses take (n_samples, n_classes) predictions, the others one per sample
    if (sk_loss is not None and row.sklearn is not None and "grad_out" in dict(kind.modes)
            and (x.ndim == 2 or row.kind != "class")):
        try:
            sk = row.sklearn(sk_loss, shape)
            raw = x if row.kind == "class" else x.reshape(-1)
            y = np.ascontiguousarray(target, dtype=dt).reshape(-1)
            loss_out = np.empty(raw.shape[0], dtype=dt)
            buf = np.empty_like(raw)
            peer_time["sklearn"] = measure(
                lambda: sk.loss_gradient(y_true=y, raw_prediction=raw, loss_out=loss_out,
                                         gradient_out=buf, n_threads=threads),
                slow_repeat, budget=slow_budget, min_total=cfg.min_total)[0]
        except Exception as exc:  # noqa: BLE001
            notes.append(f"sklearn failed: {type(exc).__name__}: {exc}")

    # ---- records
    others = watch.others_fraction()
    for mode, floor in kind.modes:
        label, writes = FLOORS[floor]
        factor = (xbytes * (1 + writes) + tbytes) / (xbytes * (1 + writes)) if xbytes else 1.0
        rec = _derive({
            "loss": name, "kind": row.kind, "shape": list(shape), "dtype": dtype,
            "mode": mode, "elements": n, "bytes": xbytes, "threads": threads,
            "fastloss_pass_s": [fl_time.get(mode)], "floor_pass_s": [floors[floor]],
            "floor_op": label, "floor_factor": factor,
            "numpy_s": peer_time.get("numpy") if mode == kind.peer_mode else None,
            "torch_s": peer_time.get("torch:" + mode),
            "sklearn_s": peer_time.get("sklearn") if mode == "grad_out" else None,
            "others_cpu": others,
            "error": errors.get(mode), "notes": list(notes) if mode == kind.peer_mode else []})
        records.append(rec)
        table.row(rec)

    # ---- correctness check of the peer-mode result against the reference (else torch)
    got = fl_result.get(kind.peer_mode)
    against, want = None, None
    if ref_result is not None:
        against, want = "numpy", ref_result
    elif torch_result is not None:
        against = "torch"
        want = (tuple(v.numpy() for v in torch_result) if isinstance(torch_result, tuple)
                else torch_result.numpy())
    if got is not None and want is not None:
        if kind.peer_mode == "fwd+bwd":
            loss_err, grad_err = _rel_err(got[0], want[0]), _rel_err(got[1], want[1])
        else:
            loss_err, grad_err = _rel_err(got, want), None
        tol = _tolerance(dtype)
        ok = loss_err <= tol and (grad_err is None or grad_err <= tol)
        checks.append({"loss": name, "shape": list(shape), "dtype": dtype, "against": against,
                       "loss_rel_err": loss_err, "grad_rel_err": grad_err, "ok": ok})
        if not ok:
            what = "output" if grad_err is None else "loss/grad"
            notes.append(f"MISMATCH vs {against}: {what} relative error "
                         f"{loss_err:.2e}" + ("" if grad_err is None else f" / {grad_err:.2e}")
                         + f" (tolerance {tol:g})")
            for rec in records[-len(kind.modes):]:
                if rec["mode"] == kind.peer_mode:
                    rec["notes"] = list(notes)
    for text in notes:
        table.note(f"{name} {shape_str(shape)} {dtype}: {text}")


# --------------------------------------------------------------------------------------------
# thread scaling
# --------------------------------------------------------------------------------------------
SCALING_MODES = ("loss", "grad_out")
SCALING_MAX_C = 48            # class losses: the small-C tile path (FL_SMALL_C in the kernels)
SCALING_MIN_ELEMENTS = 1 << 16  # smaller inputs run on one thread (the kernels' grain size)
SCALING_SETTLE_S = 0.03       # Python threads start this long after a multi-threaded call


def scaling_cases(plan):
    """The (loss, shape) cases of a plan whose thread scaling a run measures: the losses
    marked compute-bound (``Loss.scaling``), class losses only with at most SCALING_MAX_C
    classes, and only inputs of at least SCALING_MIN_ELEMENTS elements."""
    cases = []
    for name, shape in plan:
        row = LOSSES[name]
        if not row.scaling or math.prod(shape) < SCALING_MIN_ELEMENTS:
            continue
        if row.kind == "class" and shape[1] > SCALING_MAX_C:
            continue
        cases.append((name, shape))
    return cases


def python_threads_time(calls, repeat, warmup=True, burst=1):
    """Best wall time (seconds) of len(calls) Python threads each making its call at the same
    moment, per call: best of `repeat` rounds (after one warm-up round unless warmup=False)
    in which each thread makes its call `burst` times back to back.  A barrier releases the
    threads; each reads the clock itself right before its first and after its last call, and
    a round lasts from the first start to the last end (a timing thread of its own could be
    descheduled while the callers run), divided by `burst`.  Calls that release the GIL
    overlap; calls that hold it take as long as the calls one after another.  Bursts of
    several calls measure the steady state of busy threads: a thread released from the
    barrier may find its CPU idle and slow to wake (a halted vCPU), which one call alone
    would pay in full."""
    n = len(calls)
    skip = 1 if warmup else 0
    rounds = repeat + skip
    start, end = threading.Barrier(n), threading.Barrier(n)
    stamps = [[None] * n for _ in range(rounds)]
    errors = []

    def worker(k, call):
        for r in range(rounds):
            start.wait()
            t0 = time.perf_counter()
            try:
                for _ in range(burst):
                    call()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                errors.append(exc)
            stamps[r][k] = (t0, time.perf_counter())
            end.wait()

    workers = [threading.Thread(target=worker, args=(k, call), daemon=True)
               for k, call in enumerate(calls)]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        if gc_was_enabled:
            gc.enable()
    if errors:
        raise errors[0]
    return min(max(t1 for _, t1 in st) - min(t0 for t0, _ in st)
               for st in stamps[skip:]) / burst


def _time_scaling(cfg, name, shape, dtype, base, rng, threads):
    """Records of one case's thread scaling: per mode, fastloss on one thread and on
    `threads` threads, and `threads` Python threads each making the call on one thread at
    once (own gradient buffers), against the same calls one after another (threads x the
    one-thread time).  The three are timed in turn, a few back-to-back calls each (the
    Python threads: a warm-up round, then a burst of 3 calls each), for repeat x passes
    rounds, and each keeps its best: a slow spell of a shared machine then slows all three
    alike instead of one of them."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    x, target = _case_inputs(name, shape, dtype, base, rng)
    args = (x,) if target is None else (x, target)
    fn = getattr(fastloss, name)
    kw = dict(row.kwargs)
    bufs = [np.empty_like(x) for _ in range(threads)]
    for b in bufs:
        np.copyto(b, x)   # fault the pages in

    def call(mode, k=0):
        if mode == "loss":
            return lambda: fn(*args, **kw)
        return lambda: fn(*args, return_grad=True, grad_out=bufs[k], **kw)

    last_parallel = -math.inf

    def timed(f, nthreads):
        # the best of two calls after measure's warm-up call: the first call after a switch
        # finds the other threads (and their CPUs) idle, which back-to-back calls do not
        nonlocal last_parallel
        fastloss.set_num_threads(nthreads)
        best = measure(f, 2)[0]
        if nthreads > 1:
            last_parallel = time.perf_counter()
        return best

    def python_threads(calls):
        # after a multi-threaded call the OpenMP runtime keeps its idle workers spinning
        # for a while (libgomp: about 8 ms of CPU here) so that the next call starts at
        # once; they would take a CPU from the Python threads, which must not wait for them
        wait = SCALING_SETTLE_S - (time.perf_counter() - last_parallel)
        if wait > 0:
            time.sleep(wait)
        fastloss.set_num_threads(1)
        return python_threads_time(calls, 1, burst=3)

    rounds = cfg.repeat * max(1, cfg.passes)
    records = []
    watch = CpuWatch()
    for mode in SCALING_MODES:
        if mode not in dict(kind.modes):
            continue
        single = call(mode)
        concurrent = [call(mode, k) for k in range(threads)]
        steps = (("one", lambda: timed(single, 1)), ("many", lambda: timed(single, threads)),
                 ("py", lambda: python_threads(concurrent)))
        best = dict.fromkeys(("one", "many", "py"), math.inf)
        error = None
        gc_was_enabled = gc.isenabled()
        try:
            timed(single, 1)            # warm-up
            timed(single, threads)
            gc.disable()
            for r in range(rounds):
                # alternate the order, so that neither follows the other every time
                for key, step in (steps if r % 2 == 0 else steps[::-1]):
                    best[key] = min(best[key], step())
        except Exception as exc:  # noqa: BLE001 - report and go on
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if gc_was_enabled:
                gc.enable()
            fastloss.set_num_threads(threads)
        ok = error is None
        one, many, py = best["one"], best["many"], best["py"]
        records.append({
            "loss": name, "kind": row.kind, "shape": list(shape), "dtype": dtype,
            "mode": mode, "elements": x.size, "threads": threads,
            "one_thread_s": one if ok else None, "threads_s": many if ok else None,
            "speedup": _ratio(one, many) if ok else None,
            "python_threads_s": py if ok else None,
            "python_serial_s": threads * one if ok else None,
            "python_speedup": _ratio(threads * one, py) if ok else None,
            "others_cpu": None, "error": error})
    others = watch.others_fraction()
    for rec in records:
        rec["others_cpu"] = others
    return records


def _scaling_lines(records, threads):
    """The printed thread-scaling table."""
    head = ("loss", "shape", "dtype", "mode", "1 thread", f"{threads} threads", "speedup",
            f"{threads} Py threads", "speedup")
    rows = []
    for r in records:
        if r["error"]:
            rows.append((r["loss"], shape_str(r["shape"]), r["dtype"], r["mode"], "ERROR",
                         "", "", "", r["error"][:100]))
            continue
        rows.append((r["loss"], shape_str(r["shape"]), r["dtype"], r["mode"],
                     format_time(r["one_thread_s"]), format_time(r["threads_s"]),
                     _fmt_ratio(r["speedup"]), format_time(r["python_threads_s"]),
                     _fmt_ratio(r["python_speedup"])))
    widths = [max(len(str(row[i])) for row in rows + [head]) for i in range(len(head))]
    align = "<<<<>>>>>"

    def line(cells):
        return " | ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths)).rstrip()

    out = [line(head)]
    out.append("-" * len(out[0]))
    out.extend(line(row) for row in rows)
    return out


# --------------------------------------------------------------------------------------------
# JSON and plot
# --------------------------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value):
    """Non-finite floats -> None so the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(doc, path):
    with open(path, "w") as fh:
        json.dump(_clean(doc), fh, indent=1, default=_json_default, allow_nan=False)
        fh.write("\n")


def markdown(doc):
    """The README's benchmark table: one row per loss x shape x dtype, with the fwd+bwd time,
    its floor ratio and speedups, the loss-only and grad_out times with their floor ratios,
    and scikit-learn's time over the grad_out call's (softmax-family rows show their single
    mode in the first columns); then the thread-scaling table, if the run measured one."""
    m, v, conf = doc["machine"], doc["versions"], doc["fastloss_config"]
    threads = doc["settings"]["threads"]
    lines = [f"One run of `{' '.join(doc.get('command') or ['fastloss', 'bench'])}` "
             f"({threads} threads, best of {doc['settings']['repeat']}): {m['cpu']}, "
             f"{m['logical_cpus']} logical CPUs, SIMD path {conf['simd']}, "
             f"{m['memory_gib']} GiB; NumPy {v['numpy']}, torch {v['torch'] or 'not installed'}, "
             f"scikit-learn {v['sklearn'] or 'not installed'}; other processes used "
             f"{100 * (doc.get('others_cpu_fraction') or 0):.0f}% of the CPUs during the run.",
             "",
             "| loss | shape | dtype | fwd+bwd | x floor | vs NumPy | vs torch | "
             "loss only (x floor) | grad_out (x floor) | grad_out vs sklearn |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    def md_shape(shape):
        return shape_str(shape).replace("x", " x ")

    cases = {}
    for rec in doc["results"]:
        key = (rec["loss"], md_shape(rec["shape"]), rec["dtype"])
        cases.setdefault(key, {})[rec["mode"]] = rec

    def md_time(seconds):
        text = format_time(seconds)
        return text[:-3] + " µs" if text.endswith(" us") else text

    def timed(rec):
        if rec is None or rec.get("error"):
            return "-"
        return f"{md_time(rec['fastloss_s'])} ({_fmt_ratio(rec['x_floor'])})"

    def vs_sklearn(rec):
        if rec is None or rec.get("error") or rec.get("vs_sklearn") is None:
            return "-"
        return _fmt_ratio(rec["vs_sklearn"], 1)

    for (loss, shape, dtype), modes in cases.items():
        main = modes.get("fwd+bwd") or modes.get("fwd") or next(iter(modes.values()))
        if main.get("error"):
            cells = ["ERROR", "-", "-", "-"]
        else:
            cells = [md_time(main["fastloss_s"]), _fmt_ratio(main["x_floor"]),
                     _fmt_ratio(main["vs_numpy"], 1), _fmt_ratio(main["vs_torch"], 1)]
        lines.append(f"| `{loss}` | {shape} | {dtype} | " + " | ".join(cells) +
                     f" | {timed(modes.get('loss'))} | {timed(modes.get('grad_out'))}"
                     f" | {vs_sklearn(modes.get('grad_out'))} |")
    scaling = [r for r in doc.get("scaling") or [] if not r.get("error")]
    if scaling:
        n = scaling[0]["threads"]
        lines += ["", f"Thread scaling of the compute-bound cases in the same run: fastloss on "
                  f"1 and on {n} threads, and {n} Python threads each making the call (on one "
                  f"thread) at once, with the speedup over the same {n} calls one after "
                  "another.", "",
                  f"| loss | shape | dtype | mode | 1 thread | {n} threads | speedup | "
                  f"{n} Python threads | speedup |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in scaling:
            lines.append(f"| `{r['loss']}` | {md_shape(r['shape'])} | "
                         f"{r['dtype']} | {r['mode']} | {md_time(r['one_thread_s'])} | "
                         f"{md_time(r['threads_s'])} | {_fmt_ratio(r['speedup'])} | "
                         f"{md_time(r['python_threads_s'])} | "
                         f"{_fmt_ratio(r['python_speedup'])} |")
    return "\n".join(lines) + "\n"


def write_markdown(doc, path):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(markdown(doc))


def plot(doc, path):
    """Horizontal bars of ns per element: fastloss vs its floor vs torch, one group per case.

    Needs matplotlib (the optional extra fastloss[plot]); raises ImportError otherwise."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in doc["results"] if r["fastloss_s"] is not None and r["elements"]]
    labels = [f"{r['loss']} {shape_str(r['shape'])} {r['dtype']} {r['mode']}" for r in recs]
    per = lambda s, r: None if s is None else s / r["elements"] * 1e9  # noqa: E731
    series = (("fastloss", [per(r["fastloss_s"], r) for r in recs], "tab:blue"),
              ("memory floor", [per(r["floor_s"], r) for r in recs], "tab:gray"),
              ("torch", [per(r["torch_s"], r) for r in recs], "tab:red"))
    height = 0.27
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * max(1, len(recs))))
    for k, (label, values, color) in enumerate(series):
        ys = [i + (k - 1) * height for i, v in enumerate(values) if v is not None]
        vs = [v for v in values if v is not None]
        if vs:
            ax.barh(ys, vs, height=height, label=label, color=color)
    ax.set_yticks(range(len(recs)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per element (log scale, lower is better)")
    threads = doc["settings"]["threads"] if doc.get("settings") else "?"
    ax.set_title(f"fastloss {doc['versions']['fastloss']} on {doc['machine']['cpu']}, "
                 f"{threads} threads", fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
