"""Fast tests of the benchmark engine behind ``fastloss bench`` (fastloss.cli.bench): whole
runs through the command line (the JSON document, the printed and Markdown tables, the thread
scaling, the passes) and its pieces (the case tables, the timing helpers)."""

import io
import json
import math
import multiprocessing
import os
import re
import struct

import numpy as np
import pytest

import fastloss
from fastloss import cli
from fastloss.cli.bench import cases, contention, report, runner, timing, trust

RECORD_FIELDS = {
    "loss",
    "kind",
    "shape",
    "dtype",
    "mode",
    "elements",
    "bytes",
    "threads",
    "fastloss_s",
    "ns_per_element",
    "floor_op",
    "floor_raw_s",
    "floor_factor",
    "floor_s",
    "x_floor",
    "numpy_s",
    "vs_numpy",
    "torch_s",
    "vs_torch",
    "sklearn_s",
    "vs_sklearn",
    "fastloss_pass_s",
    "fastloss_pass_spread",
    "floor_pass_s",
    "floor_pass_spread",
    "spread",
    "flags",
    "trust",
    "others_cpu",
    "error",
    "notes",
}
DOC_FIELDS = {
    "schema",
    "created",
    "command",
    "settings",
    "machine",
    "versions",
    "fastloss_config",
    "results",
    "checks",
    "scaling",
    "contention",
    "elapsed_s",
    "others_cpu_fraction",
}
SCALING_FIELDS = {
    "loss",
    "kind",
    "shape",
    "dtype",
    "mode",
    "elements",
    "threads",
    "one_thread_s",
    "threads_s",
    "speedup",
    "python_threads_s",
    "python_serial_s",
    "python_speedup",
    "spread",
    "flags",
    "trust",
    "others_cpu",
    "error",
}


def _summary(out):
    """The last line a run printed (before the command's "wrote FILE" lines)."""
    return [l for l in out.splitlines() if l and not l.startswith("wrote ")][-1]


def _bench_json(tmp_path, capsys, *args):
    path = tmp_path / "bench.json"
    rc = cli.main(["bench", "--quick", "--repeat", "1", "--json", str(path), *args])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(path.read_text()), out


# ---------------------------------------------------------------------------- bench runs
def test_bench_quick_tiny_shape_json(tmp_path, capsys):
    threads_before = fastloss.get_num_threads()
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "64x10",
        "--dtype",
        "float32",
        "--loss",
        "cross_entropy",
        "focal_loss",
        "--threads",
        "1",
        "--skip",
        "torch",
        "sklearn",
    )
    assert fastloss.get_num_threads() == threads_before  # restored
    # the table
    assert "x floor" in out and "vs numpy" in out and "vs torch" in out
    for loss in ("cross_entropy", "focal_loss"):
        for mode in ("loss", "fwd+bwd", "grad_out"):
            line = [
                l
                for l in out.splitlines()
                if l.startswith(loss + " ") and f"| {mode} " in l and "64x10" in l
            ]
            assert len(line) == 1, out
            assert re.search(r" us\?? ", line[0])  # tiny shapes are reported in microseconds
    # the document
    assert DOC_FIELDS <= set(doc)
    assert doc["schema"] == "fastloss-bench/1"
    assert doc["command"][:3] == ["fastloss", "bench", "--quick"]
    assert doc["settings"]["threads"] == 1 and doc["settings"]["quick"] is True
    assert doc["settings"]["dtypes"] == ["float32"]
    assert doc["versions"]["numpy"] == np.__version__
    assert doc["versions"]["fastloss"] == fastloss.__version__
    assert doc["fastloss_config"]["version"] == fastloss.__version__
    assert {"cpu", "logical_cpus", "memory_gib"} <= set(doc["machine"])
    assert len(doc["results"]) == 2 * 3
    for rec in doc["results"]:
        assert RECORD_FIELDS <= set(rec), set(rec) ^ RECORD_FIELDS
        assert rec["shape"] == [64, 10] and rec["dtype"] == "float32"
        assert rec["threads"] == 1 and rec["error"] is None
        assert rec["elements"] == 640 and rec["bytes"] == 640 * 4
        assert rec["fastloss_s"] > 0 and rec["floor_s"] > 0
        assert math.isclose(rec["x_floor"], rec["fastloss_s"] / rec["floor_s"])
        assert math.isclose(rec["floor_s"], rec["floor_raw_s"] * rec["floor_factor"])
        assert math.isclose(rec["ns_per_element"], rec["fastloss_s"] / 640 * 1e9)
        # int64 class indices: 8 bytes per row on top of the 40 bytes of logits per row
        reads_writes = 1 if rec["mode"] == "loss" else 2
        assert math.isclose(rec["floor_factor"], 1 + 8 / (40 * reads_writes))
        assert rec["torch_s"] is None and rec["sklearn_s"] is None
        if rec["mode"] == "fwd+bwd":
            assert rec["numpy_s"] > 0
            assert math.isclose(rec["vs_numpy"], rec["numpy_s"] / rec["fastloss_s"])
        else:
            assert rec["numpy_s"] is None and rec["vs_numpy"] is None
    assert {r["floor_op"] for r in doc["results"]} == {"x.sum()", "np.copy(x)", "np.copyto(buf, x)"}
    assert len(doc["checks"]) == 2 and all(c["ok"] for c in doc["checks"]), doc["checks"]
    assert doc["scaling"] == [] and "thread scaling" not in out  # one thread: no section
    assert doc["contention"] is None and "busy machine" not in out  # not asked for
    # every row is judged, and the run ends with the one summary line
    for rec in doc["results"]:
        assert rec["trust"] == ("flagged" if rec["flags"] else "ok")
    assert _summary(out) == trust.summary_line(doc)
    assert _summary(out).startswith("6 rows in ")


