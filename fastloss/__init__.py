"""fastloss: fused, SIMD, multi-threaded CPU kernels for ML losses and their gradients.

Every loss computes its value and, with ``return_grad=True``, its gradient in ONE fused pass
over memory.  ``fastloss.reference`` holds a pure-NumPy twin of every public function (same
signature), used as the test oracle and selectable with ``set_backend("reference")``,
``use_backend("reference")`` or ``FASTLOSS_BACKEND=reference``.
"""
__version__ = "0.1.0"

from ._config import (config, get_backend, get_num_threads, set_backend, set_num_threads,
                      show_config, use_backend)
from . import _api, reference
from ._api import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                   focal_loss, huber_loss, kl_div, l1_loss, log_softmax, logsumexp, mse_loss,
                   nll_loss, sigmoid_focal_loss, smooth_l1_loss, softmax)
from ._evaluate import evaluate

reference._install(_api)

__all__ = [
    "cross_entropy", "nll_loss", "focal_loss", "log_softmax", "softmax", "logsumexp",
    "sigmoid_focal_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
    "set_num_threads", "get_num_threads", "set_backend", "get_backend", "use_backend",
    "show_config", "config", "evaluate", "__version__",
]
