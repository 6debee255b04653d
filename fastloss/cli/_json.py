"""Strict JSON for the command line's documents (``fastloss eval --json``, ``fastloss bench
--json``): NumPy scalars become Python numbers, NaN and infinities become null."""

import json
import math

import numpy as np

__all__ = ["strict", "dumps", "write_json"]


def strict(value):
    """`value` with JSON types only: dict keys as str, tuples as lists, NumPy scalars as Python
    scalars, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return strict(value.item())
    return value


def dumps(doc, indent=2):
    """The document as a strict JSON string."""
    return json.dumps(strict(doc), indent=indent, allow_nan=False)


def write_json(doc, path, indent=1):
    """Write the document to `path` as strict JSON, with a final newline."""
    with open(path, "w") as fh:
        fh.write(dumps(doc, indent))
        fh.write("\n")
