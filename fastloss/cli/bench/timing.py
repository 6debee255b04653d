"""Timing: the wall times of repeated calls (``sample``: best, median and spread; ``measure``:
the best), of N Python threads calling at once (``python_threads_time``), and how much of the
machine other processes used meanwhile (``CpuWatch``)."""

import gc
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass

__all__ = ["Timing", "sample", "measure", "python_threads_time", "CpuWatch"]


@dataclass(frozen=True)
class Timing:
    """The timed measurements of one call (seconds per call): the best (what the tables
    report), the median, and how many there were.  ``spread`` = median / best: how much the
    typical measurement lost to the machine (None with a single measurement)."""

    best: float
    median: float
    count: int

    @classmethod
    def of(cls, times):
        """The Timing of a non-empty list of per-call times."""
        return cls(min(times), statistics.median(times), len(times))

    @property
    def spread(self):
        if self.count < 2 or not self.best > 0:
            return None
        return self.median / self.best


# every timed interval lasts at least this many ticks of the clock (inner loops otherwise)
MIN_TICKS = 1000
MAX_NUMBER = 100000  # calls in one inner loop at most


def sample(fn, repeat, *, budget=10.0, min_time=0.002, min_total=0.0, max_count=50, warmup=True):
    """Time repeated calls of fn: (Timing, the last result).

    One warm-up call (unless warmup=False), then single calls are timed.  Once three of them
    have been timed (or fewer, when no more are wanted) and the fastest took less than
    `min_time` (at least MIN_TICKS ticks of the clock), the call is timed in inner loops of
    about min_time instead (the per-call average of each loop is one measurement), so no
    timed interval is near the clock's resolution; min_time=0 times single calls only (a
    rough probe).  At least `repeat` measurements are taken; more (up to `max_count`) while
    less than `min_total` seconds have been spent, which makes the best of them robust
    against preemption on a busy machine; none after `budget` seconds (at least one
    measurement is always taken)."""
    if min_time > 0:
        min_time = max(min_time, MIN_TICKS * time.get_clock_info("perf_counter").resolution)
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

        times = []
        while True:
            result = None
            t0 = perf()
            result = fn()
            times.append(perf() - t0)
            again = more(len(times))
            if min(times) < min_time and (len(times) >= 3 or not again):
                break
            if not again:
                return Timing.of(times), result
        number = min(MAX_NUMBER, math.ceil(min_time / max(min(times), 1e-8)))
        times = []
        while not times or more(len(times)):
            t0 = perf()
            for _ in range(number):
                fn()
            loop_s = perf() - t0
            if loop_s < min_time and number < MAX_NUMBER:
                # calls in a loop run faster than single ones: a longer loop, not counted
                number = min(
                    MAX_NUMBER,
                    max(number + 1, math.ceil(1.2 * number * min_time / max(loop_s, 1e-9))),
                )
                continue
            times.append(loop_s / number)
        return Timing.of(times), result
    finally:
        if gc_was_enabled:
            gc.enable()


def measure(fn, repeat, **options):
    """Best wall time of one call of fn (seconds) and the last result: ``sample``'s best."""
    timing, result = sample(fn, repeat, **options)
    return timing.best, result


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

    workers = [
        threading.Thread(target=worker, args=(k, call), daemon=True) for k, call in enumerate(calls)
    ]
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
    return min(max(t1 for _, t1 in st) - min(t0 for t0, _ in st) for st in stamps[skip:]) / burst


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
