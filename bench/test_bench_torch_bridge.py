"""fastloss.torch vs torch.nn.functional: one training step's loss + backward.

    pytest bench/ --benchmark-only -k torch_bridge

The input is a leaf tensor of logits that requires grad (what a model's last layer hands the
loss); one step is ``x.grad = None; loss = fn(x, target); loss.backward()``.  Cases:
cross_entropy on 4096x1000 float32 logits and sigmoid_focal_loss (reduction="mean") on 1M
float32 logits (torch side: torchvision.ops.sigmoid_focal_loss when installed, else its formula
composed from torch ops, which is what torchvision runs); and the small sizes where the
bridge's fixed cost per call decides: cross_entropy on 32x10 and 1024x100, mse_loss on 1000
elements.  Skipped without torch, and skipped unless run with --benchmark-only.  Compare
within one run only.
"""

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

import fastloss  # noqa: E402
import fastloss.torch as FL  # noqa: E402
from fastloss.reference._oracles import torchvision_sigmoid_focal_loss  # noqa: E402

F = torch.nn.functional


@pytest.fixture(autouse=True)
def _only_under_benchmark_only(request):
    if not request.config.getoption("benchmark_only", default=False):
        pytest.skip("torch bridge benchmarks run only with: pytest bench/ --benchmark-only")


def _torch_sigmoid_focal_loss():
    try:
        from torchvision.ops import sigmoid_focal_loss
    except ImportError:
        return torchvision_sigmoid_focal_loss
    return sigmoid_focal_loss


def _cross_entropy_case(n=4096, c=1000):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, generator=g, dtype=torch.float32) * 2
    t = torch.randint(0, c, (n,), generator=g)
    return x, t, {}


def _mse_case(n=1000):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, generator=g), torch.randn(n, generator=g), {}


def _sigmoid_focal_case():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1 << 20, generator=g, dtype=torch.float32) * 2
    t = (torch.rand(1 << 20, generator=g) < 0.1).to(torch.float32)
    return x, t, {"reduction": "mean"}


CASES = {
    "cross_entropy-4096x1000-float32": (_cross_entropy_case, F.cross_entropy, FL.cross_entropy),
    # small sizes: the bridge's cost per call (fast path + autograd node) against torch's
    "cross_entropy-32x10-float32": (
        lambda: _cross_entropy_case(32, 10),
        F.cross_entropy,
        FL.cross_entropy,
    ),
    "cross_entropy-1024x100-float32": (
        lambda: _cross_entropy_case(1024, 100),
        F.cross_entropy,
        FL.cross_entropy,
    ),
    "mse_loss-1000-float32": (_mse_case, F.mse_loss, FL.mse_loss),
    "sigmoid_focal_loss-1M-float32": (
        _sigmoid_focal_case,
        _torch_sigmoid_focal_loss(),
        FL.sigmoid_focal_loss,
    ),
}


@pytest.mark.parametrize("impl", ["torch", "fastloss"])
@pytest.mark.parametrize("case", list(CASES))
def test_torch_bridge_step(benchmark, case, impl):
    make, torch_fn, fl_fn = CASES[case]
    x, target, kw = make()
    x.requires_grad_(True)
    fn = torch_fn if impl == "torch" else fl_fn

    def step():
        x.grad = None
        loss = fn(x, target, **kw)
        loss.backward()
        return loss

    # both implementations agree before anything is timed
    ref_x = x.detach().double().requires_grad_(True)
    ref_loss = torch_fn(ref_x, target.double() if target.is_floating_point() else target, **kw)
    ref_loss.backward()
    loss = step()
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=2e-4)
    np.testing.assert_allclose(
        x.grad.double().numpy(),
        ref_x.grad.numpy(),
        rtol=2e-3,
        atol=1e-4 * float(ref_x.grad.abs().max()),
    )

    benchmark.group = f"torch bridge: {case} loss+backward"
    benchmark.extra_info["elements"] = int(x.numel())
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()
    benchmark.extra_info["fastloss_threads"] = fastloss.get_num_threads()
    benchmark(step)
    assert x.grad is not None and x.grad.shape == x.shape