def test_bench_with_torch_and_sklearn(tmp_path, capsys):
    pytest.importorskip("torch")
    doc, out = _bench_json(
        tmp_path, capsys, "--shape", "32x10", "--dtype", "float64", "--loss", "cross_entropy"
    )
    by_mode = {r["mode"]: r for r in doc["results"]}
    for mode in ("loss", "fwd+bwd"):
        assert by_mode[mode]["torch_s"] > 0
        assert math.isclose(
            by_mode[mode]["vs_torch"], by_mode[mode]["torch_s"] / by_mode[mode]["fastloss_s"]
        )
    assert by_mode["grad_out"]["torch_s"] is None
    assert doc["versions"]["torch"]
    try:
        import sklearn._loss.loss  # noqa: F401
    except ImportError:
        assert by_mode["grad_out"]["sklearn_s"] is None
    else:
        assert by_mode["grad_out"]["sklearn_s"] > 0


@pytest.mark.parametrize(
    "loss", ["binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "huber_loss"]
)
def test_bench_sklearn_elementwise_peers(tmp_path, capsys, loss):
    pytest.importorskip("sklearn._loss.loss")
    md = tmp_path / "bench.md"
    doc, _ = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "4096",
        "--dtype",
        "float64",
        "--loss",
        loss,
        "--skip",
        "torch",
        "numpy",
        "--markdown",
        str(md),
    )
    by_mode = {r["mode"]: r for r in doc["results"]}
    rec = by_mode["grad_out"]
    assert rec["sklearn_s"] > 0, rec["notes"]
    assert math.isclose(rec["vs_sklearn"], rec["sklearn_s"] / rec["fastloss_s"])
    assert all(by_mode[m]["sklearn_s"] is None for m in ("loss", "fwd+bwd"))
    row = [l for l in md.read_text(encoding="utf-8").splitlines() if l.startswith("| `")][0]
    cell = [c.strip() for c in row.strip("|").split("|")][9]
    assert cell != "-"  # one decimal below 10x, none from 100x
    assert float(cell.rstrip("x")) == pytest.approx(rec["vs_sklearn"], rel=0.01, abs=0.051)


def test_bench_elementwise_floor_factor(tmp_path, capsys):
    elementwise = [n for n in cases.available_losses() if cases.LOSSES[n].kind == "elementwise"]
    if not elementwise:
        pytest.skip("this fastloss exports no elementwise loss yet")
    doc, _ = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "4096",
        "--dtype",
        "float64",
        "--loss",
        elementwise[0],
        "--skip",
        "torch",
        "sklearn",
    )
    factors = {r["mode"]: r["floor_factor"] for r in doc["results"]}
    assert factors == {"loss": 2.0, "fwd+bwd": 1.5, "grad_out": 1.5}
    assert all(c["ok"] for c in doc["checks"]), doc["checks"]


