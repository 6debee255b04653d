"""NumPy reference twins of every public fastloss function.

``fastloss.reference.<name>`` has exactly the signature of ``fastloss.<name>`` and runs the
same validation, but computes with the pure-NumPy float64 math in ``_math.py`` instead of the
compiled kernels.  It is the oracle of the tests and a fallback anyone can call directly.
"""

import functools as _functools


def _twin(public):
    @_functools.wraps(public)
    def twin(*args, **kwargs):
        from .._config import use_backend

        with use_backend("reference"):
            return public(*args, **kwargs)

    twin.__doc__ = f"NumPy reference twin of fastloss.{public.__name__}.\n\n{public.__doc__ or ''}"
    return twin


def _install(api):
    """Called by fastloss/__init__.py once fastloss._api is importable (it imports _math
    from this package, so the twins cannot be built at this module's import time)."""
    __all__[:] = api.__all__
    for name in __all__:
        globals()[name] = _twin(getattr(api, name))


__all__: list = []
