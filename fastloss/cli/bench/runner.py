"""The benchmark run behind ``fastloss bench``: per case, the memory floors, fastloss, the NumPy
reference, torch and scikit-learn, and a check of fastloss's result; later passes over all
cases; the thread scaling of the compute-bound cases.  ``run`` returns the JSON document
described in docs/bench-json.md."""

import gc
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

import fastloss
from fastloss import _config

from . import contention, trust
from .cases import (
    FLOORS,
    GBDT_CASES,
    KINDS,
    LOSSES,
    call_args,
    case_inputs,
    default_losses,
    gbdt_inputs,
    linear_gemms,
    shape_base,
    shape_str,
)
from .machine import import_sklearn_loss, import_torch, load_average, machine_facts, versions
from .report import Table, contention_lines, format_time, header_lines, scaling_lines
from .timing import CpuWatch, Timing, measure, python_threads_time, sample

__all__ = ["BenchConfig", "run", "scaling_cases"]


@dataclass
class BenchConfig:
    losses: list = None  # None: default_losses()
    shapes: list = None  # None: each kind's default (or quick) shapes
    dtypes: tuple = ("float32", "float64")
    quick: bool = False
    threads: int = None  # None: fastloss.get_num_threads()
    repeat: int = None  # None: 3 (quick) / 5
    skip: tuple = ()  # peers not to run: "numpy", "torch", "sklearn"
    reference_limit_s: float = None  # skip the reference above this estimated s/call
    min_total: float = None  # keep measuring fastloss and the floors at least this long
    passes: int = None  # None: 1 (quick) / 2: fastloss and the floors timed again
    # after all cases, best of the passes kept per row
    contention: bool = False  # the busy-machine section (contention.py)
    contention_shrink: int = 1  # divides the first dimension of its cases (tests)
    gbdt: bool = False  # the gradient-boosting section (alone unless losses are given)
    dask: bool = False  # the scale-out section (alone unless losses are given)
    seed: int = 0
    command: list = None  # recorded in the JSON document (default: sys.argv)


def _ratio(num, den):
    if num is None or den is None or den <= 0 or not math.isfinite(num):
        return None
    return num / den


def _summed_like(got, want):
    """fastloss's per-sample losses summed where the peer returns one sum (torch's entropy
    peer sums, for its backward), else as they are."""
    if np.ndim(want) == 0 and np.ndim(got) > 0:
        return np.sum(got, dtype=np.float64)
    return got


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