def test_bench_softmax_family(tmp_path, capsys):
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "16x7",
        "--dtype",
        "float32",
        "--loss",
        "log_softmax",
        "logsumexp",
        "--skip",
        "torch",
    )
    assert [(r["loss"], r["mode"], r["floor_op"]) for r in doc["results"]] == [
        ("log_softmax", "fwd", "np.copy(x)"),
        ("logsumexp", "fwd", "x.sum()"),
    ]
    assert all(r["numpy_s"] > 0 for r in doc["results"])


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])  # the IHDR chunk: width, height


def test_bench_plot(tmp_path, capsys):
    """--plot: one small panel per loss family x mode (class and elementwise losses: loss,
    fwd+bwd, grad_out; the softmax family: fwd), at most 1600 x 1000 pixels."""
    pytest.importorskip("matplotlib")
    png, path = tmp_path / "bench.png", tmp_path / "bench.json"
    rc = cli.main(
        [
            "bench",
            "--quick",
            "--repeat",
            "1",
            "--shape",
            "16x5",
            "8x3",
            "--loss",
            "cross_entropy",
            "focal_loss",
            "mse_loss",
            "log_softmax",
            "--dtype",
            "float32",
            "--skip",
            "numpy",
            "torch",
            "sklearn",
            "--plot",
            str(png),
            "--json",
            str(path),
        ]
    )
    assert rc == 0, capsys.readouterr()
    width, height = _png_size(png)
    assert 800 <= width <= 1600 and 500 <= height <= 1000
    doc = json.loads(path.read_text())
    fig = report.plot(doc, tmp_path / "again.png")
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert len(fig.axes) == 7, titles
    assert titles == sorted(
        [f"class losses: {m}" for m in ("loss", "fwd+bwd", "grad_out")]
        + [f"elementwise losses: {m}, mse_loss" for m in ("loss", "fwd+bwd", "grad_out")]
        + ["softmax family: fwd, log_softmax"]
    )
    # the memory floor is the reference line at 1 and each case of a panel has a tick
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        assert any(list(line.get_ydata()) == [1.0, 1.0] for line in ax.get_lines())
    class_loss = [ax for ax in fig.axes if ax.get_title() == "class losses: loss"][0]
    ticks = [t.get_text() for t in class_loss.get_xticklabels()]
    assert ticks == ["16x5", "8x3", "16x5", "8x3"]
    texts = [t.get_text() for t in class_loss.texts]
    assert texts == ["cross_entropy", "focal_loss"]  # the label over each group of shapes


def test_plot_one_panel_per_family_and_mode(tmp_path):
    """The panels come from the records alone: families in registry order, failed rows left
    out, flagged ones drawn hollow."""
    pytest.importorskip("matplotlib")

    def rec(loss, kind, mode, flags=(), error=None):
        return {
            "loss": loss,
            "kind": kind,
            "shape": [8, 4],
            "dtype": "float64",
            "mode": mode,
            "elements": 32,
            "fastloss_s": 2e-6,
            "floor_s": 1e-6,
            "torch_s": 4e-6,
            "sklearn_s": None,
            "flags": list(flags),
            "error": error,
        }

    doc = {
        "versions": {"fastloss": fastloss.__version__},
        "machine": {"cpu": "test CPU"},
        "settings": {"threads": 2},
        "results": [
            rec("softmax", "softmax", "fwd"),
            rec("cross_entropy", "class", "loss", flags=["busy"]),
            rec("cross_entropy", "class", "grad_out", error="RuntimeError: x"),
        ],
    }
    assert [(f, m) for f, m, _ in report.plot_panels(doc)] == [("class", "loss"), ("axis", "fwd")]
    fig = report.plot(doc, tmp_path / "p.png")
    assert [ax.get_title() for ax in fig.axes] == [
        "class losses: loss, 8x4",
        "softmax family: fwd, 8x4",
    ]
    # the flagged case is drawn hollow, the trusted one filled
    flagged = [l for l in fig.axes[0].get_lines() if l.get_marker() == "s"]
    trusted = [l for l in fig.axes[1].get_lines() if l.get_marker() == "s"]
    assert flagged and all(l.get_markerfacecolor() == "none" for l in flagged)
    assert trusted and all(l.get_markerfacecolor() != "none" for l in trusted)
    width, height = _png_size(tmp_path / "p.png")
    assert width <= 1600 and height <= 1000


