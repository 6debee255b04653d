"""Fast tests of the benchmark engine behind ``fastloss bench`` (fastloss.cli.bench): whole
runs through the command line (the JSON document, the printed and Markdown tables, the thread
scaling, the passes) and its pieces (the case tables, the timing helpers)."""

import json
import math

import numpy as np
import pytest

import fastloss
from fastloss import cli
from fastloss.cli.bench import cases, report, runner, timing

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
    "others_cpu",
    "error",
}


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
            assert " us " in line[0]  # tiny shapes are reported in microseconds
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


def test_bench_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    rc = cli.main(
        [
            "bench",
            "--quick",
            "--repeat",
            "1",
            "--shape",
            "16x5",
            "--dtype",
            "float32",
            "--loss",
            "cross_entropy",
            "--skip",
            "numpy",
            "sklearn",
            "--plot",
            str(png),
        ]
    )
    assert rc == 0, capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
        assert line[0].split("|")[6].strip() == report._fmt_ratio(r["speedup"])
    assert fastloss.get_num_threads() == threads_before  # restored
    text = md.read_text(encoding="utf-8")
    assert "| loss | shape | dtype | mode | 1 thread | 2 threads | speedup |" in text
    rows = [l for l in text.splitlines() if l.startswith("| `") and l.count("|") == 10]
    assert len(rows) == 4
    for row, r in zip(rows, recs):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:4] == [f"`{r['loss']}`", "65536 x 10", "float64", r["mode"]]
        assert float(cells[6].rstrip("x")) == pytest.approx(r["speedup"], abs=0.006)
        assert float(cells[8].rstrip("x")) == pytest.approx(r["python_speedup"], abs=0.006)
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