def run(cfg, out=None, records=None):
    """Run the benchmark described by cfg, printing the table to `out` (default stdout).

    Returns the JSON-able document (see the module docstring).  `records`, if given, is a
    list that receives each result as it is measured (so a caller can keep partial results
    after a KeyboardInterrupt)."""
    out = sys.stdout if out is None else out
    started = time.perf_counter()
    losses = list(cfg.losses) if cfg.losses else [] if cfg.gbdt or cfg.dask else default_losses()
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

    torch, F = (None, None) if "torch" in cfg.skip else import_torch()
    sk_loss = None if "sklearn" in cfg.skip else import_sklearn_loss()
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
    doc = {
        "schema": "fastloss-bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": list(cfg.command if cfg.command is not None else sys.argv),
        "settings": None,
        "machine": machine,
        "versions": vers,
        "fastloss_config": fastloss.config(),
        "results": records,
        "checks": checks,
        "scaling": scaling,
        "contention": None,
        "gbdt": None,
        "elapsed_s": None,
        "others_cpu_fraction": None,
    }
    plan = []
    for name in losses:
        kind = KINDS[LOSSES[name].kind]
        shapes = cfg.shapes or (kind.quick_shapes if cfg.quick else kind.shapes)
        for shape in shapes:
            plan.append((name, tuple(shape)))
    doc["settings"] = {
        "quick": cfg.quick,
        "threads": threads,
        "repeat": cfg.repeat,
        "passes": cfg.passes,
        "dtypes": list(cfg.dtypes),
        "losses": losses,
        "shapes": [list(s) for s in (cfg.shapes or [])] or "default",
        "skip": list(cfg.skip),
        "contention": cfg.contention,
    }

    for line in header_lines(cfg, machine, vers, threads, torch):
        print(line, file=out)
    load = machine["load_average_start"]
    ncpu = machine["usable_cpus"] or machine["logical_cpus"] or 1
    if load and load[0] > trust.LOAD_PER_CPU * ncpu:
        print(
            f"WARNING: load average {load[0]:.2f} on {ncpu} CPUs before the run: other "
            "processes compete for the CPUs and inflate (multi-threaded) timings",
            file=out,
        )
    print(
        f"? marks a cell whose timing is not trustworthy, with the reason after the row: "
        f"'X spread' = the median of X's measurements over their best > {trust.SPREAD_LIMIT}x, "
        f"'busy' = other processes used > {100 * trust.BUSY_FRACTION:.0f}% of the CPUs",
        file=out,
    )
    if fastloss.get_backend() != "compiled":
        print(
            "WARNING: fastloss runs on the NumPy reference backend (FASTLOSS_BACKEND): the "
            "'fastloss' column times the reference, not the compiled kernels",
            file=out,
        )
    print(file=out)
    table = Table(
        out,
        max(len(n) for n in losses) if losses else 4,
        max(len(shape_str(s)) for _, s in plan) if plan else 5,
    )
    table.header()

    rng = np.random.default_rng(cfg.seed)
    base = {}  # shape -> (z float32 N(0,1), int64 class targets or None)
    try:
        for name, shape in plan:
            if shape not in base:
                base.clear()
                base[shape] = shape_base(rng, shape, LOSSES[name].kind)
            for dtype in cfg.dtypes:
                _run_case(
                    cfg,
                    name,
                    shape,
                    dtype,
                    base[shape],
                    rng,
                    threads,
                    torch,
                    F,
                    sk_loss,
                    slow_budget,
                    slow_repeat,
                    table,
                    records,
                    checks,
                )
        # a slow spell of the machine lasting a whole case (seconds, on shared VMs) inflates
        # every best-of-K time of that case: later passes time fastloss and the floors again
        # (peers are not repeated) and each row keeps its best fastloss and floor times
        for k in range(1, cfg.passes):
            print(
                f"\npass {k + 1} of {cfg.passes}: fastloss and the floors timed again; "
                "each row keeps its best times of all passes",
                file=out,
            )
            prng = np.random.default_rng(cfg.seed + k)
            for name, shape in plan:
                shared = shape_base(prng, shape, LOSSES[name].kind)
                for dtype in cfg.dtypes:
                    recs = [
                        r
                        for r in records
                        if r["loss"] == name and r["dtype"] == dtype and tuple(r["shape"]) == shape
                    ]
                    if recs:
                        x, target = case_inputs(name, shape, dtype, shared, prng)
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
            print(
                f"\nthread scaling of the compute-bound cases, 1 -> {threads} threads, and "
                f"{threads} Python threads each making the call on one thread at once "
                "(speedup over the calls one after another):",
                file=out,
            )
            srng = np.random.default_rng(cfg.seed + cfg.passes)
            for name, shape in cases:
                shared = shape_base(srng, shape, LOSSES[name].kind)
                for dtype in cfg.dtypes:
                    scaling.extend(_time_scaling(cfg, name, shape, dtype, shared, srng, threads))
                del shared
            for line in scaling_lines(scaling, threads):
                print(line, file=out)
        if cfg.gbdt:
            doc["gbdt"] = gbdt_section(cfg, out, threads)
        if cfg.dask:
            doc["dask"] = dask_section(cfg, out, threads)
        # measured before the busy processes of the contention section start
        doc["others_cpu_fraction"] = watch.others_fraction()
        if cfg.contention:
            print(file=out)
            doc["contention"] = contention.run_section(
                threads,
                cfg.repeat,
                ncpu,
                seed=cfg.seed + cfg.passes + 1,
                shrink=cfg.contention_shrink,
            )
            for line in contention_lines(doc["contention"]):
                print(line, file=out)
    finally:
        fastloss.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch_threads)
    doc["elapsed_s"] = time.perf_counter() - started
    print(file=out)
    failed = [r for r in records + scaling if r["error"]]
    if failed:
        print(f"WARNING: {len(failed)} fastloss call(s) failed (see ERROR rows)", file=out)
    bad = [c for c in checks if not c["ok"]]
    if bad:
        print(
            f"WARNING: {len(bad)} case(s) disagree with the reference/torch (see notes)", file=out
        )
    print(trust.summary_line(doc), file=out)
    return doc