def test_bench_markdown_table(tmp_path, capsys):
    md = tmp_path / "bench.md"
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "64x10",
        "--dtype",
        "float64",
        "--loss",
        "cross_entropy",
        "--threads",
        "1",
        "--skip",
        "torch",
        "sklearn",
        "--markdown",
        str(md),
    )
    assert f"wrote {md}" in out
    text = md.read_text(encoding="utf-8")
    rows = [l for l in text.splitlines() if l.startswith("| `")]
    assert len(rows) == 1 and rows[0].startswith("| `cross_entropy` | 64 x 10 | float64 | ")
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 10
    by_mode = {r["mode"]: r for r in doc["results"]}

    # the fwd+bwd ratio and the loss-only / grad_out ratios are the ones measured in the JSON
    def ratio(text):
        return float(text.rsplit("(", 1)[-1].rstrip(")").rstrip("x"))

    assert ratio(cells[4]) == pytest.approx(by_mode["fwd+bwd"]["x_floor"], rel=0.01, abs=0.006)
    assert ratio(cells[7]) == pytest.approx(by_mode["loss"]["x_floor"], rel=0.01, abs=0.006)
    assert ratio(cells[8]) == pytest.approx(by_mode["grad_out"]["x_floor"], rel=0.01, abs=0.006)
    assert cells[6] == "-"  # torch skipped
    assert cells[9] == "-"  # sklearn skipped
    assert "µs" in cells[3] and "threads" in text and doc["fastloss_config"]["simd"] in text


def test_loss_tables_consistent():
    available = cases.available_losses()
    assert {"cross_entropy", "focal_loss"} <= set(cases.default_losses())
    assert set(available) <= set(fastloss.__all__)
    assert set(cases.default_losses()) <= set(available)
    for name, row in cases.LOSSES.items():
        assert row.name == name and row.kind in cases.KINDS
    for kind in cases.KINDS.values():
        assert all(floor in cases.FLOORS for _, floor in kind.modes)
        assert kind.peer_mode in dict(kind.modes)


def test_measure_best_of():
    calls = []
    best, result = timing.measure(lambda: calls.append(1) or len(calls), 3, min_time=0.0)
    assert best >= 0 and result == len(calls) and len(calls) >= 4  # warm-up + 3
    best, _ = timing.measure(lambda: None, 2, min_time=1e-3)  # tiny: inner loop
    assert 0 <= best < 1e-3


def test_scaling_cases():
    """The thread-scaling section takes the compute-bound cases only: the losses marked so,
    class losses with few classes (the tile path), and inputs big enough to use threads."""
    plan = [
        ("cross_entropy", (1048576, 10)),
        ("cross_entropy", (65536, 1000)),
        ("cross_entropy", (32, 10)),
        ("focal_loss", (65536, 48)),
        ("focal_loss", (65536, 49)),
        ("sigmoid_focal_loss", (16777216,)),
        ("sigmoid_focal_loss", (65535,)),
        ("mse_loss", (16777216,)),
        ("log_softmax", (1048576, 10)),
    ]
    assert runner.scaling_cases(plan) == [
        ("cross_entropy", (1048576, 10)),
        ("focal_loss", (65536, 48)),
        ("sigmoid_focal_loss", (16777216,)),
    ]


def test_python_threads_time_runs_the_calls_at_once():
    """Each call waits at a barrier of all of them (and fails after 10 s alone): the helper
    returns only if the calls really ran at the same time, and the time of the last of its
    rounds covers at least the slowest call.  A failing call's exception reaches the caller."""
    import threading
    import time

    meet = threading.Barrier(3)

    def call():
        meet.wait(timeout=10)
        time.sleep(0.002)

    wall = timing.python_threads_time([call, call, call], 2)
    assert 0.002 <= wall < 10
    assert 0.002 <= timing.python_threads_time([call, call, call], 1, warmup=False) < 10
    counts = []
    assert timing.python_threads_time([lambda: counts.append(1)] * 2, 2, burst=3) >= 0
    assert len(counts) == 2 * 3 * 3  # (warm-up + 2 rounds) x a burst of 3, 2 threads

    def bad():
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError, match="boom"):
        timing.python_threads_time([bad, lambda: None], 1)


