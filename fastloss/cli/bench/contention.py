"""The busy-machine section of ``fastloss bench --contention``: a few representative calls
timed on the machine as it is ("idle") and with (usable CPUs - 1) busy-spinning processes
started by bench ("busy"), each time on the run's thread count (the default) and on one
thread.  The goal (issue 22): under contention the default is at most GOAL_RATIO times
slower than one thread, and on an idle machine it keeps its multi-thread speed.

The times are medians, not bests: under contention the typical call is what a user gets,
and the best of K would pick the rare call during which the busy process was descheduled.
The busy processes are plain Python loops in "spawn" children, stopped (terminate, then
kill) in a ``finally`` whatever happens to the run."""

import contextlib
import multiprocessing
import os

import numpy as np

import fastloss

from . import trust
from .cases import KINDS, LOSSES, call_args, case_inputs, shape_base
from .timing import CpuWatch, sample

__all__ = ["CASES", "GOAL_RATIO", "busy_processes", "run_section"]

# (loss, shape): a compute-bound small-C case, a call too short to pay a thread's wake-up,
# a memory-bound elementwise loss, a softmax-family output; all float32
CASES = (
    ("cross_entropy", (262144, 10)),
    ("cross_entropy", (1024, 100)),
    ("mse_loss", (1048576,)),
    ("softmax", (4096, 1000)),
)
DTYPE = "float32"
GOAL_RATIO = 1.2  # busy: default-thread time / one-thread time at most this
MIN_TOTAL_S = 0.2  # each time: measured at least this long (at least `repeat` calls)
BUDGET_S = 3.0  # and at most this long
STARTUP_TIMEOUT_S = 60.0  # a busy process that has not started by then is an error


def _spin(ready):
    """A busy process: say it runs, then keep one CPU busy until killed."""
    ready.put(os.getpid())
    while True:
        pass


@contextlib.contextmanager
def busy_processes(count):
    """Start `count` busy-spinning "spawn" processes, yield their pids once all run, and
    stop them on the way out (terminate; kill what is still alive 5 s later)."""
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    procs = []
    try:
        for _ in range(count):
            proc = ctx.Process(target=_spin, args=(ready,), name="fastloss-bench-busy", daemon=True)
            proc.start()
            procs.append(proc)
        for _ in procs:
            ready.get(timeout=STARTUP_TIMEOUT_S)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        ready.close()


def _median_time(call, nthreads, repeat):
    fastloss.set_num_threads(nthreads)
    return sample(call, max(repeat, 5), min_total=MIN_TOTAL_S, budget=BUDGET_S)[0].median


def run_section(threads, repeat, usable_cpus, *, seed=0, shrink=1):
    """Measure the section; returns its JSON form (docs/bench-json.md, ``contention``).

    `shrink` divides the first dimension of every case (tests use tiny cases)."""
    section = {
        "threads": threads,
        "busy_processes": max(0, usable_cpus - 1),
        "goal_ratio": GOAL_RATIO,
        "statistic": "median",
        "idle_others_cpu": None,
        "busy_others_cpu": None,
        "cases": [],
        "note": None,
    }
    if threads < 2:
        section["note"] = "one thread: nothing to compare (run with --threads N, N > 1)"
        return section
    rng = np.random.default_rng(seed)
    calls = []  # one per section["cases"] row
    for name, shape in CASES:
        if name not in LOSSES or not hasattr(fastloss, name):
            continue
        shape = (max(1, shape[0] // shrink),) + shape[1:]
        x, target = case_inputs(name, shape, DTYPE, shape_base(rng, shape), rng)
        fn, kw = getattr(fastloss, name), dict(LOSSES[name].kwargs)
        args = call_args(x, target)
        mode = KINDS[LOSSES[name].kind].modes[0][0]  # "loss" or "fwd": the plain call
        calls.append(lambda fn=fn, args=args, kw=kw: fn(*args, **kw))
        section["cases"].append(
            {
                "loss": name,
                "shape": list(shape),
                "dtype": DTYPE,
                "mode": mode,
                "elements": x.size,
                "threads": threads,
                "idle_threads_s": None,
                "idle_one_thread_s": None,
                "idle_ratio": None,
                "busy_threads_s": None,
                "busy_one_thread_s": None,
                "busy_ratio": None,
                "goal_met": None,
                "error": None,
            }
        )

    def condition(prefix):
        watch = CpuWatch()
        for rec, call in zip(section["cases"], calls):
            if rec["error"]:
                continue
            try:
                many = _median_time(call, threads, repeat)
                one = _median_time(call, 1, repeat)
            except Exception as exc:  # noqa: BLE001 - report and go on
                rec["error"] = f"{type(exc).__name__}: {exc}"
                continue
            rec[prefix + "_threads_s"], rec[prefix + "_one_thread_s"] = many, one
            rec[prefix + "_ratio"] = many / one if one > 0 else None
        section[prefix + "_others_cpu"] = watch.others_fraction()

    old_threads = fastloss.get_num_threads()
    try:
        condition("idle")
        if section["busy_processes"] == 0:
            section["note"] = "one usable CPU: no busy processes started"
        else:
            with busy_processes(section["busy_processes"]):
                condition("busy")
    finally:
        fastloss.set_num_threads(old_threads)
    for rec in section["cases"]:
        if rec["busy_ratio"] is not None:
            rec["goal_met"] = rec["busy_ratio"] <= GOAL_RATIO
    idle = section["idle_others_cpu"]
    if idle is not None and idle > trust.BUSY_FRACTION and section["note"] is None:
        section["note"] = (
            f"other processes used {100 * idle:.0f}% of the CPUs during the idle "
            "condition: its times are inflated"
        )
    return section