def _time_fastloss(cfg, name, x, target):
    """The floors of the case's modes (right before it) and fastloss's times per mode, as
    Timings: (floors, times, results of the peer mode, errors)."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    args = call_args(x, target)
    fn = getattr(fastloss, name)
    kw = dict(row.kwargs)
    buf = np.empty_like(x)
    np.copyto(buf, x)  # fault the pages in
    floor_fns = {
        "sum": lambda: x.sum(),
        "copy": lambda: np.copy(x),
        "copyto": lambda: np.copyto(buf, x),
        "gemm_fwd": lambda: linear_gemms(x, args[1], False),
        "gemm": lambda: linear_gemms(x, args[1], True),
    }
    floors = {}
    for _, floor in kind.modes:
        if floor not in floors:
            floors[floor] = sample(floor_fns[floor], cfg.repeat, min_total=cfg.min_total)[0]
    calls = {
        "loss": lambda: fn(*args, **kw),
        "fwd": lambda: fn(*args, **kw),
        "fwd+bwd": lambda: fn(*args, return_grad=True, **kw),
        "grad_out": lambda: fn(*args, return_grad=True, grad_out=buf, **kw),
    }
    fl_time, fl_result, errors = {}, {}, {}
    for mode, _ in kind.modes:
        try:
            fl_time[mode], fl_result[mode] = sample(
                calls[mode], cfg.repeat, min_total=cfg.min_total
            )
        except Exception as exc:  # noqa: BLE001 - report and go on with the other cases
            errors[mode] = f"{type(exc).__name__}: {exc}"
        if mode != kind.peer_mode:
            fl_result.pop(mode, None)
    return floors, fl_time, fl_result, errors


def _best_pass(times, spreads):
    """(best time, the spread of the pass that took it) of per-pass times (None: failed)."""
    passes = [(t, s) for t, s in zip(times, spreads) if t is not None]
    return min(passes, key=lambda p: p[0]) if passes else (None, None)


def _derive(rec):
    """A record's fastloss and floor times (best of its passes), the figures derived from
    them and the peers' times, and its trust flags."""
    rec["fastloss_s"], rec["spread"]["fastloss"] = t, _ = _best_pass(
        rec["fastloss_pass_s"], rec["fastloss_pass_spread"]
    )
    rec["floor_raw_s"], rec["spread"]["floor"] = _best_pass(
        rec["floor_pass_s"], rec["floor_pass_spread"]
    )
    rec["floor_s"] = rec["floor_raw_s"] * rec["floor_factor"]
    n = rec["elements"]
    rec["ns_per_element"] = None if t is None or not n else t / n * 1e9
    rec["x_floor"] = _ratio(t, rec["floor_s"])
    for peer in ("numpy", "torch", "sklearn"):
        rec["vs_" + peer] = _ratio(rec[peer + "_s"], t)
    return trust.flag_record(rec, rec["spread"])


def _keep_best(rec, floors, fl_time):
    """Fold one more pass's fastloss and floor times into a record (best of the passes)."""
    floor = dict(KINDS[rec["kind"]].modes)[rec["mode"]]
    timing = fl_time.get(rec["mode"])
    rec["fastloss_pass_s"].append(None if timing is None else timing.best)
    rec["fastloss_pass_spread"].append(None if timing is None else timing.spread)
    rec["floor_pass_s"].append(floors[floor].best)
    rec["floor_pass_spread"].append(floors[floor].spread)
    _derive(rec)