def test_bench_thread_scaling(tmp_path, capsys):
    """With 2 threads the run ends with the scaling section of its compute-bound cases (loss
    only and grad_out): 1 and 2 OpenMP threads, and 2 Python threads calling at once; the
    printed table, the JSON records and the Markdown table agree.  --skip scaling drops it."""
    md = tmp_path / "bench.md"
    threads_before = fastloss.get_num_threads()
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "65536x10",
        "--dtype",
        "float64",
        "--loss",
        "cross_entropy",
        "sigmoid_focal_loss",
        "--threads",
        "2",
        "--skip",
        "numpy",
        "torch",
        "sklearn",
        "--markdown",
        str(md),
    )
    assert "thread scaling of the compute-bound cases, 1 -> 2 threads" in out
    recs = doc["scaling"]
    assert [(r["loss"], r["mode"]) for r in recs] == [
        ("cross_entropy", "loss"),
        ("cross_entropy", "grad_out"),
        ("sigmoid_focal_loss", "loss"),
        ("sigmoid_focal_loss", "grad_out"),
    ]
    for r in recs:
        assert set(r) == SCALING_FIELDS, set(r) ^ SCALING_FIELDS
        assert r["error"] is None and r["threads"] == 2 and r["dtype"] == "float64"
        assert r["shape"] == [65536, 10] and r["elements"] == 655360
        assert r["one_thread_s"] > 0 and r["threads_s"] > 0 and r["python_threads_s"] > 0
        assert r["speedup"] == pytest.approx(r["one_thread_s"] / r["threads_s"])
        assert r["python_serial_s"] == pytest.approx(2 * r["one_thread_s"])
        assert r["python_speedup"] == pytest.approx(r["python_serial_s"] / r["python_threads_s"])
        line = [
            l
            for l in out.splitlines()
            if l.startswith(r["loss"] + " ") and f"| {r['mode']} " in l and l.count("|") == 8
        ]
        assert len(line) == 1, out
        assert line[0].split("|")[6].strip().rstrip("?") == report._fmt_ratio(r["speedup"])
    assert fastloss.get_num_threads() == threads_before  # restored
    text = md.read_text(encoding="utf-8")
    assert "| loss | shape | dtype | mode | 1 thread | 2 threads | speedup |" in text
    rows = [l for l in text.splitlines() if l.startswith("| `") and l.count("|") == 10]
    assert len(rows) == 4
    for row, r in zip(rows, recs):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:4] == [f"`{r['loss']}`", "65536 x 10", "float64", r["mode"]]
        assert float(cells[6].rstrip("x")) == pytest.approx(r["speedup"], rel=0.01, abs=0.006)
        assert float(cells[8].rstrip("x")) == pytest.approx(
            r["python_speedup"], rel=0.01, abs=0.006
        )
    # the main table keeps its 10-cell rows
    assert len([l for l in text.splitlines() if l.startswith("| `") and l.count("|") == 11]) == 2

    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "65536x10",
        "--dtype",
        "float32",
        "--loss",
        "cross_entropy",
        "--threads",
        "2",
        "--skip",
        "numpy",
        "torch",
        "sklearn",
        "scaling",
    )
    assert doc["scaling"] == [] and "thread scaling" not in out


