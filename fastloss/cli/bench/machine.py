"""Facts about the machine (CPU, cores, cache, SIMD flags, memory, load) and the versions of
fastloss and its peers (torch and scikit-learn, imported only when present)."""

import os
import platform

import numpy as np

import fastloss

__all__ = ["machine_facts", "load_average", "versions", "import_torch", "import_sklearn_loss"]


def machine_facts():
    info = {
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": None,
        "physical_cores": None,
        "cache": None,
        "simd_flags": [],
        "memory_gib": None,
        "platform": platform.platform(),
    }
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
        info["simd_flags"] = [
            f
            for f in (
                "sse4_2",
                "avx",
                "avx2",
                "fma",
                "avx512f",
                "avx512bw",
                "avx512vl",
                "avx512dq",
                "avx512_bf16",
                "asimd",
                "sve",
            )
            if f in flags
        ]
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


def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def import_torch():
    try:
        import torch
        import torch.nn.functional as F
    except Exception:  # noqa: BLE001 - torch missing or broken: just no torch column
        return None, None
    return torch, F


def import_sklearn_loss():
    """scikit-learn's private loss module (sklearn._loss.loss), or None."""
    try:
        from sklearn._loss import loss as sk_loss
    except Exception:  # noqa: BLE001
        return None
    return sk_loss


def versions(torch=None):
    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastloss": fastloss.__version__,
        "torch": None,
        "sklearn": None,
    }
    if torch is not None:
        out["torch"] = torch.__version__
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except Exception:  # noqa: BLE001
        pass
    return out
