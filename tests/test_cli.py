"""Fast tests of the command line (fastloss.cli): version, show-config, argument errors and
the argparse types; the benchmark engine's runs are in test_bench_engine.py and ``fastloss
eval`` in test_evaluate.py."""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastloss
from fastloss import cli
from fastloss.cli import _argtypes, _json

# the directory holding the fastloss package under test (site-packages in CI, the checkout
# in a development build): subprocesses must import that one, not a source tree without .so
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))


def _run_module(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "fastloss", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


# ---------------------------------------------------------------------------- version / config
def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    conf = fastloss.config()
    assert out.startswith(f"fastloss {fastloss.__version__}")
    assert ("OpenMP on" if conf["openmp"] else "OpenMP off") in out
    assert f"{conf['threads']} threads" in out
    assert f"SIMD {conf['simd']}" in out


def test_python_m_fastloss_version():
    proc = _run_module("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"fastloss {fastloss.__version__}")


def test_show_config(capsys):
    assert cli.main(["show-config"]) == 0
    out = capsys.readouterr().out
    fastloss.show_config()
    assert out == capsys.readouterr().out
    for key in ("version", "openmp", "threads", "simd"):
        assert key in out


def test_no_command_prints_usage(capsys):
    assert cli.main([]) == 2
    assert "usage: fastloss" in capsys.readouterr().err


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["frobnicate"],
        ["bench", "--dtype", "float16"],
        ["bench", "--shape", "10y3"],
        ["bench", "--shape", "0x10"],
        ["bench", "--threads", "0"],
        ["bench", "--threads", "two"],
        ["bench", "--repeat", "-1"],
        ["bench", "--loss", "no_such_loss"],
        ["bench", "--loss", "cross_entropy", "--shape", "100"],
        ["bench", "--skip", "jax"],
        ["bench", "--contention-shrink", "0"],
        ["bench", "--json"],
    ],
)
def test_bad_arguments(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Traceback" not in err


def test_bad_arguments_subprocess_no_traceback():
    proc = _run_module("bench", "--dtype", "float16")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc = cli.main(["bench", "--quick", "--shape", "8x4", "--plot", str(tmp_path / "p.png")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "fastloss[plot]" in err
    assert "Traceback" not in err
    assert not (tmp_path / "p.png").exists()


def test_bench_json_unwritable(tmp_path, capsys):
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
            "cross_entropy",
            "--skip",
            "numpy",
            "torch",
            "sklearn",
            "--json",
            str(tmp_path / "no" / "such" / "dir.json"),
        ]
    )
    assert rc == 2  # refused before the (possibly long) benchmark runs
    captured = capsys.readouterr()
    assert "cannot write" in captured.err and "Traceback" not in captured.err
    assert "cross_entropy" not in captured.out


# ---------------------------------------------------------------------------- argument types
def test_parse_shape():
    assert _argtypes.parse_shape("65536x1000") == (65536, 1000)
    assert _argtypes.parse_shape("16777216") == (16777216,)
    assert _argtypes.parse_shape("2X3x4") == (2, 3, 4)
    for bad in ("", "x", "10y3", "0x5", "-1x4", "1.5x2"):
        with pytest.raises(ValueError):
            _argtypes.parse_shape(bad)


def test_argument_types():
    assert _argtypes.positive_int("3") == 3
    assert _argtypes.cli_float("-0.5") == -0.5 and _argtypes.cli_float("inf") == float("inf")
    assert _argtypes.shape("4x5") == (4, 5)
    for fn, bad in (
        (_argtypes.positive_int, "0"),
        (_argtypes.positive_int, "1.5"),
        (_argtypes.cli_float, "one"),
        (_argtypes.shape, "4y5"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            fn(bad)


def test_eval_subcommand_has_its_own_parser_class(capsys):
    """`fastloss eval` errors are one line (its parser class); the other subcommands keep
    argparse's usage + error."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert type(sub.choices["eval"]).__name__ == "_EvalParser"
    assert type(sub.choices["bench"]) is argparse.ArgumentParser
    assert cli.main(["eval", "--loss", "mse_loss"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["bench", "--dtype", "float16"]) == 2
    assert capsys.readouterr().err.startswith("usage: fastloss bench")


def test_strict_json():
    """One JSON helper for `fastloss eval --json` and `fastloss bench --json`: NumPy scalars
    become Python values, NaN and infinities null, tuples lists, keys strings."""
    doc = {
        "a": np.float32(1.5),
        "b": [np.int64(3), float("nan"), np.bool_(True)],
        1: (np.inf,),
        "c": {"d": None, "e": "text", "f": -np.float64(np.inf)},
    }
    want = {"a": 1.5, "b": [3, None, True], "1": [None], "c": {"d": None, "e": "text", "f": None}}
    assert json.loads(_json.dumps(doc)) == want
    assert _json.dumps({"x": [1]}, indent=2) == '{\n  "x": [\n    1\n  ]\n}'


def test_closed_pipe_ends_quietly(tmp_path):
    """`fastloss ... | head`: the reader closes the pipe early; no BrokenPipeError traceback."""
    code = (
        "import sys, fastloss.cli as c; sys.stdout = open(sys.stdout.fileno(), 'w', "
        "buffering=1, closefd=False); sys.exit(c.main(['show-config']))"
    )
    proc = subprocess.Popen(  # cwd: not the source folder, whose fastloss/ has no kernels
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err