def test_bench_failing_scaling_call_is_reported(monkeypatch, capsys):
    """A call that fails only on one thread: the main rows pass, the scaling rows say ERROR
    with the message, and the exit status is 1."""
    real = fastloss.cross_entropy

    def one_thread_fails(*args, **kwargs):
        if fastloss.get_num_threads() == 1:
            raise RuntimeError("one thread exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(fastloss, "cross_entropy", one_thread_fails)
    rc = cli.main(
        [
            "bench",
            "--quick",
            "--repeat",
            "1",
            "--shape",
            "65536x10",
            "--dtype",
            "float32",
            "--loss",
            "cross_entropy",
            "--threads",
            "2",
            "--skip",
            "numpy",
            "torch",
            "sklearn",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    scaling = out.split("thread scaling of the compute-bound cases", 1)[1]
    rows = [l for l in scaling.splitlines() if l.startswith("cross_entropy ")]
    assert len(rows) == 2 and all("ERROR" in l for l in rows)
    assert "RuntimeError: one thread exploded" in scaling
    assert "WARNING: 2 fastloss call(s) failed" in scaling
    assert "ERROR" not in out.split("thread scaling", 1)[0]


def test_bench_failing_call_is_reported(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(fastloss, "focal_loss", broken)
    rc = cli.main(
        [
            "bench",
            "--quick",
            "--repeat",
            "1",
            "--shape",
            "8x3",
            "--dtype",
            "float32",
            "--loss",
            "focal_loss",
            "--skip",
            "numpy",
            "torch",
            "sklearn",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 1
    assert "ERROR" in out and "RuntimeError: kernel exploded" in out


def test_bench_passes_keep_the_best_times(tmp_path, capsys):
    """--passes 3: fastloss and the floors are timed in three passes over all cases; every
    row records each pass's times and keeps the minima, with ratios recomputed from them (the
    peers are timed once).  --quick makes one pass unless told otherwise."""
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--passes",
        "3",
        "--shape",
        "64x5",
        "--dtype",
        "float32",
        "--loss",
        "cross_entropy",
        "mse_loss",
        "--skip",
        "torch",
        "sklearn",
    )
    assert doc["settings"]["passes"] == 3
    assert "pass 3 of 3" in out
    assert len(doc["results"]) == 6
    for rec in doc["results"]:
        assert len(rec["fastloss_pass_s"]) == 3 and len(rec["floor_pass_s"]) == 3
        assert rec["fastloss_s"] == min(rec["fastloss_pass_s"])
        assert rec["floor_raw_s"] == min(rec["floor_pass_s"])
        assert rec["floor_s"] == pytest.approx(rec["floor_raw_s"] * rec["floor_factor"])
        assert rec["x_floor"] == pytest.approx(rec["fastloss_s"] / rec["floor_s"])
        if rec["numpy_s"] is not None:
            assert rec["vs_numpy"] == pytest.approx(rec["numpy_s"] / rec["fastloss_s"])
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "64x5",
        "--dtype",
        "float32",
        "--loss",
        "cross_entropy",
        "--skip",
        "torch",
        "sklearn",
    )
    assert doc["settings"]["passes"] == 1 and "pass 2" not in out
    assert all(len(r["fastloss_pass_s"]) == 1 for r in doc["results"])


# ---------------------------------------------------------------------------- trust flags
def test_timing_spread_is_median_over_best():
    t = timing.Timing.of([4.0, 1.0, 2.0])
    assert (t.best, t.median, t.count) == (1.0, 2.0, 3)
    assert t.spread == 2.0
    assert timing.Timing.of([3.0]).spread is None  # one measurement: no spread
    assert timing.Timing.of([1.0, 2.0]).spread == 1.5
    calls = []
    t, result = timing.sample(lambda: calls.append(1) or len(calls), 4, min_time=0.0)
    assert t.count == 4 and result == len(calls) == 5  # after a warm-up call
    assert t.best <= t.median


def test_sample_times_intervals_well_above_the_clock():
    """A call far below min_time is timed in inner loops, even when one measurement is
    asked for: every measurement then covers at least min_time, so the timer's resolution
    cannot make a time untrustworthy.  min_time=0 times single calls."""
    import time

    for repeat in (1, 3):
        stamps = []
        t, _ = timing.sample(lambda: stamps.append(time.perf_counter()), repeat, min_time=1e-3)
        assert t.best < 1e-4 and t.count >= repeat
        # a loop of ceil(min_time / best) calls after the single calls: >= min_time long
        assert stamps[-1] - stamps[0] >= 1e-3 and len(stamps) > 10
    calls = []
    t, _ = timing.sample(lambda: calls.append(1), 1, min_time=0.0, warmup=False)
    assert t.count == 1 and len(calls) == 1


def test_flag_record_criteria():
    rec = {"others_cpu": 0.10}
    trust.flag_record(rec, {"fastloss": 1.5, "floor": None, "torch": 1.0})
    assert rec["flags"] == [] and rec["trust"] == "ok"  # at the limits: trusted
    rec = {"others_cpu": 0.23, "spread": {"fastloss": 1.2, "torch": 3.4, "floor": 1.51}}
    trust.flag_record(rec, rec["spread"])
    assert rec["flags"] == ["noisy:torch", "noisy:floor", "busy"] and rec["trust"] == "flagged"
    assert trust.reasons(rec) == "torch spread 3.40x, floor spread 1.51x, busy 23%"
    rec = {"others_cpu": None}
    assert trust.flag_record(rec, {})["flags"] == []  # no /proc/stat: not judged


def test_table_marks_the_cells_of_a_flagged_time():
    """A noisy torch time marks only the vs torch cell; a noisy floor the floor and x floor
    cells; busy every timed cell; the reason follows the row."""
    base = {
        "loss": "cross_entropy",
        "shape": [64, 10],
        "dtype": "float32",
        "mode": "loss",
        "fastloss_s": 2e-6,
        "ns_per_element": 3.125,
        "floor_s": 1e-6,
        "x_floor": 2.0,
        "vs_numpy": None,
        "vs_torch": 5.0,
        "vs_sklearn": None,
        "error": None,
    }

    def cells(flags, spread, others=0.0):
        out = io.StringIO()
        rec = dict(base, spread=spread, others_cpu=others)
        trust.flag_record(rec, spread)
        report.Table(out, 13, 5).row(rec)
        line = out.getvalue().rstrip("\n")
        table, _, note = line.partition("  ? ")
        return [c.strip() for c in table.split("|")], note

    row, note = cells([], {"fastloss": 1.1, "floor": 1.0, "torch": 2.0})
    assert row[4:] == ["2.0 us", "3.12", "1.0 us", "2.00x", "-", "5.0x?", "-"]
    assert note == "torch spread 2.00x"
    row, note = cells([], {"fastloss": 1.0, "floor": 1.6, "torch": 1.0})
    assert row[4:] == ["2.0 us", "3.12", "1.0 us?", "2.00x?", "-", "5.0x", "-"]
    row, note = cells([], {"fastloss": 1.0, "floor": 1.0, "torch": 1.0}, others=0.5)
    assert row[4:] == ["2.0 us?", "3.12?", "1.0 us?", "2.00x?", "-", "5.0x?", "-"]  # "-": none
    assert note == "busy 50%"
    row, note = cells([], {"fastloss": 1.0, "floor": 1.0, "torch": 1.0})
    assert "?" not in "".join(row) and note == ""


def test_summary_line():
    def doc(flags, others=0.02, load=0.1):
        return {
            "results": [{"flags": f, "error": None} for f in flags],
            "scaling": [],
            "elapsed_s": 12.3,
            "others_cpu_fraction": others,
            "machine": {"usable_cpus": 2, "logical_cpus": 2, "load_average_start": [load]},
        }

    assert trust.summary_line(doc([[]] * 23)) == (
        "23 rows in 12 s, none flagged; load avg 0.1 on 2 CPUs, others used 2% of the CPUs"
    )
    line = trust.summary_line(doc([["noisy:torch"], ["busy", "noisy:fastloss"]] + [[]] * 21))
    assert line.startswith("23 rows in 12 s, 2 flagged ?: 2 noisy (a spread > 1.5x), 1 busy")
    assert line.endswith(": treat the ? cells with care")
    line = trust.summary_line(doc([[]] * 23, others=0.35, load=1.9))
    assert "load avg 1.9 on 2 CPUs, others used 35% of the CPUs: rerun on an idle machine" in line
    # the 1-minute load average still counts what ran before the run: when the others' CPU
    # share was measured, it decides
    assert not trust.summary_line(doc([[]] * 23, others=0.01, load=1.9)).endswith("machine")
    assert trust.summary_line(doc([[]] * 23, others=None, load=1.9)).endswith("idle machine")


def test_bench_flags_a_noisy_fastloss_time(monkeypatch, tmp_path, capsys):
    """A fastloss call that takes 3 ms once in three calls and 12 ms otherwise: the median of
    its measurements is about 4x its best, so every row is flagged noisy:fastloss, its
    fastloss cells carry a ?, and the summary line counts them."""
    import time

    real = fastloss.mse_loss
    count = [0]

    def jittery(*args, **kwargs):
        count[0] += 1
        time.sleep(0.003 if count[0] % 3 == 0 else 0.012)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastloss, "mse_loss", jittery)
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "256",
        "--dtype",
        "float64",
        "--loss",
        "mse_loss",
        "--threads",
        "1",
        "--skip",
        "torch",
        "sklearn",
        "numpy",
    )
    assert len(doc["results"]) == 3
    for rec in doc["results"]:
        assert rec["spread"]["fastloss"] > 2, rec
        assert "noisy:fastloss" in rec["flags"] and rec["trust"] == "flagged"
        line = [l for l in out.splitlines() if l.startswith("mse_loss ") and rec["mode"] in l]
        assert re.search(r"ms\? \|", line[0]) and "fastloss spread" in line[0]
    summary = _summary(out)
    assert re.match(r"3 rows in \d+ s, 3 flagged \?: 3 noisy \(a spread > 1.5x\)", summary)


# ---------------------------------------------------------------------------- busy machine
def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_busy_processes_are_stopped_even_on_error():
    with pytest.raises(ZeroDivisionError):
        with contention.busy_processes(1) as pids:
            assert len(pids) == 1 and _alive(pids[0])
            raise ZeroDivisionError
    assert not _alive(pids[0])
    assert multiprocessing.active_children() == []


def test_bench_contention_section(tmp_path, capsys):
    """--contention (on tiny cases here): the representative calls on 2 threads and on 1,
    idle and with (usable CPUs - 1) busy processes that are gone afterwards; the printed
    table and the JSON section agree."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    doc, out = _bench_json(
        tmp_path,
        capsys,
        "--shape",
        "16x5",
        "--dtype",
        "float32",
        "--loss",
        "cross_entropy",
        "--threads",
        "2",
        "--skip",
        "numpy",
        "torch",
        "sklearn",
        "scaling",
        "--contention",
        "--contention-shrink",
        "256",
    )
    assert multiprocessing.active_children() == []
    sec = doc["contention"]
    assert doc["settings"]["contention"] is True
    assert sec["threads"] == 2 and sec["goal_ratio"] == contention.GOAL_RATIO == 1.2
    assert sec["busy_processes"] == usable - 1 and sec["statistic"] == "median"
    assert [(c["loss"], c["shape"], c["mode"]) for c in sec["cases"]] == [
        ("cross_entropy", [1024, 10], "loss"),
        ("cross_entropy", [4, 100], "loss"),
        ("mse_loss", [4096], "loss"),
        ("softmax", [16, 1000], "fwd"),
    ]
    table = out.split("busy machine:", 1)[1]
    assert _summary(out) == trust.summary_line(doc)  # still the last line
    for c in sec["cases"]:
        assert c["error"] is None and c["dtype"] == "float32" and c["threads"] == 2
        for cond in ("idle", "busy") if usable > 1 else ("idle",):
            many, one = c[cond + "_threads_s"], c[cond + "_one_thread_s"]
            assert many > 0 and one > 0
            assert c[cond + "_ratio"] == pytest.approx(many / one)
        if usable > 1:
            assert c["goal_met"] == (c["busy_ratio"] <= 1.2)
            row = [l for l in table.splitlines() if l.startswith(c["loss"] + " ")]
            row = [l for l in row if f"| {cases.shape_str(c['shape'])} " in l]
            cells = [x.strip() for x in row[0].split("|")]
            assert cells[4] == report._fmt_ratio(c["idle_ratio"])
            assert cells[7] == report._fmt_ratio(c["busy_ratio"])
            assert cells[8] == ("met" if c["goal_met"] else "MISSED")
    if usable > 1 and sec["busy_others_cpu"] is not None:
        # the busy processes really ran: at least a share of one of the CPUs
        assert sec["busy_others_cpu"] > 0.2 / usable


def test_contention_needs_two_threads():
    sec = contention.run_section(1, 1, 2)
    assert sec["cases"] == [] and "one thread" in sec["note"]
    assert multiprocessing.active_children() == []


def test_correctness_check_sums_per_sample_losses_against_a_summed_peer():
    # entropy's torch peer returns the sum (its backward needs a scalar); fastloss's result is
    # per row: compared as their sum, and a wrong row still shows
    rows = np.array([0.5, 1.25, 2.0])
    assert runner._rel_err(runner._summed_like(rows, np.float64(3.75)), 3.75) == 0.0
    assert runner._rel_err(runner._summed_like(rows, np.float64(3.5)), 3.5) > 0.05
    # same shapes: unchanged
    assert runner._summed_like(rows, rows) is rows
