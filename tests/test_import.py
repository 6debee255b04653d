"""``import fastloss`` loads the library only: no command line, benchmark or file IO modules
(argparse, zipfile, zlib, mmap, pickle), which load when they are used."""

import os
import subprocess
import sys

import fastloss

# the directory holding the fastloss package under test (see test_cli.py)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))
UNWANTED_STDLIB = ("argparse", "zipfile", "zlib", "mmap", "pickle")
UNWANTED_FASTLOSS = (
    "fastloss.cli",
    "fastloss._npyio",
    "fastloss._bench",
    "fastloss.reference._oracles",
)


def _python(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def _imported_by_fastloss():
    """Modules that ``import fastloss`` imports, from ``python -X importtime``: NumPy is imported
    first, so the modules NumPy itself needs (it imports pickle) are not counted."""
    proc = _python("-X", "importtime", "-c", "import numpy; import fastloss")
    assert proc.returncode == 0, proc.stderr
    names = [
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    names = [n for n in names if n and n != "imported package"]
    assert "numpy" in names and "fastloss" in names, proc.stderr
    return names[names.index("numpy") + 1 : names.index("fastloss") + 1]


def test_import_fastloss_loads_no_application_code():
    names = _imported_by_fastloss()
    assert "fastloss._evaluate" in names and "fastloss._api" in names, names
    for name in names:
        assert name.split(".")[0] not in UNWANTED_STDLIB, name
        assert not any(name == m or name.startswith(m + ".") for m in UNWANTED_FASTLOSS), name
        assert "bench" not in name.split("."), name


def test_evaluate_works_without_the_cli():
    code = (
        "import sys, numpy as np, fastloss\n"
        "doc = fastloss.evaluate('mse_loss', np.arange(4.0), np.zeros(4))\n"
        "assert doc['mean'] == 3.5, doc\n"
        "bad = [m for m in ('argparse', 'zipfile', 'fastloss.cli', 'fastloss._npyio')\n"
        "       if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')"
    )
    proc = _python("-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_python_m_fastloss_help():
    proc = _python("-m", "fastloss", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: fastloss")
    for command in ("show-config", "bench", "eval"):
        assert command in proc.stdout


def test_cli_main_is_the_console_script():
    from fastloss.cli import main

    assert main(["--version"]) == 0
    proc = _python(
        "-c", "import sys; from fastloss.cli import main; sys.exit(main(['show-config']))"
    )
    assert proc.returncode == 0 and "simd" in proc.stdout, proc.stderr
