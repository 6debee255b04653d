"""Oracles written in torch for the losses torch.nn.functional does not have.

Used by the tests and by ``fastloss bench`` as the peers of fastloss's functions; torch is
imported only when one is called.
"""

__all__ = ["torchvision_sigmoid_focal_loss"]


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss's formula written in torch (torchvision itself is not
    needed): the peer of fastloss.sigmoid_focal_loss in the benchmark and in the tests."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