def _run_case(
    cfg,
    name,
    shape,
    dtype,
    base,
    rng,
    threads,
    torch,
    F,
    sk_loss,
    slow_budget,
    slow_repeat,
    table,
    records,
    checks,
):
    row = LOSSES[name]
    kind = KINDS[row.kind]
    watch = CpuWatch()
    dt = np.dtype(dtype)
    x, target = case_inputs(name, shape, dtype, base, rng)
    args = call_args(x, target)
    n = x.size
    xbytes = x.nbytes
    tbytes = sum(a.nbytes for a in args[1:])
    ref_fn = getattr(fastloss.reference, name, None)
    kw = dict(row.kwargs)
    notes = []

    # ---- floors, measured right before the case, then fastloss
    floors, fl_time, fl_result, errors = _time_fastloss(cfg, name, x, target)

    # ---- NumPy reference (same call), in the peer mode only
    peer_time = {}  # "numpy", "torch:<mode>", "sklearn" -> Timing
    ref_result = None
    if "numpy" not in cfg.skip and ref_fn is not None and kind.peer_mode in fl_time:
        grad_kw = {"return_grad": True} if kind.peer_mode == "fwd+bwd" else {}
        try:
            # estimate the cost from a slice of the rows, skip when too slow
            rows = max(1, shape[0] // 16)
            if row.probe is not None:
                probe_args, factor = row.probe(args, rows)
            else:
                probe_args, factor = tuple(a[:rows] for a in args), shape[0] / rows
            probe = measure(lambda: ref_fn(*probe_args, **grad_kw, **kw), 1, min_time=0.0)[0]
            est = probe * factor
            if est > cfg.reference_limit_s:
                notes.append(f"NumPy reference skipped (estimated {est:.1f} s per call)")
            else:
                # the reference is plain NumPy (no lazy initialisation to warm up): one timed
                # call in --quick mode when it is slow, fewer repeats than fastloss otherwise
                slow = est > (0.1 if cfg.quick else 1.0)
                peer_time["numpy"], ref_result = sample(
                    lambda: ref_fn(*args, **grad_kw, **kw),
                    1 if slow else slow_repeat,
                    budget=slow_budget,
                    min_total=cfg.min_total,
                    warmup=not (slow and cfg.quick),
                )
        except Exception as exc:  # noqa: BLE001
            notes.append(f"NumPy reference failed: {type(exc).__name__}: {exc}")

    # ---- torch
    torch_result = None
    if torch is not None and row.torch is not None:
        xt = torch.from_numpy(x)
        tt = (
            None
            if target is None
            else tuple(map(torch.from_numpy, target))
            if isinstance(target, tuple)
            else torch.from_numpy(target)
        )
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
            peer_time["torch:" + first_mode], res = sample(
                torch_fwd, slow_repeat, budget=slow_budget, min_total=cfg.min_total
            )
            if kind.peer_mode == "fwd":
                torch_result = res
            res = None
            if kind.peer_mode == "fwd+bwd":
                peer_time["torch:fwd+bwd"], torch_result = sample(
                    torch_fwd_bwd, slow_repeat, budget=slow_budget, min_total=cfg.min_total
                )
        except Exception as exc:  # noqa: BLE001
            notes.append(f"torch failed: {type(exc).__name__}: {exc}")
        for label, other in row.torch_others:
            notes.append(_time_torch_other(label, other, torch, F, xt, tt, kind, fl_time, cfg))
    if row.memory and "fwd+bwd" in fl_time:
        notes.append(_peak_memory_note(getattr(fastloss, name), args, kw))

    # ---- scikit-learn's loss_gradient (preallocated outputs), where it has the loss: its
    # class losses take (n_samples, n_classes) predictions, the others one per sample
    if (
        sk_loss is not None
        and row.sklearn is not None
        and "grad_out" in dict(kind.modes)
        and (x.ndim == 2 or row.kind != "class")
    ):
        try:
            sk = row.sklearn(sk_loss, shape)
            raw = x if row.kind == "class" else x.reshape(-1)
            y = np.ascontiguousarray(target, dtype=dt).reshape(-1)
            loss_out = np.empty(raw.shape[0], dtype=dt)
            buf = np.empty_like(raw)
            peer_time["sklearn"] = sample(
                lambda: sk.loss_gradient(
                    y_true=y,
                    raw_prediction=raw,
                    loss_out=loss_out,
                    gradient_out=buf,
                    n_threads=threads,
                ),
                slow_repeat,
                budget=slow_budget,
                min_total=cfg.min_total,
            )[0]
        except Exception as exc:  # noqa: BLE001
            notes.append(f"sklearn failed: {type(exc).__name__}: {exc}")

    # ---- the metrics' peers, in the kind's first mode: a scikit-learn / SciPy function
    # (column "vs sklearn", named in the notes) and NumPy one-liners (in the notes)
    first_mode = kind.modes[0][0]
    metric_peers = []
    if row.library is not None and "sklearn" not in cfg.skip:
        metric_peers.append(("sklearn",) + tuple(row.library))
    if "numpy" not in cfg.skip:
        metric_peers += [(None, label, peer_fn) for label, peer_fn in row.others]
    for column, label, peer_fn in metric_peers:
        try:
            timing = sample(
                lambda: peer_fn(x, target), slow_repeat, budget=slow_budget, min_total=cfg.min_total
            )[0]
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{label} failed: {type(exc).__name__}: {exc}")
            continue
        if column is not None:
            peer_time[column] = timing
            notes.append(f"vs {column}: {label}")
        else:
            ratio = _ratio(timing.best, fl_time[first_mode].best if first_mode in fl_time else None)
            notes.append(
                f"{label}: {format_time(timing.best)}"
                + ("" if ratio is None else f" ({ratio:.1f}x fastloss's time)")
            )
    sklearn_mode = first_mode if row.library is not None else "grad_out"

    # ---- records
    others = watch.others_fraction()
    for mode, floor in kind.modes:
        label, writes = FLOORS[floor]
        factor = (
            (xbytes * (1 + writes * (row.outputs or kind.outputs)) + tbytes)
            / (xbytes * (1 + writes))
            if xbytes and writes is not None
            else 1.0
        )
        fl = fl_time.get(mode)
        peers = {
            "numpy": peer_time.get("numpy") if mode == kind.peer_mode else None,
            "torch": peer_time.get("torch:" + mode),
            "sklearn": peer_time.get("sklearn") if mode == sklearn_mode else None,
        }
        rec = _derive(
            {
                "loss": name,
                "kind": row.kind,
                "shape": list(shape),
                "dtype": dtype,
                "mode": mode,
                "elements": n,
                "bytes": xbytes,
                "threads": threads,
                "fastloss_pass_s": [None if fl is None else fl.best],
                "fastloss_pass_spread": [None if fl is None else fl.spread],
                "floor_pass_s": [floors[floor].best],
                "floor_pass_spread": [floors[floor].spread],
                "floor_op": label,
                "floor_factor": factor,
                **{p + "_s": None if t is None else t.best for p, t in peers.items()},
                "spread": {
                    "fastloss": None,
                    "floor": None,
                    **{p: None if t is None else t.spread for p, t in peers.items()},
                },
                "others_cpu": others,
                "error": errors.get(mode),
                "notes": list(notes) if mode == kind.peer_mode else [],
            }
        )
        records.append(rec)
        table.row(rec)

    # ---- correctness check of the peer-mode result against the reference (else torch)
    got = fl_result.get(kind.peer_mode)
    against, want = None, None
    if ref_result is not None:
        against, want = "numpy", ref_result
    elif torch_result is not None:
        against = "torch"
        want = (
            tuple(v.numpy() for v in torch_result)
            if isinstance(torch_result, tuple)
            else torch_result.numpy()
        )
    if got is not None and want is not None:
        if kind.peer_mode == "fwd+bwd":
            loss_err = _rel_err(_summed_like(got[0], want[0]), want[0])
            grad_err = _rel_err(*_grads(got[1], want[1]))
        else:
            loss_err, grad_err = _rel_err(_summed_like(got, want), want), None
        tol = _tolerance(dtype)
        ok = loss_err <= tol and (grad_err is None or grad_err <= tol)
        checks.append(
            {
                "loss": name,
                "shape": list(shape),
                "dtype": dtype,
                "against": against,
                "loss_rel_err": loss_err,
                "grad_rel_err": grad_err,
                "ok": ok,
            }
        )
        if not ok:
            what = "output" if grad_err is None else "loss/grad"
            notes.append(
                f"MISMATCH vs {against}: {what} relative error "
                f"{loss_err:.2e}"
                + ("" if grad_err is None else f" / {grad_err:.2e}")
                + f" (tolerance {tol:g})"
            )
            for rec in records[-len(kind.modes) :]:
                if rec["mode"] == kind.peer_mode:
                    rec["notes"] = list(notes)
    for text in notes:
        table.note(f"{name} {shape_str(shape)} {dtype}: {text}")


def _grads(got, want):
    """The gradients to compare: several of different shapes (linear_cross_entropy's input,
    weight, bias) flattened into one array; only the first when the peer has only d/d input
    (torch's fwd+bwd)."""
    if not isinstance(got, tuple) or all(np.shape(g) == np.shape(got[0]) for g in got):
        return got, want
    if not isinstance(want, tuple):
        return got[0], want
    flat = [np.concatenate([np.ravel(g) for g in gs if g is not None]) for gs in (got, want)]
    return flat[0], flat[1]


def _time_torch_other(label, formula, torch, F, xt, tt, kind, fl_time, cfg):
    """A further torch formula of a row (Loss.torch_others), timed in the kind's modes like
    the main torch peer (one call each: these are the slow cases); its note."""
    parts = []
    for mode, _ in kind.modes:
        if mode not in ("loss", "fwd", "fwd+bwd"):
            continue

        def call(grad=mode == "fwd+bwd"):
            if not grad:
                with torch.no_grad():
                    return formula(torch, F, xt, tt)
            xr = xt.detach().requires_grad_(True)
            formula(torch, F, xr, tt).backward()
            return xr.grad

        try:
            t = sample(call, 1, min_total=0.0)[0].best
        except Exception as exc:  # noqa: BLE001 - e.g. MemoryError of the unfused logits
            parts.append(f"{mode} failed: {type(exc).__name__}: {exc}")
            continue
        mine = fl_time.get(mode)
        ratio = _ratio(t, None if mine is None else mine.best)
        parts.append(
            f"{mode} {format_time(t)}" + ("" if ratio is None else f" ({ratio:.2f}x fastloss)")
        )
    return f"{label}: " + ", ".join(parts)


def _peak_memory_note(fn, args, kw):
    """The peak NumPy memory (tracemalloc) of one fwd+bwd call beside its outputs (the
    gradients), against the unfused logits + their gradient (2 N V itemsize)."""
    import tracemalloc

    x, w = args[0], args[1]
    gc.collect()
    tracemalloc.start()
    try:
        out = fn(*args, return_grad=True, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = sum(g.nbytes for g in out[1] if g is not None)
    unfused = 2 * x.shape[0] * w.shape[0] * x.dtype.itemsize
    extra = peak - outputs
    return (
        f"peak NumPy memory of a fwd+bwd call (tracemalloc): {peak / 2**20:.0f} MiB, of which "
        f"{outputs / 2**20:.0f} MiB the gradients; extra {extra / 2**20:.0f} MiB = "
        f"{100 * extra / unfused:.1f}% of the unfused logits + gradient "
        f"({unfused / 2**20:.0f} MiB)"
    )


# --------------------------------------------------------------------------------------------
# thread scaling
# --------------------------------------------------------------------------------------------
SCALING_MODES = ("loss", "grad_out")
# class losses: the small-C tile path (FL_SMALL_C in src/fl_config.h)
SCALING_MAX_C = _config._kernels.TUNING["small_c"] if _config._kernels is not None else 48
SCALING_MIN_ELEMENTS = 1 << 16  # smaller inputs run on one thread (the kernels' grain size)
SCALING_SETTLE_S = 0.03  # Python threads start this long after a multi-threaded call


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


def _time_scaling(cfg, name, shape, dtype, base, rng, threads):
    """Records of one case's thread scaling: per mode, fastloss on one thread and on
    `threads` threads, and `threads` Python threads each making the call on one thread at
    once (own gradient buffers), against the same calls one after another (threads x the
    one-thread time).  The three are timed in turn, a few back-to-back calls each (the
    Python threads: a warm-up round, then a burst of 3 calls each), for repeat x passes
    rounds, and each keeps its best (the spread of the rounds judges it, see ``trust``): a
    slow spell of a shared machine then slows all three alike instead of one of them."""
    row = LOSSES[name]
    kind = KINDS[row.kind]
    x, target = case_inputs(name, shape, dtype, base, rng)
    args = call_args(x, target)
    fn = getattr(fastloss, name)
    kw = dict(row.kwargs)
    bufs = [np.empty_like(x) for _ in range(threads)]
    for b in bufs:
        np.copyto(b, x)  # fault the pages in

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
        steps = (
            ("one_thread", lambda: timed(single, 1)),
            ("threads", lambda: timed(single, threads)),
            ("python_threads", lambda: python_threads(concurrent)),
        )
        rounds_s = {key: [] for key, _ in steps}  # each round's time
        error = None
        gc_was_enabled = gc.isenabled()
        try:
            timed(single, 1)  # warm-up
            timed(single, threads)
            gc.disable()
            for r in range(rounds):
                # alternate the order, so that neither follows the other every time
                for key, step in steps if r % 2 == 0 else steps[::-1]:
                    rounds_s[key].append(step())
        except Exception as exc:  # noqa: BLE001 - report and go on
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if gc_was_enabled:
                gc.enable()
            fastloss.set_num_threads(threads)
        ok = error is None
        timings = {key: Timing.of(v) if ok else None for key, v in rounds_s.items()}
        one, many, py = (None if t is None else t.best for t in timings.values())
        records.append(
            {
                "loss": name,
                "kind": row.kind,
                "shape": list(shape),
                "dtype": dtype,
                "mode": mode,
                "elements": x.size,
                "threads": threads,
                "one_thread_s": one if ok else None,
                "threads_s": many if ok else None,
                "speedup": _ratio(one, many) if ok else None,
                "python_threads_s": py if ok else None,
                "python_serial_s": threads * one if ok else None,
                "python_speedup": _ratio(threads * one, py) if ok else None,
                "spread": {key: None if t is None else t.spread for key, t in timings.items()},
                "others_cpu": None,
                "error": error,
            }
        )
    others = watch.others_fraction()
    for rec in records:
        rec["others_cpu"] = others
        trust.flag_record(rec, rec["spread"])
    return records


# --------------------------------------------------------------------------------------------
# gradient boosting (--gbdt)
# --------------------------------------------------------------------------------------------
def gbdt_section(cfg, out, threads):
    """fastloss.gbdt's gradient + Hessian per case of cases.GBDT_CASES (row-major scores,
    preallocated outputs) against the NumPy objective a user would write and against the
    memory floor: np.copyto(buf, x) scaled to the call's traffic (read scores and labels,
    write gradient and Hessian).  Returns the records (doc["gbdt"])."""
    from ... import gbdt

    print(
        f"\ngradient boosting: fastloss.gbdt.grad_hess into preallocated buffers vs the NumPy "
        f"objective (cases.py) and the memory floor (read scores + labels, write grad + "
        f"hess), {threads} thread(s), SIMD {_config._kernels.simd_name()}:",
        file=out,
    )
    head = f"{'loss':<8} {'shape':>12} {'dtype':<8} {'fastloss':>10} {'floor':>10} "
    print(head + f"{'x floor':>8} {'numpy':>10} {'vs numpy':>9} {'max rel err':>11}", file=out)
    rng = np.random.default_rng(cfg.seed + 7)
    records = []
    for case in GBDT_CASES:
        shape = case.quick_shape if cfg.quick else case.shape
        for dtype in cfg.dtypes:
            x, y = gbdt_inputs(case, shape, dtype, rng)
            g, h, buf = np.empty_like(x), np.empty_like(x), np.empty_like(x)
            for a in (g, h, buf):
                np.copyto(a, x)  # fault the pages in
            plan = gbdt._Plan(case.loss, case.params)
            fl = sample(lambda: plan.run(x, y, None, g, h), cfg.repeat, min_total=cfg.min_total)[0]
            floor_raw = sample(lambda: np.copyto(buf, x), cfg.repeat, min_total=cfg.min_total)[0]
            factor = (3 * x.nbytes + y.nbytes) / (2 * x.nbytes)
            rec = {
                "loss": case.loss,
                "shape": list(shape),
                "dtype": dtype,
                "threads": threads,
                "fastloss_s": fl.best,
                "floor_raw_s": floor_raw.best,
                "floor_factor": factor,
                "floor_s": floor_raw.best * factor,
                "x_floor": _ratio(fl.best, floor_raw.best * factor),
                "numpy_s": None,
                "vs_numpy": None,
                "rel_err": None,
            }
            if "numpy" not in cfg.skip:
                peer, (gn, hn) = sample(lambda: case.numpy(x, y), max(1, min(cfg.repeat, 3)))
                rec["numpy_s"] = peer.best
                rec["vs_numpy"] = _ratio(peer.best, fl.best)
                rec["rel_err"] = max(_rel_err(g, gn), _rel_err(h, hn))
                del gn, hn
            records.append(rec)
            err, xf, vs = rec["rel_err"], rec["x_floor"], rec["vs_numpy"]
            cells = (
                f"{case.loss:<8} {shape_str(shape):>12} {dtype:<8} {format_time(fl.best):>10}",
                f"{format_time(rec['floor_s']):>10}",
                f"{'-' if xf is None else f'{xf:.2f}x':>8}",
                f"{format_time(rec['numpy_s']):>10}",
                f"{'-' if vs is None else f'{vs:.1f}x':>9}",
                f"{'-' if err is None else f'{err:.1e}':>11}",
            )
            print(" ".join(cells), file=out)
    return records


# --------------------------------------------------------------------------------------------
# scale-out (--dask)
# --------------------------------------------------------------------------------------------
def _worker_peak_rss_mb():
    """The peak resident memory of this process (VmHWM, which exec resets), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def dask_section(cfg, out, threads):
    """fastloss.dask.evaluate (cross entropy over .npy shards, one kernel thread per task) on a
    LocalCluster of 1 and 2 worker processes against fastloss.evaluate of the same data in one
    file in this process (`threads` threads); each worker's peak RSS.  Returns the records."""
    import tempfile

    try:
        import distributed

        from ... import dask as fdask
    except ImportError as exc:
        print(f"\nscale-out: skipped ({exc}; pip install 'fastloss[dask]')", file=out)
        return None
    N, C, shards = (32768, 1000, 4) if cfg.quick else (262144, 1000, 8)
    rng = np.random.default_rng(cfg.seed + 11)
    records = []
    with tempfile.TemporaryDirectory(prefix="fastloss-bench-dask-") as d:
        whole = np.lib.format.open_memmap(f"{d}/x.npy", "w+", np.float32, (N, C))
        t = rng.integers(0, C, N)
        np.save(f"{d}/t.npy", t)
        rows = N // shards
        for i in range(shards):
            block = rng.standard_normal((rows, C), dtype=np.float32)
            whole[i * rows : (i + 1) * rows] = block
            np.save(f"{d}/x{i:02d}.npy", block)
            np.save(f"{d}/t{i:02d}.npy", t[i * rows : (i + 1) * rows])
        whole.flush()
        del whole
        gb = N * C * 4 / 1e9
        print(
            f"\nscale-out: cross entropy over {gb:.2f} GB of float32 logits ({N} x {C}, "
            f"{shards} .npy shards), fastloss.dask.evaluate on a LocalCluster of worker "
            f"processes (1 thread each) vs fastloss.evaluate in this process ({threads} "
            "threads):",
            file=out,
        )
        print(f"{'run':<22} {'time':>10} {'x single':>9} {'worker peak RSS':>16}", file=out)
        single = sample(
            lambda: fastloss.evaluate("cross_entropy", f"{d}/x.npy", f"{d}/t.npy"),
            max(2, min(cfg.repeat, 3)),
        )
        t_single, doc_single = single[0].best, single[1]
        records.append({"run": "single process", "workers": 0, "time_s": t_single})
        print(f"{'single process':<22} {format_time(t_single):>10} {'1.00x':>9}", file=out)
        for workers in (1, 2):
            with (
                distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                timing, doc = sample(
                    lambda c=client: fdask.evaluate(
                        "cross_entropy", f"{d}/x??.npy", f"{d}/t??.npy", scheduler=c
                    ),
                    max(2, min(cfg.repeat, 3)),
                )
                rss = max(client.run(_worker_peak_rss_mb).values())
            rec = {
                "run": f"dask, {workers} worker(s)",
                "workers": workers,
                "time_s": timing.best,
                "vs_single": _ratio(timing.best, t_single),
                "worker_peak_rss_mb": rss,
                "mean_abs_diff": abs(doc["mean"] - doc_single["mean"]),
            }
            records.append(rec)
            print(
                f"{rec['run']:<22} {format_time(timing.best):>10} "
                f"{rec['vs_single']:>8.2f}x {rss:>13.0f} MB",
                file=out,
            )
    return records
