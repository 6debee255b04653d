"""fastloss: fused, SIMD, multi-threaded CPU kernels for ML losses and their gradients.

Every loss computes its value and, with ``return_grad=True``, its gradient in ONE fused pass
over memory.  ``fastloss.reference`` holds a pure-NumPy twin of every public function (same
signature), used as the test oracle and selectable with ``set_backend("reference")``,
``use_backend("reference")`` or ``FASTLOSS_BACKEND=reference``.
"""

__version__ = "0.1.0"

from . import _api, _docs, reference
from ._api import *  # noqa: F403 (the public functions: _api.__all__, one per registry row)
from ._config import (
    config,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    show_config,
    use_backend,
)
from ._evaluate import evaluate

reference._install(_api)

__all__ = _api.__all__ + [
    "set_num_threads",
    "get_num_threads",
    "set_backend",
    "get_backend",
    "use_backend",
    "show_config",
    "config",
    "evaluate",
    "__version__",
]

_docs.attach(globals())  # help(): docstrings generated from the signatures and the registry


def __getattr__(name):
    # fastloss.gbdt (the gradient-boosting objectives) is imported on first use
    if name == "gbdt":
        import importlib

        return importlib.import_module(".gbdt", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
